"""The same governed run, recorded on MicroPython and on CPython, gives the same bytes.

Decisions, records, frames, checkpoints, hash chain and MACs: the whole ring image is
compared byte for byte, so a lineage from a board replays bit-exactly on a gateway.
"""

import subprocess
import sys

from edgegov.config.compile import compile_file
from edgegov.core.replay import Replayer
from edgegov.demo import EXAMPLE
from edgegov.host.lineage_store import read_dump
from test_micropython import REPO, micropython

sys.path.insert(0, str(REPO / "tests" / "mpy"))
import lineage_script  # noqa: E402


def test_micropython_and_cpython_write_identical_lineage(tmp_path):
    compiled = compile_file(EXAMPLE)
    (tmp_path / "env.blob").write_bytes(compiled.blob)
    (tmp_path / "env.digest").write_bytes(compiled.digest)
    ours = lineage_script.image(compiled.blob, compiled.digest)
    proc = subprocess.run(
        [micropython(), "-X", "heapsize=4M", str(REPO / "tests" / "mpy" / "lineage_script.py"),
         str(tmp_path / "env.blob"), str(tmp_path / "env.digest")],
        cwd=REPO / "runtime", capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = proc.stdout.split()
    theirs = bytes.fromhex("".join(lines[1:]))
    assert int(lines[0]) == len(theirs) == len(ours)
    assert theirs == ours
    path = tmp_path / "mpy.lineage"
    path.write_bytes(theirs)
    dump = read_dump(path)
    assert len(dump.records) > 400
    report = Replayer({compiled.digest: None} | dump.envelopes()).run(dump.records)
    assert report.identical
