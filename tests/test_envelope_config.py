"""Envelope TOML admission, compilation and blob loading.

Every admission check gets a case that breaks a valid file in exactly one place and expects
a problem at a dotted location (``channels.spindle.max``) and on the TOML line where that
location is written. The compiled blob is checked for determinism, against ``cbor2`` as an
oracle, and for refusal of anything that is not a well-formed envelope.
"""

from __future__ import annotations

import random
import re

import cbor2
import pytest
from conftest import ENVELOPES, TEST_TOML, Harness, compile_envelope
from edgegov.config.compile import compile_file
from edgegov.config.problems import EnvelopeConfigError
from edgegov.config.render import compiled_json
from edgegov.core import cbor
from edgegov.core.envelope import Envelope, EnvelopeError
from edgegov.core.governor import Governor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

BASE = """\
initial_mode = "run"

[device]
id = "cfg-1"

[channels.spindle]
resolution = 1
min = 0
max = 100
rate_per_s = 10
safe = 0
on_breach = "escalate"
approved_max = 150

[channels.press]
resolution = 0.5
min = 0
max = 50
rate_per_s = 5
safe = 0

[inputs.door]
type = "bool"
stale_after_ms = 100

[inputs.pressure]
type = "number"
resolution = 0.5
min = 0
max = 400
stale_after_ms = 100

[interlocks.guard]
when = [{ input = "door", eq = false }]
limits = { spindle = { max = 0 } }

[modes.run]

[modes.setup]
channels.press = { max = 10 }

[link]
hold_after_ms = 100
trip_after_ms = 300
engage_after_ms = 50

[approval]
timeout_ms = 1000
grant_ms = 2000
"""


def problems_of(text: str):
    with pytest.raises(EnvelopeConfigError) as info:
        compile_envelope(text, "cell.toml")
    probs = info.value.problems
    assert probs, "an EnvelopeConfigError must list at least one problem"
    return probs


def line_no(text: str, fragment: str) -> int:
    lines = text.splitlines()
    hits = [n for n, line in enumerate(lines, 1) if line.strip() == fragment.strip()]
    hits = hits or [n for n, line in enumerate(lines, 1) if fragment in line]
    assert len(hits) == 1, f"fragment {fragment!r} must be on exactly one line: {hits}"
    return hits[0]


def edit(old: str, new: str, text: str = BASE) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


def test_base_is_valid():
    compiled = compile_envelope(BASE)
    assert compiled.admitted.modbus_operator is False  # off unless the envelope says so


def test_modbus_operator_actions_are_enabled_only_by_the_envelope():
    text = edit('initial_mode = "run"', 'initial_mode = "run"\n[modbus]\noperator_actions = true')
    on = compile_envelope(text)
    assert on.admitted.modbus_operator is True
    assert compiled_json(on)["modbus"] == {"operator_actions": True}
    assert on.blob == compile_envelope(BASE).blob  # host-side: the governor's blob is the same


