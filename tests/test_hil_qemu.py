"""Emulated hardware in the loop: a micro:bit v1 in QEMU (-M microbit).

- Debian's stock MicroPython 1.9.2 hex: deploy through the raw REPL (every file read back),
  GPIO OUT through QMP, reset, the kick supervisor.
- The frozen hex (egr/egg/egmain as frozen bytecode in flash, built by
  firmware/microbit/hexbuild/build-hex.sh; path in ``EDGEGOV_MICROBIT_HEX``, default
  build/microbit/edgegov-frozen.hex): heap after all imports, and the HIL scenarios
  (hil/scenarios.py) against the same transcripts as the software board, with the e-stop
  pin read from the GPIO OUT register through QMP and the link-loss latency in board time.
  A missing hex is a failure naming the build command, not a skip.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
for sub in ("firmware", "emulation", "hil"):
    sys.path.insert(0, str(REPO / sub))

import deploy  # noqa: E402
import scenarios  # noqa: E402
from edgegov.config.compile import compile_file  # noqa: E402
from edgegov.core.envelope import Envelope  # noqa: E402
from qemu_microbit import DEFAULT_HEX, MicrobitQemu  # noqa: E402

# firmware/build.py; by name, so import sorting does not depend on whether a top-level
# build/ directory (where the frozen hex goes) exists
build = importlib.import_module("build")
ESTOP_PIN = 0
FROZEN_HEX = Path(os.environ.get("EDGEGOV_MICROBIT_HEX")
                  or REPO / "build" / "microbit" / "edgegov-frozen.hex")
BUILD_CMD = "firmware/microbit/hexbuild/build-hex.sh build/microbit/edgegov-frozen.hex"
BOARD = build.load_board("microbit-v1")
COMPILED = compile_file(BOARD.envelope)
FILES = build.microbit_files(COMPILED.blob, BOARD)
PERIOD_MS = BOARD.get("loop", "period_ms")
HEAP_GOAL = BOARD.get("budget", "heap_free_goal")


def frozen_hex() -> Path:
    if not FROZEN_HEX.exists():
        pytest.fail(f"frozen micro:bit hex {FROZEN_HEX} is missing: build it with "
                    f"`{BUILD_CMD}` (or `make test`), or point EDGEGOV_MICROBIT_HEX at one",
                    pytrace=False)
    return FROZEN_HEX


@pytest.fixture(scope="module")
def board():
    assert Path(DEFAULT_HEX).exists(), "apt-get install firmware-microbit-micropython"
    with MicrobitQemu(icount_shift=4) as mb:
        mb.uart.interrupt()
        yield mb


def test_gpio_out_register_is_read_through_qmp(board):
    board.uart.raw_enter()
    board.uart.raw_exec("import microbit\nmicrobit.pin0.write_digital(1)")
    assert board.pin_level(ESTOP_PIN) == 1
    board.uart.raw_exec("microbit.pin0.write_digital(0)")
    assert board.pin_level(ESTOP_PIN) == 0
    board.uart.raw_exit()


def test_deploy_writes_and_verifies_every_file(board):
    b = build.load_board("microbit-v1")
    files = build.microbit_files(compile_file(b.envelope).blob, b)
    files.pop("main.py")  # the governor does not fit this heap yet (see below)
    landed = deploy.deploy_raw_repl(board.uart, files)
    assert sorted(x.name for x in landed) == sorted(files)
    for x in landed:
        assert x.ok and x.sha256 == hashlib.sha256(files[x.name]).hexdigest()


def test_system_reset_boots_with_the_estop_line_at_its_safe_level(board):
    board.uart.raw_enter()
    board.uart.raw_exec("import microbit\nmicrobit.pin0.write_digital(1)")
    assert board.pin_level(ESTOP_PIN) == 1
    board.system_reset()
    time.sleep(0.5)
    # fail-safe polarity: the run-permit line is low (e-stop asserted) out of reset
    assert board.pin_level(ESTOP_PIN) == 0
    board.uart.interrupt()


def test_edgegov_deploy_writes_and_verifies_through_a_serial_url(board):
    """``edgegov deploy`` over the emulated UART (pyserial ``socket://`` URL): every file
    is read back and compared by SHA-256."""
    from click.testing import CliRunner
    from edgegov_cli.main import main

    board.uart.sock.close()  # the TCP UART takes one client: hand it to the CLI
    try:
        res = CliRunner().invoke(main, ["deploy", "--board", "microbit-v1", "--no-main",
                                        "--port", f"socket://127.0.0.1:{board.port}"])
        assert res.exit_code == 0, res.output
        assert "deployed 4 files to microbit-v1" in res.output
        assert res.output.count("ok ") == 4
    finally:
        board._connect_uart(time.monotonic() + 10)


def test_kick_supervisor_resets_a_board_whose_loop_stops_kicking():
    """The harness's external watchdog against the real emulated board: a loop on the
    board toggles the kick pin (pin16) with the run permit (pin0) high, then hangs; the
    supervisor sees the pin stop through QMP GPIO reads and pulls reset; the board comes
    back with pin0 low. Real-time QEMU (no -icount) so the kick period is host time."""
    from watchdog import KickSupervisor

    with MicrobitQemu() as mb:
        mb.uart.interrupt()
        mb.uart.raw_enter()
        mb.uart.write(b"import microbit\nmicrobit.pin0.write_digital(1)\nk=0\n"
                      b"for i in range(25):\n k^=1\n microbit.pin16.write_digital(k)\n"
                      b" microbit.sleep(100)\nwhile True:\n pass\n\x04", pace=16)
        mb.uart.read_until(b"OK", 10)
        with KickSupervisor(mb, 16, timeout_s=2.0) as sup:
            deadline = time.monotonic() + 30
            while sup.resets == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            kicks = sup.toggles
        assert kicks >= 5, "the supervisor saw the loop kick"
        assert sup.resets == 1
        time.sleep(0.3)
        assert mb.pin_level(ESTOP_PIN) == 0  # back in the safe state
        mb.uart.interrupt()  # and alive: a REPL prompt


# ---- the governor on the frozen hex


def test_minimal_governor_imports_on_the_board(capsys):
    """All four modules imported (1 KB ring, the 4-channel microbit-v1 envelope): the free
    heap must stay above the board's goal."""
    with MicrobitQemu(frozen_hex(), icount_shift=4) as mb:
        mb.uart.interrupt()
        deploy.deploy_raw_repl(mb.uart, {"egc.py": FILES["egc.py"]})
        mb.uart.raw_enter()
        out = mb.uart.raw_exec(
            "import gc\ngc.collect()\nprint(gc.mem_free())\nimport egc\ngc.collect()\n"
            "import egr\ngc.collect()\nimport egg\ngc.collect()\nimport egmain\n"
            "gc.collect()\nprint(gc.mem_free(), egc.N, len(egr.M))").split()
        mb.uart.raw_exit()
    start, free, n, ring = (int(x) for x in out)
    with capsys.disabled():
        print(f"\nmicro:bit frozen hex: {start} B free at the raw REPL, {free} B free after "
              f"egc, egr ({ring} B ring), egg, egmain ({n} channels)")
    assert (n, ring) == (4, 1024)
    assert free >= HEAP_GOAL


@pytest.fixture(scope="module")
def governor_board():
    """The frozen hex with egc.py and main.py deployed: every reset boots the governor.
    ``-icount shift=4,sleep=on``: board time comes from the instruction counter while the
    CPU runs and follows the host clock while it sleeps, so a host round trip of a few ms is
    a few board ms (with sleep=off an idle board skips ahead and the link times out).
    The host writes at 9600 baud (~19 B a 20 ms period): the firmware drains its 64-byte RX
    ring once a period, so a faster line overruns it in the garbage scenario's 80-byte
    bursts (seen at 28800 baud; QEMU's UART itself has no baud rate: a burst lands at once)."""
    with MicrobitQemu(frozen_hex(), icount_shift=4, icount_sleep=True, baud=9600) as mb:
        mb.uart.interrupt()
        landed = deploy.deploy_raw_repl(mb.uart, {k: FILES[k] for k in ("egc.py", "main.py")})
        assert all(x.ok for x in landed)
        yield mb


@pytest.fixture
def gov(governor_board):
    governor_board.system_reset()  # a fresh power-on: RAM (ring, sequence, counters) cleared
    return governor_board


@pytest.mark.parametrize("name", sorted(scenarios.SCENARIOS))
def test_scenario_on_the_qemu_board_matches_its_transcript(gov, name):
    rig = scenarios.Rig(gov)
    scenarios.SCENARIOS[name](rig)
    expected = (REPO / "hil" / "expected" / f"{name}.exp").read_text()
    assert "\n".join(rig.lines) + "\n" == expected


def test_hung_board_is_reset_by_the_kick_supervisor_and_comes_back_safe(gov):
    """The board locks up (QMP stop: no periods, no kicks, pins frozen); the supervisor sees
    the kick pin stop through QMP GPIO reads and pulls reset; same transcript as the
    software board."""
    from watchdog import KickSupervisor

    rig = scenarios.Rig(gov)
    with KickSupervisor(gov, BOARD.get("pins", "watchdog_kick"), timeout_s=1.0) as sup:
        scenarios.watchdog(rig, sup)
    assert sup.resets == 1
    expected = (REPO / "hil" / "expected" / "watchdog.exp").read_text()
    assert "\n".join(rig.lines) + "\n" == expected


def test_link_loss_asserts_the_estop_pin_within_two_periods_of_the_deadline(gov, capsys):
    """Board time: the deadline is the last decided command plus trip_after_ms (from the
    pulled lineage); the pin is written in the period whose tick record carries the e-stop
    event, and the pin itself is read low through QMP."""
    rig = scenarios.Rig(gov)
    scenarios.link_loss(rig)
    assert gov.pin_level(ESTOP_PIN) == 0
    image = rig.link.pull_lineage()
    env = Envelope.from_blob(COMPILED.blob, COMPILED.digest)
    deadline = scenarios.link_deadline_ms(image, env.trip_after_ms)
    edge = next(t for t, rec in scenarios.record_times(image)
                if t >= deadline - env.trip_after_ms and rec[0] == 3 and len(rec) == 8
                and any(e[0] == 21 and e[1] == 1 for e in rec[7]))
    late_ms = edge - deadline
    with capsys.disabled():
        print(f"\nQEMU micro:bit: e-stop asserted {late_ms} ms after the link-loss deadline "
              f"({late_ms / PERIOD_MS:.2f} periods of {PERIOD_MS} ms, board time)")
    assert 0 <= late_ms <= 2 * PERIOD_MS


def test_lineage_pulled_from_the_qemu_board_verifies_and_replays_bit_exactly(gov):
    """The ring the 1.9.2 VM wrote (its CRCs, CBOR, integers) replays through the full core."""
    rig = scenarios.Rig(gov)
    scenarios.lineage_session(rig)
    n, verified, report = scenarios.replay_pulled(rig.link.pull_lineage(), COMPILED)
    assert n > 10 and verified
    assert report.identical, [(d.seq, d.note) for d in report.divergences[:3]]
    assert report.compared == n


def test_edgegov_emulate_boots_the_governor_on_the_frozen_hex():
    """``edgegov emulate --hex FROZEN --frozen`` as a user runs it: QEMU boots, the config
    and main.py are deployed and verified, the governor reports its boot frame (heap free,
    ring size), the endpoints are printed; Ctrl-C stops the board."""
    import signal
    import subprocess

    hex_path = frozen_hex()
    proc = subprocess.Popen([sys.executable, "-m", "edgegov_cli.main", "emulate", "--hex",
                             str(hex_path), "--frozen", "--icount", "4"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line.rstrip())
            if line.startswith("e-stop:") or len(lines) > 40:
                break
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0, lines
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    up = next((x for x in lines if x.startswith("governor up")), None)
    assert up is not None, lines
    heap = int(up.split("heap free ")[1].split()[0])
    assert heap >= HEAP_GOAL and "lineage ring 1024 B" in up, up
    deployed = [x.split()[1] for x in lines if x.startswith("ok ")]
    assert deployed == ["egc.py", "main.py"], lines  # the modules are in flash
    assert any(x.startswith("UART  socket://127.0.0.1:") for x in lines)


def test_edgegov_hil_runs_scenarios_against_a_board_on_a_serial_port(gov):
    """``edgegov hil --port`` as against a real board: the emulated governor board reached
    only through a pyserial URL, no GPIO probe (the e-stop line comes from the governor's
    status replies), same transcripts; the watchdog scenario is reported as skipped."""
    res = _hil_over_the_port(gov, ["--scenario", "in_envelope", "--scenario", "watchdog"])
    assert res.exit_code == 0, res.output
    assert "PASS  in_envelope" in res.output and "SKIP  watchdog" in res.output
    assert "1 passed, 0 failed" in res.output


def test_edgegov_hil_pulls_and_replays_a_boards_lineage_over_the_port(gov):
    """The lineage_replay scenario over the port: the ring pulled over the link verifies
    and replays bit-exactly on the gateway. One scenario per command here: each starts
    from a reset, and through a TCP URL the test is the reset button."""
    res = _hil_over_the_port(gov, ["--scenario", "lineage_replay"])
    assert res.exit_code == 0, res.output
    assert "PASS  lineage_replay" in res.output and "replay identical" in res.output


def test_edgegov_hil_reports_a_transcript_difference_and_fails(gov, tmp_path, monkeypatch):
    """A scenario whose board behaviour differs from its transcript fails the command, with
    the diff shown."""
    import hilrun

    fake = tmp_path / "expected"
    fake.mkdir()
    for exp in hilrun.EXPECTED.glob("*.exp"):
        (fake / exp.name).write_text(exp.read_text().replace("verdict=0", "verdict=9"))
    monkeypatch.setattr(hilrun, "EXPECTED", fake)
    res = _hil_over_the_port(gov, ["--scenario", "in_envelope"])
    assert res.exit_code == 1, res.output
    assert "FAIL  in_envelope" in res.output and "+" in res.output
    assert "0 passed, 1 failed" in res.output


def _hil_over_the_port(gov, args: list[str]):
    """``edgegov hil --port socket://…`` in a thread; a serial BREAK cannot reset the board
    through a TCP URL, so the board is reset through QMP once the command is connected (as
    a reset button would) and boots into its boot frame for the scenario to see."""
    import threading

    from click.testing import CliRunner
    from edgegov_cli.main import main

    gov.uart.sock.close()  # the TCP UART takes one client: hand it to the CLI
    out = {}
    cmd = ["hil", "--port", f"socket://127.0.0.1:{gov.port}", *args]
    worker = threading.Thread(target=lambda: out.update(res=CliRunner().invoke(main, cmd)))
    worker.start()
    try:
        _wait_for_client(gov.port)  # the command is connected: its boot frame will reach it
        gov.system_reset()
    finally:
        worker.join(120)
        gov._connect_uart(time.monotonic() + 10)
    return out["res"]


def _wait_for_client(port: int, timeout_s: float = 20.0) -> None:
    """Until a TCP connection to the board's UART port is established (/proc/net/tcp)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "01" and int(local.split(":")[1], 16) == port:
                return
        time.sleep(0.01)
    raise AssertionError(f"nothing connected to the board's UART port {port}")
