"""The report's decode pass runs compiled (Cython, from its unchanged source) where the
install built it, only while it matches its source, and gives what the source gives.

The source is the reference: every report, decode and replay must come out the same both
ways, byte for byte, for a healthy dump, a damaged one and one with two boots and wall time.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import damaged_copy
from edgegov import _accel
from edgegov.demo import default_envelope, run_scenario
from edgegov.report.sample import generate

SOURCE = {**os.environ, _accel.PURE_ENV: "1"}
COMPILED = {k: v for k, v in os.environ.items() if k != _accel.PURE_ENV}


def python(code: str, env: dict) -> str:
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_the_install_compiled_every_module_of_the_decode_pass():
    """(``make install`` builds them; a machine without Cython or a compiler would run
    the source, which is slower, and this test says so.)"""
    got = json.loads(python("import json; from edgegov import _accel; "
                            "print(json.dumps(_accel.status()))", COMPILED))
    assert got == {m: "compiled" for m in _accel.MODULES}
    assert python("from edgegov import _accel; print(_accel.summary())", COMPILED) == \
        f"decode pass compiled ({len(_accel.MODULES)} modules)\n"
    for m in _accel.MODULES:
        assert _accel.recorded()[m] == _accel.digest(_accel.source_of(m))


def test_edgegov_pure_imports_every_one_as_source():
    got = json.loads(python("import json; from edgegov import _accel; "
                            "print(json.dumps(_accel.status()))", SOURCE))
    assert got == {m: "source" for m in _accel.MODULES}
    assert "EDGEGOV_PURE is set" in python(
        "from edgegov import _accel; print(_accel.summary())", SOURCE)


def test_a_source_changed_since_the_install_is_imported_as_source():
    """A compiled copy whose recorded source hash is not the source's is never used."""
    code = ("import json; from edgegov import _accel\n"
            "_accel.recorded()['edgegov.report.pack'] = '0' * 64\n"
            "print(json.dumps(_accel.status()))")
    got = json.loads(python(code, COMPILED))
    assert got.pop("edgegov.report.pack") == "source"
    assert set(got.values()) == {"compiled"}


def test_a_missing_record_means_source(tmp_path):
    code = ("import json; from edgegov import _accel\n"
            "_accel._recorded = {}\n"
            "print(json.dumps(_accel.status())); print(_accel.summary())")
    out = python(code, COMPILED).splitlines()
    assert set(json.loads(out[0]).values()) == {"source"}
    assert "run `make install` to compile them" in out[1]


@pytest.fixture(scope="module")
def lineages(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("accel")
    demo = d / "cell.lineage"
    run_scenario(default_envelope(), 20, 7, None, lineage_path=demo)
    damaged = damaged_copy(demo, d / "damaged.lineage", (700, 1500))
    two = d / "two.lineage"
    generate(two, default_envelope(), 25_000, boots=2, block_count=256,
             wall_ms=1_796_000_000_000)
    return [demo, damaged, two]


def _both(code: str) -> tuple[str, str]:
    return python(code, COMPILED), python(code, SOURCE)


def test_reports_are_the_same_compiled_and_as_source(lineages):
    """(The two-core build is taken: 25 000 records are above its threshold.)"""
    code = ("import hashlib, re; from edgegov.report import build_report\n"
            "from edgegov import _accel\n"
            f"for p in {[str(p) for p in lineages]!r}:\n"
            "    html = build_report(p)\n"
            "    html = re.sub(r'generated [0-9: -]+Z', '', html)\n"
            "    print(len(html), hashlib.sha256(html.encode()).hexdigest())\n"
            "print(_accel.summary())")
    compiled, source = _both(code)
    assert compiled.splitlines()[:-1] == source.splitlines()[:-1]
    assert compiled.splitlines()[-1].startswith("decode pass compiled")
    assert "0 of" in source.splitlines()[-1]


def test_decode_and_replay_are_the_same_compiled_and_as_source(lineages):
    code = ("import hashlib, json\n"
            "from edgegov.host.lineage_read import decode_dump\n"
            "from edgegov.host.lineage_store import read_dump\n"
            "from edgegov.core.replay import Replayer\n"
            f"for p in {[str(p) for p in lineages]!r}:\n"
            "    d = read_dump(p)\n"
            "    rows = json.dumps(list(decode_dump(d)), sort_keys=False)\n"
            "    r = Replayer(d.envelopes()).run(d.records)\n"
            "    print(hashlib.sha256(rows.encode()).hexdigest(), r.compared, r.skipped,\n"
            "          len(r.divergences), r.anchors[:3], r.notes[:3])")
    compiled, source = _both(code)
    assert compiled == source
    assert re.search(r"^[0-9a-f]{64} [1-9]\d* ", compiled, re.M)


def test_arithmetic_on_edge_values_is_the_same_compiled_and_as_source():
    """Signed zeros, NaN, infinities, huge integers and booleans through the compiled
    column encodings (some compilers' fast paths for int + float return the float when the
    int is 0: 0 + -0.0 is then -0.0, where Python says 0.0)."""
    code = ("from edgegov.report import pack\n"
            "nan, inf = float('nan'), float('inf')\n"
            "edges = [[-0.0], [0, -0.0], [0.0, -0.0, None], [-0.0, -1], [1, nan, 2],\n"
            "         [inf, -inf], [2**70, -2**70, 0.5], [True, 0, -0.0],\n"
            "         [0.1, 0.2, -0.0, 0.30000000000000004]]\n"
            "for e in edges:\n"
            "    for f in (pack._undelta_each, pack._delta_each, pack.undelta, pack.delta):\n"
            "        print(repr(f(list(e))))\n"
            "    for d in (0, 1, 2):\n"
            "        print(repr(pack.decimal(list(e), d)), repr(pack._decimal_each(list(e), d)))\n"
            "print(repr([0 + -0.0, -0.0 * -1, 0.0 * -1, -0.0 + 0, sum([0, -0.0])]))\n")
    compiled, source = _both(code)
    assert compiled == source
    assert "[0.0]" in source  # (0 + -0.0, the running value starting at 0)

