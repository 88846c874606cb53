"""``edgegov envelope``: check, compile and diff per-device envelopes (TOML)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from edgegov.config.problems import EnvelopeConfigError


@click.group()
def envelope() -> None:
    """Validate, compile and compare per-device envelopes (TOML)."""


def _refused(path: str, err: EnvelopeConfigError) -> None:
    for problem in err.problems:
        click.echo(str(problem), err=True)
    n = len(err.problems)
    click.echo(f"{path}: {n} problem{'' if n == 1 else 's'}; envelope refused", err=True)


def compile_or_exit(path: str, code: int = 1):
    """The compiled envelope at ``path``, or its problems printed and exit ``code``."""
    from edgegov.config.compile import compile_file

    try:
        return compile_file(path)
    except EnvelopeConfigError as err:
        _refused(path, err)
        sys.exit(code)


@envelope.command("check")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def envelope_check(files: tuple[str, ...]) -> None:
    """Validate envelope FILES; one line per problem (file:line: location: message)."""
    from edgegov.config.compile import compile_file

    failed = 0
    for path in files:
        try:
            compiled = compile_file(path)
        except EnvelopeConfigError as err:
            failed += 1
            _refused(path, err)
            continue
        adm = compiled.admitted
        click.echo(
            f"{path}: ok: device {adm.device_id}, {len(adm.channels)} channels, "
            f"{len(adm.inputs)} inputs, {len(adm.interlocks)} interlocks, "
            f"{len(adm.modes)} modes, hash {compiled.hash[:16]}"
        )
    if failed:
        sys.exit(1)


@envelope.command("compile")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("-o", "--output", "output", type=click.Path(dir_okay=False),
              help="Where to write the compiled CBOR blob.")
@click.option("--json", "as_json", is_flag=True, help="Print the compiled envelope as JSON.")
def envelope_compile(file: str, output: str | None, as_json: bool) -> None:
    """Compile FILE to the compact CBOR envelope a device loads; print its hash."""
    from edgegov.config.render import compiled_json

    compiled = compile_or_exit(file)
    if output is None and not as_json:
        raise click.UsageError("give -o BLOB and/or --json")
    if output:
        Path(output).write_bytes(compiled.blob)
        click.echo(f"{output}: {len(compiled.blob)} bytes, sha256 {compiled.hash}", err=as_json)
    if as_json:
        click.echo(json.dumps(compiled_json(compiled), indent=2))


@envelope.command("diff")
@click.argument("old", type=click.Path(dir_okay=False))
@click.argument("new", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the differences as JSON.")
def envelope_diff(old: str, new: str, as_json: bool) -> None:
    """What changed from envelope OLD to NEW, in units, each change marked widens, tightens
    or neutral, with both compiled hashes. Exit 0 same, 1 different, 2 error."""
    from edgegov.config.diff import diff

    result = diff(compile_or_exit(old, 2), compile_or_exit(new, 2))
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
    else:
        for line in result.summary_lines():
            click.echo(line)
    sys.exit(result.exit_code)


__all__ = ["envelope", "compile_or_exit"]
