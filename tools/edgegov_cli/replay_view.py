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


def run_replay(dump, envelope_path, key, show, json_path, progress=False) -> int:
    from .lineage_cmds import load_envelope_file

    console = Console(stderr=True)
    try:
        envelopes = dump.envelopes()
        what_if = None
        if envelope_path:
            env, _blob, digest = load_envelope_file(envelope_path)
            what_if = env  # applied to every boot, even one that ran this very envelope
            envelopes.setdefault(digest, env)
    except (EnvelopeConfigError, ReplayError, Exception) as err:  # noqa: BLE001 - reported
        if isinstance(err, click.ClickException):
            raise
        console.print(f"[red]{dump.path}: cannot replay: {err}[/red]")
        return EXIT_ERROR
    replayer = Replayer(envelopes, key=key, what_if=what_if)
    try:
        report = _run(replayer, dump.records, console if progress else None)
    except ReplayError as err:
        console.print(f"[red]{dump.path}: cannot replay: {err}[/red]")
        return EXIT_ERROR
    return _summarise(dump, report, what_if, show, json_path, replayer)


def _run(replayer, records, console):
    if console is None:
        return replayer.run(records)
    with Progress(TextColumn("replaying"), BarColumn(), MofNCompleteColumn(), console=console,
                  transient=True) as progress:
        task = progress.add_task("replay", total=len(records))
        return replayer.run(records, lambda n: progress.update(task, completed=n))


def _summarise(dump, report, what_if, show, json_path, replayer) -> int:
    env_old = replayer.decoder.env
    diffs = [_diff_dict(d, env_old, what_if or env_old) for d in report.divergences]
    _with_wall(dump, diffs)
    if json_path:
        with open(json_path, "w") as f:
            json.dump({"compared": report.compared, "skipped": report.skipped,
                       "what_if": what_if is not None, "differences": diffs}, f, indent=1)
    for note in report.notes:
        click.echo(f"note: {note}")
    if report.compared == 0:
        click.echo(f"{dump.path}: nothing to replay: no BOOT or CHECKPOINT record survives",
                   err=True)
        return EXIT_ERROR
    anchors = ", ".join(f"{kind} at seq {seq}" for seq, kind in report.anchors)
    if what_if is not None:
        click.echo(f"what-if: {len(diffs)} of {report.compared} recorded decisions would differ "
                   f"under the other envelope (anchored at {anchors})")
        _print_diffs(diffs, show)
        return EXIT_DIVERGENT if diffs else EXIT_OK
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
