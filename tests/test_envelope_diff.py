"""`edgegov envelope diff OLD NEW`: each change in units, marked widens / tightens / neutral,
with both compiled hashes; exit 0 same, 1 different, 2 error; a warning when a Modbus
register moves. Expected lines are written out by hand from the two files."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from conftest import ENVELOPES, compile_envelope
from edgegov.config.diff import NEUTRAL, TIGHTENS, WIDENS, diff
from edgegov_cli.main import main
from test_envelope_config import BASE, edit

SPINDLE_CELL = (ENVELOPES / "spindle-cell.toml").read_text()


def changes(old_text: str, new_text: str) -> list[str]:
    return [c.line() for c in diff(compile_envelope(old_text, "old.toml"),
                                   compile_envelope(new_text, "new.toml")).changes]


def one(old: str, new: str, text: str = BASE) -> list[str]:
    return changes(text, edit(old, new, text))


@pytest.mark.parametrize(("old", "new", "expected"), [
    ("min = 0\nmax = 100", "min = 0\nmax = 120", "channels.spindle.max: 100 → 120  [widens]"),
    ("min = 0\nmax = 50", "min = 0\nmax = 40", "channels.press.max: 50 → 40  [tightens]"),
    ("min = 0\nmax = 50", "min = -5\nmax = 50", "channels.press.min: 0 → -5  [widens]"),
    ("rate_per_s = 10", "rate_per_s = 5", "channels.spindle.rate_per_s: 10 → 5/s  [tightens]"),
    ("rate_per_s = 10", "rate_per_s = 10\naccel_per_s2 = 50",
     "channels.spindle.accel_per_s2: none → 50/s²  [tightens]"),
    ("approved_max = 150", "approved_max = 200",
     "channels.spindle.approved_max: 150 → 200  [widens]"),
    ("rate_per_s = 5\nsafe = 0", "rate_per_s = 5\nsafe = 0\nstop = \"SS1\"",
     "channels.press.stop: STO → SS1  [widens]"),
    ("rate_per_s = 5\nsafe = 0", "rate_per_s = 5\nsafe = 0\non_breach = \"trip\"",
     "channels.press.on_breach: clamp → trip  [tightens]"),
    ("rate_per_s = 5\nsafe = 0", "rate_per_s = 5\nsafe = 0\nhold = \"stay\"",
     "channels.press.hold: ramp → stay  [widens]"),
    ("rate_per_s = 5\nsafe = 0", "rate_per_s = 5\nsafe = 0.5",
     "channels.press.safe: 0 → 0.5  [neutral]"),
    ("stale_after_ms = 100\n\n[inputs.pressure]", "stale_after_ms = 250\n\n[inputs.pressure]",
     "inputs.door.stale_after_ms: 100 → 250 ms  [widens]"),
    ("limits = { spindle = { max = 0 } }", "limits = { spindle = { max = 5 } }",
     "interlocks.guard.limits.spindle.max: 0 → 5  [widens]"),
    ("limits = { spindle = { max = 0 } }",
     "limits = { spindle = { max = 0 }, press = { max = 5 } }",
     "interlocks.guard.limits.press.max: none → 5  [tightens]"),
    ('when = [{ input = "door", eq = false }]', 'when = [{ input = "door", eq = true }]',
     "interlocks.guard.when: door == false → door == true  [widens]"),
    ("channels.press = { max = 10 }", "channels.press = { max = 20 }",
     "modes.setup.channels.press.max: 10 → 20  [widens]"),
    ("trip_after_ms = 300", "trip_after_ms = 250", "link.trip_after_ms: 300 → 250 ms  [tightens]"),
    ("engage_after_ms = 50", "engage_after_ms = 80",
     "link.engage_after_ms: 50 → 80 ms  [tightens]"),
    ("grant_ms = 2000", "grant_ms = 5000", "approval.grant_ms: 2000 → 5000 ms  [widens]"),
    ('initial_mode = "run"', 'initial_mode = "setup"', "initial_mode: run → setup  [neutral]"),
])
def test_each_change_is_one_line_with_its_effect(old, new, expected):
    assert one(old, new) == [expected]


def test_interlock_threshold_moves_are_classified_by_their_comparison():
    text = edit('when = [{ input = "door", eq = false }]',
                'when = [{ input = "pressure", lt = 50 }]')
    # lt: a higher threshold makes the restriction apply at more pressures
    assert one("lt = 50", "lt = 60", text) == [
        "interlocks.guard.when: pressure < 50 → pressure < 60  [tightens]"]
    ge = edit("lt = 50", "ge = 50", text)
    assert one("ge = 50", "ge = 60", ge) == [
        "interlocks.guard.when: pressure >= 50 → pressure >= 60  [widens]"]


def test_added_and_removed_items():
    added = edit("[inputs.door]", "[channels.feed]\nresolution = 1\nmin = -3\nmax = 3\n"
                 "rate_per_s = 1\nsafe = 0\n\n[inputs.door]")
    assert changes(BASE, added)[0] == (
        "channels.feed: added: [-3, 3], rate 1/s, safe 0, STO, on_breach clamp  [widens]")
    removed = edit("[interlocks.guard]\nwhen = [{ input = \"door\", eq = false }]\n"
                   "limits = { spindle = { max = 0 } }\n", "")
    assert changes(BASE, removed) == [
        "interlocks.guard: removed (was when door == false: spindle (trip))  [widens]"]


def test_spindle_cell_review(tmp_path):
    """A realistic change to the shipped cell, read as a reviewer reads it (hand-written)."""
    new = SPINDLE_CELL
    for a, b in [("approved_max = 10000", "approved_max = 11000"),
                 ("max = 120.0", "max = 100.0"),
                 ("trip_after_ms = 600", "trip_after_ms = 800"),
                 ('{ input = "hydraulic_pressure", lt = 50.0 }',
                  '{ input = "hydraulic_pressure", lt = 60.0 }')]:
        new = new.replace(a, b, 1)
    (tmp_path / "old.toml").write_text(SPINDLE_CELL)
    (tmp_path / "new.toml").write_text(new)
    result = CliRunner().invoke(main, ["envelope", "diff", str(tmp_path / "old.toml"),
                                       str(tmp_path / "new.toml")])
    assert result.exit_code == 1, result.output
    out = result.output.splitlines()
    old_hash = compile_envelope(SPINDLE_CELL).hash
    new_hash = compile_envelope(new).hash
    assert out[0].startswith(f"old: {tmp_path / 'old.toml'}  sha256 {old_hash}")
    assert out[1].startswith(f"new: {tmp_path / 'new.toml'}  sha256 {new_hash}")
    assert out[2:] == [
        "4 changes: 2 widen, 2 tighten, 0 neutral",
        "  channels.press.max: 120 → 100 mm  [tightens]",
        "  channels.spindle.approved_max: 10000 → 11000 rpm  [widens]",
        "  interlocks.low_pressure.when: hydraulic_pressure < 50 bar → hydraulic_pressure < 60"
        " bar  [tightens]",
        "  link.trip_after_ms: 600 → 800 ms  [widens]",
    ]


def test_same_envelope_exits_zero_and_says_so(tmp_path):
    path = tmp_path / "a.toml"
    path.write_text(SPINDLE_CELL)
    reordered = tmp_path / "b.toml"
    reordered.write_text("# the same envelope, comments added\n" + SPINDLE_CELL)
    result = CliRunner().invoke(main, ["envelope", "diff", str(path), str(reordered)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == "no changes: the envelopes are the same"


def test_a_refused_envelope_exits_two_with_its_problems(tmp_path):
    good, bad = tmp_path / "a.toml", tmp_path / "b.toml"
    good.write_text(SPINDLE_CELL)
    bad.write_text(SPINDLE_CELL.replace('stop = "SS1"', 'stop = "ss1"'))
    result = CliRunner().invoke(main, ["envelope", "diff", str(good), str(bad)])
    assert result.exit_code == 2
    assert "channels.spindle.stop: must be one of STO, SS1" in result.output
    assert "Traceback" not in result.output
    missing = CliRunner().invoke(main, ["envelope", "diff", str(good), str(tmp_path / "no")])
    assert missing.exit_code == 2 and "cannot read" in missing.output


def test_a_new_channel_moves_modbus_registers_and_warns(tmp_path):
    new = SPINDLE_CELL.replace("[channels.coolant]", "[channels.chuck]\nunit = \"bar\"\n"
                               "resolution = 1\nmin = 0\nmax = 10\nrate_per_s = 5\nsafe = 0\n\n"
                               "[channels.coolant]")
    d = diff(compile_envelope(SPINDLE_CELL), compile_envelope(new))
    moved = [c.line() for c in d.changes if c.path.startswith("modbus.")]
    # chuck sorts first: coolant H3 → H4, press H4 → H5, spindle H5 → H6 (one word each),
    # and the session register after them H6 → H7
    assert moved == ["modbus.channels.coolant: H3/I18 → H4/I19  [neutral]",
                     "modbus.channels.press: H4/I19 → H5/I20  [neutral]",
                     "modbus.channels.spindle: H5/I20 → H6/I21  [neutral]",
                     "modbus.session: H6 → H7  [neutral]"]
    assert len(d.warnings) == 4 and "press move (H4/I19 → H5/I20)" in d.warnings[1]
    assert "session register moves (H6 → H7)" in d.warnings[3]
    # pinned, nothing moves: no warning
    pins = "\n[modbus.addresses]\ncoolant = 40\npress = 41\nspindle = 42\n"
    d = diff(compile_envelope(SPINDLE_CELL + pins), compile_envelope(new + pins))
    assert d.warnings == []
    assert [c.path for c in d.changes] == ["channels.chuck"]


def test_json_has_hashes_counts_and_changes(tmp_path):
    old, new = tmp_path / "a.toml", tmp_path / "b.toml"
    old.write_text(SPINDLE_CELL)
    new.write_text(SPINDLE_CELL.replace("max = 120.0", "max = 100.0", 1))
    result = CliRunner().invoke(main, ["envelope", "diff", str(old), str(new), "--json"])
    assert result.exit_code == 1
    doc = json.loads(result.output)
    assert doc["identical"] is False
    assert doc["old"]["sha256"] == compile_envelope(SPINDLE_CELL).hash
    assert doc["counts"] == {WIDENS: 0, TIGHTENS: 1, NEUTRAL: 0}
    assert doc["changes"] == [{"path": "channels.press.max", "old": "120", "new": "100",
                               "unit": "mm", "effect": TIGHTENS}]
    assert doc["warnings"] == []


def test_a_drive_map_change_is_listed_and_warned_about():
    from conftest import REPO

    text = (REPO / "boards" / "drives" / "cia402-axis.toml").read_text()
    d = diff(compile_envelope(text), compile_envelope(text.replace("scale = 10\n", "")))
    assert [c.line() for c in d.changes] == [
        "modbus.drive.channels.velocity.scale: 10 → 1  [neutral]"]
    assert d.warnings and "drive's map changes" in d.warnings[0]
