"""Help that helps: every option of every ``edgegov`` command says what it is (with its
default shown where it has one), and command summaries end where their sentence ends."""

from __future__ import annotations

import click
from click.testing import CliRunner
from edgegov_cli.main import main


def _commands(cmd, path=("edgegov",)):
    yield path, cmd
    if isinstance(cmd, click.Group):
        for name, sub in sorted(cmd.commands.items()):
            yield from _commands(sub, (*path, name))


def test_every_option_of_every_command_has_help():
    missing = [f"{' '.join(path)} {p.opts[0]}" for path, cmd in _commands(main)
               for p in cmd.params if isinstance(p, click.Option) and not (p.help or "").strip()]
    assert not missing, missing


def test_options_with_a_default_show_it():
    hidden = []
    for path, cmd in _commands(main):
        for p in cmd.params:
            if not isinstance(p, click.Option) or p.is_flag:
                continue
            default = p.default
            if default is None or default == () or "UNSET" in repr(default):  # none given
                continue
            if not p.show_default and "default" not in (p.help or "").lower():
                hidden.append(f"{' '.join(path)} {p.opts[0]} (default {default!r})")
    assert not hidden, hidden


def test_every_command_has_help():
    assert not [" ".join(path) for path, cmd in _commands(main) if not (cmd.help or "").strip()]


def test_summaries_are_not_cut_mid_sentence():
    runner = CliRunner()
    for path, cmd in _commands(main):
        if not isinstance(cmd, click.Group):
            continue
        out = runner.invoke(main, [*path[1:], "--help"], terminal_width=80).output
        listing = out.split("Commands:", 1)[1]
        assert "..." not in listing, (path, listing)


def test_op_help_documents_its_exit_codes():
    out = CliRunner().invoke(main, ["op", "--help"], terminal_width=100).output
    for code in ("0 accepted", "1 refused", "2 usage", "3 broker unreachable", "4 no answer"):
        assert code in " ".join(out.split()), code


def test_shell_completion_as_the_readme_says():
    import os
    import subprocess
    import sys
    from pathlib import Path

    edgegov = str(Path(sys.executable).with_name("edgegov"))  # the installed command
    env = {**os.environ, "_EDGEGOV_COMPLETE": "bash_complete", "COMP_WORDS": "edgegov sta",
           "COMP_CWORD": "1"}
    out = subprocess.run([edgegov], env=env, capture_output=True, text=True,
                         timeout=30).stdout
    assert "plain,status" in out.split()
    env["_EDGEGOV_COMPLETE"] = "bash_source"
    script = subprocess.run([edgegov], env=env, capture_output=True, text=True,
                            timeout=30).stdout
    assert "_edgegov_completion" in script
