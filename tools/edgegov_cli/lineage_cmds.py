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
@_block
def verify_cmd(path: str, key_path: str | None, block_size: int | None) -> None:
    """Check every record's CRC and the hash chain (and MACs with --key).

    Exit codes: 0 verified, 1 a record or checkpoint proved bad, 2 unreadable input.
    """
    from edgegov.core.verify import verify

    dump = _read(path, block_size)
    rep = verify(dump.records, dump.problems, _key(key_path), dump.offsets, dump.genesis_seq)
    click.echo(f"{path}: {rep.records} records, {rep.checkpoints} checkpoints "
               f"({rep.keyed_checkpoints} keyed); outside the hash chain: "
               f"{rep.uncovered_head} before an anchor, {rep.uncovered_tail} after the last "
               "checkpoint (CRC only)")
    for finding in rep.findings:
        label = "FAIL" if finding.fatal else "note"
        click.echo(f"  {label}: {finding}")
    if not rep.ok:
        bad = rep.first_bad
        click.echo(f"{path}: verify FAILED at seq {bad.seq}, offset {bad.offset}", err=True)
        sys.exit(EXIT_DIVERGENT)
    if key_path is None:
        click.echo(f"{path}: verify OK (CRC and hash chain only; MACs NOT checked: no --key)")
    else:
        click.echo(f"{path}: verify OK (CRC, hash chain and {rep.keyed_checkpoints} "
                   "checkpoint MACs checked)")


@lineage.command("replay")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--envelope", "envelope_path", type=click.Path(exists=True, dir_okay=False),
              help="Envelope TOML or compiled blob. The recorded one: replay with it; another "
                   "one: a what-if listing where decisions would differ.")
@click.option("--key", "key_path", type=click.Path(dir_okay=False),
              help="Device key file: re-verify operator MACs instead of trusting the record.")
@click.option("--show", default=10, show_default=True, help="Differences to print.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False),
              help="Write the full list of differences here.")
@_block
def replay_cmd(path, envelope_path, key_path, show, json_path, block_size) -> None:
    """Re-derive every decision: exit 0 identical, 1 divergent, 2 error."""
    from .replay_view import run_replay

    dump = _read(path, block_size)
    sys.exit(run_replay(dump, envelope_path, _key(key_path), show, json_path,
                        progress=len(dump.records) >= PROGRESS_FROM))


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
