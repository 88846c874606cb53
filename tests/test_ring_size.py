"""Ring sizing of ``edgegov run``: the default comes from boards/linux-gateway/board.toml,
an existing file keeps its size, and a ring holding less than ``--min-history-h`` of
history is warned about in one line. Expected figures are the README's worked example,
computed by hand."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from edgegov.config.compile import compile_file
from edgegov.host.lock import holder
from edgegov.host.net import free_port
from edgegov.host.ringsize import (
    expected_rate,
    gateway_geometry,
    history_h,
    ring_blocks,
    start_warning,
)
from service_harness import ENVELOPE, write_key

ARM = ENVELOPE.parent / "arm-8axis.toml"


def test_default_geometry_is_the_gateway_boards():
    assert gateway_geometry() == (4096, 4096)  # board.toml: 16 MB ring file


def test_worked_example_spindle_cell():
    # commands 2 x 1000/150 ms = 13.33/s, telemetry 2 x 1000/500 ms = 4/s: 17.33 records/s;
    # 3 channels and 3 inputs: 20 + 3 x 3 = 29 B each -> 502.7 B/s; 16 MiB / 502.7 B/s
    # = 33 375 s = 9.27 h
    rate = expected_rate(compile_file(ENVELOPE).admitted)
    assert round(rate.records_per_s, 2) == 17.33 and round(rate.bytes_per_record, 6) == 29
    assert round(history_h(4096 * 4096, rate), 2) == 9.27
    assert start_warning(compile_file(ENVELOPE).admitted, 4096, 4096, 8.0) is None


def test_worked_example_arm_warns_with_the_blocks_needed():
    # commands 2 x 1000/100 = 20/s x (20 + 3 x 8 = 44 B); telemetry 2 x 1000/200 = 10/s x
    # (20 + 3 x 3 = 29 B): 30 records/s, 1170 B/s, mean 39 B; 16 MiB lasts 3.98 h; 8 h needs
    # 8 x 3600 x 1170 / 4096 = 8226.6 -> 8227 blocks
    admitted = compile_file(ARM).admitted
    line = start_warning(admitted, 4096, 4096, 8.0)
    assert line == ("lineage ring of 16.0 MiB holds about 4.0 h of history at the envelope's "
                    "expected 30.0 records/s x 39 B, less than --min-history-h 8: give "
                    "--lineage-blocks 8227 or more")
    assert start_warning(admitted, 4096, 8227, 8.0) is None
    assert start_warning(admitted, 4096, 4096, 0) is None
    measured = start_warning(admitted, 4096, 4096, 8.0, records_per_s=70)
    assert "the given 70.0 records/s" in measured


def test_an_existing_file_keeps_its_size(tmp_path):
    old = tmp_path / "old.lineage"
    old.write_bytes(b"\xff" * 4096 * 256)
    assert ring_blocks(old, 4096, None) == 256
    assert ring_blocks(tmp_path / "new.lineage", 4096, None) == 4096
    assert ring_blocks(old, 4096, 64) == 64


def _run_briefly(tmp_path, *extra) -> str:
    key = write_key(tmp_path / "k")
    log = tmp_path / "run.log"
    port = free_port()
    args = [sys.executable, "-m", "edgegov_cli.main", "run", "--config", str(ARM), "--key",
            str(key), "--broker-port", str(port), "--no-fsync", "-v", "--lineage",
            str(tmp_path / "arm.lineage"), *extra]
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        try:
            lineage = tmp_path / "arm.lineage"
            for _ in range(300):  # the lock taken (signal handlers are in place) and the file
                if holder(lineage) == proc.pid and lineage.exists():
                    break
                time.sleep(0.1)
            proc.send_signal(signal.SIGTERM)
            try:
                rc = proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGINT)  # a second signal: see what it was doing
                time.sleep(2)
                proc.kill()
                raise AssertionError("no orderly stop within 60 s: " + log.read_text()) from None
            assert rc == 0, log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
    return log.read_text()


@pytest.mark.timeout(90)
def test_run_default_ring_is_16_mib_and_warns_in_one_line(tmp_path):
    out = _run_briefly(tmp_path)
    assert os.path.getsize(tmp_path / "arm.lineage") == 16 * 2**20
    warnings = [line for line in out.splitlines() if "--min-history-h" in line]
    assert len(warnings) == 1 and "give --lineage-blocks 8227 or more" in warnings[0], out
    assert "Traceback" not in out
    quiet = _run_briefly(tmp_path, "--min-history-h", "2")  # the same file: kept at 16 MiB
    assert "--min-history-h" not in quiet, quiet
