# The governor under the MicroPython unix port (run by tests/mpy/runner.py):
# boot/reset/arm/clamp/trip, operator-auth refusal, and proof that a steady-state control
# period (one 8-channel command, one telemetry, one tick) allocates nothing.
#
# Envelopes come precompiled from tests/mpy/data/ (pydantic does not run here); they are
# written by tests/mpy/make_blobs.py and checked up to date by tests/test_mpy_blobs.py.
import gc
import sys

from edgegov.core import codes as C
from edgegov.core.auth import sign_op
from edgegov.core.envelope import Envelope
from edgegov.core.events import TICK, Command, Operator, Telemetry
from edgegov.core.governor import Governor

HERE = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
KEY = b"mpy-test-key-0123456789abcdef..."


def _env(name):
    with open(HERE + "/data/" + name, "rb") as f:
        return Envelope.from_blob(f.read())


class _Ops:
    def __init__(self, env):
        self.dev = env.device_id
        self.n = 0

    def __call__(self, action, arg=0):
        self.n += 1
        return Operator(action, arg, self.n, sign_op(KEY, self.dev, action, arg, self.n))


def _cell():
    env = _env("spindle-cell.cbor")
    gov = Governor(env, KEY)
    return env, gov, _Ops(env)


def _healthy_cell():
    return Telemetry({"door_closed": True, "estop_button": False, "hydraulic_pressure": 1000})


