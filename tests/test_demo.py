"""``edgegov demo`` (the README's main job) end to end as a user runs it: the service on an
embedded broker with the simulated cell, once with the MQTT planner and once with the
planner as a PLC over Modbus TCP; each ends with the lineage verified and replayed."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(120)


def _demo(tmp_path, *extra: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "edgegov_cli.main", "demo", "--seconds", "7",
                           "--out", str(tmp_path), *extra], capture_output=True, text=True,
                          timeout=100)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.parametrize("extra", [(), ("--plc",)], ids=["mqtt-planner", "plc-over-modbus"])
def test_demo_runs_and_its_lineage_verifies_and_replays(tmp_path, extra):
    out = _demo(tmp_path, *extra)
    assert "verify: OK" in out and "replay: identical" in out, out[-2000:]
    assert (tmp_path / "edgegov-demo.lineage").stat().st_size > 0
    assert (tmp_path / "edgegov-demo-report.html").exists()
    # the scripted misbehaviours were decided: something was refused or clamped
    assert "REJECT" in out and "CLAMP" in out
    if extra:
        line = next(x for x in out.splitlines() if x.startswith("PLC over Modbus:"))
        writes = int(line.split()[3])
        assert writes > 300, line


def test_plc_does_not_combine_with_simulated_time(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "edgegov_cli.main", "demo", "--plc",
                           "--simulated-time", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--plc" in proc.stderr
