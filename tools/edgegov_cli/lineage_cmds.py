"""``edgegov lineage decode|verify|replay``: read, check and re-derive a lineage dump."""

from __future__ import annotations

import csv
import json
import sys

import click
from edgegov.core.ring import LineageError

EXIT_OK, EXIT_DIVERGENT, EXIT_ERROR = 0, 1, 2
PROGRESS_FROM = 50_000  # records: show progress on dumps at least this large


@click.group()
def lineage() -> None:
    """Decode, verify and replay lineage dumps (gateway files or pulled device images)."""


def _read(path: str, block_size: int | None):
    from edgegov.host.lineage_store import read_dump

    try:
        return read_dump(path, block_size)
    except LineageError as err:
        click.echo(f"{path}: not a readable lineage: {err}", err=True)
        sys.exit(EXIT_ERROR)


def _key(path: str | None) -> bytes | None:
    if path is None:
        return None
    from edgegov.operator import KeyFileError, load_key

    try:
        return load_key(path)
    except KeyFileError as err:
        click.echo(str(err), err=True)
        sys.exit(EXIT_ERROR)


_block = click.option("--block-size", type=int, default=None,
                      help="Sector size of a raw image (default: read from its first header).")


@lineage.command("decode")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl",
              show_default=True, help="One JSON object per record, or CSV rows.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write here, not stdout.")
@_block
def decode_cmd(path: str, fmt: str, output: str | None, block_size: int | None) -> None:
    """Decode every record to JSON lines or CSV (values in engineering units)."""
    from edgegov.host.lineage_read import csv_rows, decode_dump

    dump = _read(path, block_size)
    envelopes = _envelopes_or_exit(dump)
    rows = decode_dump(dump, envelopes)
    out = open(output, "w", newline="") if output else sys.stdout
    try:
        if fmt == "jsonl":
            for row in rows:
                out.write(json.dumps(row, separators=(",", ":")) + "\n")
        else:
            channels = sorted({n for env in envelopes.values() for n in env.ch_names})
            csv.writer(out).writerows(csv_rows(rows, channels))
    finally:
        if output:
            out.close()
    _report_problems(dump)


def _envelopes_or_exit(dump) -> dict:
    try:
        return dump.envelopes()
    except LineageError as err:
        click.echo(f"{dump.path}: {err}", err=True)
        sys.exit(EXIT_ERROR)


def _report_problems(dump) -> None:
    for p in dump.problems:
        click.echo(f"{dump.path}: {p}", err=True)


@lineage.command("verify")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--key", "key_path", type=click.Path(dir_okay=False),
              help="Device key file: also check the checkpoints' MACs.")
@click.option("--attestation", "att_path", type=click.Path(dir_okay=False),
              help="Head attestation of a sealed pull (default: PATH.att.json when present).")
@_block
def verify_cmd(path: str, key_path: str | None, att_path: str | None,
               block_size: int | None) -> None:
    """Check every record's CRC and the hash chain (and MACs with --key).

    On a failure it names the first record it can prove bad (seq and byte offset).

    Exit codes: 0 verified, 1 a record or checkpoint proved bad, 2 unreadable input (or
    an unusable key file).
    """
    from edgegov.core.verify import verify

    dump = _read(path, block_size)
    key = _key(key_path)
    try:
        envelopes = dump.envelopes()  # to name the record a broken chain hides
    except LineageError:
        envelopes = None  # a changed ENVELOPE record: the chain says so
    rep = verify(dump.records, dump.problems, key, dump.offsets, dump.genesis_seq,
                 envelopes=envelopes)
    click.echo(f"{path}: {rep.records} records, {rep.checkpoints} checkpoints "
               f"({rep.keyed_checkpoints} keyed); outside the hash chain: "
               f"{rep.uncovered_head} before an anchor, {rep.uncovered_tail} after the last "
               "checkpoint (CRC only)")
    _wall_line(dump)
    for finding in rep.findings:
        label = "FAIL" if finding.fatal else "note"
        click.echo(f"  {label}: {finding}")
    attested = _attestation(dump, att_path, key_path)
    if not rep.ok:
        bad = rep.first_bad
        click.echo(f"{path}: verify FAILED at seq {bad.seq}, offset {bad.offset}", err=True)
        sys.exit(EXIT_DIVERGENT)
    if attested is False:
        click.echo(f"{path}: verify FAILED: the head attestation does not hold", err=True)
        sys.exit(EXIT_DIVERGENT)
    if key_path is None:
        click.echo(f"{path}: verify OK (CRC and hash chain only; MACs NOT checked: no --key)")
    else:
        click.echo(f"{path}: verify OK (CRC, hash chain and {rep.keyed_checkpoints} "
                   "checkpoint MACs checked)")


