"""`edgegov lineage report` on lineages the governor wrote: what the page says and holds.

The page's plots are checked in a browser by ``test_report_browser.py``; here the header
(read from the HTML) and the packed plot data (unpacked as the page's script does) are
compared with what ``edgegov lineage decode|verify|replay`` say about the same dump.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from edgegov.core import cbor
from edgegov.core.blockdev import RamBlockDevice
from edgegov.core.ring import RingLog
from edgegov.demo import EXAMPLE, default_envelope, run_scenario
from edgegov.host.lineage_read import decode_dump
from edgegov.host.lineage_store import read_dump
from edgegov.report import ReportError, write_report
from edgegov.report.collect import Collector, channels_of, rule_channels
from edgegov.report.decimate import Decimator
from edgegov.report.pack import undelta, unrecords
from edgegov.report.sample import generate

EDGEGOV = [sys.executable, "-m", "edgegov_cli.main"]
VERDICTS = ("ALLOW", "CLAMP", "REJECT", "ESCALATE", "HOLD", "TRIP")


def edgegov(*args, check=None):
    proc = subprocess.run(EDGEGOV + [str(a) for a in args], capture_output=True, text=True,
                          timeout=300)
    if check is not None:
        assert proc.returncode == check, proc.stdout + proc.stderr
    return proc


def report(dump: Path, out: Path, *extra) -> str:
    proc = edgegov("lineage", "report", dump, "-o", out, *extra, check=0)
    assert str(out.resolve()) in proc.stdout
    return out.read_text()


def packed(html: str, ident: str = "report-data"):
    """The page's packed data as it travels (base64 → gunzip → JSON)."""
    m = re.search(rf"<script type='application/octet-stream' id='{ident}'>([^<]*)</script>",
                  html)
    assert m, f"no {ident} payload in the page"
    return json.loads(gzip.decompress(base64.b64decode(m.group(1))))


def page_data(html: str, ident: str = "report-data"):
    """The page's data decoded as its script does: times in seconds (device time) or ms
    (wall time), delta-encoded columns summed up, scaled values divided back; for
    ``report-records``, the plotted records rebuilt."""
    data = packed(html, ident)
    if ident == "report-records":
        return unrecords(data, data["strings"])
    wall = data["time"]["wall"]

    def ax(v):
        return v if v is None or wall else v / 1000

    def times(col):
        return [ax(v) for v in undelta(col)]

    def dec(col):
        if "raw" in col:
            return col["raw"]
        return [None if k is None else (k / 10 ** col["d"] if col["d"] else k)
                for k in undelta(col["v"])]

    rows = data["rows"]
    rows["x"], rows["seq"] = times(rows["t"]), undelta(rows["seq"])
    rows["out"], rows["prop"] = [dec(c) for c in rows["out"]], [dec(c) for c in rows["prop"]]
    for per in data["markers"]:
        for m in per.values():
            m["i"], m["y"] = undelta(m["i"]), dec(m["y"])
    data["timeline"]["i"] = undelta(data["timeline"]["i"])
    for inc in data["incidents"]:
        for k in ("x0", "xt", "x1"):
            inc[k] = ax(inc[k])
    for line in data["lines"]:
        line["x"] = ax(line["x"])
    w = data["whatif"]
    for b in (data["bounds"] or []) + (w["bounds"] if w else []):
        b["x"] = [ax(v) for v in b["x"]]
    if w:
        w["x"], w["seq"], w["out"] = times(w["t"]), undelta(w["seq"]), [dec(c) for c in w["out"]]
    for inp in data["inputs"]:
        inp["x"], inp["v"] = times(inp["t"]), dec(inp["v"])
        inp["stale"] = [[ax(a), ax(b)] for a, b in inp["stale"]]
    data["operator"]["x"] = times(data["operator"]["t"])
    return data


def header_counts(html: str) -> dict[str, int]:
    return {k: int(v) for k, v in re.findall(r"data-count='([^']+)'>(\d+)<", html)}


