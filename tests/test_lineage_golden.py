"""The v1 golden lineage (tests/golden/v1): later versions must still read it exactly.

The image was written by ``tools/make_golden.py`` from a scripted run that covers every
record kind (BOOT, ENVELOPE, CHECKPOINT, DECISION, EVENT, GAP), every event input, bad
values (NaN, ±Inf, bool, huge ints, unknown names), an approval, a fault trip, a mode
change, wrap-around around frozen sectors and a torn-free ring.
"""

import json
from pathlib import Path

import cbor2
from edgegov.core import cbor
from edgegov.core.record import decode
from edgegov.core.replay import Replayer
from edgegov.core.verify import verify
from edgegov.host.lineage_read import decode_dump
from edgegov.host.lineage_store import read_dump

GOLDEN = Path(__file__).parent / "golden" / "v1"
KEY = bytes(range(100, 132))


def _dump():
    return read_dump(GOLDEN / "lineage.img")


def test_every_golden_record_decodes_to_its_recorded_value_and_reencodes_identically():
    records = json.loads((GOLDEN / "records.json").read_text())
    assert len(records) > 100
    kinds = set()
    for entry in records:
        raw = bytes.fromhex(entry["hex"])
        value = decode(raw)
        kinds.add(value[0])
        assert cbor2.loads(raw) == cbor.loads(raw) == value
        assert _jsonable(value) == entry["value"]
        assert cbor.dumps(value) == raw  # one encoding per value: the hash chain relies on it
    assert kinds == {1, 2, 3, 4, 5, 6}


def test_golden_image_decodes_to_the_golden_jsonl():
    expected = [json.loads(line) for line in (GOLDEN / "lineage.jsonl").read_text().splitlines()]
    got = [json.loads(json.dumps(row, sort_keys=True)) for row in decode_dump(_dump())]
    assert got == expected


def test_golden_image_verifies_with_its_key_and_fails_with_another():
    dump = _dump()
    good = verify(dump.records, dump.problems, KEY, dump.offsets, dump.genesis_seq)
    assert good.ok and good.keyed_checkpoints == good.checkpoints >= 4
    bad = verify(dump.records, dump.problems, bytes(32), dump.offsets, dump.genesis_seq)
    assert not bad.ok
    assert "MAC" in str(bad.first_bad)


def test_golden_image_replays_identically_from_its_surviving_checkpoints():
    dump = _dump()
    report = Replayer(dump.envelopes()).run(dump.records)
    assert report.identical, [d.note for d in report.divergences[:3]]
    assert [kind for _, kind in report.anchors] == ["checkpoint", "checkpoint"]
    assert report.compared > 80


def _jsonable(v):
    if isinstance(v, bytes):
        return {"bytes": v.hex()}
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    return v
