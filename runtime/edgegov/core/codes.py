"""Numeric vocabulary of the core: verdicts, reasons, states, actions, event codes.

Codes, not text: the core records and compares small integers; the host turns them into
words (``edgegov.names``). Numbers are part of the lineage format: never renumber, only add.
"""

from .compat import const

# Verdicts: an ordered severity scale. When several rules fire, the highest wins.
ALLOW = const(0)
CLAMP = const(1)
REJECT = const(2)
ESCALATE = const(3)
HOLD = const(4)
TRIP = const(5)

# Governor states.
ST_TRIPPED = const(0)  # latched safe state (boot, trip, fault); needs reset
ST_DISARMED = const(1)  # reset done, outputs held safe; needs arm
ST_ARMED = const(2)  # commands are governed and passed
ST_PAUSED = const(3)  # operator pause: hold behaviour until resume

# Operator actions.
OP_ARM = const(1)
OP_RESET = const(2)
OP_ESTOP = const(3)
OP_PAUSE = const(4)
OP_RESUME = const(5)
OP_MODE = const(6)
OP_APPROVE = const(7)
OP_DENY = const(8)

# Event kinds the governor accepts (also the lineage tag of an input record).
EV_COMMAND = const(1)
EV_TELEMETRY = const(2)
EV_TICK = const(3)
EV_OPERATOR = const(4)
EV_FAULT = const(5)

# Stop categories.
STOP_STO = const(0)
STOP_SS1 = const(1)

# Breach actions (what exceeding a limit does). Values equal the verdict they produce.
ACT_CLAMP = const(1)
ACT_REJECT = const(2)
ACT_ESCALATE = const(3)
ACT_HOLD = const(4)
ACT_TRIP = const(5)

# Hold behaviour of a channel.
HOLD_STAY = const(0)
HOLD_RAMP = const(1)

# Link stages.
LINK_DOWN = const(0)  # never engaged, or re-engaging after a loss
LINK_OK = const(1)
LINK_STALE = const(2)  # stage 1: hold
LINK_LOST = const(3)  # stage 2: trip

# Reasons: why a decision came out as it did.
R_OK = const(0)
R_ABOVE_MAX = const(1)
R_BELOW_MIN = const(2)
R_RATE = const(3)
R_ACCEL = const(4)
R_INTERLOCK = const(5)
R_NOT_ARMED = const(6)
R_TRIPPED = const(7)
R_LINK_NOT_ENGAGED = const(8)
R_LINK_STALE = const(9)
R_LINK_LOST = const(10)
R_NAN = const(11)
R_INF = const(12)
R_WRONG_TYPE = const(13)
R_UNKNOWN_CHANNEL = const(14)
R_STALE_SEQ = const(15)
R_AUTH_FAILED = const(16)
R_REPLAYED = const(17)
R_ESTOP_INPUT = const(18)
R_ESTOP_OPERATOR = const(19)
R_FAULT = const(20)
R_INTERNAL_FAULT = const(21)
R_PAUSED = const(22)
R_AWAITING_APPROVAL = const(23)
R_APPROVAL_NEEDED = const(24)
R_APPROVAL_DENIED = const(25)
R_APPROVAL_EXPIRED = const(26)
R_CAUSE_PRESENT = const(27)
R_NOT_ALLOWED = const(28)  # action not valid in this state
R_UNKNOWN_INPUT = const(29)
R_OUT_OF_RANGE = const(30)  # telemetry outside the input's declared range
R_EMPTY = const(31)
R_UNKNOWN_MODE = const(32)
R_OUTPUT_OUTSIDE_MODE = const(33)
R_BOOT = const(34)
R_NO_REQUEST = const(35)
R_HOLD = const(36)  # outputs following the hold behaviour
R_SS1_RAMP = const(37)
R_INPUT_STALE = const(38)

# Event codes: state changes the governor reports alongside a decision.
E_BOOT = const(1)
E_TRIP = const(2)
E_RESET = const(3)
E_RESET_REFUSED = const(4)
E_ARM = const(5)
E_ARM_REFUSED = const(6)
E_PAUSE = const(7)
E_RESUME = const(8)
E_MODE = const(9)
E_MODE_REFUSED = const(10)
E_APPROVAL_ASKED = const(11)
E_APPROVAL_GRANTED = const(12)
E_APPROVAL_DENIED = const(13)
E_APPROVAL_EXPIRED = const(14)
E_LINK_ENGAGED = const(15)
E_LINK_STALE = const(16)
E_LINK_LOST = const(17)
E_FAULT = const(18)
E_FAULT_CLEARED = const(19)
E_AUTH_REFUSED = const(20)
E_ESTOP_OUT = const(21)  # e-stop output asserted (arg 1) or released (arg 0)
E_PERMIT_EXPIRED = const(22)
E_INPUT_STALE = const(23)
E_WATCHDOG = const(24)

# Trip causes (bit flags; a reset needs every one of them gone).
C_BOOT = const(1)
C_ESTOP_INPUT = const(2)
C_ESTOP_OPERATOR = const(4)
C_LINK_LOST = const(8)
C_LIMIT = const(16)
C_INTERLOCK = const(32)
C_FAULT = const(64)
C_INTERNAL = const(128)

# Fault codes the host reports are 0..29 (names: edgegov.names.FAULTS); a malformed fault
# report counts as this one (fail closed).
F_UNKNOWN = const(29)

# Appended: refusals are named after the refused action (arg: the reason code); the causes
# that block a reset or an arm follow as their own event (arg: the cause mask), and a replayed
# operator counter is followed by how far behind the last accepted counter it is.
E_PAUSE_REFUSED = const(25)
E_RESUME_REFUSED = const(26)
E_BLOCKING_CAUSES = const(27)
E_COUNTER_BEHIND = const(28)  # arg: last accepted counter - refused counter (>= 0)
E_OP_REFUSED = const(29)  # an action code this governor does not know

# Appended: planner sessions. A Session input starts a new command sequence (seq restarts)
# and makes the link engage afresh; the event's arg is the previous session's last seq.
EV_SESSION = const(6)
E_SESSION = const(30)

# Appended: the BOOT reset reason of a governor restarted on a changed envelope (a push or
# a rollback applied; no hardware reset). Negative: no platform reports it.
RESET_ENVELOPE = const(-1)
