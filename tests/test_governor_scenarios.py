"""Scripted-time scenarios for every rule, latch and transition of the governor.

Time is advanced by hand (``dt`` arguments); nothing sleeps. The envelope is ``TEST_TOML``
from conftest (resolution 1 everywhere, round numbers) unless a test needs its own.
Expected numbers are derived from the envelope's figures (rate × elapsed time and so on),
never copied from a run.
"""

from __future__ import annotations

import pytest
from conftest import (
    HEALTHY,
    KEY,
    TEST_TOML,
    C,
    Command,
    Fault,
    Harness,
    Operator,
    Telemetry,
    compile_envelope,
)
from edgegov.core.auth import sign_op
from edgegov.core.events import TICK

# Figures of TEST_TOML, named so the expectations below read as arithmetic.
SPINDLE_RATE = 1000  # units/s in mode run
SPINDLE_RATE_SETUP = 500
PRESS_RATE = 1000
HOLD_AFTER = 100
TRIP_AFTER = 500
ENGAGE_AFTER = 50
APPROVAL_TIMEOUT = 1000
GRANT = 2000
STALE_AFTER = 5000


def step(rate_per_s: int, dt_ms: int) -> int:
    """Whole units a rate allows in ``dt_ms`` (no carry)."""
    return rate_per_s * dt_ms // 1000


def drive(h: Harness, target: dict, period: int = 10, limit: int = 500) -> dict:
    """Command ``target`` every ``period`` ms until every named output has reached it."""
    for _ in range(limit):
        d = h.cmd(dt=period, **target)
        if all(h.out(n) == v for n, v in target.items()):
            return d
    raise AssertionError(f"never reached {target}: {h.gov.out}")


def single_channel(extra: str = "", **fields) -> Harness:
    """A one-channel envelope ``axis`` (resolution 1, no link) for rate/accel arithmetic."""
    spec = {"min": -100000, "max": 100000, "rate_per_s": 1000, "safe": 0, **fields}
    body = "\n".join(f"{k} = {v!r}".replace("'", '"') for k, v in spec.items())
    text = f'[device]\nid = "axis-1"\n\n[channels.axis]\nresolution = 1\n{body}\n{extra}'
    h = Harness(compile_envelope(text))
    h.reset_and_arm()
    return h


# ----------------------------------------------------------------------------- boot


def test_boot_decision_is_tripped_safe_and_asserts_estop(h):
    d = h.last
    assert d["state"] == C.ST_TRIPPED
    assert d["verdict"] == C.TRIP
    assert d["reason"] == C.R_BOOT
    assert h.rule(d) == "state"
    assert (C.E_BOOT, C.C_BOOT) in d["events"]
    assert d["output"] == list(h.env.ch_safe)
    assert d["estop"] is True
    assert d["record"] is True
    assert h.gov.causes == C.C_BOOT


def test_commands_at_boot_are_refused_and_outputs_stay_safe(h):
    h.healthy()
    d = h.cmd(spindle=100, feed=50)
    assert d["verdict"] == C.TRIP
    assert d["reason"] == C.R_TRIPPED
    assert d["output"] == list(h.env.ch_safe)
    assert d["estop"] is True


def test_arm_before_reset_is_refused(h):
    h.healthy()
    d = h.op(C.OP_ARM)
    assert d["verdict"] == C.REJECT
    assert d["reason"] == C.R_NOT_ALLOWED
    assert d["state"] == C.ST_TRIPPED


# ----------------------------------------------------------------------------- reset / arm


def test_reset_then_arm_releases_estop_and_arms(h):
    h.healthy()
    d = h.op(C.OP_RESET)
    assert d["state"] == C.ST_DISARMED
    assert (C.E_RESET, 0) in d["events"]
    assert (C.E_ESTOP_OUT, 0) in d["events"]
    assert d["estop"] is False
    assert h.gov.causes == 0
    d = h.op(C.OP_ARM)
    assert d["state"] == C.ST_ARMED
    assert (C.E_ARM, h.gov.mode) in d["events"]
    assert d["output"] == list(h.env.ch_safe)


def test_reset_refused_while_estop_input_never_received(h):
    h.tel(door_closed=True, pressure=200)
    d = h.op(C.OP_RESET)
    assert d["state"] == C.ST_TRIPPED
    assert d["reason"] == C.R_CAUSE_PRESENT
    assert any(code == C.E_RESET_REFUSED for code, _ in d["events"])
    assert h.gov.causes & C.C_ESTOP_INPUT


def test_disarmed_commands_hold_and_outputs_stay_safe(h):
    h.healthy()
    h.op(C.OP_RESET)
    for _ in range(10):
        d = h.cmd(spindle=500, feed=200, press=50)
        assert d["verdict"] == C.HOLD
        assert d["reason"] == C.R_NOT_ARMED
        assert d["output"] == list(h.env.ch_safe)


# ----------------------------------------------------------------------------- range


def test_range_clamp_above_max(live):
    d = live.cmd(feed=700)
    assert d["verdict"] == C.CLAMP
    assert d["reason"] == C.R_ABOVE_MAX
    assert live.rule(d) == "channels.feed.max"
    assert d["margin"] == 500 - 700
    assert d["proposed"][live.ch("feed")] == 700
    assert d["output"][live.ch("feed")] == 500


def test_range_clamp_below_min(live):
    d = live.cmd(feed=-650)
    assert d["verdict"] == C.CLAMP
    assert d["reason"] == C.R_BELOW_MIN
    assert live.rule(d) == "channels.feed.min"
    assert d["margin"] == -650 - (-500)
    assert d["output"][live.ch("feed")] == -500


def test_range_allow_reports_closest_margin(live):
    d = live.cmd(feed=450, press=5)
    assert d["verdict"] == C.ALLOW
    # feed is 50 below its max, press 5 above its min: the closest approach wins.
    assert d["margin"] == 5
    assert live.rule(d) == "channels.press.min"
    assert d["output"][live.ch("feed")] == 450
    assert d["output"][live.ch("press")] == 5


def test_range_reject_keeps_last_output(live):
    drive(live, {"press": 40})
    d = live.cmd(press=150)
    assert d["verdict"] == C.REJECT
    assert d["reason"] == C.R_ABOVE_MAX
    assert live.rule(d) == "channels.press.max"
    assert d["margin"] == 100 - 150
    assert d["output"][live.ch("press")] == 40


