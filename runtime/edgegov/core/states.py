"""Operator transitions of the governor's state machine, as data.

Contract: the governor is always in exactly one state. It boots TRIPPED. Only the rows
below move it between states on an operator action; a row's guard must also hold (the
governor checks it and refuses with a reason otherwise). Besides these rows, *any* trip
cause (e-stop input, operator e-stop, link loss stage 2, a limit or interlock whose action is
trip, a fault, an internal exception) moves every state to TRIPPED. Nothing else leaves
TRIPPED: a trip never clears itself, a reset needs the cause gone and leads to DISARMED, and
motion needs a separate ARM. ``tools/render_states.py`` turns this table into the README's
diagram.
"""

from .codes import (
    OP_ARM,
    OP_ESTOP,
    OP_PAUSE,
    OP_RESET,
    OP_RESUME,
    ST_ARMED,
    ST_DISARMED,
    ST_PAUSED,
    ST_TRIPPED,
)

# Guards (checked by the governor):
G_NONE = 0
G_CAUSES_GONE = 1  # every trip cause gone and every output at its safe value
G_ARMABLE = 2  # no trip cause present

# (from_state, action, to_state, guard)
TRANSITIONS = (
    (ST_TRIPPED, OP_RESET, ST_DISARMED, G_CAUSES_GONE),
    (ST_DISARMED, OP_ARM, ST_ARMED, G_ARMABLE),
    (ST_ARMED, OP_PAUSE, ST_PAUSED, G_NONE),
    (ST_PAUSED, OP_RESUME, ST_ARMED, G_ARMABLE),
    (ST_PAUSED, OP_PAUSE, ST_PAUSED, G_NONE),
    (ST_DISARMED, OP_ESTOP, ST_TRIPPED, G_NONE),
    (ST_ARMED, OP_ESTOP, ST_TRIPPED, G_NONE),
    (ST_PAUSED, OP_ESTOP, ST_TRIPPED, G_NONE),
    (ST_TRIPPED, OP_ESTOP, ST_TRIPPED, G_NONE),
)

STATE_NAMES = ("TRIPPED", "DISARMED", "ARMED", "PAUSED")


def transition(state, action):
    """The (to_state, guard) row for ``action`` in ``state``, or None when not allowed."""
    for row in TRANSITIONS:
        if row[0] == state and row[1] == action:
            return row
    return None


__all__ = ["TRANSITIONS", "STATE_NAMES", "transition", "G_NONE", "G_CAUSES_GONE", "G_ARMABLE"]
