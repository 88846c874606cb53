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


# --------------------------------------------------------------------------- push


def _mqtt(f):
    from .service_cmds import _mqtt_options

    f = click.option("--device", help="Device id (default: the envelope's device.id).")(f)
    f = click.option("--key", "key_file", required=True, type=click.Path(dir_okay=False),
                     help="The device key file.")(f)
    f = click.option("--counter", type=int, help="Counter (default: microseconds of wall "
                     "time; must exceed the last one the device accepted).")(f)
    f = click.option("--prefix", default="edgegov", show_default=True,
                     help="Topic prefix.")(f)
    f = click.option("--timeout", default=10.0, show_default=True,
                     help="Seconds to wait for the pull and for the device's answer.")(f)
    f = click.option("--serial", "serial_port", help="Push to a full-core board over its "
                     "serial link instead (device or pyserial URL, e.g. socket://h:p).")(f)
    return _mqtt_options(f, required=False)


def _transport(serial_port, mqtt) -> None:
    if bool(serial_port) == bool(mqtt.get("mqtt_url")):
        raise click.UsageError("give --mqtt URL (a gateway) or --serial PORT (a board)")


@envelope.command("push")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--lineage", "lineage_path", type=click.Path(dir_okay=False, exists=True),
              help="Check against this lineage dump (default: pull the device's own).")
@click.option("--accept-diff", is_flag=True,
              help="Push even when decisions of the device's history would differ.")
@_mqtt
def envelope_push(file, lineage_path, accept_diff, device, key_file, counter, prefix, timeout,
                  serial_port, **mqtt):
    """Push envelope FILE to a running device: replay its lineage under FILE first (the
    what-if gate), then send it signed; the device applies it only when DISARMED or TRIPPED.
    Exit 0 applied, 1 refused (by the gate or the device), 2 error."""
    from edgegov.config.push import sign_push

    from .service_cmds import _key, _settings

    _transport(serial_port, mqtt)
    compiled = compile_or_exit(file, 2)
    if serial_port:
        from .envelope_serial import send

        def gate(pulled):
            return _whatif_gate(compiled, lineage_path or pulled, None, None, prefix,
                                timeout, accept_diff)

        sys.exit(send(serial_port, "push", compiled, _key(key_file),
                      counter if counter is not None else _counter(), timeout, gate,
                      pull=lineage_path is None))
    device = device or compiled.admitted.device_id
    settings, key = _settings(**mqtt), _key(key_file)
    if not _whatif_gate(compiled, lineage_path, settings, device, prefix, timeout, accept_diff):
        sys.exit(1)
    source = Path(file).read_bytes()
    push = sign_push(key, device, source, counter if counter is not None else _counter())
    sys.exit(_send(settings, device, prefix, push, timeout))


@envelope.command("rollback")
@click.option("--to", "previous", required=True, type=click.Path(dir_okay=False),
              help="The previous envelope (TOML) the device keeps: its hash is signed.")
@_mqtt
def envelope_rollback(previous, device, key_file, counter, prefix, timeout, serial_port,
                      **mqtt):
    """Put a device's previous envelope back in force (the same checks as a push)."""
    from edgegov.config.push import sign_rollback

    from .service_cmds import _key, _settings

    _transport(serial_port, mqtt)
    compiled = compile_or_exit(previous, 2)
    if serial_port:
        from .envelope_serial import send

        sys.exit(send(serial_port, "rollback", compiled, _key(key_file),
                      counter if counter is not None else _counter(), timeout))
    device = device or compiled.admitted.device_id
    settings, key = _settings(**mqtt), _key(key_file)
    push = sign_rollback(key, device, compiled.digest,
                         counter if counter is not None else _counter())
    sys.exit(_send(settings, device, prefix, push, timeout))


def _counter() -> int:
    from edgegov.service.client import default_counter

    return default_counter()