def decoded(dump: Path) -> list[dict]:
    out = edgegov("lineage", "decode", dump, check=0).stdout
    return [json.loads(line) for line in out.splitlines()]


# --------------------------------------------------------------------------- lineages
# Builders shared with test_report_browser.py (each module has its own fixtures).


def make_demo_lineage(directory: Path) -> Path:
    """The built-in scenario (20 s: clamps, rejects, escalations, an interlock trip, a
    link-loss trip and an e-stop trip), recorded by the governor."""
    path = directory / "cell.lineage"
    run_scenario(default_envelope(), 20, 7, None, lineage_path=path)
    return path


def make_tight_envelope(directory: Path) -> Path:
    """The cell's envelope with the spindle limited to 3000 rpm: a what-if."""
    path = directory / "tight.toml"
    path.write_text(EXAMPLE.read_text().replace("max = 8000", "max = 3000", 1))
    return path


def flip_a_bit(lineage: Path, directory: Path) -> tuple[Path, int, int]:
    """The lineage with one bit flipped inside record 1000 (a bad flash cell); returns
    (path, seq, byte offset of that record)."""
    dump = read_dump(lineage)
    seq, _ = dump.records[1000]
    offset = dump.offsets[seq]
    image = bytearray(lineage.read_bytes())
    image[offset + 8] ^= 0x10
    path = directory / "flipped.lineage"
    path.write_bytes(bytes(image))
    return path, seq, offset


@pytest.fixture(scope="module")
def demo_lineage(tmp_path_factory) -> Path:
    return make_demo_lineage(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="module")
