"""`edgegov envelope check` as a person reads it: one line per root cause, sorted by line, in
the project's words, with did-you-mean, every independent problem in one run.

Each case breaks the valid ``BASE`` envelope of ``test_envelope_config`` in one way and
expects exactly the lines written here (worked out by hand from the file), nothing more: a
follow-on line (an "unknown channel" for a channel that only has a typo inside, a mode blamed
for its channel's range) fails the test as surely as a missing one.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from conftest import ENVELOPES, compile_envelope
from edgegov.config.problems import EnvelopeConfigError
from edgegov_cli.main import main
from test_envelope_config import BASE, edit, line_no


def lines_of(text: str) -> list[str]:
    """Every problem of ``text`` as ``LINE: location: message``."""
    with pytest.raises(EnvelopeConfigError) as info:
        compile_envelope(text, "cell.toml")
    return [str(p).removeprefix("cell.toml:") for p in info.value.problems]


# (case id, [(old, new)...], [(line fragment, location, message)...]) — one root cause each
CASES = [
    ("unknown_key_with_guess", [("safe = 0\non_breach", "saef = 0\non_breach")],
     [("saef = 0", "channels.spindle.saef", "unknown key (did you mean 'safe'?)")]),
    ("unknown_key_without_guess", [("safe = 0\non_breach", "safe = 0\ncolour = 1\non_breach")],
     [("colour = 1", "channels.spindle.colour", "unknown key")]),
    ("unknown_optional_key_guess", [("rate_per_s = 10", "rate_per_s = 10\naccel_per_s = 3")],
     [("accel_per_s = 3", "channels.spindle.accel_per_s",
       "unknown key (did you mean 'accel_per_s2'?)")]),
    ("unknown_top_level_table", [("[link]", "[links]")],
     [("[links]", "links", "unknown key (did you mean 'link'?)")]),
    ("wrong_type_number", [("max = 100\n", 'max = "100"\n')],
     [('max = "100"', "channels.spindle.max", "must be a number (got '100')")]),
    ("wrong_type_integer", [("hold_after_ms = 100", "hold_after_ms = 100.5")],
     [("hold_after_ms = 100.5", "link.hold_after_ms", "must be a whole number (got 100.5)")]),
    ("wrong_type_table", [('[device]\nid = "cfg-1"', 'device = "cfg-1"')],
     [('device = "cfg-1"', "device", "must be a table (got 'cfg-1')")]),
    ("bad_enum_case", [("safe = 0\non_breach", 'safe = 0\nstop = "sto"\non_breach')],
     [('stop = "sto"', "channels.spindle.stop",
       "must be one of STO, SS1 (got 'sto'; did you mean 'STO'?)")]),
    ("bad_enum_typo", [('on_breach = "escalate"', 'on_breach = "escalte"')],
     [('on_breach = "escalte"', "channels.spindle.on_breach",
       "must be one of clamp, reject, escalate, trip (got 'escalte'; did you mean "
       "'escalate'?)")]),
    ("bad_enum_no_guess", [('on_breach = "escalate"', 'on_breach = "explode"')],
     [('on_breach = "explode"', "channels.spindle.on_breach",
       "must be one of clamp, reject, escalate, trip (got 'explode')")]),
    ("out_of_bounds_ms", [("hold_after_ms = 100", "hold_after_ms = 0")],
     [("hold_after_ms = 0", "link.hold_after_ms", "must be greater than 0 (got 0)")]),
    ("unknown_input_reference", [('input = "door"', 'input = "dor"')],
     [('input = "dor"', "interlocks.guard.when.0.input", "unknown input 'dor' (did you mean "
       "'door'?)")]),
    ("unknown_channel_in_interlock", [("limits = { spindle = { max = 0 } }",
                                       "limits = { spindel = { max = 0 } }")],
     [("limits = { spindel", "interlocks.guard.limits.spindel",
       "unknown channel 'spindel' (did you mean 'spindle'?)")]),
    ("unknown_channel_in_mode", [("channels.press = { max = 10 }",
                                  "channels.pres = { max = 10 }")],
     [("channels.pres =", "modes.setup.channels.pres",
       "unknown channel 'pres' (did you mean 'press'?)")]),
    ("unknown_initial_mode", [('initial_mode = "run"', 'initial_mode = "setpu"')],
     [('initial_mode = "setpu"', "initial_mode",
       "unknown mode 'setpu' (did you mean 'setup'?); the modes are run, setup")]),
    ("min_gt_max", [("min = 0\nmax = 100", "min = 200\nmax = 100")],
     [("max = 100", "channels.spindle.max", "min (200) must be <= max (100)")]),
    ("safe_outside_range", [("max = 50\nrate_per_s = 5\nsafe = 0",
                             "max = 50\nrate_per_s = 5\nsafe = 60")],
     [("safe = 60", "channels.press.safe", "safe value 60 is outside [0, 50]")]),
    ("safe_outside_mode", [("channels.press = { max = 10 }", "channels.press = { min = 5 }")],
     [("channels.press = { min = 5 }", "modes.setup.channels.press",
       "safe value of press (0) is outside the range of mode 'setup' [5, 50]")]),
    ("mode_outside_channel", [("channels.press = { max = 10 }",
                               "channels.press = { min = 60, max = 70 }")],
     [("channels.press = {", "modes.setup.channels.press",
       "mode limits [60, 70] must lie inside the channel's [0, 50]")]),
    ("resolution_misfit", [("min = 0\nmax = 50", "min = 0\nmax = 50.25")],
     [("max = 50.25", "channels.press.max", "50.25 does not fit the resolution 0.5")]),
    ("overflow_30_bit", [("max = 100\n", "max = 2000000000\n")],
     [("max = 2000000000", "channels.spindle.max", "2000000000 is too large for the "
       "resolution 1: 2000000000 steps (the 30-bit limit is 1073741823)")]),
    ("duplicate_id", [("[inputs.pressure]", "[inputs.press]")],
     [("[inputs.press]", "inputs.press", "duplicate id: 'press' is already a channel")]),
    ("escalate_without_approval", [("[approval]\ntimeout_ms = 1000\ngrant_ms = 2000\n", "")],
     [('on_breach = "escalate"', "channels.spindle.on_breach",
       "escalate needs an [approval] table")]),
    ("interlock_initial_breach", [("limits = { spindle = { max = 0 } }",
                                   "limits = { spindle = { min = 10 } }")],
     [("limits = { spindle", "interlocks.guard.limits.spindle",
       "safe value of spindle (0) violates this interlock: the governor would boot already "
       "in breach")]),
    # follow-on errors that must not show: the channel's own problem is the only line
    ("broken_channel_not_unknown_to_interlock_or_mode",
     [("resolution = 1\nmin = 0\nmax = 100", "resolution = 1\nmin = 0\nmax = 100\ncolor = 2")],
     [("color = 2", "channels.spindle.color", "unknown key")]),
    ("mode_not_blamed_for_channel_range",
     [("min = 0\nmax = 50", "min = 60\nmax = 50")],
     [("max = 50\nrate_per_s", "channels.press.max", "min (60) must be <= max (50)")]),
    ("broken_input_not_unknown_to_interlock", [('type = "bool"\n', 'type = "boolean"\n')],
     [('type = "boolean"', "inputs.door.type",
       "must be one of bool, number (got 'boolean'; did you mean 'bool'?)")]),
    ("misspelt_table_is_the_one_cause", [("[channels.press]", "[channel.press]")],
     [("[channel.press]", "channel", "unknown key (did you mean 'channels'?)")]),
    ("value_fitting_no_member_of_a_union", [("eq = false }]", 'eq = "no" }]')],
     [('eq = "no"', "interlocks.guard.when.0.eq",
       "must be true or false, or a number (got 'no')")]),
    ("typo_for_required_key_is_one_line", [("rate_per_s = 5\n", "rate_pr_s = 5\n")],
     [("rate_pr_s = 5", "channels.press.rate_pr_s",
       "unknown key (did you mean 'rate_per_s'?)")]),
]


@pytest.mark.parametrize(("edits", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_one_line_per_root_cause(edits, expected):
    text = BASE
    for old, new in edits:
        text = edit(old, new, text)
    want = [f"{at(text, frag)}: {where}: {message}" for frag, where, message in expected]
    assert lines_of(text) == want


def at(text: str, fragment: str) -> int:
    """The line of ``fragment``; a multi-line one (which occurs once) by its first line."""
    if "\n" not in fragment:
        return line_no(text, fragment)
    assert text.count(fragment) == 1, fragment
    return text[: text.index(fragment)].count("\n") + 1


def test_independent_problems_of_one_channel_show_in_one_run():
    # a bad enum, an unknown key and a resolution misfit, all in [channels.press]: the
    # misfit must not wait until the other two are fixed
    text = edit("min = 0\nmax = 50", 'min = 0\nmax = 50.25\nstop = "sS1"\nsaf = 0')
    text = edit("rate_per_s = 5\nsafe = 0\n", "rate_per_s = 5\n", text)
    assert lines_of(text) == [
        f"{line_no(text, 'max = 50.25')}: channels.press.max: 50.25 does not fit the "
        "resolution 0.5",
        f"{line_no(text, 'stop = ')}: channels.press.stop: must be one of STO, SS1 (got "
        "'sS1'; did you mean 'SS1'?)",
        f"{line_no(text, 'saf = 0')}: channels.press.saf: unknown key (did you mean 'safe'?)",
    ]


def test_mode_values_of_a_broken_channel_are_still_checked():
    text = edit("resolution = 0.5\nmin = 0\nmax = 50", 'resolution = 0.5\nmin = 0\nmax = 50\n'
                'hold = "rmp"')
    text = edit("channels.press = { max = 10 }", "channels.press = { max = 10.2 }", text)
    assert lines_of(text) == [
        f"{line_no(text, 'hold = ')}: channels.press.hold: must be one of stay, ramp (got "
        "'rmp'; did you mean 'ramp'?)",
        f"{line_no(text, 'max = 10.2')}: modes.setup.channels.press.max: 10.2 does not fit "
        "the resolution 0.5",
    ]


def test_lines_are_sorted_by_line():
    text = edit("trip_after_ms = 300", "trip_after_ms = 50")  # near the end
    text = edit('input = "door"', 'input = "hatch"', text)  # middle
    text = edit("rate_per_s = 10", "rate_per_s = 0", text)  # near the top
    numbers = [int(line.split(":")[0]) for line in lines_of(text)]
    assert len(numbers) == 3
    assert numbers == sorted(numbers)


THREE = [('stop = "SS1"', 'stop = "ss1"'), ("rate_per_s = 2000", "rate_pr_s = 2000"),
         ("max = 120.0", "max = 120.05")]


def test_three_deliberate_mistakes_give_three_lines(tmp_path):
    text = (ENVELOPES / "spindle-cell.toml").read_text()
    for old, new in THREE:
        text = text.replace(old, new, 1)
    path = tmp_path / "cell.toml"
    path.write_text(text)
    result = CliRunner().invoke(main, ["envelope", "check", str(path)])
    assert result.exit_code == 1
    rate, stop, res = (line_no(text, f) for f in ("rate_pr_s = 2000", 'stop = "ss1"',
                                                   "max = 120.05"))
    assert result.output.splitlines() == [
        f"{path}:{rate}: channels.spindle.rate_pr_s: unknown key (did you "
        "mean 'rate_per_s'?)",
        f"{path}:{stop}: channels.spindle.stop: must be one of STO, SS1 (got "
        "'ss1'; did you mean 'SS1'?)",
        f"{path}:{res}: channels.press.max: 120.05 does not fit the resolution "
        "0.1",
        f"{path}: 3 problems; envelope refused",
    ]


def test_check_of_a_valid_file_exits_zero(tmp_path):
    result = CliRunner().invoke(main, ["envelope", "check", str(ENVELOPES / "spindle-cell.toml")])
    assert result.exit_code == 0, result.output
    assert "ok: device cell-7, 3 channels" in result.output


def test_check_of_a_missing_file_is_one_line(tmp_path):
    result = CliRunner().invoke(main, ["envelope", "check", str(tmp_path / "nope.toml")])
    assert result.exit_code == 1
    assert "cannot read" in result.output
    assert "Traceback" not in result.output


# ----------------------------------------------------------------------------- fuzz

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

ODD_VALUES = ['"x"', "true", "-1", "0", "1e400", "nan", "[]", "[1, 2]", "{}", "{ a = 1 }",
              "2000000000", "0.3", '"STO"', '"sto"', "-0.0", "65536", '""']


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 200), st.sampled_from(ODD_VALUES + ["<drop>"])),
                min_size=1, max_size=4))
def test_any_value_anywhere_gives_located_lines_in_our_words(edits):
    lines = (BASE + "\n[modbus.addresses]\npress = 40\n").splitlines()
    keyed = [i for i, line in enumerate(lines) if " = " in line]
    for pick, value in edits:
        i = keyed[pick % len(keyed)]
        key = lines[i].split(" = ")[0]
        lines[i] = "" if value == "<drop>" else f"{key} = {value}"
    text = "\n".join(lines) + "\n"
    try:
        compile_envelope(text, "cell.toml")
    except EnvelopeConfigError as err:
        for p in err.problems:
            assert p.message and "Input should" not in p.message, str(p)
            assert "Value error" not in p.message and "pydantic" not in p.message, str(p)
        shown = [str(p) for p in err.problems]
        assert len(shown) == len(set(shown))  # no line twice
