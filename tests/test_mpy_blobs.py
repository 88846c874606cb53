"""The envelope blobs the MicroPython tests load are committed; they must match what the
current compiler makes from their TOML sources (regenerate with tests/mpy/make_blobs.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from edgegov.core.envelope import Envelope

MAKER = Path(__file__).resolve().parent / "mpy" / "make_blobs.py"


def _maker():
    spec = importlib.util.spec_from_file_location("make_blobs", MAKER)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


maker = _maker()
BLOBS = maker.build()


def test_blob_sources_exist():
    for src in maker.SOURCES.values():
        assert src.exists(), src
    assert set(BLOBS) == {"spindle-cell.cbor", "bench8.cbor", "microbit-v1.cbor"}


@pytest.mark.parametrize("name", sorted(BLOBS))
def test_committed_blob_is_up_to_date(name):
    path = maker.DATA / name
    assert path.exists(), f"missing {path}: run python tests/mpy/make_blobs.py"
    assert path.read_bytes() == BLOBS[name], (
        f"{path} is out of date with its TOML or the compiler: run python tests/mpy/make_blobs.py"
    )


def test_stale_detection_sees_a_difference():
    changed = dict(BLOBS)
    changed["bench8.cbor"] = BLOBS["bench8.cbor"] + b"\x00"
    assert maker.stale(changed) == ["bench8.cbor"]
    assert maker.stale(BLOBS) == []


def test_bench_envelope_shape():
    env = Envelope.from_blob(BLOBS["bench8.cbor"])
    assert env.n == 8
    assert env.n_interlocks == 2
    assert env.link
    assert any(env.in_estop)