def test_reject_of_one_channel_drops_the_whole_command(live):
    d = live.cmd(press=150, feed=100)
    assert d["verdict"] == C.REJECT
    assert d["output"][live.ch("feed")] == 0


def test_range_trip_latches_and_sto_goes_safe(live):
    drive(live, {"press": 40, "feed": 300, "blade": 20})
    d = live.cmd(blade=60)
    assert d["verdict"] == C.TRIP
    assert d["reason"] == C.R_ABOVE_MAX
    assert live.rule(d) == "channels.blade.max"
    assert d["state"] == C.ST_TRIPPED
    assert live.gov.causes & C.C_LIMIT
    for name in ("press", "feed", "blade"):  # STO channels: safe at once
        assert d["output"][live.ch(name)] == 0
    assert (C.E_TRIP, C.R_ABOVE_MAX) in d["events"]


# ----------------------------------------------------------------------------- rate / accel


def test_rate_clamps_to_rate_times_elapsed(live):
    d = live.cmd(dt=10, spindle=1000)
    assert d["verdict"] == C.CLAMP
    assert d["reason"] == C.R_RATE
    assert live.rule(d) == "channels.spindle.rate"
    expected = step(SPINDLE_RATE, 10)
    assert d["output"][live.ch("spindle")] == expected
    assert d["margin"] == -(1000 - expected)


def test_rate_clamp_never_goes_beyond_the_proposal(live):
    live.cmd(spindle=1000)
    before = live.out("spindle")
    d = live.cmd(dt=10, spindle=before + 3)  # less than one period's budget
    assert d["verdict"] == C.ALLOW
    assert live.out("spindle") == before + 3


def test_slow_rate_makes_progress_through_carry():
    rate = 50  # units/s: half a unit per 10 ms period
    h = single_channel(rate_per_s=rate)
    outs = [h.cmd(dt=10, axis=1000)["output"][0] for _ in range(100)]
    assert outs[-1] == rate * 1000 // 1000  # one second of commands: exactly `rate` units
    steps = [b - a for a, b in zip([0] + outs, outs, strict=False)]
    assert set(steps) <= {0, 1}
    assert outs[1] == 1  # progress after two periods, not never


