"""``edgegov bench fleet`` on a tiny fleet: every figure is there and every incident it
archived verified (figures are printed, never asserted on)."""

from __future__ import annotations

import json
import subprocess

from fleet_harness import CLI
from mosquitto_fixture import needs_mosquitto


@needs_mosquitto
def test_bench_fleet_short_run_reports_every_figure(tmp_path):
    out = tmp_path / "fleet.json"
    r = subprocess.run(CLI + ["bench", "fleet", "--devices", "4", "--hz", "10", "--seconds",
                              "4", "--trip-every-s", "2", "--sim-processes", "1", "--json",
                              str(out)], capture_output=True, text=True, timeout=280)
    assert r.returncode == 0, r.stderr[-2000:]
    fig = json.loads(out.read_text())
    assert fig["offered_decisions_per_s"] == 40
    assert fig["floor_mosquitto_sub"]["messages"] > 0
    for run in ("one_collector", "two_collectors"):
        part = fig[run]
        assert part["verified"] == part["incidents"]
        assert {"p50", "p99", "n"} <= set(part["trip_event_to_archived_ms"])
        for c in part["collectors"].values():
            assert {"msg_per_s", "cpu_pct", "messages_cpu_pct_per_1000_msg_s",
                    "share_of_messages"} <= set(c)
    shares = [c["share_of_messages"] for c in fig["two_collectors"]["collectors"].values()]
    assert len(shares) == 2 and abs(sum(shares) - 1) < 0.01