# (case id, old text, new text, expected location, message fragment, line fragment)
CASES = [
    ("min_gt_max", "min = 0\nmax = 100", "min = 200\nmax = 100", "channels.spindle.max",
     "must be <= max", "max = 100"),
    ("safe_outside_range", "max = 50\nrate_per_s = 5\nsafe = 0",
     "max = 50\nrate_per_s = 5\nsafe = 60", "channels.press.safe", "outside", "safe = 60"),
    ("safe_outside_mode", "channels.press = { max = 10 }", "channels.press = { min = 5 }",
     "modes.setup.channels.press", "safe value of press", "channels.press = { min = 5 }"),
    ("mode_outside_channel", "channels.press = { max = 10 }", "channels.press = { max = 60 }",
     "modes.setup.channels.press", "must lie inside", "channels.press = { max = 60 }"),
    ("mode_rate_above_channel", "channels.press = { max = 10 }",
     "channels.press = { rate_per_s = 6 }", "modes.setup.channels.press.rate_per_s",
     "must be positive", "rate_per_s = 6 }"),
    ("zero_rate", "rate_per_s = 10", "rate_per_s = 0", "channels.spindle.rate_per_s",
     "must be positive", "rate_per_s = 0"),
    ("negative_rate", "rate_per_s = 10", "rate_per_s = -10", "channels.spindle.rate_per_s",
     "must be positive", "rate_per_s = -10"),
    ("zero_accel", "rate_per_s = 10", "rate_per_s = 10\naccel_per_s2 = 0",
     "channels.spindle.accel_per_s2", "must be positive", "accel_per_s2 = 0"),
    ("negative_accel", "rate_per_s = 10", "rate_per_s = 10\naccel_per_s2 = -3",
     "channels.spindle.accel_per_s2", "must be positive", "accel_per_s2 = -3"),
    ("zero_resolution", "resolution = 1\n", "resolution = 0\n", "channels.spindle.resolution",
     "must be positive", "resolution = 0\n"),
    ("negative_input_resolution", "resolution = 0.5\nmin = 0\nmax = 400",
     "resolution = -0.5\nmin = 0\nmax = 400", "inputs.pressure.resolution", "must be positive",
     "resolution = -0.5"),
    ("unknown_interlock_input", 'input = "door"', 'input = "hatch"',
     "interlocks.guard.when.0.input", "unknown input 'hatch'", 'input = "hatch"'),
    ("unknown_interlock_channel", "limits = { spindle = { max = 0 } }",
     "limits = { drill = { max = 0 } }", "interlocks.guard.limits.drill",
     "unknown channel 'drill'", "limits = { drill"),
    ("unknown_mode_channel", "channels.press = { max = 10 }", "channels.drill = { max = 10 }",
     "modes.setup.channels.drill", "unknown channel 'drill'", "channels.drill"),
    ("unknown_initial_mode", 'initial_mode = "run"', 'initial_mode = "turbo"', "initial_mode",
     "unknown mode 'turbo'", 'initial_mode = "turbo"'),
    ("duplicate_id", "[inputs.pressure]", "[inputs.press]", "inputs.press",
     "duplicate id: 'press' is already a channel", "[inputs.press]"),
    ("boots_in_breach", "limits = { spindle = { max = 0 } }",
     "limits = { spindle = { min = 10 } }", "interlocks.guard.limits.spindle",
     "boot already in breach", "limits = { spindle = { min = 10 } }"),
    ("value_off_resolution", "min = 0\nmax = 50", "min = 0\nmax = 50.25", "channels.press.max",
     "does not fit the resolution 0.5", "max = 50.25"),
    ("mode_value_off_resolution", "channels.press = { max = 10 }",
     "channels.press = { max = 10.2 }", "modes.setup.channels.press.max",
     "does not fit the resolution", "max = 10.2"),
    ("interlock_value_off_resolution", "limits = { spindle = { max = 0 } }",
     "limits = { spindle = { max = 0.5 } }", "interlocks.guard.limits.spindle.max",
     "does not fit the resolution 1", "max = 0.5"),
    ("condition_value_off_resolution", 'when = [{ input = "door", eq = false }]',
     'when = [{ input = "pressure", lt = 10.25 }]', "interlocks.guard.when.0.lt",
     "does not fit the resolution 0.5", "lt = 10.25"),
    ("too_large_for_30_bits", "max = 100\n", "max = 2000000000\n", "channels.spindle.max",
     "30-bit", "max = 2000000000"),
    ("escalate_without_approval_table", "[approval]\ntimeout_ms = 1000\ngrant_ms = 2000\n", "",
     "channels.spindle.on_breach", "needs an [approval] table", 'on_breach = "escalate"'),
    ("escalate_without_approved_range", "approved_max = 150\n", "",
     "channels.spindle.on_breach", "approved_min and/or approved_max", 'on_breach = "escalate"'),
    ("approved_max_narrower", "approved_max = 150", "approved_max = 90",
     "channels.spindle.approved_max", "must be >= max", "approved_max = 90"),
    ("approved_min_narrower", "approved_max = 150", "approved_max = 150\napproved_min = 5",
     "channels.spindle.approved_min", "must be <= min", "approved_min = 5"),
    ("approved_without_escalate", 'on_breach = "escalate"', 'on_breach = "clamp"',
     "channels.spindle.approved_max", "only meaningful", "approved_max = 150"),
    ("number_input_without_resolution", "resolution = 0.5\nmin = 0\nmax = 400\n",
     "min = 0\nmax = 400\n", "inputs.pressure.resolution", "required for a number input",
     "[inputs.pressure]"),
    ("bool_input_with_min", 'type = "bool"\n', 'type = "bool"\nmin = 7\n', "inputs.door.min",
     "not allowed for a bool input", "min = 7"),
    ("estop_number_input", 'type = "number"\n', 'type = "number"\nrole = "estop"\n',
     "inputs.pressure.role", "must be of type bool", 'role = "estop"'),
    ("bool_condition_with_lt", "eq = false }]", "lt = 1 }]", "interlocks.guard.when.0.lt",
     "a bool input is compared with eq/ne", "lt = 1 }]"),
    ("number_condition_with_bool", 'when = [{ input = "door", eq = false }]',
     'when = [{ input = "pressure", eq = true }]', "interlocks.guard.when.0.eq",
     "a number input is compared with a number", 'input = "pressure", eq = true'),
    ("condition_with_two_ops", "eq = false }]", "eq = false, ne = true }]",
     "interlocks.guard.when.0", "exactly one of", "ne = true"),
    ("interlock_limit_min_gt_max", "limits = { spindle = { max = 0 } }",
     "limits = { press = { min = 0, max = 0 }, spindle = { min = 0, max = -1 } }",
     "interlocks.guard.limits.spindle.max", "min must be <= max", "limits = { press"),
    ("link_trip_not_after_hold", "trip_after_ms = 300", "trip_after_ms = 100",
     "link.trip_after_ms", "greater than hold_after_ms", "trip_after_ms = 100"),
    ("unknown_key_in_channel", "safe = 0\non_breach", "safe = 0\nsafety = 1\non_breach",
     "channels.spindle.safety", "unknown key", "safety = 1"),
    ("unknown_top_level_key", 'initial_mode = "run"', 'initial_mode = "run"\nmood = "good"',
     "mood", "unknown key", 'mood = "good"'),
    ("unknown_key_in_link", "engage_after_ms = 50", "engage_after_ms = 50\nretries = 3",
     "link.retries", "unknown key", "retries = 3"),
    ("string_for_number", "max = 100\n", 'max = "100"\n', "channels.spindle.max",
     "must be a number", 'max = "100"'),
    ("bool_for_number", "max = 100\n", "max = true\n", "channels.spindle.max",
     "must be a number", "max = true"),
    ("nan_for_number", "max = 100\n", "max = nan\n", "channels.spindle.max",
     "must be a finite number", "max = nan"),
    ("float_for_ms", "hold_after_ms = 100", "hold_after_ms = 100.5", "link.hold_after_ms",
     "must be a whole number (got 100.5)", "hold_after_ms = 100.5"),
    ("bad_enum", 'on_breach = "escalate"', 'on_breach = "explode"',
     "channels.spindle.on_breach",
     "must be one of clamp, reject, escalate, trip (got 'explode')", 'on_breach = "explode"'),
    ("bad_channel_name", "[channels.press]", "[channels.Press]", "channels.Press",
     "name must be lower-case", "[channels.Press]"),
    ("missing_required_key", "rate_per_s = 5\n", "", "channels.press.rate_per_s",
     "required key is missing", "[channels.press]"),
    ("table_expected", '[device]\nid = "cfg-1"', 'device = "cfg-1"', "device",
     "must be a table (got 'cfg-1')",
     'device = "cfg-1"'),
    ("modbus_operator_not_bool", 'initial_mode = "run"',
     'initial_mode = "run"\n[modbus]\noperator_actions = "yes"', "modbus.operator_actions",
     "must be true or false (got 'yes')", 'operator_actions = "yes"'),
    ("modbus_unknown_key", 'initial_mode = "run"', 'initial_mode = "run"\n[modbus]\nunit = 2',
     "modbus.unit", "unknown key", "unit = 2"),
]


