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


# --------------------------------------------------------------------------- the incident view


def plot_ids(page) -> list[str]:
    return page.eval_on_selector_all(".js-plotly-plot", "els => els.map(e => e.id)")


@pytest.mark.parametrize("width", [1280, 1920])
def test_legends_do_not_collide_with_the_plot_toolbar(browser, demo_report, tmp_path, width):
    page = browser.new_page(viewport={"width": width, "height": 900})
    try:
        page.goto(demo_report.resolve().as_uri())
        page.wait_for_function("document.body.dataset.ready", timeout=60_000)
        checked = 0
        for ident in plot_ids(page):
            div = page.locator(f"#{ident}")
            div.scroll_into_view_if_needed()
            div.hover()  # the toolbar shows on hover
            boxes = page.evaluate("""(id) => {
                const gd = document.getElementById(id);
                const box = (el) => { if (!el) return null; const r = el.getBoundingClientRect();
                    return r.width && r.height ? [r.left, r.top, r.right, r.bottom] : null; };
                return { legend: box(gd.querySelector('g.legend')),
                         modebar: box(gd.querySelector('.modebar')),
                         plot: box(gd) };
            }""", ident)
            assert boxes["modebar"], f"{ident}: the toolbar is drawn"
            if boxes["legend"] is None:
                continue  # (the timeline has no legend)
            lg, mb = boxes["legend"], boxes["modebar"]
            overlap = lg[0] < mb[2] and mb[0] < lg[2] and lg[1] < mb[3] and mb[1] < lg[3]
            assert not overlap, f"{ident} at {width} px: legend {lg} under toolbar {mb}"
            assert boxes["plot"][0] <= lg[0] and lg[2] <= boxes["plot"][2] + 1
            checked += 1
        assert checked >= 3 + 3 + 1  # channels, inputs, operator lane
        shot = tmp_path / f"incident-report-{width}.png"
        page.screenshot(path=str(shot), full_page=True)
        try:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, ARTIFACTS / shot.name)
        except OSError:
            pass
    finally:
        page.close()


def test_the_inputs_lane_draws_every_input_change(opened_demo, demo_lineage):
    rows = decoded(demo_lineage)
    telemetry = [r for r in rows if (r.get("input") or {}).get("type") == "telemetry"]
    page = opened_demo.page
    lanes = page.eval_on_selector_all("div.plot.input", "els => els.map(e => e.dataset.input)")
    assert sorted(lanes) == sorted(telemetry[0]["input"]["values"])
    for k, name in enumerate(lanes):
        changes, last = [], object()
        for r in telemetry:
            v = r["input"]["values"][name]
            if v != last:
                changes.append((r["t_ms"] / 1000, int(v) if isinstance(v, bool) else v))
                last = v
        trace = page.evaluate("""([k, name]) => {
            const gd = document.getElementById('plot-input-' + k);
            const t = gd.data.find((d) => d.name === name);
            const path = [...gd.querySelectorAll('.scatterlayer path.js-line')]
                .map((p) => (p.getAttribute('d') || '').length);
            return { x: t.x, y: t.y, drawn: Math.max(0, ...path) };
        }""", [k, name])
        # every change is a point of the drawn step line (plus the hold to the end)
        assert list(zip(trace["x"], trace["y"], strict=False))[: len(changes)] == changes
        assert trace["drawn"] > 10
    lane = page.evaluate("""() => {
        const gd = document.querySelector("div.plot.input[data-input='hydraulic_pressure']");
        return gd.data.map((d) => d.name); }""")
    assert "declared max 400 bar" in lane and "interlock low_pressure: lt 50.0 bar" in " ".join(
        lane).replace("lt 50 bar", "lt 50.0 bar")


def test_zooming_to_an_incident_shows_its_narrative_beside_the_plots(opened_demo, demo_lineage):
    from edgegov.names import reason
    from test_report import incidents_by_definition

    rows = decoded(demo_lineage)
    expected = incidents_by_definition(rows)
    page = opened_demo.page
    buttons = page.locator("#incidents button[data-incident]")
    assert buttons.count() == len(expected) == page.locator("details.story").count()
    assert int(page.get_attribute("#badge-trips", "data-incidents")) == len(expected)
    causes = page.eval_on_selector_all("#cause-counts td.n",
                                        "els => els.map(e => [e.dataset.cause, +e.textContent])")
    assert dict(causes) == dict(Counter(reason(c) for c in expected))  # codes → words
    for n in range(1, len(expected) + 1):
        page.locator(f"#incidents button[data-incident='{n}']").click()
        page.wait_for_function(f"document.getElementById('record-title').textContent"
                               f" === 'Incident {n}'")
        aside = page.text_content("#record")
        assert "Lead-up" in aside and "TRIP:" in aside and "End" in aside
        story = page.text_content(f"#narrative-{n}")
        assert aside in story.replace(f"Incident {n}", "", 1) or aside.strip() in story
        rng = page.evaluate("document.getElementById('plot-0').layout.xaxis.range")
        trip = page.evaluate(f"window.edgegovReport.data.incidents[{n - 1}].xt")
        assert rng[0] <= trip <= rng[1]
    opened_demo.page.locator("#zoom-reset").click()


def test_the_operator_lane_has_every_operator_action(opened_demo, demo_lineage):
    ops = [r for r in decoded(demo_lineage) if (r.get("input") or {}).get("type") == "operator"]
    drawn = opened_demo.page.evaluate("""() => {
        const gd = document.getElementById('plot-operator');
        const out = {};
        for (const t of gd.data) if (t.meta === 'operator') out[t.name] = t.customdata;
        return out; }""")
    refused = {r["seq"] for r in ops if any(e["event"].endswith("_refused")
                                            for e in r["events"])}
    assert sorted(sum(drawn.values(), [])) == sorted(r["seq"] for r in ops)
    assert set(drawn.get("refused", [])) == refused
    assert opened_demo.page.locator("#operator-actions tr.refused").count() == len(refused)


def test_every_plot_shares_one_time_axis(opened_demo):
    """Channels, inputs, operator lane and timeline show the same window, zoomed or not."""
    page = opened_demo.page

    def ranges():
        return page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')]
            .map((g) => g.layout.xaxis.range.map((v) => +(+v).toFixed(3)))""")

    whole = ranges()
    assert len(whole) >= 8 and all(r == whole[0] for r in whole)
    page.evaluate("Plotly.relayout(document.getElementById('plot-input-2'), "
                  "{'xaxis.range': [9.5, 11]})")
    page.wait_for_function("""() => [...document.querySelectorAll('.js-plotly-plot')]
        .every((g) => Math.abs(g.layout.xaxis.range[0] - 9.5) < 1e-6)""")
    page.locator("#zoom-reset").click()
    page.wait_for_function("""(r) => [...document.querySelectorAll('.js-plotly-plot')]
        .every((g) => Math.abs(g.layout.xaxis.range[0] - r) < 1e-3)""", arg=whole[0][0])
    assert ranges() == whole
