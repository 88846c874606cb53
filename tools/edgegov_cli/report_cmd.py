"""``edgegov lineage report``: a lineage dump → one self-contained HTML incident report."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path

import click

EXIT_ERROR = 2  # as the other lineage commands
PROGRESS_FROM_BYTES = 2 << 20  # dumps this large (≈ 50k records) show progress on stderr
STAGES = {"reading": "reading the dump",
          "replaying and decoding": "replaying (limits in force) and decoding",
          "what-if": "replaying with the other envelope",
          "rendering": "rendering", "writing": "writing"}


@click.command("report")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="HTML file to write (default: the dump's name with .html).")
@click.option("--envelope", "envelope_path", type=click.Path(exists=True, dir_okay=False),
              help="Envelope TOML or compiled blob: another one overlays a what-if replay; "
                   "the recorded one places records when the dump lost its own.")
@click.option("--key", "key_path", type=click.Path(dir_okay=False),
              help="Device key file: also check checkpoint MACs and operator signatures.")
@click.option("--block-size", type=int, default=None,
              help="Sector size of a raw image (default: read from its first header).")
def report_cmd(path: str, output: str | None, envelope_path: str | None,
               key_path: str | None, block_size: int | None) -> None:
    """Write a self-contained HTML incident report of the dump at PATH: verify result,
    counts, per-channel plots inside the limits in force, incidents, a timeline, and the
    record behind every marker. Opens offline in any current browser."""
    from edgegov.report import ReportError, write_report

    out = _output(path, output)
    key = _key(key_path)
    big = Path(path).stat().st_size >= PROGRESS_FROM_BYTES
    try:
        with _progress(big) as tell:
            written = write_report(path, out, envelope_path, key=key, block_size=block_size,
                                   progress=tell)
    except ReportError as err:
        click.echo(f"edgegov lineage report: {err}", err=True)
        sys.exit(EXIT_ERROR)
    click.echo(f"report: {written.resolve()} ({written.stat().st_size // 1024} KiB)")


def _output(path: str, output: str | None) -> Path:
    if output:
        return Path(output)
    out = Path(path).with_suffix(".html")
    return out if out != Path(path) else Path(path + ".html")


def _key(key_path: str | None) -> bytes | None:
    if key_path is None:
        return None
    from edgegov.operator import KeyFileError, load_key

    try:
        return load_key(key_path)
    except KeyFileError as err:
        click.echo(str(err), err=True)
        sys.exit(EXIT_ERROR)


@contextmanager
def _progress(show: bool):
    """A ``progress(stage, done, total)`` callback drawing a rich bar on stderr."""
    if not show:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("report", total=None)

        def tell(stage: str, done: int, total: int | None) -> None:
            bar.update(task, description=STAGES.get(stage, stage), completed=done, total=total)

        yield tell


@click.command("report")
@click.option("--size", "sizes", multiple=True, type=click.Choice(["1MB", "16MB"]),
              help="Lineage sizes to measure (default: both).")
@click.option("--keep", "keep", type=click.Path(file_okay=False),
              help="Directory to keep (and reuse) the lineages and reports in.")
@click.option("--no-browser", is_flag=True, help="Skip the Chromium timings.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write figures here.")
def bench_report(sizes: tuple[str, ...], keep: str | None, no_browser: bool,
                 json_path: str | None) -> None:
    """Incident report of 1 MB and 16 MB lineages: page size (by part), build time by
    stage, and in headless Chromium with the network off: time to first paint, to the
    first plot and until everything is drawn."""
    import json
    import tempfile

    from edgegov.report import bench

    names = list(sizes) or list(bench.LINEAGES)

    def tell(text: str) -> None:
        click.echo(text, err=True)

    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        figures = bench.run(names, Path(keep), not no_browser, tell)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            figures = bench.run(names, Path(tmp), not no_browser, tell)
    click.echo("edgegov bench report")
    for line in bench.lines(figures):
        click.echo(line)
    if json_path:
        Path(json_path).write_text(json.dumps(figures, indent=2) + "\n")
