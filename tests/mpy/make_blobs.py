"""Compile the envelopes the MicroPython tests load (pydantic is not available there).

    python tests/mpy/make_blobs.py           # write tests/mpy/data/*.cbor
    python tests/mpy/make_blobs.py --check   # exit 1 if a committed blob is out of date

``tests/test_mpy_blobs.py`` runs the check, so a change to the compiler or an envelope that
is not followed by a regeneration fails the suite. CPython only (not a MicroPython test).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
DATA = HERE / "data"
SOURCES = {
    "spindle-cell.cbor": REPO / "boards" / "envelopes" / "spindle-cell.toml",
    "bench8.cbor": REPO / "tests" / "data" / "bench8.toml",
    "microbit-v1.cbor": REPO / "boards" / "microbit-v1" / "envelope.toml",
}


def build() -> dict[str, bytes]:
    """Blob name → compiled bytes, from the current sources and compiler."""
    from edgegov.config.compile import compile_file

    return {name: compile_file(src).blob for name, src in SOURCES.items()}


def stale(blobs: dict[str, bytes]) -> list[str]:
    """Names whose committed file differs from ``blobs`` (or is missing)."""
    out = []
    for name, blob in sorted(blobs.items()):
        path = DATA / name
        if not path.exists() or path.read_bytes() != blob:
            out.append(name)
    return out


def write(blobs: dict[str, bytes]) -> None:
    DATA.mkdir(exist_ok=True)
    for name, blob in sorted(blobs.items()):
        (DATA / name).write_bytes(blob)


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(REPO / "runtime"))
    blobs = build()
    if "--check" in argv:
        bad = stale(blobs)
        for name in bad:
            print(f"out of date: tests/mpy/data/{name} (run python tests/mpy/make_blobs.py)")
        return 1 if bad else 0
    write(blobs)
    for name, blob in sorted(blobs.items()):
        print(f"wrote tests/mpy/data/{name} ({len(blob)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
