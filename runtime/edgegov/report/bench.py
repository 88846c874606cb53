"""How long a report of a long dump takes, and how big it is: a command that prints figures.

    python -m edgegov.report.bench [--records 1000000] [--keep DIR] [--browser]

Generates a lineage of ``--records`` records with the real governor (``sample.generate``:
the demo's cell and script, repeated), builds its report stage by stage and prints the
time of each stage, the page's size and how many records it plots. ``--browser`` also
opens the page in headless Chromium (Playwright, the dev extra) and prints the time until
it is drawn and of one zoom. Figures, not assertions.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from ..demo import default_envelope
from . import write_report
from .sample import generate

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


def run(records: int, out_dir: Path, browser: bool) -> dict:
    lineage = out_dir / "bench.lineage"
    html = out_dir / "bench.html"
    t0 = time.perf_counter()
    appended = generate(lineage, default_envelope(), records)
    figures = {"records": appended, "lineage_bytes": lineage.stat().st_size,
               "generate_s": round(time.perf_counter() - t0, 2)}
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
                   html_bytes=html.stat().st_size)
    if browser:
        figures.update(_browser(html))
    return figures


def _browser(html: Path) -> dict:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = b.new_page(viewport={"width": 1500, "height": 1000})
        t0 = time.perf_counter()
        page.goto(html.as_uri(), wait_until="commit")
        page.wait_for_function("document.body && document.body.dataset.ready",
                               timeout=600_000, polling=100)
        ready = time.perf_counter() - t0
        t0 = time.perf_counter()
        page.evaluate("""() => Plotly.relayout(window.edgegovReport.plots[0],
                         {'xaxis.range': [100, 160]})""")
        page.wait_for_timeout(50)
        page.evaluate("1")  # returns once the page's main thread is free again
        zoom = time.perf_counter() - t0
        plotted = page.evaluate("window.edgegovReport.data.rows.x.length")
        b.close()
    return {"browser_ready_s": round(ready, 2), "browser_zoom_s": round(zoom, 2),
            "plotted_records": plotted}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--keep", type=Path, help="Directory to keep the lineage and report in.")
    ap.add_argument("--browser", action="store_true", help="Also time it in Chromium.")
    args = ap.parse_args(argv)
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        figures = run(args.records, args.keep, args.browser)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            figures = run(args.records, Path(tmp), args.browser)
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