def test_accel_limits_speed_growth_then_rate_caps():
    rate, accel, dt = 10000, 100000, 10  # units/s, units/s², ms
    h = single_channel(rate_per_s=rate, accel_per_s2=accel)
    prev = 0
    speed = 0
    seen_accel = seen_rate = False
    for _ in range(15):
        d = h.cmd(dt=dt, axis=90000)
        speed = min(speed + accel * dt // 1000, rate)
        expected = prev + speed * dt // 1000
        assert d["output"][0] == expected
        if speed < rate:
            assert d["reason"] == C.R_ACCEL
            assert h.rule(d) == "channels.axis.accel"
            seen_accel = True
        else:
            assert d["reason"] == C.R_RATE
            seen_rate = True
        prev = expected
    assert seen_accel and seen_rate


@pytest.mark.parametrize("accel", [None, 100000])
def test_reversal_never_invents_motion(accel):
    fields = {"rate_per_s": 10000}
    if accel:
        fields["accel_per_s2"] = accel
    h = single_channel(**fields)
    for _ in range(20):
        h.cmd(dt=10, axis=90000)  # moving up at speed
    for proposal in (h.out("axis") - 1, h.out("axis") - 5000, -90000):
        prev = h.out("axis")
        d = h.cmd(dt=10, axis=proposal)
        out = d["output"][0]
        assert proposal <= out <= prev, (proposal, out, prev)


# ----------------------------------------------------------------------------- interlocks


def test_clamp_interlock_ramps_output_in_and_clamps_commands(live):
    drive(live, {"press": 40})
    d = live.tel(pressure=20)
    assert live.gov.il_active[live.env.il_names.index("low_pressure")]
    outs = [live.tick(10)["output"][live.ch("press")] for _ in range(3)]
    assert outs == [40 - step(PRESS_RATE, 10) * k for k in (1, 2, 3)]
    assert live.out("press") == 10
    d = live.cmd(press=30)
    assert d["verdict"] == C.CLAMP
    assert d["reason"] == C.R_INTERLOCK
    assert live.rule(d) == "interlocks.low_pressure"
    assert d["margin"] == 10 - 30
    assert live.out("press") == 10


def test_reject_interlock_keeps_output(live):
    drive(live, {"feed": 50})
    live.tel(pressure=350)
    d = live.cmd(feed=200)
    assert d["verdict"] == C.REJECT
    assert d["reason"] == C.R_INTERLOCK
    assert live.rule(d) == "interlocks.over_pressure"
    assert live.out("feed") == 50
    d = live.cmd(feed=80)  # inside the interlock: allowed
    assert d["verdict"] == C.ALLOW
    assert live.out("feed") == 80


def test_trip_interlock_trips_a_violating_command(live):
    live.tel(door_closed=False)
    d = live.cmd(press=5)
    assert d["verdict"] == C.TRIP
    assert d["reason"] == C.R_INTERLOCK
    assert live.rule(d) == "interlocks.door_open"
    assert d["state"] == C.ST_TRIPPED


def test_trip_interlock_trips_when_it_activates_on_violating_outputs(live):
    drive(live, {"press": 50, "spindle": 100})
    d = live.tel(door_closed=False)
    assert d["verdict"] == C.TRIP
    assert d["reason"] == C.R_INTERLOCK
    assert live.rule(d) == "interlocks.door_open"
    assert live.gov.causes & C.C_INTERLOCK
    assert live.out("press") == 0  # STO
    assert live.out("spindle") == 100  # SS1: ramps on ticks
    live.ticks(20)
    assert live.out("spindle") == 0
    d = live.op(C.OP_RESET)
    assert d["reason"] == C.R_CAUSE_PRESENT  # door still open
    assert d["state"] == C.ST_TRIPPED
    live.tel(door_closed=True)
    assert live.op(C.OP_RESET)["state"] == C.ST_DISARMED


def test_active_trip_interlock_without_violation_does_not_trip(live):
    d = live.tel(door_closed=False)
    assert d["state"] == C.ST_ARMED
    d = live.cmd(feed=100)
    assert d["verdict"] == C.ALLOW


def test_never_received_input_applies_the_restriction(h):
    h.tel(estop=False, door_closed=True)  # pressure never reported
    assert h.op(C.OP_RESET)["state"] == C.ST_DISARMED
    assert h.op(C.OP_ARM)["state"] == C.ST_ARMED
    h.engage()
    d = h.cmd(press=50)
    assert d["verdict"] == C.CLAMP
    assert d["reason"] == C.R_INTERLOCK
    assert h.rule(d) == "interlocks.low_pressure"
    assert h.out("press") == 10


def test_stale_input_reapplies_the_restriction(live):
    drive(live, {"press": 60})
    il = live.env.il_names.index("low_pressure")
    assert not live.gov.il_active[il]
    pressure_ms = live.gov.in_ms[live.env.in_index["pressure"]]
    events = []
    while live.now - pressure_ms <= STALE_AFTER:
        live.tel(estop=False, door_closed=True)  # keep the others fresh
        events += live.cmd(dt=50, press=60)["events"]
    assert (C.E_INPUT_STALE, live.env.in_index["pressure"]) in events
    assert live.gov.il_active[il]
    # The restriction in force pulls the output toward it at the rate: commands 50 ms
    # apart, each decision's budget covers at most 20 ms: 1000/s x 20 ms = 20 per command.
    assert live.out("press") == 40
    assert live.cmd(dt=50, press=60)["output"][live.ch("press")] == 20
    d = live.cmd(dt=50, press=60)
    assert (d["verdict"], d["reason"], live.out("press")) == (C.CLAMP, C.R_INTERLOCK, 10)


# ----------------------------------------------------------------------------- e-stop input


def test_estop_input_trips_at_once(live):
    drive(live, {"press": 40})
    d = live.tel(estop=True)
    assert d["verdict"] == C.TRIP
    assert d["reason"] == C.R_ESTOP_INPUT
    assert live.rule(d) == "estop"
    assert live.gov.causes & C.C_ESTOP_INPUT
    assert live.out("press") == 0


def test_reset_refused_while_estop_pressed_or_stale(live):
    live.tel(estop=True)
    assert live.op(C.OP_RESET)["reason"] == C.R_CAUSE_PRESENT
    live.tel(estop=False, dt=10)
    live.tick(STALE_AFTER + 1)  # released, but the report goes stale
    d = live.op(C.OP_RESET)
    assert d["reason"] == C.R_CAUSE_PRESENT
    assert d["state"] == C.ST_TRIPPED
    live.tel(estop=False, door_closed=True, pressure=200)
    assert live.op(C.OP_RESET)["state"] == C.ST_DISARMED


def test_estop_input_going_stale_trips_while_armed(live):
    last = live.gov.in_ms[live.env.in_index["estop"]]
    while live.now + 10 - last <= STALE_AFTER:
        d = live.cmd(dt=10, feed=0)
        assert d["state"] == C.ST_ARMED
    d = live.cmd(dt=10, feed=0)
    assert d["state"] == C.ST_TRIPPED
    assert live.gov.causes & C.C_ESTOP_INPUT


# ----------------------------------------------------------------------------- link


def test_commands_hold_until_link_engages_then_govern(h):
    h.reset_and_arm()
    t0 = h.now + 10
    d = h.cmd(dt=10, feed=100)
    assert d["verdict"] == C.HOLD
    assert d["reason"] == C.R_LINK_NOT_ENGAGED
    assert h.rule(d) == "link.hold"
    assert h.out("feed") == 0
    d = h.cmd(dt=ENGAGE_AFTER - 1, feed=100)  # t0 + engage - 1
    assert h.now == t0 + ENGAGE_AFTER - 1
    assert d["verdict"] == C.HOLD and h.gov.link != C.LINK_OK
    d = h.cmd(dt=1, feed=100)  # exactly engage_after_ms of liveness
    assert h.gov.link == C.LINK_OK
    assert (C.E_LINK_ENGAGED, ENGAGE_AFTER) in d["events"]
    assert d["verdict"] == C.ALLOW
    assert h.out("feed") == 100


def test_a_gap_longer_than_hold_restarts_the_engage_streak(h):
    h.reset_and_arm()
    h.cmd(dt=10, feed=0)
    h.cmd(dt=HOLD_AFTER + 1, feed=0)  # gap too long: a new streak starts here
    d = h.cmd(dt=ENGAGE_AFTER - 1, feed=0)
    assert h.gov.link != C.LINK_OK
    d = h.cmd(dt=1, feed=0)
    assert h.gov.link == C.LINK_OK
    assert any(c == C.E_LINK_ENGAGED for c, _ in d["events"])


def go_silent(live) -> int:
    """Move outputs, then return the time of the last valid command."""
    drive(live, {"spindle": 200, "press": 40})
    return live.now


def test_link_stage1_at_hold_after_with_ramp_and_stay(live):
    last = go_silent(live)
    d = live.tick(HOLD_AFTER)
    assert live.gov.link == C.LINK_OK
    assert d["record"] is False
    d = live.tick(1)  # hold_after_ms + 1 of silence
    assert live.gov.link == C.LINK_STALE
    assert (C.E_LINK_STALE, HOLD_AFTER + 1) in d["events"]
    assert d["verdict"] == C.HOLD
    assert d["reason"] == C.R_LINK_STALE
    assert live.rule(d) == "link.hold"
    assert d["record"] is True
    # spindle (hold = ramp) ramps to safe at its rate, press (hold = stay) stays.
    spindle = [live.tick(10)["output"][live.ch("spindle")] for _ in range(5)]
    assert all(b < a for a, b in zip([200] + spindle, spindle, strict=False))
    assert live.out("press") == 40
    assert live.now - last < TRIP_AFTER
    # a command during stage 1 is held, not applied
    d = live.cmd(dt=10, press=80)
    assert d["verdict"] == C.HOLD and d["reason"] == C.R_LINK_STALE
    assert live.out("press") == 40


def test_link_stage2_trips_exactly_at_trip_after(live):
    last = go_silent(live)
    while live.now < last + TRIP_AFTER - 1:
        d = live.tick(min(10, last + TRIP_AFTER - 1 - live.now))
    assert live.now == last + TRIP_AFTER - 1
    assert d["state"] == C.ST_ARMED
    d = live.tick(1)
    assert d["state"] == C.ST_TRIPPED
    assert d["reason"] == C.R_LINK_LOST
    assert live.rule(d) == "link.trip"
    assert (C.E_LINK_LOST, TRIP_AFTER) in d["events"]
    assert live.gov.causes & C.C_LINK_LOST
    assert live.out("press") == 0  # STO


def test_command_after_silence_without_ticks_is_held(live):
    """No tick in between: the command itself must notice the link went stale."""
    go_silent(live)
    live.cmd(feed=50)
    live.cmd(feed=50)  # steady state
    d = live.cmd(dt=HOLD_AFTER + 1, feed=200)
    assert d["verdict"] == C.HOLD
    assert d["reason"] == C.R_LINK_STALE
    assert live.out("feed") == 50


def test_first_tick_after_long_silence_goes_straight_to_trip(live):
    last = go_silent(live)
    d = live.tick(TRIP_AFTER)
    assert live.now == last + TRIP_AFTER
    assert d["state"] == C.ST_TRIPPED
    codes = [c for c, _ in d["events"]]
    assert C.E_LINK_STALE in codes and C.E_LINK_LOST in codes


def test_flapping_link_does_not_reset_the_trip_budget(live):
    last = go_silent(live)
    live.tick(HOLD_AFTER + 1)
    assert live.gov.link == C.LINK_STALE
    # single messages with gaps longer than hold_after: each starts a new streak
    for at in (last + 200, last + 320, last + TRIP_AFTER - ENGAGE_AFTER + 10):
        d = live.cmd(dt=at - live.now, feed=0)
        assert d["verdict"] == C.HOLD
        assert live.gov.link != C.LINK_OK
    # the last one starts a streak too late to engage before the budget runs out
    while live.now < last + TRIP_AFTER - 10:
        d = live.cmd(dt=10, feed=0)
    assert d["state"] == C.ST_ARMED
    d = live.cmd(dt=last + TRIP_AFTER - live.now, feed=0)
    assert live.now == last + TRIP_AFTER
    assert d["state"] == C.ST_TRIPPED
    assert live.gov.causes & C.C_LINK_LOST


def test_reengagement_resets_the_budget(live):
    last = go_silent(live)
    live.tick(HOLD_AFTER + 1)
    live.cmd(dt=last + 200 - live.now, feed=0)
    while live.gov.link != C.LINK_OK:
        live.cmd(dt=10, feed=0)
    assert live.now < last + TRIP_AFTER
    while live.now < last + TRIP_AFTER + 50:
        d = live.cmd(dt=10, feed=0)
    assert d["state"] == C.ST_ARMED


def test_arm_without_link_trips_after_trip_after(h):
    h.reset_and_arm()
    armed = h.now
    d = h.tick(TRIP_AFTER - 1)
    assert d["state"] == C.ST_ARMED
    d = h.tick(1)
    assert h.now == armed + TRIP_AFTER
    assert d["state"] == C.ST_TRIPPED
    assert d["reason"] == C.R_LINK_LOST


def test_reset_after_link_loss_needs_live_link(live):
    go_silent(live)
    live.tick(TRIP_AFTER)
    live.ticks(30)
    d = live.op(C.OP_RESET)
    assert d["reason"] == C.R_CAUSE_PRESENT
    live.cmd(dt=10, feed=0)
    assert live.op(C.OP_RESET)["state"] == C.ST_DISARMED


# ----------------------------------------------------------------------------- sanitising

BAD_VALUES = [
    (float("nan"), C.R_NAN),
    (float("inf"), C.R_INF),
    (float("-inf"), C.R_INF),
    (1.5, C.R_WRONG_TYPE),
    ("10", C.R_WRONG_TYPE),
    (True, C.R_WRONG_TYPE),
    (None, C.R_WRONG_TYPE),
    (1 << 40, C.R_OUT_OF_RANGE),
]


@pytest.mark.parametrize(("value", "reason"), BAD_VALUES)
def test_bad_values_are_rejected_and_never_count_as_liveness(live, value, reason):
    before_valid = live.gov.last_valid_ms
    before_seq = live.gov.last_seq
    d = live.cmd(feed=value)
    assert d["verdict"] == C.REJECT
    assert d["reason"] == reason
    assert live.rule(d) == "command"
    assert d["channel"] == live.ch("feed")
    assert live.out("feed") == 0
    assert live.gov.last_valid_ms == before_valid
    assert live.gov.last_seq == before_seq


@pytest.mark.parametrize(
    ("values", "reason"),
    [({"nozzle": 5}, C.R_UNKNOWN_CHANNEL), ({"feed": 5, "nozzle": 5}, C.R_UNKNOWN_CHANNEL),
     ({}, C.R_EMPTY), ([("feed", 5)], C.R_WRONG_TYPE), (None, C.R_WRONG_TYPE)],
)
def test_malformed_commands_are_rejected(live, values, reason):
    before = live.gov.last_valid_ms
    live.seq += 1
    d = live.handle(Command(live.seq, values), 10)
    assert d["verdict"] == C.REJECT
    assert d["reason"] == reason
    assert live.out("feed") == 0
    assert live.gov.last_valid_ms == before


@pytest.mark.parametrize("seq", ["7", 7.0, True, None])
def test_non_integer_seq_is_rejected(live, seq):
    before = live.gov.last_valid_ms
    d = live.handle(Command(seq, {"feed": 5}), 10)
    assert d["reason"] == C.R_WRONG_TYPE
    assert live.out("feed") == 0
    assert live.gov.last_valid_ms == before


def test_stale_and_repeated_seq_are_rejected(live):
    live.cmd(feed=10)
    seq = live.seq
    before = live.gov.last_valid_ms
    for s in (seq, seq - 1):
        d = live.cmd(seq=s, feed=90)
        assert d["verdict"] == C.REJECT
        assert d["reason"] == C.R_STALE_SEQ
        assert live.out("feed") == 10
        assert live.gov.last_valid_ms == before


def test_invalid_commands_do_not_keep_the_link_alive(live):
    last = go_silent(live)
    while live.now < last + TRIP_AFTER - 10:
        live.cmd(dt=10, feed=float("nan"))
        live.cmd(dt=0, seq=1, feed=0)  # stale seq
    assert live.gov.last_valid_ms == last
    d = live.tick(10)
    assert d["state"] == C.ST_TRIPPED
    assert d["reason"] == C.R_LINK_LOST


# ----------------------------------------------------------------------------- escalation


def at_spindle_max(live) -> None:
    drive(live, {"spindle": 1000})


def test_escalation_asks_and_holds(live):
    at_spindle_max(live)
    d = live.cmd(spindle=1200)
    assert d["verdict"] == C.ESCALATE
    assert d["reason"] == C.R_APPROVAL_NEEDED
    assert live.rule(d) == "channels.spindle.approval"
    assert (C.E_APPROVAL_ASKED, d["seq"]) in d["events"]
    assert live.out("spindle") == 1000
    d2 = live.cmd(spindle=1300)  # a second request while one is pending: no new ask
    assert d2["verdict"] == C.ESCALATE
    assert d2["reason"] == C.R_AWAITING_APPROVAL
    assert not any(c == C.E_APPROVAL_ASKED for c, _ in d2["events"])
    assert live.gov.pending_id == d["seq"]


def test_escalation_beyond_approved_range_is_rejected(live):
    at_spindle_max(live)
    d = live.cmd(spindle=1501)
    assert d["verdict"] == C.REJECT
    assert d["reason"] == C.R_ABOVE_MAX
    assert live.rule(d) == "channels.spindle.max"
    assert live.gov.pending_id == -1


def test_approval_grants_a_time_boxed_permit(live):
    at_spindle_max(live)
    ask = live.cmd(spindle=1200)
    d = live.op(C.OP_APPROVE, ask["seq"], dt=10)
    granted_at = live.now
    assert (C.E_APPROVAL_GRANTED, ask["seq"]) in d["events"]
    # rate still applies: 10 ms since the previous (recorded) decision, the request
    assert live.out("spindle") == 1000 + step(SPINDLE_RATE, 10)
    assert live.gov.permit_until[live.ch("spindle")] == granted_at + GRANT
    drive(live, {"spindle": 1200})
    d = live.cmd(spindle=1200)
    assert d["verdict"] == C.ALLOW
    # until the permit ends, values above max pass
    while live.now < granted_at + GRANT - 10:
        assert live.cmd(dt=10, spindle=1200)["verdict"] == C.ALLOW
    d = live.cmd(dt=10, spindle=1200)
    assert live.now == granted_at + GRANT
    assert (C.E_PERMIT_EXPIRED, live.ch("spindle")) in d["events"]
    assert d["verdict"] == C.ESCALATE  # the range is back: a new approval is needed
    outs = [live.cmd(dt=10, spindle=1000)["output"][live.ch("spindle")] for _ in range(25)]
    assert all(b <= a for a, b in zip(outs, outs[1:], strict=False))
    assert outs[-1] == 1000


def test_permit_expiry_ramps_output_back_on_ticks(live):
    at_spindle_max(live)
    ask = live.cmd(spindle=1200)
    live.op(C.OP_APPROVE, ask["seq"])
    until = live.gov.permit_until[live.ch("spindle")]
    drive(live, {"spindle": 1200})
    while live.now < until - 10:
        live.cmd(dt=10, spindle=1200)
    outs = []
    for _ in range(30):
        live.cmd(dt=5, spindle=1000)  # keep the link alive
        outs.append(live.tick(5)["output"][live.ch("spindle")])
    assert outs[-1] == 1000
    assert max(outs) <= 1200 and all(b <= a for a, b in zip(outs, outs[1:], strict=False))


def test_deny_refuses_and_clears_the_request(live):
    at_spindle_max(live)
    ask = live.cmd(spindle=1200)
    d = live.op(C.OP_DENY, ask["seq"])
    assert (C.E_APPROVAL_DENIED, ask["seq"]) in d["events"]
    assert d["verdict"] == C.REJECT and d["reason"] == C.R_APPROVAL_DENIED
    assert live.out("spindle") == 1000
    d = live.op(C.OP_APPROVE, ask["seq"])
    assert d["reason"] == C.R_NO_REQUEST
    assert live.gov.permit_until[live.ch("spindle")] == -1


def test_approval_expires_at_timeout(live):
    at_spindle_max(live)
    ask = live.cmd(spindle=1200)
    asked = live.now
    for _ in range((APPROVAL_TIMEOUT - 10) // 10):
        live.cmd(dt=10, spindle=1000)
    d = live.tick(asked + APPROVAL_TIMEOUT - 1 - live.now)
    assert live.gov.pending_id == ask["seq"]
    d = live.tick(1)
    assert live.now == asked + APPROVAL_TIMEOUT
    assert (C.E_APPROVAL_EXPIRED, ask["seq"]) in d["events"]
    assert d["reason"] == C.R_APPROVAL_EXPIRED
    assert d["record"] is True
    d = live.op(C.OP_APPROVE, ask["seq"])
    assert d["reason"] == C.R_NO_REQUEST
    assert live.out("spindle") == 1000


def test_approval_one_ms_before_timeout_is_applied(live):
    at_spindle_max(live)
    ask = live.cmd(spindle=1200)
    asked = live.now
    while live.now < asked + APPROVAL_TIMEOUT - 11:
        live.cmd(dt=10, spindle=1000)
    d = live.op(C.OP_APPROVE, ask["seq"], dt=asked + APPROVAL_TIMEOUT - 1 - live.now)
    assert (C.E_APPROVAL_GRANTED, ask["seq"]) in d["events"]
    assert live.out("spindle") > 1000


def test_approval_with_wrong_id_is_refused_and_request_stays(live):
    at_spindle_max(live)
    ask = live.cmd(spindle=1200)
    d = live.op(C.OP_APPROVE, ask["seq"] + 1)
    assert d["reason"] == C.R_NO_REQUEST
    assert live.gov.pending_id == ask["seq"]
    assert live.out("spindle") == 1000
    d = live.op(C.OP_APPROVE, ask["seq"])
    assert (C.E_APPROVAL_GRANTED, ask["seq"]) in d["events"]


def test_trip_drops_a_pending_request(live):
    at_spindle_max(live)
    ask = live.cmd(spindle=1200)
    live.op(C.OP_ESTOP)
    assert live.gov.pending_id == -1
    assert live.op(C.OP_APPROVE, ask["seq"])["reason"] == C.R_NO_REQUEST


# ----------------------------------------------------------------------------- operator auth


def refused_without_change(h: Harness, op: Operator, reason: int) -> None:
    before = h.gov.snapshot_state()
    d = h.handle(op)
    assert d["verdict"] == C.REJECT
    assert d["reason"] == reason
    assert any(c == C.E_AUTH_REFUSED for c, _ in d["events"])
    assert h.gov.snapshot_state() == before


def test_forged_mac_is_refused(h):
    h.healthy()
    refused_without_change(h, h.ops.forged(C.OP_RESET), C.R_AUTH_FAILED)
    assert h.gov.state == C.ST_TRIPPED


def test_wrong_device_id_is_refused(h):
    h.healthy()
    n = h.ops.counter + 1
    op = Operator(C.OP_RESET, 0, n, sign_op(KEY, "other-device", C.OP_RESET, 0, n))
    refused_without_change(h, op, C.R_AUTH_FAILED)


def test_mac_for_another_action_or_arg_is_refused(h):
    h.healthy()
    good = h.ops(C.OP_MODE, 1)
    refused_without_change(h, Operator(C.OP_RESET, 1, good.counter, good.mac), C.R_AUTH_FAILED)
    refused_without_change(h, Operator(C.OP_MODE, 0, good.counter, good.mac), C.R_AUTH_FAILED)


@pytest.mark.parametrize("mac", [None, b"", b"\x00" * 32, "x" * 32, b"\x00" * 31])
def test_malformed_mac_is_refused(h, mac):
    h.healthy()
    refused_without_change(h, Operator(C.OP_RESET, 0, 1, mac), C.R_AUTH_FAILED)


def test_replayed_counter_is_refused(h):
    h.healthy()
    reset = h.ops(C.OP_RESET)
    assert h.handle(reset)["state"] == C.ST_DISARMED
    arm = h.ops(C.OP_ARM)
    h.handle(h.ops(C.OP_ESTOP))  # a later counter is used up
    refused_without_change(h, arm, C.R_REPLAYED)  # older counter, valid MAC
    refused_without_change(h, h.ops.replay(reset), C.R_REPLAYED)
    assert h.gov.state == C.ST_TRIPPED


def test_replaying_the_latest_action_is_refused(h):
    h.healthy()
    reset = h.ops(C.OP_RESET)
    assert h.handle(reset)["state"] == C.ST_DISARMED
    estop = h.ops(C.OP_ESTOP)
    assert h.handle(estop)["state"] == C.ST_TRIPPED
    h.handle(h.ops(C.OP_RESET))
    arm = h.ops(C.OP_ARM)
    assert h.handle(arm)["state"] == C.ST_ARMED
    refused_without_change(h, h.ops.replay(arm), C.R_REPLAYED)  # same counter as the last
    refused_without_change(h, h.ops.replay(estop), C.R_REPLAYED)
    assert h.gov.state == C.ST_ARMED


# ------------------------------------------------------------------- reset needs the cause gone


def test_reset_after_operator_estop(live):
    drive(live, {"press": 40})
    d = live.op(C.OP_ESTOP)
    assert d["state"] == C.ST_TRIPPED and d["reason"] == C.R_ESTOP_OPERATOR
    assert live.gov.causes & C.C_ESTOP_OPERATOR
    assert live.op(C.OP_RESET)["state"] == C.ST_DISARMED


def test_reset_refused_until_ss1_ramp_has_finished(live):
    drive(live, {"spindle": 100})
    live.op(C.OP_ESTOP)
    d = live.op(C.OP_RESET)
    assert d["reason"] == C.R_SS1_RAMP
    assert d["events"] == [(C.E_RESET_REFUSED, C.R_SS1_RAMP)]
    live.ticks(100 * 1000 // SPINDLE_RATE // 10)
    assert live.out("spindle") == 0
    assert live.op(C.OP_RESET)["state"] == C.ST_DISARMED


def test_reset_after_limit_trip(live):
    live.cmd(blade=60)
    assert live.gov.causes & C.C_LIMIT
    assert live.op(C.OP_RESET)["state"] == C.ST_DISARMED


def test_fault_trips_and_reset_needs_it_cleared(live):
    drive(live, {"press": 40})
    d = live.fault(3)
    assert d["state"] == C.ST_TRIPPED
    assert d["reason"] == C.R_FAULT
    assert live.rule(d) == "fault"
    assert (C.E_FAULT, 3) in d["events"]
    assert live.out("press") == 0
    assert live.op(C.OP_RESET)["reason"] == C.R_CAUSE_PRESENT
    d = live.fault(3, active=False)
    assert (C.E_FAULT_CLEARED, 3) in d["events"]
    assert d["state"] == C.ST_TRIPPED  # clearing does not reset
    assert live.op(C.OP_RESET)["state"] == C.ST_DISARMED


def test_two_faults_both_need_clearing(live):
    live.fault(1)
    live.fault(2)
    live.fault(1, active=False)
    assert live.op(C.OP_RESET)["reason"] == C.R_CAUSE_PRESENT
    live.fault(2, active=False)
    assert live.op(C.OP_RESET)["state"] == C.ST_DISARMED


@pytest.mark.parametrize("code", [True, -1, 30, "3", None])
def test_malformed_fault_report_fails_closed_as_an_unknown_fault(live, code):
    d = live.handle(Fault(code))
    assert d["verdict"] == C.TRIP and d["reason"] == C.R_FAULT
    unknown = 1 << 29
    assert live.gov.faults == unknown
    d = live.handle(Fault(code, active=False))  # a malformed clear does not lift it
    assert live.gov.faults == unknown
    live.handle(Fault(29, active=False))
    assert live.gov.faults == 0


def test_reset_never_restarts_motion(live):
    drive(live, {"feed": 300, "press": 40})
    live.op(C.OP_ESTOP)
    live.op(C.OP_RESET)
    safe = list(live.env.ch_safe)
    for _ in range(10):
        assert live.tick(10)["output"] == safe
        d = live.cmd(feed=300, press=40)
        assert d["verdict"] == C.HOLD and d["output"] == safe
    d = live.op(C.OP_ARM)
    assert d["output"] == safe
    assert live.tick(10)["output"] == safe
    d = live.cmd(feed=300)  # motion needs arm *and* a new command
    assert live.out("feed") == 300


def test_internal_fault_fails_closed():
    class Exploding(dict):
        def get(self, *args):
            raise RuntimeError("boom")

    h = Harness(compile_envelope(TEST_TOML))
    h.arm_live()
    drive(h, {"press": 40, "spindle": 50})
    d = h.handle(Command(h.seq + 1, Exploding(feed=1)), 10)
    assert d["state"] == C.ST_TRIPPED
    assert d["verdict"] == C.TRIP
    assert d["reason"] == C.R_INTERNAL_FAULT
    assert d["kick"] is False
    assert d["record"] is True
    assert d["estop"] is True
    assert d["output"] == list(h.env.ch_safe)
    assert h.gov.causes & C.C_INTERNAL
    d = h.tick(10)
    assert d["state"] == C.ST_TRIPPED and d["reason"] == C.R_INTERNAL_FAULT


def test_reset_after_an_internal_fault_needs_an_authentic_reset(live):
    class Exploding(dict):
        def get(self, *args):
            raise RuntimeError("boom")

    live.handle(Command(live.seq + 1, Exploding(feed=1)), 10)
    live.ticks(5)
    assert live.gov.state == C.ST_TRIPPED  # never clears by itself
    d = live.handle(live.ops.forged(C.OP_RESET))
    assert d["state"] == C.ST_TRIPPED
    d = live.op(C.OP_RESET)
    assert d["state"] == C.ST_DISARMED
    assert d["output"] == list(live.env.ch_safe)


def test_time_going_backwards_is_an_internal_fault(live):
    d = live.handle(TICK, -1)
    assert d["reason"] == C.R_INTERNAL_FAULT
    assert d["state"] == C.ST_TRIPPED
    assert d["kick"] is False


def test_event_of_unknown_kind_is_an_internal_fault(live):
    class Odd:
        kind = 99

    d = live.handle(Odd())
    assert d["reason"] == C.R_INTERNAL_FAULT
    assert d["kick"] is False


# ----------------------------------------------------------------------------- stop categories


def test_sto_immediate_ss1_ramp_and_estop_output_after_ramp(live):
    drive(live, {"spindle": 200, "press": 40})
    d = live.op(C.OP_ESTOP, dt=0)  # same ms as the last command
    tripped = live.now
    assert d["state"] == C.ST_TRIPPED
    assert d["output"][live.ch("press")] == 0
    assert d["output"][live.ch("spindle")] == 200
    assert d["estop"] is False
    expected_done = tripped + 200 * 1000 // SPINDLE_RATE
    prev = 200
    while live.now < expected_done - 10:
        d = live.tick(10)
        s = d["output"][live.ch("spindle")]
        assert s == prev - step(SPINDLE_RATE, 10)
        assert d["estop"] is False
        assert d["changed"] and d["record"]
        prev = s
    d = live.tick(10)
    assert live.now == expected_done
    assert d["output"][live.ch("spindle")] == 0
    assert d["estop"] is True
    assert (C.E_ESTOP_OUT, 1) in d["events"]
    assert live.tick(10)["record"] is False  # nothing left to do


def test_sto_channel_is_safe_in_the_trip_decision_itself(live):
    drive(live, {"feed": -300})
    d = live.fault(0)
    assert d["output"][live.ch("feed")] == 0
    assert d["changed"] is True


# ----------------------------------------------------------------------------- modes and pause


def test_mode_change_refused_while_armed(live):
    d = live.op(C.OP_MODE, 1)
    assert d["verdict"] == C.REJECT
    assert d["reason"] == C.R_NOT_ALLOWED
    assert (C.E_MODE_REFUSED, C.R_NOT_ALLOWED) in d["events"]
    assert live.gov.mode == 0


def test_mode_change_refused_when_outputs_outside_new_range(live):
    drive(live, {"press": 50})
    d = live.op(C.OP_PAUSE)
    assert d["state"] == C.ST_PAUSED
    d = live.op(C.OP_MODE, live.env.modes.index("setup"))
    assert d["reason"] == C.R_OUTPUT_OUTSIDE_MODE
    assert d["channel"] == live.ch("press")
    assert live.gov.mode == live.env.modes.index("run")


def test_unknown_mode_is_refused(h):
    h.healthy()
    h.op(C.OP_RESET)
    d = h.op(C.OP_MODE, len(h.env.modes))
    assert d["reason"] == C.R_UNKNOWN_MODE
    assert h.gov.mode == h.env.initial_mode


def test_setup_mode_limits_apply(h):
    h.healthy()
    h.op(C.OP_RESET)
    setup = h.env.modes.index("setup")
    d = h.op(C.OP_MODE, setup)
    assert (C.E_MODE, setup) in d["events"]
    assert d["mode"] == setup
    h.op(C.OP_ARM)
    h.engage()
    d = h.cmd(dt=10, spindle=150)
    assert d["reason"] == C.R_RATE
    assert h.rule(d) == "modes.setup.channels.spindle.rate"
    assert h.out("spindle") == step(SPINDLE_RATE_SETUP, 10)
    d = h.cmd(press=50)
    assert d["verdict"] == C.REJECT
    assert h.rule(d) == "modes.setup.channels.press.max"
    d = h.cmd(spindle=300)  # escalate channel, but setup has no wider approved range
    assert d["verdict"] == C.REJECT
    assert h.rule(d) == "modes.setup.channels.spindle.max"


def test_pause_holds_and_resume_rearms(live):
    drive(live, {"spindle": 100, "press": 40})
    d = live.op(C.OP_PAUSE)
    assert (C.E_PAUSE, 0) in d["events"]
    d = live.cmd(spindle=200)
    assert d["verdict"] == C.HOLD and d["reason"] == C.R_PAUSED
    live.ticks(20)
    assert live.out("spindle") == 0  # ramp hold
    assert live.out("press") == 40  # stay hold
    d = live.op(C.OP_RESUME)
    assert d["state"] == C.ST_ARMED
    assert any(c == C.E_RESUME for c, _ in d["events"])


# ----------------------------------------------------------------------------- records


def test_idle_ticks_are_not_recorded_state_changes_are(live):
    drive(live, {"feed": 100})
    live.cmd(feed=100)
    for _ in range(5):
        live.cmd(dt=10, feed=100)
        d = live.tick(0)
        assert d["record"] is False
        assert d["changed"] is False
        assert d["kick"] is True
    d = live.tick(HOLD_AFTER + 1)  # link goes stale: a state change
    assert d["record"] is True


def test_disarmed_idle_ticks_are_not_recorded(h):
    h.healthy()
    h.op(C.OP_RESET)
    assert [d["record"] for d in h.ticks(5)] == [False] * 5


def test_non_tick_events_are_always_recorded(live):
    assert live.cmd(feed=0)["record"] is True
    assert live.tel(**HEALTHY)["record"] is True
    assert live.handle(Telemetry({"nope": 1}))["record"] is True


def test_decision_snapshot_is_independent_of_the_reused_decision(live):
    d = live.gov.handle(Command(live.seq + 1, {"feed": 100}), live.now + 10)
    snap = d.snapshot()
    live.gov.handle(Command(live.seq + 2, {"feed": 200}), live.now + 20)
    assert snap["output"][live.ch("feed")] == 100
    assert d.output[live.ch("feed")] == 200


# ----------------------------------------------------------------------------- telemetry


@pytest.mark.parametrize(
    ("values", "reason"),
    [({"pressure": float("nan")}, C.R_NAN), ({"pressure": 401}, C.R_OUT_OF_RANGE),
     ({"pressure": True}, C.R_WRONG_TYPE), ({"door_closed": 1}, C.R_WRONG_TYPE),
     ({"pressure": 100, "ghost": 1}, C.R_UNKNOWN_INPUT), ({}, C.R_EMPTY)],
)
def test_bad_telemetry_is_rejected_atomically(live, values, reason):
    before = live.gov.snapshot_state()
    d = live.handle(Telemetry(values))
    assert d["verdict"] == C.REJECT
    assert d["reason"] == reason
    assert live.gov.snapshot_state() == before


# --------------------------------------------------- regressions (bugs found by this suite)


def test_command_in_the_call_the_estop_goes_stale_is_not_applied(live):
    est = live.env.in_index["estop"]
    while live.now + 10 - live.gov.in_ms[est] <= STALE_AFTER:
        live.tel(door_closed=True, pressure=200)  # keep the other inputs fresh
        live.cmd(dt=10, spindle=0)
    d = live.cmd(dt=10, spindle=1000)  # the e-stop report is now stale: pressed
    assert d["state"] == C.ST_TRIPPED and d["reason"] == C.R_ESTOP_INPUT
    assert d["output"][live.ch("spindle")] == 0  # no new motion in a trip decision


@pytest.mark.parametrize("kind", ["stale_seq", "empty", "bad_seq"])
def test_refused_command_never_reports_values_it_did_not_propose(live, kind):
    live.cmd(feed=100)
    live.cmd(feed=100)  # steady state
    if kind == "stale_seq":
        d = live.cmd(seq=live.seq, press=7)
    elif kind == "empty":
        d = live.handle(Command(live.seq + 1, {}), 10)
    else:
        d = live.handle(Command("x", {"press": 7}), 10)
    assert d["verdict"] == C.REJECT
    assert d["proposed"][live.ch("feed")] is None


# ----------------------------------------------------------------------------- rules to the letter


class _Exploding(dict):
    def get(self, *args):
        raise RuntimeError("boom")


def test_kick_stays_withheld_while_an_internal_fault_is_latched(live):
    """README: an internal fault withholds the kick until the watchdog resets (or a reset)."""
    live.handle(Command(live.seq + 1, _Exploding(feed=1)), 10)
    kicks = [d["kick"] for d in live.ticks(20)]
    assert kicks == [False] * 20
    d = live.tel(door_closed=True, estop=False)
    assert d["kick"] is False
    d = live.op(C.OP_RESET)
    assert d["state"] == C.ST_DISARMED
    assert live.tick(10)["kick"] is True


def test_one_operator_estop_emits_trip_once(live):
    d = live.op(C.OP_ESTOP)
    assert d["state"] == C.ST_TRIPPED
    assert [c for c, _ in d["events"]].count(C.E_TRIP) == 1
    assert (C.E_TRIP, C.R_ESTOP_OPERATOR) in d["events"]


def test_restriction_in_force_pulls_output_toward_it_against_the_proposal(live):
    """README: a restriction in force pulls the output toward it at the channel's rate,
    whatever the proposal asks (press 40, bound 10, proposal 80: 40 − 1000/s × 10 ms)."""
    drive(live, {"press": 40})
    live.tel(pressure=20)  # low_pressure: press ≤ 10
    d = live.cmd(dt=10, press=80)
    assert d["verdict"] == C.CLAMP and d["reason"] == C.R_INTERLOCK
    assert live.out("press") == 40 - step(PRESS_RATE, 10)  # 30: away from the proposal


def test_without_a_restriction_the_output_lies_between_previous_and_proposal(live):
    drive(live, {"press": 40})
    d = live.cmd(dt=10, press=100)
    assert d["verdict"] == C.CLAMP and d["reason"] == C.R_RATE
    assert 40 < live.out("press") <= 100
    assert live.out("press") == 40 + step(PRESS_RATE, 10)


def test_link_that_never_engages_trips_trip_after_ms_after_arm(h):
    """README: the budget runs from ARM when the link is not engaged then; commands at
    gaps just over hold_after_ms never engage it, so they never reset the budget."""
    h.reset_and_arm()
    armed = h.now
    while h.now + HOLD_AFTER + 1 < armed + TRIP_AFTER:
        d = h.cmd(dt=HOLD_AFTER + 1, feed=0)
        assert d["state"] == C.ST_ARMED and h.gov.link != C.LINK_OK
    d = h.tick(armed + TRIP_AFTER - 1 - h.now)
    assert d["state"] == C.ST_ARMED
    d = h.tick(1)
    assert h.now == armed + TRIP_AFTER
    assert d["state"] == C.ST_TRIPPED and d["reason"] == C.R_LINK_LOST


def test_stale_link_budget_counts_from_the_last_valid_command_before_it_went_stale(live):
    """README: an engaged link that goes stale trips trip_after_ms after the last valid
    command before it went stale; later commands that do not re-engage do not move it."""
    last = go_silent(live)
    live.tick(HOLD_AFTER + 1)
    live.cmd(dt=HOLD_AFTER, feed=0)  # valid, but one message cannot engage (engage 50 ms)
    assert live.gov.link != C.LINK_OK
    d = live.tick(last + TRIP_AFTER - 1 - live.now)
    assert d["state"] == C.ST_ARMED
    d = live.tick(1)
    assert d["state"] == C.ST_TRIPPED and d["reason"] == C.R_LINK_LOST