@pytest.mark.parametrize(
    ("old", "new", "where", "message", "line_fragment"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_admission_rejects_with_located_message(old, new, where, message, line_fragment):
    text = edit(old, new)
    probs = problems_of(text)
    hits = [p for p in probs if p.where == where and message in p.message]
    assert hits, f"no problem at {where} ~ {message!r}; got: {[str(p) for p in probs]}"
    p = hits[0]
    assert p.line == line_no(text, line_fragment), str(p)
    assert p.file == "cell.toml"
    assert str(p).startswith(f"cell.toml:{p.line}: {where}: ")


def test_initial_mode_required_with_several_modes():
    text = edit('initial_mode = "run"\n', "")
    probs = problems_of(text)
    assert [p.where for p in probs] == ["initial_mode"]
    assert "required" in probs[0].message


def test_bad_toml_syntax_reports_the_line():
    text = edit("max = 100\n", "max = = 100\n")
    probs = problems_of(text)
    assert len(probs) == 1
    assert "not valid TOML" in probs[0].message
    assert probs[0].line == line_no(text, "max = = 100")


def test_duplicate_toml_key_is_a_syntax_problem():
    text = edit("max = 100\n", "max = 100\nmax = 90\n")
    probs = problems_of(text)
    assert "not valid TOML" in probs[0].message
    assert probs[0].line == line_no(text, "max = 90")


def test_many_problems_are_reported_at_once():
    text = edit("rate_per_s = 10", "rate_per_s = 0")
    text = edit('input = "door"', 'input = "hatch"', text)
    text = edit("trip_after_ms = 300", "trip_after_ms = 50", text)
    text = edit("min = 0\nmax = 50", "min = 0\nmax = 50.25", text)
    text = edit("[inputs.pressure]", "[inputs.pressure]\ncolour = 1", text)
    where = {p.where for p in problems_of(text)}
    assert {
        "channels.spindle.rate_per_s",
        "interlocks.guard.when.0.input",
        "link.trip_after_ms",
        "channels.press.max",
        "inputs.pressure.colour",
    } <= where


def test_unreadable_file_is_a_located_problem(tmp_path):
    missing = tmp_path / "nope.toml"
    with pytest.raises(EnvelopeConfigError) as info:
        compile_file(missing)
    assert "cannot read" in info.value.problems[0].message
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b'[device]\nid = "\xe9"\n')
    with pytest.raises(EnvelopeConfigError):
        compile_file(bad)


def test_problem_line_ignores_text_inside_multiline_strings():
    text = edit(
        "[channels.press]\n",
        '[channels.press]\nunit = """\nmax = 1 (the old limit)\n"""\n',
    )
    text = edit("min = 0\nmax = 50", "min = 0\nmax = 50.25", text)
    probs = [p for p in problems_of(text) if p.where == "channels.press.max"]
    assert probs[0].line == line_no(text, "max = 50.25")


# ----------------------------------------------------------------------------- compile

EXAMPLES = sorted(ENVELOPES.glob("*.toml"))


def test_there_are_shipped_examples():
    assert len(EXAMPLES) >= 2


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_shipped_example_compiles_and_loads(path):
    compiled = compile_file(path)
    env = Envelope.from_blob(compiled.blob, compiled.digest)
    assert env.device_id == compiled.admitted.device_id
    assert env.ch_names == sorted(compiled.admitted.channels)
    assert env.modes == compiled.admitted.modes
    gov = Governor(env, b"k" * 32)
    d = gov.start(0)
    assert d.output == env.ch_safe
    for rid in env.rules:  # rule ids are config paths or built-ins
        assert re.fullmatch(r"[a-z_]+(\.[a-z0-9_]+)*", rid), rid


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_compile_is_deterministic(path):
    a = compile_file(path)
    b = compile_file(path)
    assert a.blob == b.blob
    assert a.hash == b.hash
    assert len(a.hash) == 64


def test_hash_changes_when_a_limit_changes():
    a = compile_envelope(BASE)
    b = compile_envelope(edit("max = 100\n", "max = 99\n"))
    c = compile_envelope(edit("hold_after_ms = 100", "hold_after_ms = 101"))
    assert len({a.hash, b.hash, c.hash}) == 3


def test_comments_and_table_order_do_not_change_the_blob():
    a = compile_envelope(BASE)
    blocks = BASE.split("\n\n")
    head, channels, rest = blocks[:2], blocks[2:4], blocks[4:]
    shuffled = "\n\n".join(head + channels[::-1] + rest).replace(
        "rate_per_s = 10", "rate_per_s = 10  # a comment"
    )
    assert shuffled != BASE
    assert compile_envelope(shuffled).blob == a.blob


def test_scaled_values_follow_the_resolution():
    compiled = compile_envelope(BASE)
    env = Envelope.from_blob(compiled.blob)
    press = env.ch_index["press"]
    run, setup = env.modes.index("run"), env.modes.index("setup")
    assert env.mode_max[run][press] == 50 * 2  # 50 at resolution 0.5
    assert env.mode_max[setup][press] == 10 * 2
    assert env.mode_rate[run][press] == 5 * 2
    assert compiled.to_scaled("press", 12) == 24
    assert compiled.from_scaled("press", 24) == 12


@pytest.mark.parametrize(
    "text", [BASE, TEST_TOML] + [p.read_text() for p in EXAMPLES], ids=lambda t: str(hash(t))
)
def test_blob_decodes_the_same_with_cbor2(text):
    blob = compile_envelope(text).blob
    ours = cbor.loads(blob)
    theirs = cbor2.loads(blob)
    assert theirs == ours
    assert cbor2.dumps(theirs) == blob  # and cbor2 re-encodes the same bytes


# ----------------------------------------------------------------------------- from_blob

VALID = compile_envelope(TEST_TOML).blob


def test_valid_blob_loads():
    env = Envelope.from_blob(VALID)
    assert env.n == 4


def test_every_truncation_of_a_blob_is_refused():
    for cut in range(len(VALID)):
        with pytest.raises(EnvelopeError):
            Envelope.from_blob(VALID[:cut])


def _rebuilt(change):
    arr = cbor.loads(VALID)
    change(arr)
    return cbor.dumps(arr)


def _set(path, value):
    def change(arr):
        node = arr
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value

    return change


FOREIGN = {
    "cbor_map": cbor2.dumps({"a": 1}),
    "empty_array": cbor.dumps([]),
    "trailing_byte": VALID + b"\x00",
    "float_inside": cbor2.dumps(["edgegov-envelope", 1.0]),
    "wrong_magic": _rebuilt(_set([0], "other-envelope")),
    "future_version": _rebuilt(_set([1], 2)),
    "initial_mode_out_of_range": _rebuilt(_set([4], 7)),
    "no_modes": _rebuilt(_set([3], [])),
    "channel_not_a_list": _rebuilt(_set([5, 0], 3)),
    "channels_unsorted": _rebuilt(lambda a: a[5].reverse()),
    "safe_outside_mode": _rebuilt(_set([5, 0, 3], 10**6)),
    "stop_unknown": _rebuilt(_set([5, 0, 4], 7)),
    "rate_zero": _rebuilt(_set([5, 0, 13, 0, 2], 0)),
    "max_below_min": _rebuilt(_set([5, 0, 13, 0, 1], -5)),
    "bool_for_int": _rebuilt(_set([5, 0, 3], False)),
    "rule_index_out_of_range": _rebuilt(_set([5, 0, 11], 10**4)),
    "interlock_input_out_of_range": _rebuilt(_set([7, 0, 3, 0, 0], 9)),
    "interlock_channel_out_of_range": _rebuilt(_set([7, 0, 4, 0, 0], 9)),
    "interlock_no_conditions": _rebuilt(_set([7, 0, 3], [])),
    "link_trip_before_hold": _rebuilt(_set([8, 1], 1)),
    "approval_zero_timeout": _rebuilt(_set([9, 0], 0)),
    "missing_builtin_rule": _rebuilt(lambda a: a[10].remove("estop")),
    "rule_not_text": _rebuilt(_set([10, 0], 5)),
}


@pytest.mark.parametrize("blob", FOREIGN.values(), ids=FOREIGN.keys())
def test_corrupt_or_foreign_blob_is_refused(blob):
    with pytest.raises(EnvelopeError):
        Envelope.from_blob(blob)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.sampled_from(["flip", "set", "insert", "delete"]),
                  st.integers(0, len(VALID) - 1), st.integers(0, 255)),
        min_size=1, max_size=6,
    )
)
def test_byte_mutations_only_ever_raise_envelope_error(mutations):
    blob = bytearray(VALID)
    for op, pos, byte in mutations:
        pos %= max(len(blob), 1)
        if op == "flip" and blob:
            blob[pos] ^= 1 << (byte % 8)
        elif op == "set" and blob:
            blob[pos] = byte
        elif op == "insert":
            blob.insert(pos, byte)
        elif blob:
            del blob[pos]
    _load_or_envelope_error(bytes(blob))


