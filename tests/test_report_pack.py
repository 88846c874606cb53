"""The page's column encodings (``edgegov.report.pack``) give back exactly what went in:
numbers, text, key order, nesting; and fall back to plain values where scaled integers
would not be exact."""

from __future__ import annotations

import json

from edgegov.report.model import Strings
from edgegov.report.pack import decimal, decimals_of, delta, records, undelta, unrecords
from hypothesis import given
from hypothesis import strategies as st

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=5))
keys = st.sampled_from(["seq", "kind", "t_ms", "output", "spindle", "press", "events", "x"])
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=3)), max_leaves=8)
rows = st.lists(st.dictionaries(keys, values, max_size=5), max_size=20)


@given(rows)
def test_records_round_trip_keys_in_order(rs):
    strings = Strings()
    packed = json.loads(json.dumps(records(rs, strings)))  # as the page gets it
    back = unrecords(packed, strings.table)
    assert back == rs
    assert [json.dumps(r) for r in back] == [json.dumps(r) for r in rs]  # key order too


@given(st.lists(st.one_of(st.none(), st.integers(-10**12, 10**12))))
def test_delta_round_trips(xs):
    assert undelta(delta(xs)) == xs


def test_decimal_is_exact_or_raw():
    assert decimal([0.3, None, 12.5, 0], 1) == {"d": 1, "v": [3, None, 122, -125]}
    assert decimal([0.35], 1) == {"raw": [0.35]}  # not a multiple of 0.1: kept as it is
    assert decimal(["NaN"], 0) == {"raw": ["NaN"]}
    assert [decimals_of(r) for r in ("1", "0.1", "0.25", "1e-3", "10")] == [0, 1, 2, 3, 0]
