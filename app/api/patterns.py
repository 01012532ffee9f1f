"""The input rules the domain enforces on strings, written as JSON Schema patterns for the spec.

Amounts are decimal strings, so `minimum` and `maximum` cannot bound them: a
`pattern` is the only way the spec can state which strings the service
accepts. The patterns are built here from an asset's decimals and bounds, and
tests/unit/test_patterns.py checks each against the domain's own parser, so
the spec and the service cannot drift apart.

Patterns use only what ECMA-262 (the spec's dialect) and Python's `re` read
alike: ASCII digit classes, groups, `|`, `?`, `{m,n}`, `^` and `$`.
"""

from __future__ import annotations

import itertools

from app.domain.money import Asset
from app.services.limits import MAX_LIMIT

DigitRange = tuple[int, int]

# A string `str.strip()` does not empty: it holds a character Python does not call whitespace
# (a reason, of a deposit, an operator action or a limit override, is refused when blank after a strip).
# tests/unit/test_patterns.py checks this class against str.isspace over every code point.
NON_BLANK = "[^\\u0009-\\u000d\\u001c-\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]"


def _split(low: str, high: str) -> list[list[DigitRange]]:
    """The digit strings from `low` to `high` (one length), as sequences of per-digit ranges."""
    if low == high:
        return [[(int(c), int(c)) for c in low]]
    at = next(i for i, (a, b) in enumerate(zip(low, high, strict=True)) if a != b)
    head = [(int(c), int(c)) for c in low[:at]]
    first, last = int(low[at]), int(high[at])
    rest = len(low) - at - 1
    pieces: list[list[DigitRange]] = []
    if low[at + 1 :] != "0" * rest:
        pieces += [[*head, (first, first), *tail] for tail in _split(low[at + 1 :], "9" * rest)]
        first += 1
    upper: list[list[DigitRange]] = []
    if high[at + 1 :] != "9" * rest:
        upper = [[*head, (last, last), *tail] for tail in _split("0" * rest, high[at + 1 :])]
        last -= 1
    if first <= last:
        pieces.append([*head, (first, last), *[(0, 9)] * rest])
    return pieces + upper


def _digit(bounds: DigitRange) -> str:
    low, high = bounds
    return str(low) if low == high else f"[{low}-{high}]"


def _digits(ranges: list[DigitRange]) -> str:
    text = ""
    for bounds, run in itertools.groupby(ranges):
        count = len(list(run))
        fixed = bounds[0] == bounds[1]
        if count == 1 or (fixed and count <= 3):  # "11", not "1{2}"
            text += _digit(bounds) * count
        else:
            text += f"{_digit(bounds)}{{{count}}}"
    return text


def _optional(ranges: list[DigitRange]) -> str:
    """Digits that may each be left off the end (every one of them admits 0)."""
    if not ranges:
        return ""
    if len(set(ranges)) == 1:
        return _digit(ranges[0]) + ("?" if len(ranges) == 1 else f"{{0,{len(ranges)}}}")
    return f"({_digit(ranges[0])}{_optional(ranges[1:])})?"


def _fraction(ranges: list[DigitRange]) -> str:
    """The fraction's digits, written to any length past which each left-off digit could be a 0."""
    if not ranges:
        return ""  # an asset without decimals: no point at all
    needed = len(ranges)
    while needed and ranges[needed - 1][0] == 0:
        needed -= 1
    if needed:
        return r"\." + _digits(ranges[:needed]) + _optional(ranges[needed:])
    # Nothing need be written; a point, if there is one, has a digit after it.
    if len(set(ranges)) == 1:
        return rf"(\.{_digit(ranges[0])}{{1,{len(ranges)}}})?"
    return rf"(\.{_digit(ranges[0])}{_optional(ranges[1:])})?"


def decimal_alternatives(decimals: int, min_units: int, max_units: int) -> list[str]:
    """Regex alternatives for the plain decimals (no sign, no leading zero, at most `decimals`
    places, trailing zeros allowed) worth `min_units` to `max_units` of the smallest unit."""
    if not 1 <= min_units <= max_units:
        raise ValueError("need 1 <= min_units <= max_units")
    scale = 10**decimals
    alternatives: list[str] = []
    full: list[int] = []  # whole-part lengths whose every value is in range
    length = 1
    while (first := 0 if length == 1 else 10 ** (length - 1) * scale) <= max_units:
        last = 10**length * scale - 1
        low, high = max(min_units, first), min(max_units, last)
        if low <= high and length > 1 and (low, high) == (first, last):
            full.append(length)
        elif low <= high:
            width = length + decimals
            for ranges in _split(str(low).zfill(width), str(high).zfill(width)):
                alternatives.append(_digits(ranges[:length]) + _fraction(ranges[length:]))
        length += 1
    if full:  # consecutive lengths, merged into one alternative
        shortest, longest = full[0] - 1, full[-1] - 1
        repeat = f"{{{shortest}}}" if shortest == longest else f"{{{shortest},{longest}}}"
        alternatives.append(f"[1-9][0-9]{repeat}" + _fraction([(0, 9)] * decimals))
    return alternatives


def anchored(alternatives: list[str]) -> str:
    return "^(" + "|".join(alternatives) + ")$"


def amount_pattern(asset: Asset) -> str:
    """Exactly the strings `asset.parse` accepts: app/domain/money.py's parse_amount, bounded."""
    return anchored(decimal_alternatives(asset.decimals, asset.min_units, asset.max_units))


def limit_pattern(asset: Asset) -> str:
    """Exactly the daily limits LimitService.set_override accepts: zero in any spelling ("0", "0.00"),
    or an amount of the asset's decimals below MAX_LIMIT of its smallest unit (the ledger's bound)."""
    return anchored([r"0(\.0+)?", *decimal_alternatives(asset.decimals, 1, MAX_LIMIT - 1)])
