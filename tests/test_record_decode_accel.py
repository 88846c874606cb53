"""The C decoder (``edgegov._recenc.loads``) builds exactly what ``edgegov.core.cbor.loads``
builds, or hands back (``None``) so that the Python decoder runs and raises its own error.

``record.decode`` uses it where it is built and ``EDGEGOV_PURE_RECORDS`` is unset. Here both
decoders read every golden vector, the golden lineage's records, generated values in every
shape the subset allows (nested arrays and maps, 64-bit edges, text and bytes) and damaged
bytes (cut, flipped, random); values are compared with their types (``True`` is not ``1``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from edgegov.core import cbor, record
from edgegov.core.blockdev import RamBlockDevice
from edgegov.core.ring import RingLog, detect_block_size
from hypothesis import given, settings
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parent.parent
GOLDEN = REPO / "tests" / "golden" / "v1"

try:
    from edgegov import _recenc
except ImportError:
    _recenc = None

pytestmark = pytest.mark.skipif(_recenc is None, reason="edgegov._recenc is not built")


def typed(v):
    """``v`` with every value tagged by its exact type, so that equal means identical."""
    if isinstance(v, list):
        return ("list", [typed(x) for x in v])
    if isinstance(v, dict):
        return ("dict", [(typed(k), typed(x)) for k, x in v.items()])
    return (type(v).__name__, v)


def python(data):
    try:
        return ("ok", typed(cbor.loads(data)))
    except cbor.CBORError as e:
        return ("error", str(e))


def same(data) -> None:
    """The C decoder agrees with the Python one on ``data``."""
    want = python(data)
    got = _recenc.loads(data)
    if want[0] == "error":
        assert got is None, f"{bytes(data).hex()}: Python says {want[1]}, C gave {got!r}"
    elif got is None:  # handed back: only right where the value itself is None
        assert want == ("ok", ("NoneType", None)), f"{bytes(data).hex()}: C handed back"
    else:
        assert ("ok", typed(got)) == want, bytes(data).hex()


def golden_payloads() -> list[bytes]:
    records = json.loads((GOLDEN / "records.json").read_text())
    vectors = [bytes.fromhex(r["hex"]) for r in records]
    image = (GOLDEN / "lineage.img").read_bytes()
    bs = detect_block_size(image)
    ring = RingLog(RamBlockDevice(bs, len(image) // bs, image))
    ring.recover()
    return vectors + [bytes(p) for _, p in ring.read_all()]


def test_every_golden_vector_decodes_to_the_same_objects():
    payloads = golden_payloads()
    assert len(payloads) > 20
    for p in payloads:
        same(p)
        assert typed(_recenc.loads(p)) == typed(cbor.loads(p))


def test_record_decode_uses_it_and_gives_the_same_records():
    assert record._c_loads is _recenc.loads or os.environ.get("EDGEGOV_PURE_RECORDS")
    saved = record._c_loads
    try:
        for p in golden_payloads():
            record._c_loads = _recenc.loads
            fast = typed(record.decode(p))
            record._c_loads = None
            assert fast == typed(record.decode(p))
    finally:
        record._c_loads = saved


def test_a_bad_record_gives_the_python_decoders_error():
    bad = bytes.fromhex("8202f97e00")  # a half-precision float: not in the subset
    saved = record._c_loads
    try:
        record._c_loads = _recenc.loads
        with pytest.raises(record.RecordError) as fast:
            record.decode(bad)
        record._c_loads = None
        with pytest.raises(record.RecordError) as slow:
            record.decode(bad)
    finally:
        record._c_loads = saved
    assert str(fast.value) == str(slow.value) == (
        "record is not valid CBOR: unsupported simple value or float at byte 2")


EDGES = [0, 1, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1]
ints = st.one_of(st.sampled_from(EDGES + [-1 - e for e in EDGES]),
                 st.integers(-(2**64), 2**64 - 1))
leaves = st.one_of(ints, st.booleans(), st.none(), st.binary(max_size=40),
                   st.text(max_size=30))
values = st.recursive(
    leaves,
    lambda inner: st.one_of(st.lists(inner, max_size=6),
                            st.dictionaries(st.integers(0, 2**64 - 1), inner, max_size=5)),
    max_leaves=30)


@settings(max_examples=400, deadline=None)
@given(values)
def test_generated_values_decode_to_the_same_objects(v):
    data = cbor.dumps(v)
    same(data)
    same(bytearray(data))
    same(memoryview(data))


@settings(max_examples=400, deadline=None)
@given(values, st.data())
def test_damaged_bytes_are_handed_back_exactly_where_python_refuses(v, data):
    raw = bytearray(cbor.dumps(v))
    how = data.draw(st.sampled_from(["cut", "flip", "append", "insert"]))
    if how == "cut":
        raw = raw[:data.draw(st.integers(0, len(raw)))]
    elif how == "flip":
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] ^= 1 << data.draw(st.integers(0, 7))
    elif how == "append":
        raw += data.draw(st.binary(min_size=1, max_size=4))
    else:
        i = data.draw(st.integers(0, len(raw)))
        raw[i:i] = data.draw(st.binary(min_size=1, max_size=3))
    same(bytes(raw))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_random_bytes(data):
    same(data)


@pytest.mark.parametrize("data", [
    "1817",  # non-shortest
    "f97e00", "fb3ff0000000000000", "f8ff", "c001", "5f", "9f", "bf", "7f",  # not the subset
    "62c328",  # invalid UTF-8
    "63eda080",  # a surrogate in UTF-8
    "a20100" "0100",  # keys not ascending
    "a10000" "00",  # trailing byte
    "a1200000",  # a negative key
    "9bffffffffffffffff",  # an array longer than the data
    "81" * 17 + "00", "81" * 16 + "00",  # one level too deep, and just deep enough
    "3bffffffffffffffff",  # -2**64
    "1bffffffffffffffff",  # 2**64 - 1
])
def test_edges(data):
    same(bytes.fromhex(data))


def test_pure_records_switches_it_off():
    code = "import edgegov.core.record as r; print(r._c_loads is None)"
    env = dict(os.environ, EDGEGOV_PURE_RECORDS="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["True"]