def _load_or_envelope_error(blob: bytes) -> None:
    try:
        env = Envelope.from_blob(blob)
    except EnvelopeError:
        return
    # a mutation that still loads must give a governor that boots safe
    gov = Governor(env, b"k" * 32)
    d = gov.start(0)
    assert d.state == 0 and d.output == env.ch_safe


_leaf = st.one_of(
    st.integers(-(2**64), 2**64), st.none(), st.booleans(), st.text(max_size=4),
    st.binary(max_size=3),
)
_value = st.recursive(_leaf, lambda inner: st.lists(inner, max_size=4), max_leaves=8)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, list):
        for i, item in enumerate(node):
            yield from _paths(item, prefix + (i,))


ALL_PATHS = [p for p in _paths(cbor.loads(VALID)) if p]


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(ALL_PATHS), _value), min_size=1, max_size=3))
def test_structural_mutations_only_ever_raise_envelope_error(changes):
    arr = cbor.loads(VALID)
    for path, value in changes:
        node = arr
        try:
            for k in path[:-1]:
                node = node[k]
            node[path[-1]] = value
        except (IndexError, TypeError):
            continue  # an earlier change replaced a parent of this path
    try:
        blob = cbor.dumps(arr)
    except cbor.CBORError:
        return
    _load_or_envelope_error(blob)


def test_random_bytes_only_ever_raise_envelope_error():
    rng = random.Random(7)
    for _ in range(2000):
        blob = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
        with pytest.raises(EnvelopeError):
            Envelope.from_blob(blob)


def test_harness_runs_on_every_example():
    for path in EXAMPLES:
        h = Harness(compile_file(path))
        assert h.last["state"] == 0
