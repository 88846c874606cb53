"""The README matches the code: state diagram generated from the transition table, and
every `edgegov ...` command it shows exists."""

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_readme_state_diagram_is_generated_from_the_transition_table():
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "render_states.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, "run: python tools/render_states.py and paste it into README"


def test_every_command_the_readme_shows_exists():
    readme = (REPO / "README.md").read_text()
    blocks = "\n".join(re.findall(r"```sh\n(.*?)```", readme, re.S))
    commands = set(re.findall(r"^edgegov ([a-z]+(?: [a-z]+)?)", blocks, re.M))
    commands |= set(re.findall(r"`edgegov ([a-z]+(?: [a-z]+)?)", readme))
    assert len(commands) > 8
    for command in sorted(commands):
        words = [w for w in command.split() if w.isalpha() and w.islower()]
        proc = subprocess.run([sys.executable, "-m", "edgegov_cli.main", *words, "--help"],
                              capture_output=True, text=True)
        if proc.returncode != 0 and len(words) > 1:  # "edgegov demo --seconds": one word
            proc = subprocess.run([sys.executable, "-m", "edgegov_cli.main", words[0],
                                   "--help"], capture_output=True, text=True)
        assert proc.returncode == 0, (command, proc.stderr)