def demo_report(demo_lineage, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "incident.html"
    report(demo_lineage, out)
    return out


@pytest.fixture(scope="module")
def tight_envelope(tmp_path_factory) -> Path:
    return make_tight_envelope(tmp_path_factory.mktemp("env"))


@pytest.fixture(scope="module")
def whatif_report(demo_lineage, tight_envelope, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("whatif") / "whatif.html"
    report(demo_lineage, out, "--envelope", tight_envelope)
    return out


@pytest.fixture(scope="module")
def flipped_lineage(demo_lineage, tmp_path_factory) -> tuple[Path, int, int]:
    return flip_a_bit(demo_lineage, tmp_path_factory.mktemp("flip"))


# --------------------------------------------------------------------------- the header


def test_header_counts_match_lineage_decode(demo_lineage, demo_report):
    rows = decoded(demo_lineage)
    counts = header_counts(demo_report.read_text())
    for kind in ("decision", "event"):
        by_verdict = Counter(r["verdict"] for r in rows if r["kind"] == kind)
        for v in VERDICTS:
            assert counts[f"{kind}:{v}"] == by_verdict.get(v, 0), (kind, v)
    assert counts["records"] == len(rows)
    for kind, n in Counter(r["kind"] for r in rows).items():
        assert counts[f"kind:{kind}"] == n


def test_header_names_device_firmware_envelope_boots_and_integrity(demo_lineage, demo_report):
    html = demo_report.read_text()
    boot = decoded(demo_lineage)[0]
    assert boot["kind"] == "boot"
    assert f"device {boot['device']}" in html
    assert boot["envelope"] in html and boot["firmware"] in html
    assert "verify: OK" in html and "replay: identical" in html
    assert "3 incident(s)" in html
    assert re.search(r"<th>Torn tail</th><td>none</td>", html)
    assert re.search(r"<th>Gaps</th><td>none</td>", html)
    assert "0.000 s – 20.000 s" in html


def test_every_trip_is_an_incident_with_its_cause(demo_lineage, demo_report):
    trips = [r for r in decoded(demo_lineage)
             if any(e["event"] == "trip" for e in r.get("events", []))]
    data = page_data(demo_report.read_text())
    assert [i["xt"] for i in data["incidents"]] == [r["t_ms"] / 1000 for r in trips]
    assert [i["cause"] for i in data["incidents"]] == ["interlock", "link_lost", "estop_input"]
    for inc in data["incidents"]:
        assert inc["x0"] < inc["xt"] <= inc["x1"]


def incidents_by_definition(rows: list[dict]) -> list[str]:
    """The README's definition, applied to `lineage decode` rows: a trip while not tripped
    opens an incident; an accepted reset or a boot ends it."""
    causes, tripped = [], False
    for r in rows:
        evs = [e["event"] for e in r.get("events", [])]
        if tripped and ("reset" in evs or r["kind"] == "boot"):
            tripped = False
        for e in r.get("events", []):
            if e["event"] == "trip" and not tripped:
                causes.append(e.get("cause") or e.get("reason") or e.get("arg"))
                tripped = True
    return causes


def test_badge_incident_table_and_cause_counts_agree_with_the_lineage(demo_lineage,
                                                                      demo_report):
    html = demo_report.read_text()
    expected = incidents_by_definition(decoded(demo_lineage))
    badge = int(re.search(r"data-incidents='(\d+)'", html).group(1))
    table = re.search(r"<table class='grid' id='incidents'>(.*?)</table>", html, re.S).group(1)
    assert badge == len(expected) == table.count("<tr>") - 1
    causes = {c: int(n) for c, n in re.findall(r"data-cause='([^']+)'>(\d+)<", html)}
    assert sum(causes.values()) == badge
    assert causes == dict(Counter(page_data(html)["incidents"][k]["cause"]
                                  for k in range(badge)))


def test_clamp_and_reject_are_broken_down_by_reason(demo_lineage, demo_report):
    rows = decoded(demo_lineage)
    want = Counter((r["verdict"], r.get("reason") or "?") for r in rows
                   if r.get("verdict") in ("CLAMP", "REJECT"))
    html = demo_report.read_text()
    got = {tuple(k.split(":", 1)): int(n)
           for k, n in re.findall(r"data-reason='([^']+)'>(\d+)<", html)}
    assert want and got == dict(want)


def test_every_record_is_plotted_and_clickable_in_a_small_dump(demo_lineage, demo_report):
    html = demo_report.read_text()
    rows = [r for r in decoded(demo_lineage) if r["kind"] != "envelope"]
    data = page_data(html)
    assert data["rows"]["seq"] == [r["seq"] for r in rows]
    # the record shown on click is the line `lineage decode` prints
    assert page_data(html, "report-records") == rows


# --------------------------------------------------------------------------- plots' data


def test_limits_in_force_follow_approvals_and_interlocks(demo_report):
    data = page_data(demo_report.read_text())
    spindle = [c["name"] for c in data["channels"]].index("spindle")
    his = set(data["bounds"][spindle]["hi"])
    # 8000 rpm normally, 10000 while an approval's permit runs, 0 while the door is open
    assert {8000, 10000, 0} <= his


def test_mode_change_moves_the_limits_in_force(tmp_path):
    dump = tmp_path / "modes.lineage"
    generate(dump, default_envelope(), 3500, mode_every_ms=15_000)
    rows = decoded(dump)
    mode = [r for r in rows if any(e["event"] == "mode" for e in r.get("events", []))]
    assert mode, "the operator changed mode"
    data = page_data(report(dump, tmp_path / "modes.html"))
    x_mode = mode[0]["t_ms"] / 1000
    assert any(ln["cat"] == "mode" and ln["x"] == x_mode for ln in data["lines"])
    spindle = [c["name"] for c in data["channels"]].index("spindle")
    b = data["bounds"][spindle]
    before = [hi for x, hi in zip(b["x"], b["hi"], strict=True) if x < x_mode and hi]
    after = [hi for x, hi in zip(b["x"], b["hi"], strict=True) if x >= x_mode and hi]
    assert max(before) == 10000 and 8000 in before  # mode run (and an approval)
    assert max(after) == 500  # mode setup: slow spindle


def test_refusals_are_marked_on_the_channels_they_concern(demo_lineage, demo_report):
    data = page_data(demo_report.read_text())
    names = [c["name"] for c in data["channels"]]
    marked = {names[c]: set(m) for c, m in enumerate(data["markers"])}
    assert "escalate" in marked["spindle"] and "escalate" not in marked["press"]
    assert {"clamp", "reject", "trip", "reset", "link"} <= marked["spindle"] | marked["press"]
    for c in range(len(names)):
        assert len(data["markers"][c]["trip"]["i"]) == 3


def test_what_if_overlay_matches_lineage_replay(demo_lineage, tight_envelope, whatif_report):
    proc = edgegov("lineage", "replay", demo_lineage, "--envelope", tight_envelope, check=1)
    n, compared = map(int, re.search(r"what-if: (\d+) of (\d+)", proc.stdout).groups())
    html = whatif_report.read_text()
    data = page_data(html)
    assert data["whatif"]["total"] == n > 0
    assert f"<b>{n}</b> of {compared} recorded decisions would differ" in html
    spindle = [c["name"] for c in data["channels"]].index("spindle")
    assert 3000 in data["whatif"]["bounds"][spindle]["hi"]
    assert any(v is not None for v in data["whatif"]["out"][spindle])


def test_thinning_keeps_every_record_that_mattered(demo_lineage):
    """With ALLOW records thinned, every other record is still plotted, and each thinned
    stretch keeps its extremes."""
    dump = read_dump(demo_lineage)
    envelopes = dump.envelopes()
    channels = [c[0] for c in channels_of(envelopes)]
    col = Collector(len(dump.records), channels, rule_channels(envelopes, channels),
                    decimator=Decimator(len(dump.records), buckets=30, keep_all_below=0))
    rows = list(decode_dump(dump, envelopes))
    for i, row in enumerate(rows):
        col.feed(i, row)
    kept = {it.seq for it in col.finish().rows}
    mattered = {r["seq"] for r in rows if r.get("verdict") not in (None, "ALLOW")
                or r.get("events")}
    allow = {r["seq"] for r in rows if r.get("verdict") == "ALLOW" and not r.get("events")}
    assert mattered <= kept
    assert 0 < len(kept & allow) < len(allow) / 4
    for ch in channels:
        values = [r["output"][ch] for r in rows if r.get("verdict") == "ALLOW"]
        shown = [r["output"][ch] for r in rows if r["seq"] in kept & allow]
        assert (min(shown), max(shown)) == (min(values), max(values))


def test_a_long_dump_is_thinned_for_display_but_keeps_every_refusal(tmp_path):
    dump = tmp_path / "long.lineage"
    generate(dump, default_envelope(), 60_000)
    html = write_report(dump, tmp_path / "long.html").read_text()
    data = page_data(html)
    rows = list(decode_dump(read_dump(dump)))
    mattered = {r["seq"] for r in rows if r.get("verdict") not in (None, "ALLOW")}
    plotted = set(data["rows"]["seq"])
    assert mattered <= plotted
    assert data["decimated"]["bucket"] > 1
    assert len(plotted) < len(rows) - len(rows) // 5
    assert "ALLOW records thinned per bucket" in html


# --------------------------------------------------------------------------- damage


def test_a_flipped_bit_is_reported_with_seq_and_offset(flipped_lineage, tmp_path):
    path, seq, offset = flipped_lineage
    html = report(path, tmp_path / "flipped.html")
    assert "verify: FAILED" in html
    assert f"record fails its check (seq {seq}, offset {offset})" in html
    assert re.search(rf"hole in the sequence: seq {seq - 1} is followed by seq \d+", html)
    data = page_data(html)
    assert data["rows"]["x"] and all(ln["cat"] != "hole" or ln["x"] for ln in data["lines"])


def test_a_truncated_dump_says_so(demo_lineage, tmp_path):
    dump = read_dump(demo_lineage)
    seq, _ = dump.records[len(dump.records) // 2]
    cut = tmp_path / "cut.lineage"
    cut.write_bytes(demo_lineage.read_bytes()[: dump.offsets[seq] + 5])  # mid-record
    html = report(cut, tmp_path / "cut.html")
    assert "truncated" in html and "not a whole number of 4096-byte sectors" in html
    assert "torn tail" in html
    data = page_data(html)
    assert max(data["rows"]["seq"]) == seq - 1  # everything before the cut is there


def test_a_forged_record_breaks_the_hash_chain_in_the_report(demo_lineage, tmp_path):
    forged = tmp_path / "forged.lineage"
    seq = _reframe_with_a_clamp_made_allow(demo_lineage, forged)
    html = report(forged, tmp_path / "forged.html")
    assert "verify: FAILED" in html and "hash chain broken" in html
    assert "replay: diverges" in html and f"first at seq {seq}" in html


def test_a_dump_that_lost_its_envelope_record_asks_for_it(demo_lineage, tmp_path):
    dump = read_dump(demo_lineage)
    seq = next(s for s, p in dump.records if p[1] == 6)  # the ENVELOPE record
    image = bytearray(demo_lineage.read_bytes())
    image[dump.offsets[seq] + 20] ^= 0x01
    broken = tmp_path / "noenv.lineage"
    broken.write_bytes(bytes(image))
    html = report(broken, tmp_path / "noenv.html")
    assert "no envelope record survives" in html and "--envelope" in html
    assert "No channel" in html
    html = report(broken, tmp_path / "withenv.html", "--envelope", EXAMPLE)
    assert "records whose envelope hash matches" in html
    data = page_data(html)
    assert data["rows"]["x"]  # placed with the envelope given
    units = {k["name"]: k["unit"] for k in data["inputs"]}
    assert units["hydraulic_pressure"] == "bar"  # from the envelope given


@pytest.mark.parametrize("content", [b"", b"not a lineage at all\n" * 300, bytes(8192)])
def test_unreadable_input_is_a_clear_error_and_no_report(tmp_path, content):
    bad = tmp_path / "bad.lineage"
    bad.write_bytes(content)
    out = tmp_path / "bad.html"
    proc = edgegov("lineage", "report", bad, "-o", out, check=2)
    assert "not a lineage dump" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()
    with pytest.raises(ReportError):
        write_report(bad, out)


def test_two_boots_are_laid_end_to_end(tmp_path):
    dump = tmp_path / "boots.lineage"
    generate(dump, default_envelope(), 4000, boots=2)
    html = report(dump, tmp_path / "boots.html")
    boots = [r for r in decoded(dump) if r["kind"] == "boot"]
    assert [(b["boot_count"], b["reset_reason"]) for b in boots] == [(1, 0), (2, 3)]
    assert "2 boot(s) laid end to end" in html
    xs = page_data(html)["rows"]["x"]
    assert xs == sorted(xs)
    verify_ok = edgegov("lineage", "verify", dump).returncode == 0
    assert ("verify: OK" in html) == verify_ok


# --------------------------------------------------------------------------- helpers


def _reframe_with_a_clamp_made_allow(src: Path, out: Path) -> int:
    """Rewrite the ring with one CLAMP decision turned into ALLOW and valid CRCs (what a
    forger would do); return its seq."""
    dump = read_dump(src)
    ring = RingLog(RamBlockDevice(dump.block_size, len(src.read_bytes()) // dump.block_size))
    ring.format(first_seq=dump.records[0][0])
    forged = None
    for seq, payload in dump.records:
        rec = cbor.loads(payload)
        if forged is None and rec[0] == 2 and rec[4] // 64 == 1:
            rec[4] = 0
            payload, forged = cbor.dumps(rec), seq
        ring.append(payload)
    out.write_bytes(ring.image())
    return forged