def _whatif_gate(compiled, lineage_path, settings, device, prefix, timeout, accept) -> bool:
    """Replay the device's history under the new envelope; True when it may be pushed."""
    import asyncio
    import tempfile

    if lineage_path is None:
        from edgegov.service.client import PullError, pull_lineage
        from edgegov.service.topics import Topics

        try:
            image = asyncio.run(pull_lineage(settings, Topics(device, prefix), timeout))
        except (PullError, OSError, TimeoutError) as err:
            click.echo(f"{device}: cannot pull its lineage for the what-if: {err}", err=True)
            sys.exit(2)
        with tempfile.NamedTemporaryFile(suffix=".lineage", delete=False) as f:
            f.write(image)
            lineage_path = f.name
    lines, identical = _whatif(lineage_path, compiled)
    for line in lines:
        click.echo(line)
    if identical:
        return True
    if accept:
        click.echo("differences accepted (--accept-diff)")
        return True
    if sys.stdin.isatty() and click.confirm("push anyway?", default=False):
        return True
    click.echo("not pushed: decisions of the device's history would differ (--accept-diff "
               "to push anyway)", err=True)
    return False


def _whatif(lineage_path: str, compiled) -> tuple[list[str], bool]:
    """(summary lines, identical) of the device's lineage replayed under ``compiled``."""
    from edgegov.core.envelope import Envelope
    from edgegov.core.replay import Replayer, ReplayError
    from edgegov.host.lineage_store import read_dump

    try:
        from edgegov.host.whatif import run_whatif  # the full what-if, where it is installed
    except ImportError:
        run_whatif = None
    if run_whatif is not None:
        from edgegov.host.whatif import WhatIfError

        try:
            w = run_whatif(Path(lineage_path).read_bytes(), compiled)
        except (WhatIfError, OSError, ValueError) as err:
            click.echo(f"{lineage_path}: cannot replay for the what-if: {err} (--lineage "
                       "DUMP takes a dump that holds it)", err=True)
            sys.exit(2)
        return w.summary_lines(), w.identical
    try:
        dump = read_dump(lineage_path)
        env = Envelope.from_blob(compiled.blob, compiled.digest)
        envelopes = dump.envelopes()
        envelopes.setdefault(compiled.digest, env)
        report = Replayer(envelopes, what_if=env).run(dump.records)
    except (ReplayError, OSError, ValueError) as err:
        click.echo(f"{lineage_path}: cannot replay for the what-if: {err}", err=True)
        sys.exit(2)
    n = len(report.divergences)
    return [f"what-if: {n} of {report.compared} recorded decisions would differ under "
            f"{compiled.source} (sha256 {compiled.hash[:16]})"], n == 0


def _send(settings, device: str, prefix: str, push, timeout: float) -> int:
    """Publish the signed change; wait for the device's answer on its event topic."""
    import asyncio

    from edgegov.service.envelope_updates import send_envelope
    from edgegov.service.topics import Topics

    try:
        answer = asyncio.run(send_envelope(settings, Topics(device, prefix), push, timeout))
    except (OSError, TimeoutError) as err:
        click.echo(f"{device}: no answer to the {push.action}: {err or 'timed out'}", err=True)
        return 2
    if answer.get("ok"):
        click.echo(f"{device}: {push.action} applied: {answer['old'][:16]} → "
                   f"{answer['new'][:16]} (the governor restarted TRIPPED: reset and arm)")
        for move in answer.get("modbus_moves", []):
            click.echo(f"WARNING: Modbus registers moved: {move} (a PLC program written for "
                       "the old map must be updated; the map hash is in I905-908)")
        return 0
    click.echo(f"{device}: {push.action} refused: {answer.get('refused')}", err=True)
    return 1


def register(main, bench) -> None:
    """Add ``envelope`` and ``bench push`` to the ``edgegov`` group (called from ``main``)."""
    main.add_command(envelope)

    @bench.command("push")
    @click.option("--seconds", default=240, show_default=True,
                  help="Demo scenario time (240 s fill about the 1 MiB ring).")
    @click.option("--pushes", default=10, show_default=True,
                  help="Signed pushes to apply and time.")
    @click.option("--json", "json_path", type=click.Path(dir_okay=False),
                  help="Write figures here.")
    def bench_push(seconds: int, pushes: int, json_path: str | None) -> None:
        """An envelope push end to end: what-if on the demo's lineage, signed transfer,
        apply and answer through a real service."""
        from .bench_push import run

        figures = run(seconds, pushes)
        if json_path:
            Path(json_path).write_text(json.dumps(figures, indent=2) + "\n")


__all__ = ["envelope", "compile_or_exit", "register"]
