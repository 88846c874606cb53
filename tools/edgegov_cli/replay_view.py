"""Terminal side of ``edgegov lineage replay``: run it, show progress and the differences."""

from __future__ import annotations

import json

import click
from edgegov import names
from edgegov.config.problems import EnvelopeConfigError
from edgegov.core.replay import Replayer, ReplayError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

EXIT_OK, EXIT_DIVERGENT, EXIT_ERROR = 0, 1, 2


def run_replay(dump, key, show, json_path, progress=False) -> int:
    """``replay`` without ``--envelope``: every record re-derived byte for byte, or not."""
    console = Console(stderr=True)
    try:
        envelopes = dump.envelopes()
    except Exception as err:  # noqa: BLE001 - a changed ENVELOPE record, reported
        console.print(f"[red]{dump.path}: cannot replay: {err}[/red]")
        return EXIT_ERROR
    replayer = Replayer(envelopes, key=key)
    try:
        report = _run(replayer, dump.records, console if progress else None)
    except ReplayError as err:
        console.print(f"[red]{dump.path}: cannot replay: {err}[/red]")
        return EXIT_ERROR
    return _summarise(dump, report, show, json_path, replayer)


def _run(replayer, records, console):
    if console is None:
        return replayer.run(records)
    with Progress(TextColumn("replaying"), BarColumn(), MofNCompleteColumn(), console=console,
                  transient=True) as progress:
        task = progress.add_task("replay", total=len(records))
        return replayer.run(records, lambda n: progress.update(task, completed=n))


def _summarise(dump, report, show, json_path, replayer) -> int:
    env = replayer.decoder.env
    diffs = [_diff_dict(d, env, env) for d in report.divergences]
    _with_wall(dump, diffs)
    if json_path:
        with open(json_path, "w") as f:
            json.dump({"compared": report.compared, "skipped": report.skipped,
                       "differences": diffs}, f, indent=1)
    for note in report.notes:
        click.echo(f"note: {note}")
    if report.compared == 0:
        click.echo(f"{dump.path}: nothing to replay: no BOOT or CHECKPOINT record survives",
                   err=True)
        return EXIT_ERROR
    anchors = ", ".join(f"{kind} at seq {seq}" for seq, kind in report.anchors)
    if report.identical:
        click.echo(f"{dump.path}: replay identical: {report.compared} records re-derived "
                   f"exactly ({report.skipped} before the first anchor; anchored at {anchors})")
        return EXIT_OK
    click.echo(f"{dump.path}: replay DIVERGES at {len(diffs)} of {report.compared} records")
    _print_diffs(diffs, show)
    return EXIT_DIVERGENT


def _print_diffs(diffs, show) -> None:
    for d in diffs[:show]:
        wall = f" ({d['wall']})" if d.get("wall") else ""
        click.echo(f"  seq {d['seq']} t={d['t_ms']} ms{wall}: {d['summary']}")
    if len(diffs) > show:
        click.echo(f"  ... {len(diffs) - show} more (--show N or --json PATH for all)")


def _with_wall(dump, diffs) -> None:
    """Print the recorded wall-time span; give each difference its wall time (when known)."""
    from edgegov.host.walltime import WallLookup, format_wall, wall_span

    span = wall_span(dump.records)
    if span is None:
        return
    click.echo(f"wall time {format_wall(span[0])} .. {format_wall(span[1])} (recorded, UTC)")
    lookup = WallLookup(dump.records)
    for d in diffs:
        d["wall"] = lookup.text(d["seq"], d["t_ms"])


def _side(o, env) -> dict | None:
    if o is None or not hasattr(o, "verdict"):
        return None
    rule = env.rules[o.rule] if env is not None and 0 <= o.rule < len(env.rules) else None
    names_ = env.ch_names if env is not None else [str(i) for i in range(len(o.output))]
    return {"verdict": names.verdict(o.verdict), "reason": names.reason(o.reason), "rule": rule,
            "margin": o.margin, "output": dict(zip(names_, o.output, strict=True)),
            "events": [names.event(c) for c, _ in o.events]}


