"""``edgegov bench mqtt`` and ``edgegov bench modbus`` run end to end on short settings and
write every documented figure. Figures are checked for completeness and sanity (nothing
dropped, every write answered, no busy loop), never against speed goals: those are for
the benchmark runs, not for a shared test machine."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from mosquitto_fixture import needs_mosquitto

EDGEGOV = [sys.executable, "-m", "edgegov_cli.main"]


def _bench(tmp_path, *args: str) -> dict:
    out = tmp_path / "figures.json"
    proc = subprocess.run([*EDGEGOV, "bench", *args, "--json", str(out)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    figures = json.loads(out.read_text())
    assert json.loads(proc.stdout) == figures  # printed and written alike
    return figures


@needs_mosquitto
@pytest.mark.timeout(150)
def test_bench_mqtt_short_run_reports_every_figure(tmp_path):
    f = _bench(tmp_path, "mqtt", "--seconds", "1", "--rate", "100")
    for key in ("e2e_p50_ms", "e2e_p99_ms", "echo_p50_ms", "echo_p99_ms", "ratio_p99",
                "sustained_hz", "dropped", "service_cpu_pct", "echo_cpu_pct"):
        assert key in f, key
    assert f["proposals"] == 100 and f["dropped"] == 0 and f["state"] == "ARMED", f
    assert 0 < f["e2e_p50_ms"] <= f["e2e_p99_ms"] and 0 < f["echo_p50_ms"] <= f["echo_p99_ms"]
    assert f["ratio_p99"] == round(f["e2e_p99_ms"] / f["echo_p99_ms"], 3)
    # 100 small messages a second cost a few % of a core; a loop that spins costs all of one
    assert f["service_cpu_pct"] < 80 and f["echo_cpu_pct"] < 80, f
    assert f["echo"] == "aiomqtt publish"


@pytest.mark.timeout(150)
def test_bench_modbus_short_run_reports_every_figure(tmp_path):
    f = _bench(tmp_path, "modbus", "--samples", "40")
    assert f["gov_received"] == f["proxy_received"] == 40, f
    assert 0 < f["gov_p50_ms"] <= f["gov_p99_ms"] and 0 < f["proxy_p50_ms"] <= f["proxy_p99_ms"]
    assert f["ratio_p99"] == round(f["gov_p99_ms"] / f["proxy_p99_ms"], 3)
