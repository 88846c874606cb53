"""The micro:bit takes no envelope push (firmware/microbit/README.md; firmware/PROTOCOL.md,
Envelope push): its minimal firmware answers ``E 6`` to ``V``/``W``/``U``, and ``edgegov
envelope push --serial`` says so in one line and exits 1 before pulling anything."""

from __future__ import annotations

import sys
from pathlib import Path

from click.testing import CliRunner

REPO = Path(__file__).resolve().parent.parent
for sub in ("firmware", "emulation", "hil"):
    sys.path.insert(0, str(REPO / sub))

import build  # noqa: E402
import scenarios  # noqa: E402
from edgegov.config.compile import compile_file  # noqa: E402
from service_harness import write_key  # noqa: E402
from soft_microbit import SoftMicrobit  # noqa: E402

BOARD = build.load_board("microbit-v1")
FILES = build.microbit_files(compile_file(BOARD.envelope).blob, BOARD)


def test_the_microbit_refuses_envelope_frames_with_e6():
    with SoftMicrobit(FILES) as mb:
        rig = scenarios.Rig(mb)
        rig.booted()
        for body in ("V 600", "W 0 00", "U 1 5 " + "00" * 32):
            assert rig.link.reply_to(body, ("V", "W", "U", "E")) == ["E", "6"], body
        assert rig.link.reply_to("Z", ("E",)) == ["E", "4"]  # unknown stays unknown


def test_edgegov_envelope_push_to_a_microbit_is_a_clear_refusal(tmp_path):
    from edgegov_cli.main import main

    key = write_key(tmp_path / "device.key")
    with SoftMicrobit(FILES, serial="tcp") as mb:
        mb.uart.sock.close()  # one client at a time, as a serial port
        mb.uart = None
        res = CliRunner().invoke(main, ["envelope", "push", str(BOARD.envelope), "--serial",
                                        f"socket://127.0.0.1:{mb.port}", "--key", str(key)])
    assert res.exit_code == 1, res.output
    assert "takes no envelope pushes" in res.output and "(E 6)" in res.output
    assert "Traceback" not in res.output and "what-if" not in res.output
