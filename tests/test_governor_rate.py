"""Rate and acceleration per sample (README "The governor", *Rate and acceleration*).

Every expected value is computed by hand from the README's rule: a recorded decision may
move a channel by rate_per_s x dt, dt = the time since the previous recorded decision, at
most 20 ms, plus the carried remainder (less than one step); acceleration limits the speed
(step x 1000 / dt) to the previous step's speed + accel x dt. The envelopes are TEST_TOML
(spindle 1000 rpm/s SS1 hold=ramp, press 1000/s STO, hold_after 100 ms) and two small
link-less ones below.
"""

from __future__ import annotations

import pytest
from conftest import HEALTHY, TEST_TOML, C, Harness, compile_envelope

SLOW_TOML = """\
initial_mode = "run"

[device]
id = "rate-cell"

[channels.axis]
resolution = 1
min = -1000
max = 1000
rate_per_s = 150
safe = 0
stop = "SS1"
on_breach = "clamp"
hold = "ramp"

[channels.cart]
resolution = 1
min = -100000
max = 100000
rate_per_s = 100000
accel_per_s2 = 100000
safe = 0
stop = "STO"
on_breach = "clamp"
hold = "stay"

[modes.run]
"""


@pytest.fixture
def slow():
    h = Harness(compile_envelope(SLOW_TOML))
    h.reset_and_arm()
    return h


@pytest.fixture
def cell():
    h = Harness(compile_envelope(TEST_TOML))
    h.arm_live()
    return h


