"""The core's deterministic CBOR subset against cbor2, the gateway decoder and oracle."""

import cbor2
import pytest
from edgegov.core import cbor
from edgegov.core.record import RecordError, decode
from hypothesis import given, settings
from hypothesis import strategies as st

ints = st.integers(min_value=-(2**64), max_value=2**64 - 1)
scalars = st.one_of(ints, st.binary(max_size=40), st.text(max_size=20), st.booleans(),
                    st.none())
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6),
        st.dictionaries(st.integers(min_value=0, max_value=2**32), inner, max_size=5),
    ),
    max_leaves=25,
)


@settings(max_examples=400, deadline=None)
@given(values)
def test_cbor2_decodes_what_we_encode_to_the_same_value_and_we_round_trip(value):
    raw = cbor.dumps(value)
    assert cbor2.loads(raw) == value
    assert cbor.loads(raw) == value
    assert cbor.dumps(cbor.loads(raw)) == raw


@settings(max_examples=300, deadline=None)
@given(st.lists(ints | st.binary(max_size=8) | st.text(max_size=8), max_size=8))
def test_arrays_encode_exactly_like_cbor2(value):
    # cbor2 writes shortest-form heads too: for arrays (no map ordering question) the
    # bytes must be identical.
    assert cbor.dumps(value) == cbor2.dumps(value)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.integers(min_value=0, max_value=2**32), ints, max_size=6))
def test_maps_are_written_in_ascending_key_order(value):
    decoded = cbor2.loads(cbor.dumps(value))
    assert list(decoded) == sorted(value)


@pytest.mark.parametrize(
    "raw, why",
    [
        (bytes.fromhex("1817"), "non-shortest"),  # 23 written in two bytes
        (bytes.fromhex("f93e00"), "float"),
        (bytes.fromhex("9f01ff"), "indefinite"),
        (bytes.fromhex("c101"), "tag"),
        (bytes.fromhex("a20100 0000".replace(" ", "")), "ascending"),
        (bytes.fromhex("a1616101"), "key"),  # text map key
        (bytes.fromhex("62c328"), "UTF-8"),
        (bytes.fromhex("0101"), "trailing"),
        (bytes.fromhex("58ff00"), "truncated"),
    ],
)
def test_decoder_refuses_what_is_not_the_subset_with_an_offset(raw, why):
    with pytest.raises(cbor.CBORError) as err:
        cbor.loads(raw)
    assert why.lower() in str(err.value).lower()
    assert err.value.offset >= 0


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_the_project_errors(raw):
    try:
        cbor.loads(raw)
    except cbor.CBORError:
        pass
    try:
        decode(raw)
    except RecordError:
        pass


def test_deep_nesting_is_refused_not_a_recursion_crash():
    raw = b"\x81" * 5000 + b"\x00"
    with pytest.raises(cbor.CBORError):
        cbor.loads(raw)
    with pytest.raises(cbor.CBORError):
        nested = [0]
        for _ in range(40):
            nested = [nested]
        cbor.dumps(nested)
