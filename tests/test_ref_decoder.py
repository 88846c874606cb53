"""The lineage spec is enough: docs/lineage-format.md is current with the code, and a
second decoder written from it alone (tests/ref_decoder.py) reads what edgegov writes."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_code_tables_in_the_lineage_spec_are_generated_from_the_code():
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "render_codes.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
