"""The column encodings (``edgegov.report.pack``: delta, undelta, times, decimal) and the
interning of many texts at once (``Strings.many``) give exactly what the plain
one-value-at-a-time definitions give (``pack._delta_each``, ``_undelta_each`` and
``_decimal_each``, which the fast paths fall back to), exceptions included: on None,
inexact floats, -0.0, huge integers, NaN, infinities, booleans and text."""

from __future__ import annotations

import math

import pytest
from edgegov.report import pack
from hypothesis import given
from hypothesis import strategies as st

ref_delta = pack._delta_each  # the value-by-value definitions the fast paths fall back to
ref_undelta = pack._undelta_each


def ref_ms(x):
    if x is None or (type(x) is float and math.isnan(x)):
        return None
    return round(x * 1000)


def ref_times(xs) -> list:
    return ref_delta([ref_ms(x) for x in xs])


ref_decimal = pack._decimal_each


def outcome(f, *args):
    """What a call gives: its value with every number's type (so 0 and 0.0, -0.0 and 0.0,
    1 and True differ), or the exception's type."""
    try:
        return "value", typed(f(*args))
    except Exception as err:  # noqa: BLE001 - the exception is the outcome compared
        return "raises", type(err)


def typed(x):
    if isinstance(x, dict):
        return {k: typed(v) for k, v in x.items()}
    if isinstance(x, list):
        return [typed(v) for v in x]
    if type(x) is float:
        return ("float", math.copysign(1.0, x), x) if x == x else ("float", "nan")
    return (type(x).__name__, x)


HUGE = 10**400
EDGES = [
    [], [None], [None, None], [0], [1, None, 3], [None, 5, None, 2],
    [0.3, None, 12.5, 0], [0.35], [0.1, 0.2, 0.30000000000000004], [-0.0], [0.0, -0.0, None],
    [HUGE], [HUGE, None, -HUGE], [2**53 + 1], [2**53 + 1, 1.5], [1e308], [1e300, -1e300],
    [float("nan")], [1, float("nan")], [None, float("nan"), 2], [float("inf")],
    [float("-inf"), None], [1e308, float("nan")], [True], [1, False], ["NaN"], [1, "x"],
    [1.0, 2.0, 3.5], [7, 7, 7, 7], [-5, 5, -5], [0.25, 0.5, None, 0.75],
]


@pytest.mark.parametrize("values", EDGES)
@pytest.mark.parametrize("decimals", [0, 1, 2, 3])
def test_decimal_is_the_value_by_value_definition(values, decimals):
    assert outcome(pack.decimal, values, decimals) == outcome(ref_decimal, values, decimals)


@pytest.mark.parametrize("values", EDGES)
def test_delta_undelta_and_times_are_the_value_by_value_definitions(values):
    assert outcome(pack.delta, values) == outcome(ref_delta, values)
    assert outcome(pack.undelta, values) == outcome(ref_undelta, values)
    assert outcome(pack.times, values) == outcome(ref_times, values)
    assert outcome(pack.times, iter(values)) == outcome(ref_times, values)  # any iterable


def test_edge_cases_come_out_as_the_definition_says():
    assert pack.decimal([1, None, 3], 0) == {"d": 0, "v": [1, None, 2]}
    assert pack.decimal([0.35], 1) == {"raw": [0.35]}
    nan = float("nan")
    assert pack.decimal([None, nan], 1) == {"raw": [None, nan]}  # the same NaN object
    assert pack.decimal([float("inf")], 0) == {"raw": [float("inf")]}
    assert pack.decimal([True], 0) == {"raw": [True]}
    assert pack.decimal([HUGE, 1], 0) == {"d": 0, "v": [HUGE, 1 - HUGE]}
    assert pack.decimal([2**53 + 1], 1) == {"raw": [2**53 + 1]}  # ×10 /10 is a float
    for values in ([HUGE], [1e308]):  # HUGE × 10 / 10 is no float; 1e308 × 10 is infinite
        with pytest.raises(OverflowError):
            pack.decimal(values, 1)
    assert pack.times([0.001, None, float("nan"), 0.003]) == [1, None, None, 2]
    assert pack.undelta([-0.0]) == [0.0] and math.copysign(1, pack.undelta([-0.0])[0]) == 1


numbers = st.one_of(st.none(), st.integers(-2**70, 2**70), st.floats(),
                    st.floats(-1e6, 1e6).map(lambda f: round(f, 2)), st.booleans())


@given(st.lists(numbers, max_size=30), st.integers(0, 4))
def test_decimal_matches_the_definition_on_any_numbers(values, decimals):
    assert outcome(pack.decimal, values, decimals) == outcome(ref_decimal, values, decimals)


@given(st.lists(st.one_of(st.none(), st.integers(-2**70, 2**70), st.floats()), max_size=30))
def test_delta_and_times_match_the_definition_on_any_numbers(values):
    assert outcome(pack.delta, values) == outcome(ref_delta, values)
    assert outcome(pack.undelta, values) == outcome(ref_undelta, values)
    assert outcome(pack.times, values) == outcome(ref_times, values)


def ref_many(strings, values) -> list:
    return [strings(v) for v in values]


@pytest.mark.parametrize("values", [
    [], [None], ["a", None, "b", "a"], ["b", "a", "b", None, "c"], [1, "1", None, 2.5],
    [["x"], "x", None], [True, 1, "True"],
])
def test_strings_many_is_one_call_each(values):
    from edgegov.report.model import Strings

    fast, plain = Strings(), Strings()
    fast("a"), plain("a")  # a text known already keeps its index
    assert fast.many(values) == ref_many(plain, values)
    assert fast.table == plain.table  # new texts in the order they first come
