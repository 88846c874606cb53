"""The Renode files (emulation/renode) for STM32F4 Discovery: parsed always, run when
Renode is installed (it is not installable from the registries reachable here)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

RENODE = Path(__file__).resolve().parent.parent / "emulation" / "renode"


def test_renode_files_name_what_they_use():
    resc = (RENODE / "stm32f4-governor.resc").read_text()
    assert "stm32f4_discovery-kit.repl" in resc and "stm32f4-estop.repl" in resc
    assert "connector Connect sysbus.usart2" in resc
    robot = (RENODE / "governor.robot").read_text()
    assert "${RENODEKEYWORDS}" in robot and "stm32f4-governor.resc" in robot
    assert "EstopLine" in (RENODE / "stm32f4-estop.repl").read_text()


@pytest.mark.skipif(shutil.which("renode-test") is None or shutil.which("renode") is None,
                    reason="renode/renode-test not on PATH (Renode is not installable from "
                           "the registries reachable here; see emulation/renode/README.md)")
def test_robot_suite_passes_under_renode(tmp_path):
    if "EDGEGOV_STM32F4_ELF" not in os.environ:
        pytest.skip("set EDGEGOV_STM32F4_ELF to a MicroPython STM32F4DISC ELF")
    res = subprocess.run(["renode-test", str(RENODE / "governor.robot"),
                          "--variable", f"firmware:{os.environ['EDGEGOV_STM32F4_ELF']}",
                          "-r", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
