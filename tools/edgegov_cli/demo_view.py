"""Terminal view of ``edgegov demo``: live progress, then what the governor did."""

from __future__ import annotations

from pathlib import Path

from edgegov import names
from edgegov.config.compile import compile_file
from edgegov.config.problems import EnvelopeConfigError
from edgegov.demo import (
    SCRIPT,
    VERDICT_ORDER,
    check_lineage,
    default_envelope,
    print_summary,
    run_scenario,
    write_demo_key,
)
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn


def run_demo(seconds: int, seed: int, envelope_path: str | None, out_dir: str = ".") -> int:
    console = Console()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lineage_path = out / "edgegov-demo.lineage"
    key_file = write_demo_key(out)
    try:
        compiled = compile_file(envelope_path) if envelope_path else default_envelope()
    except EnvelopeConfigError as err:
        for problem in err.problems:
            console.print(f"[red]{problem}[/red]")
        return 1
    console.print(f"[bold]edgegov demo[/bold]: device {compiled.admitted.device_id}, "
                  f"envelope {compiled.hash[:16]}, {seconds} s of scenario time, seed {seed}")
    for m in SCRIPT:
        if m.at_ms < seconds * 1000:
            console.print(f"  at {m.at_ms / 1000:5.1f} s the scenario {m.note}")
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[v]}"),
                  TimeElapsedColumn(), console=console, transient=True) as progress:
        task = progress.add_task("governing", total=seconds * 1000, v="")
        counts = {}

        def observe(event, now_ms, d):
            if event is not None and event.kind == 1:
                counts[names.verdict(d.verdict)] = counts.get(names.verdict(d.verdict), 0) + 1
            if now_ms % 100 == 0:
                text = " ".join(f"{k}={counts.get(k, 0)}" for k in VERDICT_ORDER)
                progress.update(task, completed=now_ms, v=f"{names.state(d.state)} {text}")

        result = run_scenario(compiled, seconds, seed, observe, lineage_path=lineage_path)
        text = " ".join(f"{k}={counts.get(k, 0)}" for k in VERDICT_ORDER)
        progress.update(task, completed=seconds * 1000, v=f"{result.final_state} {text}")
    _summary(console, result)
    console.print(f"device key: {key_file.resolve()} (demo key, mode 600)")
    return check_lineage(console, lineage_path)


def _summary(console: Console, result) -> None:
    print_summary(console, result.command_verdicts,
                  [(note.now_ms / 1000, note.text, note.key) for note in result.notable])
    console.print(f"{result.calls} governor calls; final state {result.final_state}")
