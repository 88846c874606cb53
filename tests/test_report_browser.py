"""The incident report opened in headless Chromium (Debian's ``chromium``, driven by
Playwright for Python through ``executable_path``; no browser download): the plots are
drawn, the header's counts are those of ``lineage decode``, a trip marker sits where the
lineage has a trip, a click shows the record, and the page asks the network for nothing.
A screenshot of each page is written as a test artifact (pytest's tmp dir, copied to
``out/test-artifacts/``, which git ignores)."""

from __future__ import annotations

import os
import shutil
from collections import Counter
from pathlib import Path

import pytest
from test_report import (
    VERDICTS,
    decoded,
    flip_a_bit,
    make_demo_lineage,
    make_tight_envelope,
    report,
)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# As the machine notes say: no background networking, a fresh profile (Playwright makes
# a temporary one for every launch).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parent.parent / "out" / "test-artifacts"


@pytest.fixture(scope="module")
def demo_lineage(tmp_path_factory) -> Path:
    return make_demo_lineage(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="module")
def demo_report(demo_lineage, tmp_path_factory) -> Path:
    return report_of(demo_lineage, tmp_path_factory.mktemp("report") / "incident.html")


def report_of(lineage: Path, out: Path, *extra) -> Path:
    report(lineage, out, *extra)
    return out


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        message = "Debian chromium is not installed (tools/setup-system.sh installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


class Opened:
    """A report open in a page, with every request and script error it caused."""

    def __init__(self, browser, html: Path):
        self.url = html.resolve().as_uri()
        self.page = browser.new_page(viewport={"width": 1500, "height": 1000})
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(self.url)
        self.page.wait_for_function("document.body.dataset.ready", timeout=60_000)

    def foreign_requests(self) -> list[str]:
        return [u for u in self.requests if u != self.url]

    def screenshot(self, tmp_path: Path, name: str) -> Path:
        shot = tmp_path / name
        self.page.screenshot(path=str(shot), full_page=True)
        try:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, ARTIFACTS / name)
        except OSError:
            pass  # the tmp-dir copy is the artifact; the repo copy is a convenience
        return shot

    def traces(self, div: str, name: str) -> dict:
        """x of the trace ``name`` in plot ``div`` and how many of its points are drawn."""
        return self.page.evaluate(
            """([div, name]) => {
                const gd = document.getElementById(div);
                const t = gd.data.find((d) => d.name === name);
                const g = [...gd.querySelectorAll('g.trace')].find(
                    (el) => el.__data__ && el.__data__[0] && el.__data__[0].trace.name === name);
                return t ? { x: t.x, drawn: g ? g.querySelectorAll('path.point').length : 0 }
                         : null;
            }""", [div, name])


@pytest.fixture(scope="module")
def opened_demo(browser, demo_report):
    opened = Opened(browser, demo_report)
    yield opened
    opened.page.close()


def test_the_page_asks_the_network_for_nothing(opened_demo):
    assert opened_demo.requests[0] == opened_demo.url
    assert opened_demo.foreign_requests() == []
    assert opened_demo.errors == []
    assert opened_demo.page.evaluate("document.body.dataset.ready") == "1"


def test_every_channel_has_a_drawn_plot(opened_demo, demo_lineage, tmp_path):
    page = opened_demo.page
    channels = page.eval_on_selector_all("div.plot.channel",
                                          "els => els.map(e => e.dataset.channel)")
    assert sorted(channels) == sorted(decoded(demo_lineage)[0]["outputs"])
    for c in range(len(channels)):
        drawn = page.evaluate(f"""() => {{
            const gd = document.getElementById('plot-{c}');
            const lines = [...gd.querySelectorAll('.scatterlayer path.js-line')];
            return {{ svg: gd.querySelectorAll('svg.main-svg').length,
                     longest: Math.max(0, ...lines.map(p => (p.getAttribute('d') || '').length)),
                     output: gd.data.find(d => d.name === 'output').x.length }};
        }}""")
        assert drawn["svg"] >= 1 and drawn["output"] > 100
        assert drawn["longest"] > 1000, "the output line was drawn"
    assert opened_demo.traces("plot-timeline", "trip")["drawn"] == 3
    opened_demo.screenshot(tmp_path, "incident-report.png")


def test_header_counts_in_the_page_match_lineage_decode(opened_demo, demo_lineage):
    rows = decoded(demo_lineage)
    cells = opened_demo.page.eval_on_selector_all(
        "[data-count]", "els => els.map(e => [e.dataset.count, +e.textContent])")
    counts = dict(cells)
    for kind in ("decision", "event"):
        want = Counter(r["verdict"] for r in rows if r["kind"] == kind)
        assert {v: counts[f"{kind}:{v}"] for v in VERDICTS} == {v: want[v] for v in VERDICTS}
    assert counts["records"] == len(rows)


def test_a_trip_marker_sits_where_the_lineage_has_a_trip(opened_demo, demo_lineage):
    trips = [r["t_ms"] / 1000 for r in decoded(demo_lineage)
             if any(e["event"] == "trip" for e in r.get("events", []))]
    assert len(trips) == 3
    for c in range(3):
        marker = opened_demo.traces(f"plot-{c}", "trip")
        assert marker["x"] == trips
        assert marker["drawn"] == len(trips)


def test_clicking_a_trip_marker_shows_its_record(opened_demo):
    page = opened_demo.page
    point = page.evaluate_handle("""() => {
        const gd = document.getElementById('plot-timeline');
        const g = [...gd.querySelectorAll('g.trace')].find(
            (el) => el.__data__ && el.__data__[0] && el.__data__[0].trace.name === 'trip');
        return g.querySelector('path.point');
    }""").as_element()
    point.scroll_into_view_if_needed()
    box = point.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_function("document.getElementById('record').textContent.includes('trip')")
    shown = page.text_content("#record")
    assert '"event": "trip"' in shown and '"verdict": "TRIP"' in shown


def test_a_damaged_dump_still_renders_and_says_what_is_wrong(browser, demo_lineage, tmp_path):
    path, seq, offset = flip_a_bit(demo_lineage, tmp_path)
    opened = Opened(browser, report_of(path, tmp_path / "flipped.html"))
    try:
        assert opened.errors == [] and opened.foreign_requests() == []
        assert opened.page.text_content("#badge-verify") == "verify: FAILED"
        assert f"seq {seq}, offset {offset}" in opened.page.text_content("#integrity")
        assert opened.page.locator("div.plot.channel svg.main-svg").count() >= 3
        opened.screenshot(tmp_path, "incident-report-flipped.png")
    finally:
        opened.page.close()


def test_the_what_if_overlay_is_drawn(browser, demo_lineage, tmp_path):
    tight = make_tight_envelope(tmp_path)
    opened = Opened(browser, report_of(demo_lineage, tmp_path / "whatif.html", "--envelope",
                                       tight))
    try:
        assert opened.errors == [] and opened.foreign_requests() == []
        spindle = opened.page.eval_on_selector_all(
            "div.plot.channel", "els => els.findIndex(e => e.dataset.channel === 'spindle')")
        overlay = opened.traces(f"plot-{spindle}", "what-if output")
        assert overlay and overlay["drawn"] > 0
        assert opened.traces(f"plot-{spindle}", "what-if max")["x"]
        assert "would differ" in opened.page.text_content("#what-if-summary")
        opened.screenshot(tmp_path, "incident-report-whatif.png")
    finally:
        opened.page.close()