def _diff_dict(d, env_old, env_new) -> dict:
    rec, mine = _side(d.recorded, env_old), _side(d.replayed, env_new)
    if rec is None or mine is None:
        summary = d.note or "record differs"
    else:
        parts = []
        for key in ("verdict", "reason", "rule", "margin", "output", "events"):
            if rec[key] != mine[key]:
                parts.append(f"{key} {rec[key]} -> {mine[key]}")
        summary = "; ".join(parts) or d.note or "encoding differs"
    return {"seq": d.seq, "t_ms": d.t, "recorded": rec, "replayed": mine, "note": d.note,
            "summary": summary}


# ------------------------------------------------------------------ what-if


def run_whatif_view(path, envelope_path, boots, key, show, json_path, progress=None,
                    block_size=None) -> int:
    """``replay --envelope``: the what-if summary, then the records; its exit code."""
    import sys

    from edgegov.core.ring import LineageError
    from edgegov.host.whatif import WhatIfError, run_whatif

    compiled = _load_envelope(envelope_path)
    if compiled is None:
        return EXIT_ERROR
    try:
        with open(path, "rb") as f:
            image = f.read()
    except OSError as err:
        click.echo(f"{path}: cannot read: {err.strerror}", err=True)
        return EXIT_ERROR
    try:
        with _progress(progress, sys.stderr) as tick:
            result = run_whatif(image, compiled, boots=boots, key=key, progress=tick,
                                block_size=block_size)
    except LineageError as err:
        click.echo(f"{path}: not a readable lineage: {err}", err=True)
        return EXIT_ERROR
    except (WhatIfError, ReplayError) as err:
        click.echo(f"{path}: cannot run the what-if: {err}", err=True)
        return EXIT_ERROR
    for note in result.notes:
        click.echo(f"note: {note}")
    click.echo(f"{path}: " + "\n".join(result.summary_lines()))
    if not result.identical:
        click.echo("\n".join(result.record_lines(show)))
    if json_path:
        with open(json_path, "w") as f:
            json.dump(result.to_json(), f, indent=1)
    return result.exit_code


def _load_envelope(envelope_path):
    """The what-if envelope (TOML compiled here, or a blob), or None after saying why."""
    from edgegov.config.compile import envelope_from_file
    from edgegov.core.envelope import EnvelopeError

    try:
        return envelope_from_file(envelope_path)
    except EnvelopeConfigError as err:
        first = err.problems[0] if err.problems else err
        click.echo(f"{envelope_path}: not a valid envelope: {first}", err=True)
    except (EnvelopeError, ValueError) as err:
        click.echo(f"{envelope_path}: not an envelope: {err}", err=True)
    except OSError as err:
        click.echo(f"{envelope_path}: cannot read: {err.strerror}", err=True)
    return None


class _progress:
    """Progress of a long what-if on stderr: a rich bar on a terminal, else one line per
    10 %. ``mode``: True always, False never, None on dumps of PROGRESS_FROM records or
    more."""

    def __init__(self, mode, stream):
        self.mode = mode
        self.stream = stream
        self.bar = None
        self.task = None
        self.shown = -1

    def __enter__(self):
        return self.tick if self.mode is not False else None

    def tick(self, done: int, total: int) -> None:
        from .lineage_cmds import PROGRESS_FROM

        if self.mode is None and total < PROGRESS_FROM:
            return
        if self.stream.isatty():
            if self.bar is None:
                self.bar = Progress(TextColumn("what-if"), BarColumn(), MofNCompleteColumn(),
                                    console=Console(stderr=True), transient=True)
                self.bar.start()
                self.task = self.bar.add_task("what-if", total=total)
            self.bar.update(self.task, completed=done)
            return
        tenth = done * 10 // max(total, 1)
        if tenth > self.shown:
            self.shown = tenth
            print(f"what-if: {tenth * 10}% ({done} of {total} records)", file=self.stream,
                  flush=True)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()
        return False
