"""The one rule for every backend URL (STORE_URL, LEDGER_URL, BUS_URL) and its options.

* the scheme is the adapter's own;
* an option it does not know is refused, with the ones it knows, so a typo
  (`?consistancy=ONE`) fails at start instead of being silently ignored;
* an option given twice is refused: which one was meant cannot be known;
* a value of the wrong type is refused, naming the option;
* user info (`user:password@`) only where the backend takes credentials;
* no error message quotes the URL itself, which may carry a password.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

T = TypeVar("T")


def flag(value: str) -> bool:
    """An option's yes or no: true/false, 1/0, yes/no, on/off."""
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


@dataclass(frozen=True)
class BackendUrl:
    scheme: str
    # The hosts part, without any user info: `h1:9042,h2`.
    hosts: str
    path: str
    username: str | None
    password: str | None = field(repr=False)
    options: Mapping[str, str]

    @classmethod
    def parse(cls, url: str, scheme: str, known: Iterable[str] = (), *, credentials: bool = False) -> BackendUrl:
        """Split `url`, refusing what the rule above refuses; `known` is every option the adapter reads."""
        try:
            parts = urlsplit(url)
            # Percent-encoded in the URL (`p%40ss` for `p@ss`), as RFC 3986 has it.
            username = None if parts.username is None else unquote(parts.username)
            password = None if parts.password is None else unquote(parts.password)
        except ValueError as exc:  # a bad port or IPv6 literal; the message names no part of the URL
            raise ValueError(f"not a valid {scheme}:// URL: {exc}") from None
        if parts.scheme != scheme:
            raise ValueError(f"not a {scheme}:// URL (its scheme is {parts.scheme!r})")
        if parts.fragment:
            raise ValueError(f"a {scheme}:// URL has no #fragment")
        if "@" in parts.netloc and not credentials:
            raise ValueError(f"a {scheme}:// URL takes no credentials (user:password@)")
        given = parse_qs(parts.query, keep_blank_values=True)
        allowed = frozenset(known)
        unknown = sorted(set(given) - allowed)
        if unknown:
            listed = ", ".join(sorted(allowed)) or "none"
            raise ValueError(f"unknown {scheme}:// URL option(s) {', '.join(unknown)} (known: {listed})")
        repeated = sorted(name for name, values in given.items() if len(values) > 1)
        if repeated:
            raise ValueError(f"{scheme}:// URL option(s) given more than once: {', '.join(repeated)}")
        return cls(
            scheme=scheme,
            hosts=parts.netloc.rsplit("@", 1)[-1],
            path=parts.path,
            username=username,
            password=password,
            options={name: values[0] for name, values in given.items()},
        )

    def get(self, name: str, convert: Callable[[str], T], default: T) -> T:
        """Option `name` converted (int, float, str, flag...), or `default` when it is not given."""
        value = self.get_optional(name, convert)
        return default if value is None else value

    def get_optional(self, name: str, convert: Callable[[str], T]) -> T | None:
        if name not in self.options:
            return None
        value = self.options[name]
        try:
            return convert(value)
        except ValueError as exc:
            raise ValueError(f"{self.scheme}:// URL option {name}={value!r} is not valid: {exc}") from None
