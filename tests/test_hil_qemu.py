"""Emulated hardware in the loop: a micro:bit v1 in QEMU (-M microbit) running Debian's
MicroPython 1.9.2 hex. The firmware is deployed through the raw REPL and verified by
reading every file back; the e-stop pin is read from the nRF51 GPIO OUT register through
QMP, independent of anything the firmware prints.
"""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
for sub in ("firmware", "emulation", "hil"):
    sys.path.insert(0, str(REPO / sub))

import build  # noqa: E402
import deploy  # noqa: E402
from edgegov.config.compile import compile_file  # noqa: E402
from qemu_microbit import DEFAULT_HEX, MicrobitQemu  # noqa: E402

ESTOP_PIN = 0


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


@pytest.mark.xfail(strict=True, reason="the minimal governor does not fit the 1.9.2 heap: "
                   "measured 9136 B free at the raw REPL, 7856 after egc, 5264 after egr (1 KB "
                   "ring); egg.py (7.3 KB minified, ~7.5 KB bytecode) fails to compile "
                   "(MemoryError allocating 1432 B); see firmware/microbit/README.md")
def test_minimal_governor_imports_on_the_board(board):
    b = build.load_board("microbit-v1")
    files = build.microbit_files(compile_file(b.envelope).blob, b)
    deploy.deploy_raw_repl(board.uart, {k: files[k] for k in ("egc.py", "egr.py", "egg.py")})
    board.uart.raw_enter()
    try:
        out = board.uart.raw_exec("import gc\nimport egc\ngc.collect()\nimport egr\n"
                                  "gc.collect()\nimport egg\ngc.collect()\nprint(gc.mem_free())")
    finally:
        board.uart.raw_exit()
    assert int(out) >= 2048


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
