"""The governor: sans-I/O, deterministic, integer-only.

``Governor.handle(event, now_ms)`` takes one event (``events``) and the loop's monotonic
time and returns the ``Decision`` with the effects to perform. It reads no clock, does no
I/O, uses no floats and never depends on dict iteration order: channels, inputs and
interlocks are walked by index in the order the compiled envelope lists them.

One call, in order:
1. time-driven supervision: inputs going stale, link stages, approval and permit expiry;
2. the event itself: a command is sanitised, then evaluated rule by rule (range of the
   mode in force, interlocks, rate/acceleration) with the worst verdict winning; telemetry
   updates inputs; operator actions are authenticated and move the state machine
   (``states``); faults latch;
3. safety checks on the result (e-stop inputs, interlocks whose action is trip) and ramps:
   outputs outside the range in force, held outputs (``hold = "ramp"``) and SS1 stops move
   toward their target at the channel's rate.
Any exception inside a call latches an internal FAULT that behaves as a TRIP (fail closed).
"""

from . import auth
from .codes import (
    ACT_ESCALATE,
    ACT_REJECT,
    ACT_TRIP,
    ALLOW,
    C_BOOT,
    C_ESTOP_INPUT,
    C_ESTOP_OPERATOR,
    C_FAULT,
    C_INTERLOCK,
    C_INTERNAL,
    C_LIMIT,
    C_LINK_LOST,
    CLAMP,
    E_APPROVAL_ASKED,
    E_APPROVAL_DENIED,
    E_APPROVAL_EXPIRED,
    E_APPROVAL_GRANTED,
    E_ARM,
    E_ARM_REFUSED,
    E_AUTH_REFUSED,
    E_BLOCKING_CAUSES,
    E_BOOT,
    E_COUNTER_BEHIND,
    E_ESTOP_OUT,
    E_FAULT,
    E_FAULT_CLEARED,
    E_INPUT_STALE,
    E_LINK_ENGAGED,
    E_LINK_LOST,
    E_LINK_STALE,
    E_MODE,
    E_MODE_REFUSED,
    E_OP_REFUSED,
    E_PAUSE,
    E_PAUSE_REFUSED,
    E_PERMIT_EXPIRED,
    E_RESET,
    E_RESET_REFUSED,
    E_RESUME,
    E_RESUME_REFUSED,
    E_SESSION,
    E_TRIP,
    ESCALATE,
    EV_COMMAND,
    EV_FAULT,
    EV_OPERATOR,
    EV_SESSION,
    EV_TELEMETRY,
    EV_TICK,
    F_UNKNOWN,
    HOLD,
    HOLD_RAMP,
    LINK_DOWN,
    LINK_LOST,
    LINK_OK,
    LINK_STALE,
    OP_APPROVE,
    OP_ARM,
    OP_DENY,
    OP_ESTOP,
    OP_MODE,
    OP_PAUSE,
    OP_RESET,
    OP_RESUME,
    R_ABOVE_MAX,
    R_ACCEL,
    R_APPROVAL_DENIED,
    R_APPROVAL_EXPIRED,
    R_APPROVAL_NEEDED,
    R_AUTH_FAILED,
    R_AWAITING_APPROVAL,
    R_BELOW_MIN,
    R_BOOT,
    R_CAUSE_PRESENT,
    R_EMPTY,
    R_ESTOP_INPUT,
    R_ESTOP_OPERATOR,
    R_FAULT,
    R_INF,
    R_INTERLOCK,
    R_INTERNAL_FAULT,
    R_LINK_LOST,
    R_LINK_NOT_ENGAGED,
    R_LINK_STALE,
    R_NAN,
    R_NO_REQUEST,
    R_NOT_ALLOWED,
    R_NOT_ARMED,
    R_OK,
    R_OUT_OF_RANGE,
    R_OUTPUT_OUTSIDE_MODE,
    R_PAUSED,
    R_RATE,
    R_REPLAYED,
    R_SS1_RAMP,
    R_STALE_SEQ,
    R_TRIPPED,
    R_UNKNOWN_CHANNEL,
    R_UNKNOWN_INPUT,
    R_UNKNOWN_MODE,
    R_WRONG_TYPE,
    REJECT,
    ST_ARMED,
    ST_DISARMED,
    ST_PAUSED,
    ST_TRIPPED,
    STOP_STO,
    TRIP,
)
from .compat import const
from .decision import Decision
from .states import G_ARMABLE, G_CAUSES_GONE, transition

_MISSING = object()
_INT_LIMIT = const(1 << 30)  # scaled values beyond this are refused as out of range
_FAR = const(1 << 30)  # "no bound" for interlock limits and margins
_SERIAL_WRAP = const(1 << 28)
SAMPLE_MAX_MS = const(20)  # longest interval one rate budget may cover (README "The governor")
_FAR_MS = 1 << 62  # "never" for deadlines (a big int: no const() on 32-bit ports)
_SEQ_LIMIT = 1 << 53  # command sequence numbers: 0 <= seq < 2**53


def _bad_number(v):
    """Reason code if ``v`` is not an acceptable scaled integer, else R_OK."""
    if isinstance(v, bool):
        return R_WRONG_TYPE
    if isinstance(v, int):
        return R_OK if -_INT_LIMIT < v < _INT_LIMIT else R_OUT_OF_RANGE
    if isinstance(v, float):
        if v != v:
            return R_NAN
        if v in (float("inf"), float("-inf")):
            return R_INF
    return R_WRONG_TYPE


def _clamp(v, lo, hi):
    return lo if v < lo else hi if v > hi else v


