"""Scaling wire numbers: the integer-ratio path (``scale``) equals the Decimal reference
(``to_scaled``: 60 digits, then half to even) for every value and resolution, and decoding
a command gives the same scaled values either way."""

from __future__ import annotations

from decimal import Decimal

from edgegov.service.wire import Resolution, scale, to_scaled
from hypothesis import given, settings
from hypothesis import strategies as st

RESOLUTIONS = st.one_of(
    st.sampled_from(["1", "0.1", "0.01", "0.001", "0.5", "0.25", "2", "2.5", "0.3", "7",
                     "0.125", "1e-9", "0.000001", "1000", "0.7", "3.3"]),
    st.builds(lambda m, e: f"{m}e{e}", st.integers(1, 10**9), st.integers(-45, 6)),
).map(Decimal)

NUMBERS = st.one_of(
    st.integers(-(10**16), 10**16),
    st.sampled_from([0, 1, -1, 10**15 - 1, -(10**15) + 1, 10**15, -(10**15), 2**64]),
    st.decimals(allow_nan=False, allow_infinity=False, places=None),
    st.builds(lambda m, e: Decimal(f"{m}e{e}"), st.integers(-(10**20), 10**20),
              st.integers(-30, 16)),
    # halves of the resolution grid: the rounding rule decides
    st.builds(lambda k: Decimal(k) / 2, st.integers(-(10**6), 10**6)),
    st.builds(lambda k: Decimal(k) / 20, st.integers(-(10**6), 10**6)),
)


@settings(max_examples=3000, deadline=None)
@given(NUMBERS, RESOLUTIONS)
def test_the_ratio_path_equals_the_decimal_reference(value, res):
    assert scale(value, Resolution(res)) == to_scaled(value, res)


def test_halves_round_to_even():
    half = Resolution(Decimal("0.1"))
    assert [scale(Decimal(v), half) for v in ("0.05", "0.15", "0.25", "-0.05", "-0.15")] == \
        [0, 2, 2, 0, -2]
    assert scale(25, Resolution(Decimal("10"))) == 2
    assert scale(35, Resolution(Decimal("10"))) == 4


def test_what_is_not_a_plain_number_goes_to_the_reference():
    res = Resolution(Decimal("0.1"))
    for v in (True, None, "7", [1], float("nan"), float("inf"), Decimal("NaN"),
              Decimal("-Infinity"), 10**15, Decimal("1e15")):
        a, b = scale(v, res), to_scaled(v, res.dec)
        assert type(a) is type(b) and (a == b or a != a)


def test_beyond_the_exact_bound_the_reference_decides():
    """Just above a half, by less than 60 digits can tell: the reference rounds to 60 digits
    first (a half, then even: 0), the exact quotient would give 1. The ratio path must not
    take such a value."""
    value = Decimal("0.05" + "0" * 60 + "1")
    res = Decimal("0.1")
    assert to_scaled(value, res) == 0
    assert scale(value, Resolution(res)) == 0


class _Env:
    def __init__(self, res):
        self.ch_res = [res]


@settings(max_examples=2000, deadline=None)
@given(st.one_of(st.integers(-(2**70), 2**70), st.integers(-1000, 1000)), RESOLUTIONS)
def test_engineering_units_equal_the_decimal_product(scaled, res):
    from edgegov.service.messages import Vocabulary

    value = scaled * res
    want = int(value) if value == value.to_integral_value() else float(value)
    got = Vocabulary(_Env(str(res))).eng(0, scaled)
    assert type(got) is type(want) and got == want