def test_boot_reset_arm_clamp_trip():
    env, gov, ops = _cell()
    coolant = env.ch_index["coolant"]
    press = env.ch_index["press"]
    d = gov.start(0)
    assert d.state == C.ST_TRIPPED and d.verdict == C.TRIP and d.reason == C.R_BOOT
    assert d.estop and list(d.output) == list(env.ch_safe)
    gov.handle(_healthy_cell(), 0)
    d = gov.handle(ops(C.OP_RESET), 1)
    assert d.state == C.ST_DISARMED and not d.estop
    d = gov.handle(ops(C.OP_ARM), 2)
    assert d.state == C.ST_ARMED
    now = 2
    seq = 0
    while gov.link != C.LINK_OK:  # the link engages after engage_after_ms of commands
        now += 10
        seq += 1
        d = gov.handle(Command(seq, {"coolant": 0}), now)
        assert now < 1000
    assert now - 12 >= env.engage_after_ms - 10
    # coolant clamps at its max, moving at most rate * dt per command; dt is the time since
    # the previous sample, at most 20 ms (README, rate and acceleration)
    rate = env.mode_rate[0][coolant]
    top = env.mode_max[0][coolant]
    prev = 0
    for _ in range(top * 1000 // (rate * 20)):
        now += 100
        seq += 1
        gov.handle(_healthy_cell(), now)  # inputs go stale after 500 ms
        d = gov.handle(Command(seq, {"coolant": top + 50}), now)
        out = d.output[coolant]
        assert d.verdict == C.CLAMP
        assert out == min(top, prev + rate * 20 // 1000)
        prev = out
    assert prev == top
    assert d.reason == C.R_ABOVE_MAX and env.rules[d.rule] == "channels.coolant.max"
    # press (on_breach reject) keeps its output
    now += 100
    seq += 1
    d = gov.handle(Command(seq, {"press": env.mode_max[0][press] + 1}), now)
    assert d.verdict == C.REJECT and d.output[press] == 0
    # the e-stop button trips at once: STO coolant to safe, e-stop asserted
    now += 10
    d = gov.handle(Telemetry({"estop_button": True}), now)
    assert d.state == C.ST_TRIPPED and d.verdict == C.TRIP and d.reason == C.R_ESTOP_INPUT
    assert d.output[coolant] == env.ch_safe[coolant]
    assert d.estop
    # reset refused while pressed, accepted once released
    d = gov.handle(ops(C.OP_RESET), now + 1)
    assert d.state == C.ST_TRIPPED and d.reason == C.R_CAUSE_PRESENT
    gov.handle(Telemetry({"estop_button": False}), now + 2)
    d = gov.handle(ops(C.OP_RESET), now + 3)
    assert d.state == C.ST_DISARMED


def test_operator_auth_refusals():
    env, gov, ops = _cell()
    gov.start(0)
    gov.handle(_healthy_cell(), 0)
    before = (gov.state, gov.causes, gov.op_counter)
    forged = Operator(C.OP_RESET, 0, 1, sign_op(b"wrong-key", env.device_id, C.OP_RESET, 0, 1))
    d = gov.handle(forged, 1)
    assert d.verdict == C.REJECT and d.reason == C.R_AUTH_FAILED
    other = Operator(C.OP_RESET, 0, 1, sign_op(KEY, "cell-8", C.OP_RESET, 0, 1))
    d = gov.handle(other, 1)
    assert d.reason == C.R_AUTH_FAILED
    assert (gov.state, gov.causes, gov.op_counter) == before
    reset = ops(C.OP_RESET)
    assert gov.handle(reset, 2).state == C.ST_DISARMED
    d = gov.handle(Operator(reset.action, reset.arg, reset.counter, reset.mac), 3)
    assert d.reason == C.R_REPLAYED
    d = gov.handle(Operator(C.OP_ARM, 0, 99, None), 4)
    assert d.reason == C.R_AUTH_FAILED and gov.state == C.ST_DISARMED


def _bench():
    env = _env("bench8.cbor")
    gov = Governor(env, KEY)
    ops = _Ops(env)
    names = env.ch_names
    values = {}
    for n in names:
        values[n] = 0
    cmd = Command(0, values)
    tel = Telemetry({"estop": False, "door_closed": True, "load": 10})
    gov.start(0)
    gov.handle(tel, 0)
    gov.handle(ops(C.OP_RESET), 0)
    gov.handle(ops(C.OP_ARM), 0)
    return env, gov, cmd, tel


def _period(gov, cmd, tel, names, k, now):
    """One control period: an 8-channel command, telemetry, a tick. Values swing within
    the rate so every channel is governed and moved; grip asks for more than its max
    every period, so the clamp path runs too."""
    v = cmd.values
    swing = (k % 20) - 10
    for n in names:
        v[n] = swing
    v["grip"] = 150
    v["rail"] = swing + 10
    cmd.seq += 1
    d = gov.handle(cmd, now)
    ok = d.kick and d.verdict <= C.CLAMP
    gov.handle(tel, now)
    gov.handle(TICK, now)
    return ok


def test_steady_state_period_allocates_nothing():
    env, gov, cmd, tel = _bench()
    names = env.ch_names
    now = 0
    k = 0
    while gov.link != C.LINK_OK or k < 50:  # engage and settle
        now += 10
        k += 1
        _period(gov, cmd, tel, names, k, now)
    assert gov.state == C.ST_ARMED
    failures = 0
    # warm-up loop with the same variables, so one-off allocations of this frame are done
    for _ in range(20):
        now += 10
        k += 1
        if not _period(gov, cmd, tel, names, k, now):
            failures += 1
    gc.collect()
    a = gc.mem_alloc()
    for _ in range(200):
        now += 10
        k += 1
        if not _period(gov, cmd, tel, names, k, now):
            failures += 1
    grew = gc.mem_alloc() - a
    first = gov.out[0]
    print("steady-state period: %d bytes allocated over 200 periods" % grew)
    assert failures == 0
    assert gov.state == C.ST_ARMED and gov.link == C.LINK_OK
    assert first == ((k % 20) - 10)  # the last command was applied
    assert gov.out[env.ch_index["grip"]] == env.mode_max[0][env.ch_index["grip"]]
    assert grew == 0, grew


def test_allocation_check_is_not_vacuous():
    # The same measurement around a loop that allocates per call must see it.
    env, gov, cmd, tel = _bench()
    gc.collect()
    a = gc.mem_alloc()
    for i in range(200):
        cmd.values = {"a1": i}
    assert gc.mem_alloc() - a > 0


def test_core_import_heap_cost():
    saved = {}
    for name in list(sys.modules):
        if name == "edgegov" or name.startswith("edgegov."):
            saved[name] = sys.modules.pop(name)
    gc.collect()
    a = gc.mem_alloc()
    import edgegov.core.envelope  # noqa: F401
    import edgegov.core.governor  # noqa: F401

    gc.collect()
    cost = gc.mem_alloc() - a
    print("core import heap cost: %d bytes" % cost)
    for name, mod in saved.items():
        sys.modules[name] = mod
    assert cost > 0