class Governor:
    """Decides every proposed command against one compiled ``Envelope``."""

    def __init__(self, envelope, key, op_counter=0):
        env = envelope
        n = env.n
        self.env = env
        self._key = bytes(key)
        self.op_counter = op_counter
        self.last_auth = False  # the MAC check of the last operator action
        self.started = False
        self.last_now = 0
        self.state = ST_TRIPPED
        self.causes = C_BOOT
        self.trip_interlocks = 0  # bit k: interlock k caused a trip
        self.faults = 0  # bit c: external fault code c is active
        self.mode = env.initial_mode
        self.last_seq = -1
        self.session = None  # the planner session in force (None: none announced yet)
        # Per channel: output, signed velocity (units/s), rate carry (milli-units).
        self.out = list(env.ch_safe)
        self.vel = [0] * n
        self.carry = [0] * n
        # The output is sampled at every recorded command or tick and every decision that
        # moves it: a rate budget covers the time since the previous sample, at most
        # SAMPLE_MAX_MS. A tick that changes nothing is not recorded and is therefore no
        # sample (replay never sees it); telemetry or an operator action that moves nothing
        # is none either.
        self.sample_ms = 0
        self.permit_until = [-1] * n  # approval permits, -1 = none
        self._accel_idx = tuple(i for i in range(n) if env.ch_accel[i])
        # _stepped[i] == _serial: this decision already set channel i (one step per sample).
        self._serial = 1
        self._stepped = [0] * n
        # Per input: last value, time, seen, fresh.
        k = env.n_inputs
        self.in_val = [0] * k
        self.in_ms = [0] * k
        self.in_fresh = [False] * k
        self.il_active = [True] * env.n_interlocks  # unknown inputs: restriction applies
        # Link liveness.
        self.link = LINK_DOWN if env.link else LINK_OK
        self.last_valid_ms = -1
        self.alive_since_ms = -1
        self.stale_since_ms = -1  # start of the current silence budget, -1 = none
        self._hold_ms = env.hold_after_ms if env.link else _FAR_MS
        # Escalation.
        self.pending_id = -1
        self.pending_deadline = 0
        self.pending = [None] * n
        # Scratch, allocated once.
        self._lo = [0] * n
        self._hi = [0] * n
        self._ilo = [0] * n
        self._ihi = [0] * n
        self._iact = [0] * n
        self._irule = [0] * n
        self._cand = [0] * n
        self._cvel = [0] * n
        self._ccarry = [0] * n
        self._rows = ()
        self._limits_dirty = True
        self._estop_out = True
        self._dirty = False
        self._moved = False
        # Steady state: while ``_quiet`` holds and ``now < _quiet_until``, nothing
        # time-driven can happen, so a command needs only its own evaluation.
        self._quiet = False
        self._quiet_until = 0
        self.d = Decision(n)
        self.d.output = self.out  # the decision shows the live outputs (valid until next call)

    # ----------------------------------------------------------------- public API

    def start(self, now_ms):
        """The boot decision: tripped, outputs safe, e-stop asserted. Called once."""
        if self.started:
            raise ValueError("governor already started")
        d = self.d
        d.clear(EV_TICK, now_ms)
        self.started = True
        self.last_now = now_ms
        self.sample_ms = now_ms
        d.event(E_BOOT, self.causes)
        d.verdict = TRIP
        d.rule = self.env.r_state
        d.reason = R_BOOT
        d.record = True
        d.changed = True
        self._finish(d)
        return d

    def handle(self, event, now_ms):
        """Decide one event at ``now_ms`` (monotonic ms). Never raises."""
        if not self.started:
            self.start(now_ms)
        d = self.d
        try:
            kind = event.kind
            if (
                kind == EV_COMMAND
                and self._quiet
                and type(now_ms) is int
                and self.last_now <= now_ms < self._quiet_until
                and now_ms - self.last_valid_ms <= self._hold_ms
            ):
                # Nothing time-driven is due and the regime is steady: the supervision
                # phases would change nothing, so only the command itself is decided.
                d.begin_command(now_ms, self.state, self.mode, self.link)
                self.last_now = now_ms
                self._moved = False
                self._serial = self._serial % _SERIAL_WRAP + 1
                self._command(d, event, now_ms)
                d.changed = self._moved
                if self._quiet:
                    self.sample_ms = now_ms
                    if self._accel_idx:
                        self._sampled(now_ms)
                    return d
                self._dirty = True
                self._supervise_safety(d, now_ms)
                self._finish(d)
                return d
            d.clear(kind, now_ms)
            self._dirty = kind != EV_TICK
            self._moved = False
            self._serial = self._serial % _SERIAL_WRAP + 1
            if type(now_ms) is not int or now_ms < self.last_now:
                raise ValueError("now_ms must be a non-decreasing integer")
            self.last_now = now_ms
            self._supervise_time(d, now_ms)
            # An input that went stale in this call trips before the event is decided, so
            # a command in the same call never starts motion the trip must then undo.
            self._trip_checks(d)
            self._ensure_limits()
            self._dispatch(d, event, now_ms)
            self._supervise_safety(d, now_ms)
            if kind == EV_TICK:  # other events keep their own verdict and reason
                self._regime(d)
            self._finish(d)
        except Exception:  # fail closed: any failure inside a decision latches a fault
            self._internal_fault(d, now_ms)
        return d

    # Everything that decides the future, in a fixed order (the lineage CHECKPOINT
    # stores it; ``restore_state`` takes it back). Scratch and caches are not state.
    _STATE = (
        "last_now", "state", "causes", "trip_interlocks", "faults", "mode", "last_seq",
        "op_counter", "out", "vel", "carry", "sample_ms", "permit_until", "in_val", "in_ms",
        "in_fresh", "il_active", "link", "last_valid_ms", "alive_since_ms",
        "stale_since_ms", "pending_id", "pending_deadline", "pending", "_estop_out",
        "session",
    )

    def snapshot_state(self):
        """The governor's state as a list of ints, bools, None and lists (allocates)."""
        out = []
        for name in self._STATE:
            v = getattr(self, name)
            out.append(list(v) if isinstance(v, list) else v)
        return out

    def restore_state(self, snapshot):
        """Continue from a ``snapshot_state()`` (replay from a lineage checkpoint)."""
        if not isinstance(snapshot, list) or len(snapshot) != len(self._STATE):
            raise ValueError("state snapshot has the wrong shape")
        for name, v in zip(self._STATE, snapshot):
            cur = getattr(self, name)
            if isinstance(cur, list):
                if not isinstance(v, list) or len(v) != len(cur):
                    raise ValueError("state snapshot field %s has the wrong shape" % name)
                for i in range(len(v)):
                    cur[i] = v[i]
            elif isinstance(v, list):
                raise ValueError("state snapshot field %s has the wrong shape" % name)
            else:
                setattr(self, name, v)
        self.started = True
        self._limits_dirty = True
        self._quiet = False

    # ----------------------------------------------------------------- dispatch

    def _dispatch(self, d, ev, now):
        kind = ev.kind
        if kind == EV_COMMAND:
            self._command(d, ev, now)
        elif kind == EV_TELEMETRY:
            self._telemetry(d, ev, now)
        elif kind == EV_OPERATOR:
            self._operator(d, ev, now)
        elif kind == EV_FAULT:
            self._fault(d, ev)
        elif kind == EV_SESSION:
            self._session(d, ev, now)
        elif kind != EV_TICK:
            raise ValueError("unknown event kind")

    def _finish(self, d):
        env = self.env
        out = self.out
        at_safe = True
        for i in range(env.n):
            if out[i] != env.ch_safe[i]:
                at_safe = False
                break
        estop = self.state == ST_TRIPPED and at_safe
        if estop != self._estop_out:
            self._estop_out = estop
            self._dirty = True
            d.event(E_ESTOP_OUT, 1 if estop else 0)
        d.estop = self._estop_out
        d.state = self.state
        d.mode = self.mode
        d.link = self.link
        if self._moved:
            d.changed = True
        if self._dirty:
            d.record = True
        if self.causes & C_INTERNAL:
            d.kick = False  # fail closed: no kick while the fault is latched; the watchdog resets
        if d.record and (self._moved or d.kind == EV_COMMAND or d.kind == EV_TICK):
            self._sampled(d.now_ms)
        self._settle()

    def _sampled(self, now):
        """A recorded command or tick, or a recorded decision that moved an output, is a
        sample: the next rate budget counts from here, and a channel this decision did not
        move has stood still (velocity 0 for acceleration)."""
        self.sample_ms = now
        for i in self._accel_idx:
            if self._stepped[i] != self._serial:
                self.vel[i] = 0

    def _settle(self):
        """Decide whether the next command may take the steady-state path."""
        env = self.env
        self._quiet = False
        if self.state != ST_ARMED or self.pending_id >= 0 or self._limits_dirty:
            return
        if env.link and self.link != LINK_OK:
            return
        for i in range(env.n):
            if self.permit_until[i] >= 0:
                return
            v = self.out[i]
            if not (self._lo[i] <= v <= self._hi[i] and self._ilo[i] <= v <= self._ihi[i]):
                return
        until = _FAR_MS
        for k in range(env.n_inputs):
            if self.in_fresh[k]:
                due = self.in_ms[k] + env.in_stale[k] + 1
                if due < until:
                    until = due
        self._quiet_until = until
        self._quiet = True

    def _ensure_limits(self):
        if self._limits_dirty:
            self._limits()
            self._limits_dirty = False

    def _internal_fault(self, d, now):
        env = self.env
        self._quiet = False
        self._limits_dirty = True
        self.state = ST_TRIPPED
        self.causes |= C_INTERNAL
        self.pending_id = -1
        for i in range(env.n):
            self.out[i] = env.ch_safe[i]
            self.vel[i] = 0
            self.carry[i] = 0
            self.permit_until[i] = -1
        d.event(E_FAULT, -1)
        if not self._estop_out:
            d.event(E_ESTOP_OUT, 1)
        self._estop_out = True
        d.verdict = TRIP
        d.rule = env.r_fault
        d.reason = R_INTERNAL_FAULT
        d.estop = True
        d.changed = True
        d.kick = False
        d.record = True
        d.state = ST_TRIPPED
        self.sample_ms = now

    # ----------------------------------------------------------------- time

    def _supervise_time(self, d, now):
        env = self.env
        for k in range(env.n_inputs):
            if self.in_fresh[k] and now - self.in_ms[k] > env.in_stale[k]:
                self.in_fresh[k] = False
                self._dirty = True
                d.event(E_INPUT_STALE, k)
        if env.link:
            self._link_time(d, now)
        if self.pending_id >= 0 and now >= self.pending_deadline:
            d.event(E_APPROVAL_EXPIRED, self.pending_id)
            d.set_verdict(REJECT, env.r_operator, R_APPROVAL_EXPIRED, 0, -1)
            self._drop_pending()
        for i in range(env.n):
            if self.permit_until[i] >= 0 and now >= self.permit_until[i]:
                self.permit_until[i] = -1
                self._dirty = True
                self._limits_dirty = True
                d.event(E_PERMIT_EXPIRED, i)

    def _link_time(self, d, now):
        env = self.env
        if self.link == LINK_OK and now - self.last_valid_ms > env.hold_after_ms:
            self.link = LINK_STALE
            self.stale_since_ms = self.last_valid_ms
            self._dirty = True
            d.event(E_LINK_STALE, now - self.last_valid_ms)
        if (
            self.state == ST_ARMED
            and self.link != LINK_OK
            and self.stale_since_ms >= 0
            and now - self.stale_since_ms >= env.trip_after_ms
        ):
            self.link = LINK_LOST
            d.event(E_LINK_LOST, now - self.stale_since_ms)
            self._trip(d, C_LINK_LOST, env.r_link_trip, R_LINK_LOST, 0)

    def _link_alive(self, d, now):
        """A valid, authenticated-enough command arrived: liveness evidence."""
        env = self.env
        if not env.link:
            return
        if self.last_valid_ms < 0 or now - self.last_valid_ms > env.hold_after_ms:
            self.alive_since_ms = now  # a new streak; a single message proves little
        self.last_valid_ms = now
        if self.link != LINK_OK and now - self.alive_since_ms >= env.engage_after_ms:
            self.link = LINK_OK
            self.stale_since_ms = -1  # the silence budget resets only on re-engagement
            d.event(E_LINK_ENGAGED, now - self.alive_since_ms)

    # ----------------------------------------------------------------- commands

    def _command(self, d, cmd, now):
        env = self.env
        seq = cmd.seq
        if type(seq) is not int:
            return self._refuse(d, R_WRONG_TYPE, -1)
        if not 0 <= seq < _SEQ_LIMIT:
            return self._refuse(d, R_OUT_OF_RANGE, -1)
        d.seq = seq
        if seq <= self.last_seq:
            return self._refuse(d, R_STALE_SEQ, -1)
        values = cmd.values
        if not isinstance(values, dict):
            return self._refuse(d, R_WRONG_TYPE, -1)
        if not values:
            return self._refuse(d, R_EMPTY, -1)
        if self.state == ST_ARMED and (self.link == LINK_OK or not env.link):
            # Steady state: sanitise and evaluate in one pass (the link is already live).
            if self._govern(d, values, now, seq):
                self.last_seq = seq
                self.last_valid_ms = now
            return
        reason, channel = self._sanitize(d, values)
        if reason != R_OK:
            return self._refuse(d, reason, channel)
        self.last_seq = seq
        self._link_alive(d, now)
        st = self.state
        if st == ST_TRIPPED:
            d.set_verdict(TRIP, env.r_state, R_TRIPPED, 0, -1)
        elif st == ST_DISARMED:
            d.set_verdict(HOLD, env.r_state, R_NOT_ARMED, 0, -1)
        elif st == ST_PAUSED:
            d.set_verdict(HOLD, env.r_state, R_PAUSED, 0, -1)
        elif self.link != LINK_OK and env.link:
            r = R_LINK_STALE if self.link == LINK_STALE else R_LINK_NOT_ENGAGED
            d.set_verdict(HOLD, env.r_link_hold, r, 0, -1)
        else:
            self._govern(d, values, now, seq)  # this very command engaged the link

    def _session(self, d, ev, now):
        """A planner session starts: the sequence restarts and the link engages afresh (no
        motion carried over; an open approval request of the old session is dropped). The
        stage-2 budget of a link already out of engagement keeps running."""
        env = self.env
        s = ev.session
        ok = (type(s) is int and 0 <= s < _SEQ_LIMIT) or (type(s) is str and 0 < len(s) <= 64)
        if not ok:
            d.set_verdict(REJECT, env.r_command, R_WRONG_TYPE, 0, -1)
            return
        if s == self.session:
            self._regime(d)
            return
        d.event(E_SESSION, self.last_seq)
        self.session = s
        self.last_seq = -1
        self._quiet = False
        if self.pending_id >= 0:
            d.event(E_APPROVAL_EXPIRED, self.pending_id)
            self._drop_pending()
        if env.link:
            if self.link == LINK_OK and self.state == ST_ARMED:
                self.stale_since_ms = now  # must engage within trip_after_ms
            if self.link == LINK_OK:
                self.link = LINK_DOWN
            self.last_valid_ms = -1  # the new session's commands start a new streak
            self.alive_since_ms = -1
        self._regime(d)

    def _refuse(self, d, reason, channel):
        """An invalid command: REJECT with the reason, nothing applied, no liveness."""
        if channel < 0 and reason != R_UNKNOWN_CHANNEL:
            for i in range(self.env.n):  # refused before its values were read
                d.proposed[i] = None
        d.verdict = ALLOW
        d.rule = -1
        d.set_verdict(REJECT, self.env.r_command, reason, 0, channel)

    def _sanitize(self, d, values):
        """Fill ``d.proposed``; return (reason, channel) of the first problem or (R_OK, -1)."""
        env = self.env
        prop = d.proposed
        found = 0
        for i in range(env.n):
            v = values.get(env.ch_names[i], _MISSING)
            if v is _MISSING:
                prop[i] = None
                continue
            found += 1
            bad = _bad_number(v)
            if bad != R_OK:
                for j in range(i, env.n):
                    prop[j] = None
                return bad, i
            prop[i] = v
        if found != len(values):
            return R_UNKNOWN_CHANNEL, -1
        return R_OK, -1

    def _govern(self, d, values, now, request_id):
        """Sanitise and evaluate every proposed channel in one pass, then apply, escalate
        or trip as the worst verdict says. Returns False when the command was invalid.

        Per channel the common case (an integer inside the range in force that needs no
        rate clamp) is decided inline; anything else goes through ``_evaluate``.
        """
        prop = d.proposed
        out = self.out
        carry = self.carry
        cand = self._cand
        ccarry = self._ccarry
        found = 0
        best_i = -1
        best_m = 0
        best_r = -1
        dt = now - self.sample_ms
        if dt > SAMPLE_MAX_MS:
            dt = SAMPLE_MAX_MS
        for i, name, lo, hi, elo, ehi, rate, rmin, rmax, accel in self._rows:
            p = values.get(name, _MISSING)
            if p is _MISSING:
                prop[i] = None
                continue
            found += 1
            prop[i] = p
            if type(p) is int and elo <= p <= ehi and not accel:
                budget = rate * dt + carry[i]
                allowed = budget // 1000
                want = p - out[i]
                if -allowed <= want <= allowed:
                    cand[i] = p
                    ccarry[i] = 0
                    m = hi - p
                    r = rmax
                    if p - lo < m:
                        m = p - lo
                        r = rmin
                    if best_i < 0 or m < best_m:
                        best_m = m
                        best_i = i
                        best_r = r
                    continue
            bad = _bad_number(p)
            if bad != R_OK:
                prop[i] = None
                for j in range(i + 1, self.env.n):
                    prop[j] = None
                self._refuse(d, bad, i)
                return False
            self._evaluate(d, i, p, now)
        if found != len(values):
            self._refuse(d, R_UNKNOWN_CHANNEL, -1)
            return False
        if best_i >= 0:
            d.set_verdict(ALLOW, best_r, R_OK, best_m, best_i)
        v = d.verdict
        if v <= CLAMP:
            self._apply(prop, now)
        elif v == ESCALATE:
            self._escalate(d, prop, now, request_id)
        elif v == TRIP:
            self._trip(d, C_LIMIT, d.rule, d.reason, d.margin)
        return True

    def _evaluate(self, d, i, p, now):
        """Decide one channel the long way; the candidate output lands in ``_cand[i]``."""
        env = self.env
        m = self.mode
        lo = self._lo[i]
        hi = self._hi[i]
        verdict = ALLOW
        margin = hi - p
        rule = env.mode_rule_max[m][i]
        if p - lo < margin:
            margin = p - lo
            rule = env.mode_rule_min[m][i]
        reason = R_OK
        target = p
        if p > hi or p < lo:
            act = env.ch_breach[i]
            above = p > hi
            rule = env.mode_rule_max[m][i] if above else env.mode_rule_min[m][i]
            reason = R_ABOVE_MAX if above else R_BELOW_MIN
            if act == ACT_ESCALATE:
                if env.mode_amin[m][i] <= p <= env.mode_amax[m][i]:
                    rule = env.ch_rule_approval[i]
                    reason = R_APPROVAL_NEEDED
                else:
                    act = ACT_REJECT
            verdict = act
            target = hi if above else lo
        ilo = self._ilo[i]
        ihi = self._ihi[i]
        if target > ihi or target < ilo:
            iv = self._iact[i]
            m2 = ihi - target if target > ihi else target - ilo
            if iv > verdict or verdict == ALLOW:
                verdict = iv
                rule = self._irule[i]
                reason = R_INTERLOCK
                margin = m2
            target = _clamp(target, ilo, ihi)
        if verdict <= CLAMP:
            rv = self._rate(i, target, now)
            if rv != R_OK:
                act = env.ch_on_rate[i]
                if act > verdict or verdict == ALLOW:
                    verdict = act
                    rule = env.ch_rule_accel[i] if rv == R_ACCEL else env.mode_rule_rate[m][i]
                    reason = rv
                    gap = target - self._cand[i]
                    margin = -gap if gap > 0 else gap
        else:
            self._cand[i] = self.out[i]
        d.set_verdict(verdict, rule, reason, margin, i)
        return verdict

    def _rate(self, i, target, now):
        """Move ``out[i]`` toward ``target`` within rate (and acceleration) limits.

        The candidate lands in ``_cand[i]`` (between the current output and the target: a
        clamp never invents motion), with the velocity and carry it would leave behind.
        Returns R_OK, R_RATE or R_ACCEL.
        """
        env = self.env
        cur = self.out[i]
        want = target - cur
        dt = now - self.sample_ms
        if dt > SAMPLE_MAX_MS:
            dt = SAMPLE_MAX_MS
        lim = env.mode_rate[self.mode][i]
        limiter = R_RATE
        accel = env.ch_accel[i]
        if accel:
            a_dt = accel * dt // 1000
            vel = self.vel[i]
            speed = (vel if vel >= 0 else -vel) + a_dt
            if (want > 0 and vel < 0) or (want < 0 and vel > 0):
                speed = a_dt  # reversing: the stop is free, the new direction starts at rest
            if speed < lim:
                lim = speed
                limiter = R_ACCEL
        budget = lim * dt + self.carry[i]
        allowed = budget // 1000
        mag = want if want >= 0 else -want
        if mag <= allowed:
            self._cand[i] = target
            self._ccarry[i] = 0
            if accel:
                v = mag * 1000 // dt if dt > 0 else 0
                self._cvel[i] = v if want >= 0 else -v
            return R_OK
        self._cand[i] = cur + allowed if want > 0 else cur - allowed
        self._ccarry[i] = budget - allowed * 1000
        if accel:  # the speed of this step (0 when not even one step fits yet)
            v = allowed * 1000 // dt if dt > 0 else 0
            self._cvel[i] = v if want > 0 else -v
        return limiter

    def _apply(self, proposed, now):
        accel = self.env.ch_accel
        out = self.out
        cand = self._cand
        stepped = self._stepped
        serial = self._serial
        for i in range(self.env.n):
            if proposed[i] is None:
                continue
            c = cand[i]
            if c != out[i]:
                out[i] = c
                self._moved = True
            self.carry[i] = self._ccarry[i]
            stepped[i] = serial
            if accel[i]:
                self.vel[i] = self._cvel[i]

    def _limits(self):
        """Range in force per channel (mode, widened by permits) and interlock bounds,
        and the rows the steady-state pass walks. Called whenever one of them may change."""
        env = self.env
        m = self.mode
        for i in range(env.n):
            if self.permit_until[i] >= 0:
                self._lo[i] = env.mode_amin[m][i]
                self._hi[i] = env.mode_amax[m][i]
            else:
                self._lo[i] = env.mode_min[m][i]
                self._hi[i] = env.mode_max[m][i]
            self._ilo[i] = -_FAR
            self._ihi[i] = _FAR
            self._iact[i] = ALLOW
        for k in range(env.n_interlocks):
            if not self.il_active[k]:
                continue
            act = env.il_action[k]
            for ch, lo, hi in env.il_limits[k]:
                if lo is not None and lo > self._ilo[ch]:
                    self._ilo[ch] = lo
                if hi is not None and hi < self._ihi[ch]:
                    self._ihi[ch] = hi
                if act > self._iact[ch]:
                    self._iact[ch] = act
                    self._irule[ch] = env.il_rule[k]
        self._rows = tuple(
            (
                i, env.ch_names[i], self._lo[i], self._hi[i],
                max(self._lo[i], self._ilo[i]), min(self._hi[i], self._ihi[i]),
                env.mode_rate[m][i], env.mode_rule_min[m][i],
                env.mode_rule_max[m][i], env.ch_accel[i],
            )
            for i in range(env.n)
        )

    # ----------------------------------------------------------------- escalation

    def _escalate(self, d, proposed, now, request_id):
        env = self.env
        if self.pending_id >= 0:
            d.reason = R_AWAITING_APPROVAL
            return
        self._quiet = False
        self.pending_id = request_id
        self.pending_deadline = now + env.approval_timeout_ms
        for i in range(env.n):
            self.pending[i] = proposed[i]
        d.event(E_APPROVAL_ASKED, request_id)

    def _drop_pending(self):
        self.pending_id = -1
        self._dirty = True
        for i in range(self.env.n):
            self.pending[i] = None

    def _approve(self, d, arg, now):
        env = self.env
        if self.pending_id < 0 or arg != self.pending_id:
            d.set_verdict(REJECT, env.r_operator, R_NO_REQUEST, 0, -1)
            return
        m = self.mode
        for i in range(env.n):
            p = self.pending[i]
            if p is not None and (p > env.mode_max[m][i] or p < env.mode_min[m][i]):
                self.permit_until[i] = now + env.grant_ms
                self._limits_dirty = True
            d.proposed[i] = p
        d.event(E_APPROVAL_GRANTED, self.pending_id)
        d.seq = self.pending_id
        self._drop_pending()
        if self.state == ST_ARMED and (self.link == LINK_OK or not env.link):
            values = {}
            for i in range(env.n):
                if d.proposed[i] is not None:
                    values[env.ch_names[i]] = d.proposed[i]
            self._ensure_limits()
            self._govern(d, values, now, -1)
        else:
            d.set_verdict(HOLD, env.r_state, R_NOT_ARMED, 0, -1)

    # ----------------------------------------------------------------- telemetry

    def _telemetry(self, d, tel, now):
        env = self.env
        values = tel.values
        if not isinstance(values, dict):
            d.set_verdict(REJECT, env.r_telemetry, R_WRONG_TYPE, 0, -1)
            return
        if not values:
            d.set_verdict(REJECT, env.r_telemetry, R_EMPTY, 0, -1)
            return
        found = 0
        for k in range(env.n_inputs):
            v = values.get(env.in_names[k], _MISSING)
            if v is _MISSING:
                continue
            found += 1
            reason = self._bad_input(k, v)
            if reason != R_OK:
                d.set_verdict(REJECT, env.in_rule[k], reason, 0, -1)
                return
        if found != len(values):
            d.set_verdict(REJECT, env.r_telemetry, R_UNKNOWN_INPUT, 0, -1)
            return
        for k in range(env.n_inputs):
            v = values.get(env.in_names[k], _MISSING)
            if v is not _MISSING:
                self.in_val[k] = int(v)
                self.in_ms[k] = now
                self.in_fresh[k] = True

    def _bad_input(self, k, v):
        env = self.env
        if not env.in_number[k]:
            return R_OK if isinstance(v, bool) else R_WRONG_TYPE
        bad = _bad_number(v)
        if bad != R_OK:
            return bad
        return R_OK if env.in_min[k] <= v <= env.in_max[k] else R_OUT_OF_RANGE

    # ----------------------------------------------------------------- operator

    def _operator(self, d, op, now):
        env = self.env
        self.last_auth = False
        ok = (
            isinstance(op.action, int)
            and isinstance(op.arg, int)
            and isinstance(op.counter, int)
            and 0 < op.action < 256
            and -(1 << 63) <= op.arg < (1 << 63)
            and 0 <= op.counter < (1 << 64)
            and self._authentic(op)
        )
        if not ok:
            d.event(E_AUTH_REFUSED, R_AUTH_FAILED)
            d.set_verdict(REJECT, env.r_operator, R_AUTH_FAILED, 0, -1)
            return
        if op.counter <= self.op_counter:
            d.event(E_AUTH_REFUSED, R_REPLAYED)
            d.event(E_COUNTER_BEHIND, self.op_counter - op.counter)
            d.set_verdict(REJECT, env.r_operator, R_REPLAYED, 0, -1)
            return
        self.op_counter = op.counter
        action = op.action
        if action == OP_MODE:
            self._mode(d, op.arg)
        elif action == OP_APPROVE:
            self._approve(d, op.arg, now)
        elif action == OP_DENY:
            self._deny(d, op.arg)
        elif action == OP_ESTOP:
            self._trip(d, C_ESTOP_OPERATOR, env.r_operator, R_ESTOP_OPERATOR, 0)
        else:
            self._transition(d, action, now)

    def _authentic(self, op):
        """Does the MAC check out? (Replay may substitute the recorded answer.)"""
        ok = auth.verify_op(self._key, self.env.device_id, op.action, op.arg, op.counter,
                            op.mac)
        self.last_auth = ok
        return ok

    def _transition(self, d, action, now):
        env = self.env
        row = transition(self.state, action)
        if row is None:
            return self._refuse_op(d, action, R_NOT_ALLOWED, 0)
        guard = row[3]
        if guard == G_CAUSES_GONE:
            if not self._outputs_safe():
                return self._refuse_op(d, action, R_SS1_RAMP, 0)  # the stop has not finished
            blocking = self._blocking()
            if blocking:
                return self._refuse_op(d, action, R_CAUSE_PRESENT, blocking)
        if guard == G_ARMABLE and self.causes:
            return self._refuse_op(d, action, R_CAUSE_PRESENT, self.causes)
        to = row[2]
        if to == ST_DISARMED:
            self.causes = 0
            self.trip_interlocks = 0
            d.event(E_RESET, 0)
        elif to == ST_ARMED:
            d.event(E_ARM if self.state == ST_DISARMED else E_RESUME, self.mode)
            if env.link and self.link != LINK_OK:
                self.stale_since_ms = now  # the link must engage within trip_after_ms
            for i in range(env.n):
                self.vel[i] = 0
                self.carry[i] = 0
        elif to == ST_PAUSED and self.state == ST_ARMED:
            d.event(E_PAUSE, 0)
        self.state = to

    def _refuse_op(self, d, action, reason, blocking):
        """A refused ARM/RESET/PAUSE/RESUME: the event names the action, its argument is the
        reason code; the causes that block it follow as their own event."""
        if action == OP_ARM:
            code = E_ARM_REFUSED
        elif action == OP_RESET:
            code = E_RESET_REFUSED
        elif action == OP_PAUSE:
            code = E_PAUSE_REFUSED
        elif action == OP_RESUME:
            code = E_RESUME_REFUSED
        else:
            code = E_OP_REFUSED
        d.event(code, reason)
        if blocking:
            d.event(E_BLOCKING_CAUSES, blocking)
        d.set_verdict(REJECT, self.env.r_state, reason, 0, -1)

    def _outputs_safe(self):
        env = self.env
        for i in range(env.n):
            if self.out[i] != env.ch_safe[i]:
                return False
        return True

    def _blocking(self):
        """The latched trip causes that are still present (a reset needs none)."""
        env = self.env
        c = self.causes
        b = 0
        if c & C_ESTOP_INPUT and self._estop_pressed():
            b |= C_ESTOP_INPUT
        if c & C_LINK_LOST and (
            self.last_valid_ms < 0 or self.last_now - self.last_valid_ms > env.hold_after_ms
        ):
            b |= C_LINK_LOST
        if c & C_INTERLOCK:
            for k in range(env.n_interlocks):
                if self.trip_interlocks & (1 << k) and self.il_active[k]:
                    b |= C_INTERLOCK
        if c & C_FAULT and self.faults:
            b |= C_FAULT
        return b

    def _mode(self, d, arg):
        env = self.env
        if self.state == ST_ARMED:
            d.event(E_MODE_REFUSED, R_NOT_ALLOWED)
            d.set_verdict(REJECT, env.r_state, R_NOT_ALLOWED, 0, -1)
            return
        if not 0 <= arg < len(env.modes):
            d.event(E_MODE_REFUSED, R_UNKNOWN_MODE)
            d.set_verdict(REJECT, env.r_operator, R_UNKNOWN_MODE, 0, -1)
            return
        for i in range(env.n):
            if not env.mode_min[arg][i] <= self.out[i] <= env.mode_max[arg][i]:
                d.event(E_MODE_REFUSED, R_OUTPUT_OUTSIDE_MODE)
                d.set_verdict(REJECT, env.r_state, R_OUTPUT_OUTSIDE_MODE, 0, i)
                return
        self.mode = arg
        self._limits_dirty = True
        for i in range(env.n):
            self.permit_until[i] = -1
        d.event(E_MODE, arg)

    def _deny(self, d, arg):
        env = self.env
        if self.pending_id < 0 or arg != self.pending_id:
            d.set_verdict(REJECT, env.r_operator, R_NO_REQUEST, 0, -1)
            return
        d.event(E_APPROVAL_DENIED, self.pending_id)
        d.set_verdict(REJECT, env.r_operator, R_APPROVAL_DENIED, 0, -1)
        self._drop_pending()

    # ----------------------------------------------------------------- faults and trips

    def _fault(self, d, ev):
        env = self.env
        code = ev.code
        malformed = (not isinstance(code, int) or isinstance(code, bool)
                     or not 0 <= code <= F_UNKNOWN)
        if malformed:
            # A fault report we cannot read is still a fault: fail closed. Only an explicit
            # clear of the "unknown" code lifts it; a malformed report never clears anything.
            code = F_UNKNOWN
        if malformed or ev.active is not False:
            self.faults |= 1 << code
            d.event(E_FAULT, code)
            self._trip(d, C_FAULT, env.r_fault, R_FAULT, 0)
        elif self.faults & (1 << code):
            self.faults &= ~(1 << code)
            d.event(E_FAULT_CLEARED, code)

    def _trip(self, d, cause, rule, reason, margin):
        """Latch the safe state: STO channels go to safe now, SS1 channels ramp there."""
        env = self.env
        d.set_verdict(TRIP, rule, reason, margin, d.channel)
        if self.causes & cause and self.state == ST_TRIPPED:
            return
        self.causes |= cause
        self._dirty = True
        self._quiet = False
        if self.state == ST_TRIPPED:
            return
        self.state = ST_TRIPPED
        self._limits_dirty = True
        d.event(E_TRIP, reason)
        if self.pending_id >= 0:
            self._drop_pending()
        for i in range(env.n):
            self.permit_until[i] = -1
            if env.ch_stop[i] == STOP_STO and self.out[i] != env.ch_safe[i]:
                self.out[i] = env.ch_safe[i]
                self.vel[i] = 0
                self.carry[i] = 0
                self._moved = True

    # ----------------------------------------------------------------- safety and ramps

    def _estop_pressed(self):
        env = self.env
        for k in range(env.n_inputs):
            if env.in_estop[k] and (not self.in_fresh[k] or self.in_val[k]):
                return True
        return False

    def _supervise_safety(self, d, now):
        self._trip_checks(d)
        self._ramp(now)

    def _trip_checks(self, d):
        """E-stop input and trip-action interlocks, on the inputs as they are now."""
        env = self.env
        if self._estop_pressed() and not self.causes & C_ESTOP_INPUT:
            self._trip(d, C_ESTOP_INPUT, env.r_estop, R_ESTOP_INPUT, 0)
        self._update_interlocks()
        for k in range(env.n_interlocks):
            if self.il_active[k] and env.il_action[k] == ACT_TRIP and self._violates(k):
                if not self.trip_interlocks & (1 << k):
                    self.trip_interlocks |= 1 << k
                    self._dirty = True
                self._trip(d, C_INTERLOCK, env.il_rule[k], R_INTERLOCK, 0)

    def _update_interlocks(self):
        env = self.env
        for k in range(env.n_interlocks):
            active = True
            for inp, op, value in env.il_conds[k]:
                if self.in_fresh[inp] and not _holds(op, self.in_val[inp], value):
                    active = False  # a stale input keeps the restriction (fail safe)
                    break
            if active != self.il_active[k]:
                self.il_active[k] = active
                self._dirty = True
                self._limits_dirty = True

    def _violates(self, k):
        for ch, lo, hi in self.env.il_limits[k]:
            v = self.out[ch]
            if (lo is not None and v < lo) or (hi is not None and v > hi):
                return True
        return False

    def _holding(self):
        st = self.state
        if st == ST_DISARMED or st == ST_PAUSED:
            return True
        return st == ST_ARMED and self.env.link and self.link != LINK_OK

    def _ramp(self, now):
        env = self.env
        tripped = self.state == ST_TRIPPED
        holding = self._holding()
        self._ensure_limits()
        for i in range(env.n):
            cur = self.out[i]
            if tripped or (holding and env.ch_hold[i] == HOLD_RAMP):
                target = env.ch_safe[i]
            else:
                target = _clamp(_clamp(cur, self._lo[i], self._hi[i]), self._ilo[i], self._ihi[i])
            if target != cur and self._stepped[i] != self._serial:
                self._ramp_step(i, cur, target, now)

    def _ramp_step(self, i, cur, target, now):
        dt = now - self.sample_ms
        if dt > SAMPLE_MAX_MS:
            dt = SAMPLE_MAX_MS
        rate = self.env.mode_rate[self.mode][i]
        budget = rate * dt + self.carry[i]
        allowed = budget // 1000
        if allowed <= 0:
            # Less than one step so far: the budget is carried (a state change, recorded).
            if budget != self.carry[i]:
                self.carry[i] = budget
                self._dirty = True
            return
        self._stepped[i] = self._serial
        want = target - cur
        mag = want if want >= 0 else -want
        if mag <= allowed:
            self.out[i] = target
            self.carry[i] = 0
            vel = 0
        else:
            self.out[i] = cur + allowed if want > 0 else cur - allowed
            self.carry[i] = budget - allowed * 1000
            vel = allowed * 1000 // dt  # dt > 0: at least one step fitted
            if want < 0:
                vel = -vel
        if self.env.ch_accel[i]:
            self.vel[i] = vel
        self._moved = True
        self._dirty = True

    def _regime(self, d):
        """For ticks and state-only decisions: what the outputs are following."""
        env = self.env
        if self.state == ST_TRIPPED:
            reason = R_TRIPPED
            if self.causes & C_INTERNAL:
                reason = R_INTERNAL_FAULT
            elif self.causes == C_BOOT:
                reason = R_BOOT
            d.set_verdict(TRIP, env.r_state, reason, 0, -1)
        elif self._holding():
            if self.state == ST_DISARMED:
                d.set_verdict(HOLD, env.r_state, R_NOT_ARMED, 0, -1)
            elif self.state == ST_PAUSED:
                d.set_verdict(HOLD, env.r_state, R_PAUSED, 0, -1)
            else:
                r = R_LINK_STALE if self.link == LINK_STALE else R_LINK_NOT_ENGAGED
                d.set_verdict(HOLD, env.r_link_hold, r, 0, -1)


def _holds(op, a, b):
    if op == 0:
        return a == b
    if op == 1:
        return a != b
    if op == 2:
        return a < b
    if op == 3:
        return a <= b
    if op == 4:
        return a > b
    return a >= b


__all__ = ["Governor"]
