"""The spec's patterns accept exactly the strings the domain accepts (app/api/patterns.py).

Each pattern is checked against the parser it describes, on strings made to sit
on and around its edges: the decimals, the minimum, the maximum, leading and
trailing zeros. A pattern that drifted from the parser, or a parser changed
without its pattern, fails here before schemathesis would find it.
"""

from __future__ import annotations

import re
import sys

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from app.api.patterns import NON_BLANK, amount_pattern, decimal_alternatives, limit_pattern
from app.config import PROJECT_ROOT
from app.domain.errors import DomainError
from app.domain.money import Asset, AssetCatalog, format_units
from app.services.limits import MAX_LIMIT, _parse_limit

CATALOG = list(AssetCatalog.from_toml((PROJECT_ROOT / "app" / "assets.toml").read_text()))
# Besides the real catalogue: no decimals, two, eighteen, and bounds that are not powers of ten.
ASSETS = [
    *CATALOG,
    Asset("WHOLE", 0, 5, 1234, 90),
    Asset("CENTS", 2, 150, 100_000, 91),
    Asset("WEI", 18, 10**9, 123 * 10**18 + 456, 92),
]


def matches(pattern: str, text: str) -> bool:
    # JSON Schema's reading of a pattern: a search; `$` is the end of the string (ECMA-262 has no final-newline rule).
    return re.search(pattern.removesuffix("$") + r"\Z" if pattern.endswith("$") else pattern, text) is not None


def parses(asset: Asset, text: str) -> bool:
    try:
        asset.parse(text)
    except DomainError:
        return False
    return True


def limit_accepted(asset: Asset, text: str) -> bool:
    """What LimitService.set_override does with a limit before anything else."""
    try:
        return 0 <= _parse_limit(text, asset) < MAX_LIMIT
    except DomainError:
        return False


def _respelled(units: int, decimals: int, extra_zeros: int, cut: int) -> str:
    """`units` as a decimal string, with some trailing zeros added or taken off."""
    text = format_units(units, decimals)
    if "." in text:
        text = text.rstrip("0")[: len(text) - cut] if cut else text + "0" * extra_zeros
        text = text.rstrip(".")
    elif extra_zeros:
        text += "." + "0" * extra_zeros
    return text


def _edges(asset: Asset) -> list[int]:
    return [0, 1, asset.min_units, asset.max_units, MAX_LIMIT, 10**asset.decimals]


def on_the_edges(asset: Asset) -> list[str]:
    """Every spelling of every amount within 3 units of an edge."""
    return sorted(
        {
            _respelled(units, asset.decimals, extra, cut)
            for edge in _edges(asset)
            for units in range(max(0, edge - 3), edge + 4)
            for extra in range(3)
            for cut in range(3)
        }
    )


def near(asset: Asset) -> st.SearchStrategy[str]:
    """Strings around an asset's edges, and anywhere up to ten times its maximum."""
    units = st.one_of(
        st.sampled_from(_edges(asset)).flatmap(lambda edge: st.integers(max(0, edge - 10**6), edge + 10**6)),
        st.integers(0, asset.max_units * 11),
    )
    return st.builds(_respelled, units, st.just(asset.decimals), st.integers(0, 3), st.integers(0, 3))


@pytest.mark.parametrize("asset", ASSETS, ids=lambda a: a.symbol)
def test_the_patterns_on_every_edge(asset: Asset) -> None:
    for text in on_the_edges(asset):
        assert matches(amount_pattern(asset), text) == parses(asset, text), text
        assert matches(limit_pattern(asset), text) == limit_accepted(asset, text), text


ANY_DECIMALISH = st.text(alphabet="0123456789.-+e ", max_size=24)


@pytest.mark.parametrize("asset", ASSETS, ids=lambda a: a.symbol)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_an_amount_pattern_accepts_what_the_asset_parses(asset: Asset, data: st.DataObject) -> None:
    text = data.draw(st.one_of(near(asset), ANY_DECIMALISH))
    assert matches(amount_pattern(asset), text) == parses(asset, text), text


@pytest.mark.parametrize("asset", ASSETS, ids=lambda a: a.symbol)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_a_limit_pattern_accepts_what_the_limit_service_accepts(asset: Asset, data: st.DataObject) -> None:
    text = data.draw(st.one_of(near(asset), ANY_DECIMALISH, st.builds(lambda n: "0." + "0" * n, st.integers(0, 90))))
    assert matches(limit_pattern(asset), text) == limit_accepted(asset, text), text


@pytest.mark.parametrize(
    ("text", "accepted"),
    [
        ("0.00000001", True),
        ("10000", True),
        ("10000.00000000", True),
        ("10000.00000001", False),
        ("9999.99999999", True),
        ("1.000000000", False),  # a ninth decimal, even a zero
        ("0", False),
        ("0.0", False),
        ("01", False),
        ("1.", False),
        (".5", False),
        ("1\n", False),
    ],
)
def test_the_btc_amount_pattern_at_its_edges(text: str, accepted: bool) -> None:
    btc = next(a for a in CATALOG if a.symbol == "BTC")
    assert matches(amount_pattern(btc), text) is accepted
    assert parses(btc, text) is accepted


def test_bounds_must_be_positive_and_ordered() -> None:
    with pytest.raises(ValueError):
        decimal_alternatives(8, 0, 10)
    with pytest.raises(ValueError):
        decimal_alternatives(8, 10, 9)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=12))
@example(text="\x1c\u3000 \t")
@example(text=" a ")
def test_non_blank_is_what_strip_does_not_empty(text: str) -> None:
    assert matches(NON_BLANK, text) == bool(text.strip())


def test_non_blank_names_every_whitespace_character_python_strips() -> None:
    pattern = re.compile(NON_BLANK)
    for code in range(sys.maxunicode + 1):
        assert (pattern.fullmatch(chr(code)) is None) == chr(code).isspace(), hex(code)
