"""The C accelerator (``edgegov._recenc``) writes exactly what the Python encoder writes.

``edgegov.core.record`` is the reference; the accelerator takes over the common DECISION and
EVENT records on CPython and must hand everything else back (return False) without having
changed the encoder. Here both run on the same generated inputs, and the bytes and the
encoder's state after the call (``n``, ``t``, ``seq_ref``, ``prev_out``) must be identical;
for a hand-back, the state must be untouched. Then whole governor runs (the bench stream and
the golden script) must leave byte-identical rings either way.

A build that silently lost the accelerator fails ``test_the_accelerator_is_built`` unless
``EDGEGOV_PURE_RECORDS`` asks for the pure encoder (or no C compiler is installed).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
from contextlib import contextmanager
from pathlib import Path

import pytest
from edgegov.config.compile import compile_file
from edgegov.core import record
from edgegov.core.codes import (
    EV_COMMAND,
    EV_FAULT,
    EV_OPERATOR,
    EV_TELEMETRY,
    EV_TICK,
)
from edgegov.core.decision import Decision
from edgegov.core.envelope import Envelope
from edgegov.core.events import TICK, Command, Fault, Operator, Telemetry
from edgegov.core.record import Encoder, decode
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parent.parent
PURE_ASKED = os.environ.get("EDGEGOV_PURE_RECORDS", "") not in ("", "0")

try:
    from edgegov import _recenc
except ImportError:  # checked by test_the_accelerator_is_built
    _recenc = None

needs_accel = pytest.mark.skipif(_recenc is None, reason="edgegov._recenc is not built")


def _compiler() -> str | None:
    cc = sysconfig.get_config_var("CC") or "cc"
    return shutil.which(shlex.split(cc)[0])


def test_the_accelerator_is_built():
    if PURE_ASKED:
        assert record._c_decision is None and record._c_event is None
        pytest.skip("EDGEGOV_PURE_RECORDS is set: the pure encoder runs")
    if sys.implementation.name == "cpython" and _compiler() is None and _recenc is None:
        pytest.skip("no C compiler: the optional accelerator could not be built")
    assert _recenc is not None, (
        "edgegov._recenc is missing: reinstall (pip install -e .) with a C compiler, or set "
        "EDGEGOV_PURE_RECORDS=1 to run the pure encoder on purpose"
    )
    assert record._c_decision is _recenc.decision
    assert record._c_event is _recenc.event


@needs_accel
@pytest.mark.parametrize(("value", "pure"), [("1", True), ("yes", True), ("0", False),
                                             ("", False)])
def test_EDGEGOV_PURE_RECORDS_is_read_at_import(value, pure):
    code = ("import edgegov.core.record as r, edgegov._recenc as c; "
            "print(r._c_decision is None, r._c_event is None, c.PURE)")
    env = dict(os.environ, EDGEGOV_PURE_RECORDS=value)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == [str(pure)] * 3


# ----------------------------------------------------------------------------- harness


class Env:
    """What the encoder reads of an envelope, for any channel and input count."""

    def __init__(self, n_ch, n_in=3):
        self.ch_names = [f"c{i:02d}" for i in range(n_ch)]
        self.n = n_ch
        self.ch_index = {k: i for i, k in enumerate(self.ch_names)}
        self.ch_safe = [0] * n_ch
        self.in_names = [f"i{i:02d}" for i in range(n_in)]
        self.in_index = {k: i for i, k in enumerate(self.in_names)}


@contextmanager
def accel(on: bool):
    """Run the record module with (on) or without the accelerator."""
    saved = record._c_decision, record._c_event
    if on:
        record._c_decision, record._c_event = _recenc.decision, _recenc.event
    else:
        record._c_decision = record._c_event = None
    try:
        yield
    finally:
        record._c_decision, record._c_event = saved


def _norm(v):
    """A comparable form that tells bool from int and NaN from NaN."""
    if isinstance(v, float) and math.isnan(v):
        return (float, "nan")
    return (type(v), repr(v))


def state(enc):
    return (bytes(enc.buf), enc.n, _norm(enc.t), _norm(enc.seq_ref),
            [_norm(v) for v in enc.prev_out])


def outcome(enc, call):
    """What one encoder call leaves behind: the payload and state, or the error."""
    try:
        call(enc)
    except Exception as e:  # the Python code raises; the accelerator must too (by handing back)
        result = ("raised", type(e).__name__)
    else:
        result = ("ok", bytes(enc.payload()))
    return result, enc.n, _norm(enc.t), _norm(enc.seq_ref), [_norm(v) for v in enc.prev_out]


def check(make_enc, call, raw):
    """Python vs accelerated vs the bare C function on three encoders in the same state.
    Returns whether the C function took the record."""
    with accel(False):
        py = outcome(make_enc(), call)
    with accel(True):
        c = outcome(make_enc(), call)
    assert c == py
    enc = make_enc()
    before = state(enc)
    buf, prev_out = enc.buf, enc.prev_out
    taken = raw(enc)
    assert taken is True or taken is False
    assert enc.buf is buf and enc.prev_out is prev_out
    if taken:
        assert py[0][0] == "ok"
        assert outcome(enc, lambda e: None) == py
        decode(bytes(enc.payload()))  # a valid record of its kind
    else:
        assert state(enc) == before, "handed back but changed the encoder"
    event("C took the record" if taken else "handed back")  # --hypothesis-show-statistics
    return taken


# ----------------------------------------------------------------------------- strategies

BOUNDS = [0, 1, 23, 24, 255, 256, 0xFFFF, 0x10000, 2**32 - 1, 2**32, 2**63 - 1, 2**63,
          2**64 - 1, 2**64, 2**70]
EDGE = sorted({s * b + k for b in BOUNDS for s in (1, -1) for k in (-1, 0, 1)})
ints = st.one_of(st.integers(-30, 300), st.sampled_from(EDGE),
                 st.integers(-(2**66), 2**66))
small = st.integers(-1000, 100_000)


class Int(int):
    """An int subclass: not ``type(v) is int``."""


class Str(str):
    """A str subclass: a known name, but not an exact str."""


class Dict(dict):
    """A dict subclass: not an exact dict."""


odd = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.none(),
    st.text(max_size=3),
    st.builds(Int, st.integers(-5, 5)),
    st.just([1]),
    st.binary(max_size=2),
)


def values_st(mode):
    if mode == "plain":
        return st.one_of(small, st.booleans())
    if mode == "edge":
        return st.one_of(ints, st.booleans())
    return st.one_of(ints, st.booleans(), odd)


def draw_values(data, names, mode):
    """A values map: usually exactly the names, sometimes missing or extra keys, a dict
    subclass or no dict at all."""
    shape = data.draw(st.sampled_from(["exact"] * (40 if mode == "plain" else 8)
                                      + ["missing", "subset", "subset", "extra", "subclass",
                                         "notdict"]))
    vals = {k: data.draw(values_st(mode)) for k in names}
    if shape == "missing" and names:
        del vals[data.draw(st.sampled_from(names))]
    elif shape == "subset":  # some of the names, in any order (the pair layout sorts them)
        keys = data.draw(st.permutations(names))[:data.draw(st.integers(0, len(names)))]
        vals = {k: vals[k] for k in keys}
    elif shape == "extra":
        vals[data.draw(st.sampled_from(["zz", "a", 5, ("t",), None]))] = data.draw(
            values_st(mode))
    elif shape == "subclass":
        vals = Dict(vals)
    elif shape == "notdict":
        vals = data.draw(st.sampled_from([None, [1, 2], "x", 3]))
    return vals


def draw_decision(data, n, prev_out, mode):
    d = Decision(n)
    d.verdict = data.draw(st.integers(0, 5) if mode == "plain" else st.one_of(
        st.integers(0, 5), st.sampled_from([-1, 2**41, 2**63, 0.0])))
    d.reason = data.draw(st.integers(0, 38) if mode == "plain" else st.one_of(
        st.integers(0, 38), st.sampled_from([-7, 2**41, 2**64])))
    d.rule = data.draw(st.integers(-1, 20) if mode == "plain" else ints)
    d.margin = data.draw(small if mode == "plain" else ints)
    ints_or = st.one_of(small, st.none()) if mode == "plain" else st.one_of(
        ints, st.none(), odd)
    for i in range(n):
        d.proposed[i] = data.draw(ints_or)
    out = []
    for i in range(n):
        pick = data.draw(st.sampled_from(["proposed", "prev", "prev", "other"]))
        if pick == "proposed" and d.proposed[i] is not None:
            out.append(d.proposed[i])
        elif pick == "prev":
            out.append(prev_out[i])
        else:
            out.append(data.draw(small if mode == "plain" else st.one_of(ints, odd)))
    d.output = data.draw(st.sampled_from([list, list, list, tuple]))(out)
    for _ in range(data.draw(st.integers(0, 4))):
        d.event(data.draw(st.integers(1, 24) if mode == "plain" else ints),
                data.draw(st.integers(-1, 500) if mode == "plain" else ints))
    if mode != "plain" and data.draw(st.integers(0, 20)) == 0:
        d.n_events = data.draw(st.sampled_from([-1, 17, 100, True]))
    return d


def draw_encoder_state(data, mode):
    n = data.draw(st.sampled_from([0, 1, 2, 3, 8]) if mode != "odd" else st.sampled_from(
        [0, 1, 3, 8, 64, 65]))
    env = Env(n)
    capacity = data.draw(st.sampled_from([1024] * 12 + [1, 8, 20, 40]))
    t = data.draw(small if mode == "plain" else ints)
    seq_ref = data.draw(small if mode == "plain" else ints)
    prev = [data.draw(small if mode == "plain" else st.one_of(ints, ints, odd))
            for _ in range(n)]

    def make_enc():
        enc = Encoder(env, capacity)
        enc.t = t
        enc.seq_ref = seq_ref
        enc.prev_out = list(prev)
        return enc

    return env, prev, make_enc


MODES = st.sampled_from(["plain", "plain", "edge", "odd"])
SETTINGS = settings(max_examples=600, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


# ----------------------------------------------------------------------------- differential


@needs_accel
@SETTINGS
@given(st.data())
def test_decision_matches_the_python_encoder(data):
    mode = data.draw(MODES)
    env, prev, make_enc = draw_encoder_state(data, mode)
    seq = data.draw(small if mode == "plain" else st.one_of(ints, odd))
    cmd = Command(seq, draw_values(data, env.ch_names, mode))
    now = data.draw(small if mode == "plain" else st.one_of(ints, st.just(1.5)))
    d = draw_decision(data, env.n, prev, mode)
    check(make_enc, lambda e: e.decision(cmd, now, d),
          lambda e: _recenc.decision(e, cmd, now, d))


@needs_accel
@SETTINGS
@given(st.data())
def test_event_matches_the_python_encoder(data):
    mode = data.draw(MODES)
    env, prev, make_enc = draw_encoder_state(data, mode)
    kind = data.draw(st.sampled_from(["tick"] * 3 + ["telemetry"] * 3
                                     + ["operator", "fault", "other"]))
    if kind == "tick":
        ev = TICK
    elif kind == "telemetry":
        ev = Telemetry(draw_values(data, env.in_names, mode))
    elif kind == "operator":
        ev = Operator(data.draw(st.integers(1, 8)), data.draw(ints), data.draw(small),
                      data.draw(st.sampled_from([None, b"\x01" * 32, bytearray(2)])))
    elif kind == "fault":
        ev = Fault(data.draw(st.integers(0, 9)), data.draw(st.booleans()))
    else:
        ev = Command(1, {})  # a kind EVENT records do not take: the Python code raises
    now = data.draw(small if mode == "plain" else st.one_of(ints, st.just(2.5)))
    d = draw_decision(data, env.n, prev, mode)
    authentic = data.draw(st.booleans())
    taken = check(make_enc, lambda e: e.event(ev, now, d, authentic),
                  lambda e: _recenc.event(e, ev, now, d))
    if kind in ("operator", "fault", "other"):
        assert not taken


def _plain_case(n=8, capacity=1024):
    env = Env(n)
    enc = Encoder(env, capacity)
    enc.t, enc.seq_ref = 1000, 41
    cmd = Command(42, {k: i * 10 for i, k in enumerate(env.ch_names)})
    d = Decision(n)
    for i in range(n):
        d.proposed[i] = i * 10
        d.output[i] = i * 10
    return env, enc, cmd, d


@needs_accel
@pytest.mark.parametrize("verdict", [0, 1, 2, 5])
@pytest.mark.parametrize("n_events", [0, 1, 4])
@pytest.mark.parametrize("differ", [False, True])
def test_the_common_records_are_taken(verdict, n_events, differ):
    """Not vacuous: plain commands, ticks and telemetry go through the C code."""
    env, enc, cmd, d = _plain_case()
    d.verdict = verdict
    if differ:
        d.output[3] = -7
    for k in range(n_events):
        d.event(k + 1, 2**40 - k)
    prev = list(enc.prev_out)
    assert _recenc.decision(enc, cmd, 1010, d) is True
    ref = Encoder(env)
    ref.t, ref.seq_ref, ref.prev_out = 1000, 41, prev
    with accel(False):
        ref.decision(cmd, 1010, d)
    assert bytes(enc.payload()) == bytes(ref.payload())
    assert (enc.n, enc.t, enc.seq_ref, enc.prev_out) == (ref.n, ref.t, ref.seq_ref,
                                                         ref.prev_out)
    assert _recenc.event(enc, TICK, 1020, d) is True
    partial = Command(43, {"c05": 50, "c01": True, "c03": -(2**64)})  # some, out of order
    ref.t, ref.seq_ref, ref.prev_out = enc.t, enc.seq_ref, list(enc.prev_out)
    assert _recenc.decision(enc, partial, 1025, d) is True
    with accel(False):
        ref.decision(partial, 1025, d)
    assert bytes(enc.payload()) == bytes(ref.payload())
    assert decode(bytes(enc.payload()))[3] == [[1, True], [3, -(2**64)], [5, 50]]
    assert _recenc.event(enc, Telemetry({"i02": 7}), 1026, d) is True
    assert decode(bytes(enc.payload()))[2] == [EV_TELEMETRY, [[2, 7]]]
    tel = Telemetry({"i00": True, "i01": False, "i02": -(2**64)})
    assert _recenc.event(enc, tel, 1030, d) is True
    assert decode(bytes(enc.payload()))[2] == [EV_TELEMETRY, [True, False, -(2**64)]]


@needs_accel
@pytest.mark.parametrize("change", [
    "values_float", "values_nan", "values_int_subclass", "values_huge", "values_partial_nan",
    "values_str_subclass_key", "values_extra", "values_none", "seq_float", "seq_huge",
    "now_float", "t_huge",
    "output_float", "output_bool", "prev_out_float", "proposed_float", "rule_huge",
    "n_events_over", "small_buffer", "buffer_bytes", "prev_out_tuple", "output_short",
    "channels_65",
])
def test_everything_else_is_handed_back_untouched(change):
    env, enc, cmd, d = _plain_case(65 if change == "channels_65" else 8)
    if change == "values_float":
        cmd.values["c01"] = 1.0
    elif change == "values_nan":
        cmd.values["c01"] = float("nan")
    elif change == "values_int_subclass":
        cmd.values["c01"] = Int(1)
    elif change == "values_huge":
        cmd.values["c01"] = 2**64
    elif change == "values_partial_nan":
        del cmd.values["c01"]
        cmd.values["c02"] = float("nan")
    elif change == "values_str_subclass_key":  # pairs (one name short): exact str keys only
        del cmd.values["c01"], cmd.values["c02"]
        cmd.values[Str("c01")] = 1
    elif change == "values_extra":
        cmd.values["zz"] = 1
    elif change == "values_none":
        cmd.values = None
    elif change == "seq_float":
        cmd.seq = 42.0
    elif change == "seq_huge":
        cmd.seq = 2**63
    elif change == "now_float":
        pass
    elif change == "t_huge":
        enc.t = 2**63
    elif change == "output_float":
        d.output[2] = 20.0
    elif change == "output_bool":
        d.output[1] = True
    elif change == "prev_out_float":
        enc.prev_out[2] = 0.5  # read only for a channel without a proposal
        d.proposed[2] = None
    elif change == "proposed_float":
        d.proposed[2] = 20.0
    elif change == "rule_huge":
        d.rule = 2**64
    elif change == "n_events_over":
        d.n_events = 17
    elif change == "small_buffer":
        enc.buf = bytearray(10)
    elif change == "buffer_bytes":
        enc.buf = bytes(1024)
    elif change == "prev_out_tuple":
        enc.prev_out = tuple(enc.prev_out)
    elif change == "output_short":
        d.output = d.output[:3]
    now = 1010.0 if change == "now_float" else 1010
    before = state(enc)
    assert _recenc.decision(enc, cmd, now, d) is False
    assert state(enc) == before


@needs_accel
def test_operator_and_fault_events_are_handed_back():
    env, enc, _cmd, d = _plain_case()
    before = state(enc)
    for ev in (Operator(1, 0, 5, b"\x00" * 32), Fault(3), Fault(3, False)):
        assert ev.kind in (EV_OPERATOR, EV_FAULT)
        assert _recenc.event(enc, ev, 2000, d) is False
        assert state(enc) == before
    assert Command(1, {}).kind == EV_COMMAND and TICK.kind == EV_TICK


# ----------------------------------------------------------------------------- whole runs


def _counting():
    """The C functions, counting records taken and handed back."""
    counts = {"taken": 0, "handed_back": 0}

    def wrap(fn):
        def counted(*args):
            taken = fn(*args)
            counts["taken" if taken else "handed_back"] += 1
            return taken
        return counted

    return counts, wrap(_recenc.decision), wrap(_recenc.event)


@needs_accel
def test_a_governor_run_leaves_a_byte_identical_ring():
    from edgegov_cli.bench_core import ENVELOPE, make_stream
    from edgegov_cli.bench_lineage import _run_governor

    compiled = compile_file(ENVELOPE)
    env = Envelope.from_blob(compiled.blob, compiled.digest)
    stream = make_stream(env, 3000)
    with accel(False):
        _, ring_py, lineage_py, _ = _run_governor(env, stream)
    counts, dec, evt = _counting()
    with accel(True):
        record._c_decision, record._c_event = dec, evt
        _, ring_c, lineage_c, _ = _run_governor(env, stream)
    assert [bytes(p) for _, p in ring_c.read_all()] == [bytes(p) for _, p in ring_py.read_all()]
    assert ring_c.image() == ring_py.image()
    enc_c, enc_py = lineage_c.enc, lineage_py.enc
    assert (enc_c.t, enc_c.seq_ref, enc_c.prev_out) == (enc_py.t, enc_py.seq_ref,
                                                        enc_py.prev_out)
    # the stream's NaNs are handed back; nearly everything else is taken
    assert counts["taken"] > 0.9 * (counts["taken"] + counts["handed_back"])
    assert counts["handed_back"] > 0


def _make_golden():
    spec = importlib.util.spec_from_file_location("make_golden",
                                                  REPO / "tools" / "make_golden.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@needs_accel
def test_the_golden_script_rebuilds_the_golden_image_with_the_accelerator():
    """Every record kind, every event input and the bad values of the golden run."""
    golden = REPO / "tests" / "golden" / "v1"
    counts, dec, evt = _counting()
    with accel(True):
        record._c_decision, record._c_event = dec, evt
        ring, _ = _make_golden().run()
    assert ring.image() == (golden / "lineage.img").read_bytes()
    expected = [r["hex"] for r in json.loads((golden / "records.json").read_text())]
    assert [p.hex() for _, p in ring.appended] == expected
    assert counts["taken"] > 100 and counts["handed_back"] > 5


@needs_accel
def test_a_key_whose_eq_mutates_the_names_is_handed_back_safely():
    """A values key that collides with a channel name's hash runs Python code in the dict
    look-up; the accelerator must not read names or values freed under it."""
    env, enc, cmd, d = _plain_case(3)

    class Evil:
        def __hash__(self):
            return hash("c01")

        def __eq__(self, other):
            env.ch_names.clear()
            cmd.values.clear()
            return False

    cmd.values = {"c00": 1, Evil(): 2, "c02": 3}
    before = state(enc)
    assert _recenc.decision(enc, cmd, 1010, d) is False
    assert state(enc) == before
