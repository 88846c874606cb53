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
    files.pop("egmain.py")
    landed = deploy.deploy_raw_repl(board.uart, files)
    assert [x.name for x in landed] == sorted(files)
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


@pytest.mark.xfail(strict=True, reason="the minimal governor (firmware/microbit/eggov.py, "
                   "~11.8 KB minified) does not compile in the ~7.8 KB left after egcfg: "
                   "MemoryError on import; it must shrink before the on-board HIL runs")
def test_minimal_governor_imports_on_the_board(board):
    b = build.load_board("microbit-v1")
    files = build.microbit_files(compile_file(b.envelope).blob, b)
    deploy.deploy_raw_repl(board.uart, {k: files[k] for k in ("egcfg.py", "eggov.py")})
    board.uart.raw_enter()
    try:
        out = board.uart.raw_exec("import gc\nimport eggov\ngc.collect()\nprint(gc.mem_free())")
    finally:
        board.uart.raw_exit()
    assert int(out) >= 2048