def _keep_link(h: Harness, ms: int, **values) -> None:
    """Commands every 10 ms for ``ms`` ms, with healthy telemetry now and then."""
    for k in range(ms // 10):
        if k % 100 == 0:
            h.healthy()
        h.cmd(dt=10, **values)


def test_a_channel_left_out_for_3_s_moves_one_sample_worth_20_ms_after_the_last_command(cell):
    _keep_link(cell, 3000, press=0)  # spindle left out for 3 s
    d = cell.cmd(dt=20, spindle=1000)
    # 1000 rpm/s x 20 ms = 20 rpm, not 1000 rpm/s x 3 s
    assert cell.out("spindle") == 20
    assert (d["verdict"], d["reason"]) == (C.CLAMP, C.R_RATE)


def test_no_budget_accrues_over_a_silent_spell_without_a_link(slow):
    for _ in range(300):
        slow.tick(10)  # 3 s of ticks that change nothing: not recorded
    d = slow.cmd(dt=7, cart=5000)
    # dt = min(3007 ms since ARM, 20 ms); from rest: speed <= 100000 x 20 / 1000 = 2000/s,
    # step <= 2000 x 20 / 1000 = 40
    assert slow.out("cart") == 40
    assert (d["verdict"], d["reason"]) == (C.CLAMP, C.R_ACCEL)


def test_first_command_after_engage_moves_one_sample_worth():
    h = Harness(compile_envelope(TEST_TOML))
    h.reset_and_arm()
    h.healthy()
    h.ticks(40)  # 400 ms armed, link not engaged (trip_after 500 ms)
    for _ in range(5):  # 10 ms apart: HOLD while engaging (the 6th engages: 50 ms)
        assert h.cmd(dt=10, spindle=1000)["verdict"] == C.HOLD
    d = h.cmd(dt=10, spindle=1000)
    assert (C.E_LINK_ENGAGED, 50) in d["events"]
    assert h.out("spindle") == 10  # 1000 rpm/s x 10 ms, not x 460 ms since ARM
    assert h.cmd(dt=10, spindle=1000)["output"][h.ch("spindle")] == 20


def test_hold_ramp_at_link_stage_1_takes_value_over_rate(cell):
    for _ in range(5):
        cell.cmd(dt=10, spindle=50)
    assert cell.out("spindle") == 50
    outs = []
    for _ in range(20):
        d = cell.tick(10)
        outs.append(d["output"][cell.ch("spindle")])
        if cell.gov.link == C.LINK_STALE and len(outs) >= 11 and outs[-1] == 0:
            break
    # stale at the tick 110 ms after the last command; its dt is capped at 20 ms (the
    # ticks before it changed nothing): 50 - 20 = 30; then 10 ms ticks of 10 rpm each
    stale_at = 10  # index of the tick 110 ms after the last command
    assert outs[:stale_at] == [50] * stale_at
    assert outs[stale_at:] == [30, 20, 10, 0]


@pytest.mark.parametrize("how", ["operator", "estop_input", "link_lost"])
def test_ss1_ramps_to_safe_at_its_rate_after_a_trip_and_estop_out_follows(cell, how):
    for _ in range(5):
        cell.cmd(dt=10, spindle=50, press=40)
    assert (cell.out("spindle"), cell.out("press")) == (50, 40)
    _keep_link(cell, 2000, press=40)  # spindle unchanged for 2 s: no budget accrues
    if how == "operator":
        d = cell.op(C.OP_ESTOP, dt=10)
    elif how == "estop_input":
        d = cell.tel(dt=10, estop=True)
    else:
        for _ in range(49):
            cell.tick(10)  # stale at +110 ms (spindle ramps as hold = "ramp")
        d = cell.tick(10)  # +500 ms: stage 2
    assert d["state"] == C.ST_TRIPPED
    assert cell.out("press") == 0  # STO: at once
    if how == "link_lost":
        assert cell.out("spindle") == 0  # the hold ramp had already brought it to safe
        assert d["estop"]
        return
    # SS1: the trip decision is 10 ms after the last command: 50 - 10 = 40, then 10 per tick
    outs = [cell.out("spindle")]
    estops = [d["estop"]]
    for _ in range(4):
        t = cell.tick(10)
        outs.append(t["output"][cell.ch("spindle")])
        estops.append(t["estop"])
    assert outs == [40, 30, 20, 10, 0]
    assert estops == [False, False, False, False, True]  # asserted once every output is safe


def test_permit_expiry_pulls_the_output_back_at_the_rate(cell):
    for _ in range(120):
        cell.cmd(dt=10, spindle=1000)
    ask = cell.cmd(dt=10, spindle=1200)
    assert ask["verdict"] == C.ESCALATE
    cell.op(C.OP_APPROVE, ask["seq"], dt=10)
    for _ in range(30):
        cell.cmd(dt=10, spindle=1200)
    assert cell.out("spindle") == 1200
    until = cell.gov.permit_until[cell.ch("spindle")]
    while cell.now + 10 < until:
        if (until - cell.now) % 1000 == 0:
            cell.healthy()
        cell.cmd(dt=10, press=0)  # spindle left out
    d = cell.cmd(dt=10, press=0)
    assert (C.E_PERMIT_EXPIRED, cell.ch("spindle")) in d["events"]
    outs = [d["output"][cell.ch("spindle")]]
    outs += [cell.cmd(dt=10, press=0)["output"][cell.ch("spindle")] for _ in range(20)]
    # 1000 rpm/s x 10 ms = 10 rpm per decision, from 1200 down to the range's 1000
    assert outs == [1200 - 10 * k for k in range(1, 21)] + [1000]


def test_fractional_allowance_is_carried_below_one_step(slow):
    outs = [slow.cmd(dt=10, axis=100)["output"][slow.ch("axis")] for _ in range(6)]
    # 150 steps/s x 10 ms = 1500 milli-steps: 1 (carry 500); 2000: 2 (carry 0); ...
    assert outs == [1, 3, 4, 6, 7, 9]
    assert slow.gov.carry[slow.ch("axis")] == 0


def test_a_slow_ramp_carries_its_budget_on_recorded_ticks(slow):
    slow.cmd(dt=10, axis=3)
    slow.cmd(dt=10, axis=3)
    assert slow.out("axis") == 3  # 1, then 1500 + 500 = 2000: 3
    slow.op(C.OP_PAUSE, dt=10)  # held: axis ramps to safe (hold = "ramp") at 150/s
    # the pause itself: 10 ms -> 1500: 3 -> 2, carry 500
    assert slow.out("axis") == 2
    records, outs = [], []
    for _ in range(6):
        d = slow.tick(2)  # 2 ms ticks: 300 milli-steps each
        records.append(d["record"])
        outs.append(d["output"][slow.ch("axis")])
    # 500 + 300 = 800: no step yet, carried (recorded); 1100: 1 (carry 100); 400; 700;
    # 1000: 0 reached (carry dropped); then at safe, nothing changes: not recorded
    assert outs == [2, 1, 1, 1, 0, 0]
    assert records == [True, True, True, True, True, False]


def test_acceleration_counts_from_the_last_recorded_speed(slow):
    outs = [slow.cmd(dt=10, cart=5000)["output"][slow.ch("cart")] for _ in range(3)]
    # from rest: speed <= 0 + 100000 x 10/1000 = 1000/s -> 10; then 1000 + 1000 = 2000/s -> 20
    # (total 30), then 3000/s -> 30 (total 60)
    assert outs == [10, 30, 60]
    slow.cmd(dt=10, axis=0)  # cart left out: it stood still, speed 0
    d = slow.cmd(dt=10, cart=5000)
    assert d["output"][slow.ch("cart")] == 70  # from rest again: 10
    assert (d["verdict"], d["reason"]) == (C.CLAMP, C.R_ACCEL)


def test_telemetry_that_moves_nothing_is_no_sample(cell):
    cell.cmd(dt=10, spindle=100)
    assert cell.out("spindle") == 10
    d = cell.tel(dt=5, **HEALTHY)
    assert d["record"]  # recorded, but it neither set nor moved an output
    d = cell.cmd(dt=5, spindle=100)
    assert d["output"][cell.ch("spindle")] == 20  # 1000 rpm/s x 10 ms since the last command


def test_telemetry_that_starts_a_ramp_is_a_sample(cell):
    for _ in range(5):
        cell.cmd(dt=10, press=40)
    assert cell.out("press") == 40
    d = cell.tel(dt=5, pressure=20)  # low_pressure applies: press pulled toward 10
    assert d["output"][cell.ch("press")] == 35  # 1000/s x 5 ms
    d = cell.cmd(dt=5, press=40)
    assert d["output"][cell.ch("press")] == 30  # 5 ms since the telemetry's step
    assert (d["verdict"], d["reason"]) == (C.CLAMP, C.R_INTERLOCK)
