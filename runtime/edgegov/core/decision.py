"""What the governor decided in one call, and the effects the loop must perform.

One ``Decision`` object is reused for every call (the MCU loop must not allocate), so it is
valid until the next ``handle``; ``snapshot()`` copies it for keeping.

Effects: write ``output`` to the actuators when ``changed``; drive the e-stop output to
``estop``; kick the watchdog only when ``kick`` and the rest of the cycle succeeded; append
the lineage record when ``record``; the ``events`` (codes.E_*) tell the loop about
approvals to ask for, trips, link stages and so on.
"""

from .codes import ALLOW, EV_COMMAND

MAX_EVENTS = 16


class Decision:
    def __init__(self, n_channels):
        self.n = n_channels
        self.proposed = [None] * n_channels  # scaled proposal per channel, None if none
        self.output = [0] * n_channels
        self.ev_code = [0] * MAX_EVENTS
        self.ev_arg = [0] * MAX_EVENTS
        self.clear(0, 0)

    def clear(self, kind, now_ms):
        self._reset(kind, now_ms)
        self.record = False
        self.state = 0
        self.mode = 0
        self.link = 0
        for i in range(self.n):
            self.proposed[i] = None

    def begin_command(self, now_ms, state, mode, link):
        """The light reset of the steady-state path: the command pass writes every
        ``proposed`` entry itself and nothing but the command can happen."""
        self._reset(EV_COMMAND, now_ms)
        self.record = True
        self.state = state
        self.mode = mode
        self.link = link

    def _reset(self, kind, now_ms):
        self.kind = kind
        self.now_ms = now_ms
        self.seq = -1
        self.verdict = ALLOW
        self.rule = -1
        self.reason = 0
        self.margin = 0
        self.channel = -1
        self.changed = False
        self.estop = False
        self.kick = True
        self.n_events = 0
        self.lost_events = 0

    def event(self, code, arg):
        if self.n_events < MAX_EVENTS:
            self.ev_code[self.n_events] = code
            self.ev_arg[self.n_events] = arg
            self.n_events += 1
        else:
            self.lost_events += 1

    def set_verdict(self, verdict, rule, reason, margin, channel):
        """Worst wins. On a tie the first rule stays, except that among ALLOWs the
        smallest margin (the closest approach to a limit) is kept, lowest channel first."""
        if verdict < self.verdict:
            return
        if verdict == self.verdict and not (
            (self.rule < 0 and rule >= 0)
            or (
                verdict == ALLOW
                and (
                    self.channel < 0
                    or margin < self.margin
                    or (margin == self.margin and 0 <= channel < self.channel)
                )
            )
        ):
            return
        self.verdict = verdict
        self.rule = rule
        self.reason = reason
        self.margin = margin
        self.channel = channel

    def events(self):
        return [(self.ev_code[i], self.ev_arg[i]) for i in range(self.n_events)]

    def snapshot(self):
        """A plain, independent copy (allocates; host side)."""
        return {
            "kind": self.kind, "now_ms": self.now_ms, "seq": self.seq, "verdict": self.verdict,
            "rule": self.rule, "reason": self.reason, "margin": self.margin,
            "channel": self.channel, "proposed": list(self.proposed),
            "output": list(self.output), "changed": self.changed, "estop": self.estop,
            "kick": self.kick, "record": self.record, "state": self.state, "mode": self.mode,
            "link": self.link, "events": self.events(),
        }


__all__ = ["Decision", "MAX_EVENTS"]