def _attestation(dump, att_path: str | None, key_path: str | None) -> bool | None:
    """Check the head attestation (given, or PATH.att.json when present); print one line.
    None when there is none."""
    from edgegov.host import attest

    path = dump.path
    if att_path is None and not attest.path_for(path).exists():
        click.echo("  attestation: none (records after the last checkpoint are CRC only; a "
                   "gateway or full-core board gives one with `edgegov lineage pull`, a "
                   "micro:bit cannot)")
        return None
    file = att_path or str(attest.path_for(path))
    try:
        doc = attest.load(file)
    except attest.AttestationError as err:
        click.echo(str(err), err=True)
        sys.exit(EXIT_ERROR)
    ok, why = attest.check(b"", doc, _key(key_path), scanned=dump)
    click.echo(f"  {'attestation' if ok else 'FAIL: attestation'}: {why} ({file})")
    return ok


def _wall_line(dump) -> None:
    from edgegov.host.walltime import format_wall, wall_span

    span = wall_span(dump.records)
    if span is None:
        click.echo("  wall time: not recorded")
        return
    first, last, steps = span
    click.echo(f"  wall time {format_wall(first)} .. {format_wall(last)} (recorded by the host, "
               f"UTC; {steps} clock step(s))")


@lineage.command("replay")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--envelope", "envelope_path", type=click.Path(exists=True, dir_okay=False),
              help="Envelope TOML or compiled blob: a what-if. It is applied to every boot "
                   "(--boots), even one that ran this very envelope, and the output leads "
                   "with a summary of where decisions would differ.")
@click.option("--boots", default="all", show_default=True,
              help="What-if only: the boots to apply --envelope to, numbered 1, 2, ... in "
                   "ring order at each BOOT record (0: records before the first BOOT).")
@click.option("--key", "key_path", type=click.Path(dir_okay=False),
              help="Device key file: re-verify operator MACs instead of trusting the record.")
@click.option("--show", default=10, show_default=True, help="Differing records to print.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False),
              help="Write everything here as JSON (values in engineering units, the scaled "
                   "integers alongside).")
@click.option("--progress/--no-progress", default=None,
              help="Progress on stderr (default: on dumps of 50000 records or more).")
@_block
def replay_cmd(path, envelope_path, boots, key_path, show, json_path, progress,
               block_size) -> None:
    """Re-derive every decision from the recorded inputs.

    Exit codes: 0 every record reproduced byte for byte (with --envelope: no decision
    differs), 1 a record differs (with --envelope: decisions differ), 2 error (unreadable
    dump or envelope, a boot not in the dump, nothing to replay).
    """
    from .replay_view import run_replay, run_whatif_view

    key = _key(key_path)
    if envelope_path:
        sys.exit(run_whatif_view(path, envelope_path, boots, key, show, json_path, progress,
                                 block_size))
    if boots != "all":
        click.echo("--boots applies to a what-if (--envelope)", err=True)
        sys.exit(EXIT_ERROR)
    dump = _read(path, block_size)
    auto = len(dump.records) >= PROGRESS_FROM
    sys.exit(run_replay(dump, key, show, json_path,
                        progress=auto if progress is None else progress))


def load_envelope_file(path: str):
    """An envelope TOML (compiled here) or blob → (Envelope, blob, digest)."""
    from edgegov.config.compile import envelope_from_file
    from edgegov.core.envelope import EnvelopeError

    try:
        return envelope_from_file(path)
    except EnvelopeError as err:
        raise click.ClickException(f"{path}: {err}") from None


from .report_cmd import report_cmd  # noqa: E402 - the report command lives in its own module

lineage.add_command(report_cmd)
