"""How big an incident report is, how long it takes to build and to paint: figures, not
assertions (``edgegov bench report``; also ``python -m edgegov.report.bench``).

The lineages are real: the governor deciding the demo's cell and script, repeated
(``sample.generate``), in rings of 1 MiB and 16 MiB (the 16 MiB one with two boots and wall
time, as a gateway with a set clock records it). Per lineage it prints the lineage's size
and record count, the build time of its report stage by stage, the page's size and what of
it is the plotly bundle, the data and the page's text, and, with ``--browser``, the time
to first paint, to the first plot and to a fully drawn page in headless Chromium with the
network off.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import time
from pathlib import Path

from .. import _accel
from ..demo import default_envelope
from . import write_report
from .sample import generate

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-quic", "--no-first-run",
                 "--disable-component-update", "--disable-sync"]
WALL_START_MS = 1_796_000_000_000  # 2026-11-30, the wall time of the 16 MiB lineage's boot
# name → (records to write, ring sectors of 4 KiB, boots, wall time)
LINEAGES = {
    "1MB": (40_000, 256, 1, None),
    "16MB": (640_000, 4096, 2, WALL_START_MS),
}


def make_lineage(name: str, directory: Path) -> Path:
    """The named bench lineage in ``directory`` (kept and reused when already there)."""
    records, blocks, boots, wall = LINEAGES[name]
    path = directory / f"bench-{name}.lineage"
    if not path.exists():
        tmp = path.with_suffix(".partial")
        generate(tmp, default_envelope(), records, boots=boots, block_count=blocks,
                 wall_ms=wall)
        tmp.replace(path)
    return path


def measure(lineage: Path, html: Path, browser: bool) -> dict:
    from ..host.lineage_store import read_dump

    dump = read_dump(lineage)
    figures = {"lineage": lineage.name, "lineage_bytes": lineage.stat().st_size,
               "records": len(dump.records),
               "record_bytes": sum(len(p) for _, p in dump.records)}
    stages: dict[str, float] = {}
    clock = {"stage": None, "at": time.perf_counter()}

    def tell(stage, done, total):
        if stage != clock["stage"]:
            now = time.perf_counter()
            if clock["stage"] is not None:
                stages[clock["stage"]] = round(now - clock["at"], 2)
            clock.update(stage=stage, at=now)

    t0 = time.perf_counter()
    write_report(lineage, html, progress=tell)
    tell("done", 0, None)
    figures.update(build_s=round(time.perf_counter() - t0, 2), stages_s=stages,
                   html_bytes=html.stat().st_size, parts_bytes=page_parts(html))
    figures["replay_only_s"] = replay_only(dump)
    figures["load_avg_1min"] = round(os.getloadavg()[0], 1)  # the machine is shared
    figures["decode_pass"] = _accel.summary()  # compiled, or run as source
    figures["build_over_replay"] = round(figures["build_s"] / figures["replay_only_s"], 2)
    if browser:
        figures.update(paint(html))
    return figures


def replay_only(dump) -> float:
    """Seconds ``lineage replay`` needs for the same records (the core's replay alone), so
    the report's own cost reads as a ratio measured in the same run."""
    from ..core.replay import Replayer

    t0 = time.perf_counter()
    Replayer(dump.envelopes()).run(dump.records)
    return round(time.perf_counter() - t0, 2)


def page_parts(html: Path) -> dict:
    """Bytes of the page by part: the packed plotly bundle, the data, the records, the
    page's own script and the rest (text and tables)."""
    text = html.read_text(encoding="utf-8")
    parts = {}
    for ident in ("report-plotly", "report-data", "report-records"):
        m = re.search(rf"<script type='application/octet-stream' id='{ident}'>([^<]*)</script>",
                      text)
        parts[ident.removeprefix("report-")] = len(m.group(1)) if m else 0
    scripts = sum(len(m) for m in re.findall(r"<script>(.*?)</script>", text, re.S))
    parts["script"] = scripts
    parts["text"] = len(text.encode()) - sum(parts.values())
    return parts


def paint(html: Path, width: int = 1500) -> dict:
    """Times in headless Chromium, network off: first contentful paint, first plot drawn,
    everything drawn (``document.body.dataset.ready``)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = b.new_context(offline=True, viewport={"width": width, "height": 1000})
        page = context.new_page()
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        t0 = time.perf_counter()
        page.goto(html.as_uri(), wait_until="commit")
        page.wait_for_function("document.body && document.body.dataset.ready",
                               timeout=600_000, polling=50)
        ready = time.perf_counter() - t0
        fcp = page.evaluate("""() => {
            const e = performance.getEntriesByName('first-contentful-paint')[0];
            return e ? e.startTime : null; }""")
        timings = page.evaluate("window.edgegovReport.timings")
        plotted = page.evaluate("window.edgegovReport.data.rows.x.length")
        state = page.evaluate("document.body.dataset.ready")
        b.close()
    first_plot = timings.get("first_plot_ms")
    return {"browser_first_paint_s": round(fcp / 1000, 2) if fcp is not None else None,
            "browser_first_plot_s": round((timings["start_ms"] + first_plot) / 1000, 2)
            if first_plot is not None else None,
            "browser_ready_s": round(ready, 2), "browser_state": state,
            "plotted_records": plotted,
            "foreign_requests": [u for u in requests if u != html.as_uri()]}


def run(names: list[str], directory: Path, browser: bool, progress=None) -> list[dict]:
    out = []
    for name in names:
        if progress:
            progress(f"generating the {name} lineage in {directory}")
        lineage = make_lineage(name, directory)
        if progress:
            progress(f"building and opening the report of {lineage.name}")
        out.append(measure(lineage, directory / f"bench-{name}.html", browser))
    return out


GOALS = {"1MB": {"html_bytes": 1_500_000}, "16MB": {"build_s": 10.0,
                                                    "browser_first_plot_s": 3.0}}


def lines(figures: list[dict]) -> list[str]:
    """The figures as lines for people."""
    out = []
    for f in figures:
        name = f["lineage"].removeprefix("bench-").removesuffix(".lineage")
        p = f["parts_bytes"]
        out.append(f"{name}: lineage {f['lineage_bytes'] / 1e6:.2f} MB ({f['records']} records, "
                   f"{f['record_bytes'] / 1e6:.2f} MB of them) → report "
                   f"{f['html_bytes'] / 1e6:.2f} MB (plotly packed {p['plotly'] / 1e6:.2f}, "
                   f"data {p['data'] / 1e6:.3f}, records {p['records'] / 1e6:.3f}, script "
                   f"{p['script'] / 1e6:.3f}, text {p['text'] / 1e6:.3f}) in {f['build_s']} s "
                   f"({', '.join(f'{k} {v}' for k, v in f['stages_s'].items())}); the "
                   f"replay alone {f['replay_only_s']} s (build/replay "
                   f"{f['build_over_replay']}; load average {f['load_avg_1min']}; "
                   f"{f['decode_pass']})")
        if "browser_ready_s" in f:
            out.append(f"  Chromium offline: first paint {f['browser_first_paint_s']} s, first "
                       f"plot {f['browser_first_plot_s']} s, all drawn {f['browser_ready_s']} s "
                       f"({f['plotted_records']} records plotted; "
                       f"{len(f['foreign_requests'])} network requests)")
        for key, goal in GOALS.get(name, {}).items():
            got = f.get(key)
            if got is not None:
                out.append(f"  goal {key} ≤ {goal}: {got} ({'met' if got <= goal else 'MISSED'})")
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", action="append", choices=sorted(LINEAGES))
    ap.add_argument("--keep", type=Path, help="Directory to keep the lineages and reports in.")
    ap.add_argument("--no-browser", action="store_true", help="Skip the Chromium timings.")
    args = ap.parse_args(argv)
    names = args.size or list(LINEAGES)
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        figures = run(names, args.keep, not args.no_browser)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            figures = run(names, Path(tmp), not args.no_browser)
    print("\n".join(lines(figures)))
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
