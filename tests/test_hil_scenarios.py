"""HIL scenarios (hil/scenarios.py) against the minimal firmware on a software micro:bit
(emulation/soft_microbit.py: the real firmware/microbit source, stand-in HAL modules,
virtual board time), each compared with its transcript in hil/expected/*.exp. The e-stop
line is read from the board's GPIO OUT register, never from the firmware's replies.

The same scenarios run on the QEMU micro:bit with the frozen-governor hex
(tests/test_hil_qemu.py) against the same transcripts: the two boards check each other.
Regenerate transcripts after an intended change: EDGEGOV_REGEN_EXP=1 pytest this file.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
for sub in ("firmware", "emulation", "hil"):
    sys.path.insert(0, str(REPO / sub))

import build  # noqa: E402
import scenarios  # noqa: E402
from edgegov.config.compile import compile_file  # noqa: E402
from edgegov.core.envelope import Envelope  # noqa: E402
from soft_microbit import PIN_BIT, SoftMicrobit  # noqa: E402
from watchdog import KickSupervisor  # noqa: E402

EXPECTED = REPO / "hil" / "expected"
BOARD = build.load_board("microbit-v1")
COMPILED = compile_file(BOARD.envelope)
FILES = build.microbit_files(COMPILED.blob, BOARD)
PERIOD_MS = BOARD.get("loop", "period_ms")


def check_transcript(name: str, lines: list[str]) -> None:
    path = EXPECTED / f"{name}.exp"
    text = "\n".join(lines) + "\n"
    if os.environ.get("EDGEGOV_REGEN_EXP"):
        path.write_text(text)
    assert text == path.read_text()


@pytest.fixture
def board():
    with SoftMicrobit(FILES) as mb:
        yield mb


@pytest.mark.parametrize("name", sorted(scenarios.SCENARIOS))
def test_scenario_matches_its_transcript(board, name):
    rig = scenarios.Rig(board)
    scenarios.SCENARIOS[name](rig)
    check_transcript(name, rig.lines)


def test_stopped_loop_is_reset_by_the_kick_supervisor_and_comes_back_safe():
    # real-time-ish periods (20 ms each) so the supervisor's sampling sees every toggle
    with SoftMicrobit(FILES, period_pace_s=PERIOD_MS / 1000) as board:
        rig = scenarios.Rig(board)
        kick = BOARD.get("pins", "watchdog_kick")
        with KickSupervisor(board, kick, timeout_s=1.0) as sup:
            scenarios.watchdog(rig, sup)
    assert sup.resets == 1
    check_transcript("watchdog", rig.lines)


def _falling_edges(board, pin: int) -> list[int]:
    bit = 1 << PIN_BIT[pin]
    edges, prev = [], 0
    for t, out in list(board.log):
        if prev & bit and not out & bit:
            edges.append(t)
        prev = out
    return edges


def test_link_loss_asserts_the_estop_pin_within_two_periods_of_the_deadline(board):
    rig = scenarios.Rig(board)
    scenarios.link_loss(rig)
    image = rig.link.pull_lineage()
    env = Envelope.from_blob(COMPILED.blob, COMPILED.digest)
    deadline = scenarios.link_deadline_ms(image, env.trip_after_ms)
    edge = _falling_edges(board, 0)[-1] - board.boot_ms  # GPIO OUT, board time
    late_ms = edge - deadline
    print(f"e-stop pin asserted {late_ms} ms after the link-loss deadline "
          f"({late_ms / PERIOD_MS:.2f} periods of {PERIOD_MS} ms)")
    assert 0 <= late_ms <= 2 * PERIOD_MS


def test_lineage_pulled_over_the_link_verifies_and_replays_bit_exactly(board):
    rig = scenarios.Rig(board)
    scenarios.lineage_session(rig)
    n, verified, report = scenarios.replay_pulled(rig.link.pull_lineage(), COMPILED)
    assert n > 10 and verified
    assert report.identical, [(d.seq, d.note) for d in report.divergences[:3]]
    assert report.compared == n


@pytest.mark.parametrize("how", [["pull-serial", "--port"], ["pull", "--serial"]])
def test_cli_pull_serial_writes_a_dump_that_replays(tmp_path, how):
    from click.testing import CliRunner
    from edgegov_cli.main import main

    with SoftMicrobit(FILES, serial="tcp") as mb:
        rig = scenarios.Rig(mb)
        scenarios.lineage_session(rig)
        mb.uart.sock.close()  # one client at a time, as a serial port
        out = tmp_path / "mb.lineage"
        res = CliRunner().invoke(main, ["lineage", *how, f"socket://127.0.0.1:{mb.port}",
                                        "-o", str(out)])
        assert res.exit_code == 0, res.output
        assert "edgegov lineage verify" in res.output
        mb.uart = None
    res = CliRunner().invoke(main, ["lineage", "verify", str(out), "--block-size", "256"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(main, ["lineage", "replay", str(out), "--envelope",
                                    str(BOARD.envelope), "--block-size", "256"])
    assert res.exit_code == 0, res.output


def test_the_soft_board_runs_periods_in_board_time(board):
    rig = scenarios.Rig(board)
    rig.booted()
    t0 = rig.link.status()["now_ms"]
    time.sleep(0.05)
    t1 = rig.link.status()["now_ms"]
    assert t1 > t0 and (t1 - t0) % PERIOD_MS == 0


def test_lineage_pull_needs_mqtt_and_device_or_serial(tmp_path):
    from click.testing import CliRunner
    from edgegov_cli.main import main

    out = str(tmp_path / "x.lineage")
    res = CliRunner().invoke(main, ["lineage", "pull", "-o", out])
    assert res.exit_code == 2 and "--serial PORT" in res.output
    res = CliRunner().invoke(main, ["lineage", "pull", "-o", out, "--serial", "socket://h:1",
                                    "--device", "d"])
    assert res.exit_code == 2 and "leave out --device/--mqtt" in res.output
