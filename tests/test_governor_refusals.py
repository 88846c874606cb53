"""Refused operator actions (README "The governor", *Operator actions*).

A refusal is an event named after the refused action (``arm_refused``, ``reset_refused``,
``pause_refused``, ``resume_refused``; ``op_refused`` for an action code the governor does
not know) whose one argument is the reason code; the trip causes that block it follow as a
``blocking_causes`` event (argument: the cause mask). A replayed counter is refused as
``auth_refused`` (argument ``replayed``) followed by ``counter_behind`` (argument: the last
accepted counter minus the refused one).
"""

from __future__ import annotations

from conftest import C, Operator
from edgegov import names
from edgegov.core.auth import sign_op


def test_arm_refused_while_tripped_is_arm_refused(h):
    d = h.op(C.OP_ARM)
    assert d["events"] == [(C.E_ARM_REFUSED, C.R_NOT_ALLOWED)]


def test_reset_refused_while_armed_is_reset_refused(live):
    d = live.op(C.OP_RESET)
    assert d["events"] == [(C.E_RESET_REFUSED, C.R_NOT_ALLOWED)]


def test_pause_and_resume_refusals_name_their_action(h):
    h.healthy()
    h.op(C.OP_RESET)
    assert h.op(C.OP_PAUSE)["events"] == [(C.E_PAUSE_REFUSED, C.R_NOT_ALLOWED)]
    assert h.op(C.OP_RESUME)["events"] == [(C.E_RESUME_REFUSED, C.R_NOT_ALLOWED)]
    h.op(C.OP_ARM)
    assert h.op(C.OP_RESUME)["events"] == [(C.E_RESUME_REFUSED, C.R_NOT_ALLOWED)]


def test_an_unknown_action_is_op_refused(h):
    h.ops.counter += 1
    op = Operator(200, 0, h.ops.counter, sign_op(h.ops.key, h.env.device_id, 200, 0,
                                                 h.ops.counter))
    d = h.handle(op)
    assert d["events"] == [(C.E_OP_REFUSED, C.R_NOT_ALLOWED)]


def test_reset_blocked_by_the_estop_input_names_the_cause_separately(live):
    live.tel(estop=True)
    d = live.op(C.OP_RESET, dt=10)
    assert d["events"] == [(C.E_RESET_REFUSED, C.R_CAUSE_PRESENT),
                           (C.E_BLOCKING_CAUSES, C.C_ESTOP_INPUT)]
    assert names.causes(C.C_ESTOP_INPUT) == ["estop_input"]


def test_reset_blocked_by_a_fault_and_the_door_lists_both(live):
    live.fault(3)
    live.tel(door_closed=False)
    for _ in range(20):
        live.tick(10)  # the SS1 spindle was at safe already; nothing to wait for
    d = live.op(C.OP_RESET)
    assert d["events"] == [(C.E_RESET_REFUSED, C.R_CAUSE_PRESENT),
                           (C.E_BLOCKING_CAUSES, C.C_FAULT)]
    live.fault(3, active=False)
    d = live.op(C.OP_RESET)
    assert d["state"] == C.ST_DISARMED  # the door interlock never tripped: not a cause


def test_replayed_counter_says_how_far_behind(h):
    first = h.ops(C.OP_RESET)
    h.ops.counter = 40
    h.healthy()
    assert h.op(C.OP_RESET)["state"] == C.ST_DISARMED  # counter 41 accepted
    d = h.handle(first)  # counter 1: 40 behind the last accepted 41
    assert d["events"] == [(C.E_AUTH_REFUSED, C.R_REPLAYED), (C.E_COUNTER_BEHIND, 40)]
    again = Operator(C.OP_ARM, 0, 41, sign_op(h.ops.key, h.env.device_id, C.OP_ARM, 0, 41))
    d = h.handle(again)  # equal to the last accepted: 0 behind
    assert d["events"] == [(C.E_AUTH_REFUSED, C.R_REPLAYED), (C.E_COUNTER_BEHIND, 0)]
    assert d["reason"] == C.R_REPLAYED


def test_forged_action_is_auth_refused_with_the_reason(h):
    d = h.handle(h.ops.forged(C.OP_RESET))
    assert d["events"] == [(C.E_AUTH_REFUSED, C.R_AUTH_FAILED)]


def test_refusal_words():
    assert [names.event(c) for c in (C.E_ARM_REFUSED, C.E_RESET_REFUSED, C.E_PAUSE_REFUSED,
                                     C.E_RESUME_REFUSED, C.E_BLOCKING_CAUSES,
                                     C.E_COUNTER_BEHIND, C.E_OP_REFUSED)] == [
        "arm_refused", "reset_refused", "pause_refused", "resume_refused",
        "blocking_causes", "counter_behind", "op_refused"]


def test_report_labels_read_the_refusal_argument_as_a_reason():
    from edgegov.report.model import event_label

    assert event_label("reset_refused", C.R_CAUSE_PRESENT, []) == "reset refused (cause_present)"
    assert event_label("arm_refused", C.R_NOT_ALLOWED, []) == "arm refused (not_allowed)"
    assert event_label("blocking_causes", C.C_ESTOP_INPUT | C.C_FAULT, []) == (
        "blocking causes (estop_input, fault)")
