"""The full-core board loop (firmware/edgegov_fw) under the real MicroPython unix port:
boot safe, governed commands over the CRC-framed link, garbage tolerance, link loss ->
trip within two periods, lineage pulled over the link replays identically, and an idle
control period allocates 0 bytes (gc.mem_alloc)."""

import re

from test_micropython import run_runner


def test_firmware_loop_under_micropython():
    code, output = run_runner("test_firmware_loop")
    print(output)
    assert code == 0, output
    assert re.search(r"^11 passed, 0 failed$", output, re.MULTILINE), output
    assert "idle period allocation: 0 bytes over 200 periods" in output
    late = int(re.search(r"e-stop asserted (-?\d+) ms after the deadline", output).group(1))
    assert late <= 20
