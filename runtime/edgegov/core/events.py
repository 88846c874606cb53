"""Inputs to ``Governor.handle``. Each carries its kind; values are scaled integers.

A caller that wants zero allocation per control period keeps one event object and updates
its fields in place (``cmd.seq += 1``); the governor never keeps a reference to an event.
"""

from .codes import EV_COMMAND, EV_FAULT, EV_OPERATOR, EV_SESSION, EV_TELEMETRY, EV_TICK


class Command:
    """A proposal from the deciding layer: ``values`` maps channel name → scaled int.

    Channels left out keep their current output. ``seq`` must strictly increase within a
    planner session. ``session`` is read by hosts only (they feed a ``Session`` when it
    changes); the governor decides the command without it.
    """

    kind = EV_COMMAND

    def __init__(self, seq, values, source=0, session=None):
        self.seq = seq
        self.values = values
        self.source = source
        self.session = session


class Telemetry:
    """Plant inputs: ``values`` maps input name → bool or scaled int."""

    kind = EV_TELEMETRY

    def __init__(self, values):
        self.values = values


class Tick:
    """Time passing (one per control period): link stages, expiries and ramps happen here."""

    kind = EV_TICK


TICK = Tick()


class Operator:
    """An authenticated operator action (``codes.OP_*``) with its argument and MAC."""

    kind = EV_OPERATOR

    def __init__(self, action, arg, counter, mac):
        self.action = action
        self.arg = arg
        self.counter = counter
        self.mac = mac


class Fault:
    """A fault seen by the loop (readback mismatch, peer dead, ...); ``active`` False clears."""

    kind = EV_FAULT

    def __init__(self, code, active=True):
        self.code = code
        self.active = active


class Session:
    """A planner (re)started: ``session`` (an int 0 <= s < 2**53, or text of 1 to 64
    characters) names its run. A new session restarts the command sequence and the link
    must engage afresh; the same session again changes nothing. Hosts feed one before the
    first command that carries a session different from ``Governor.session``."""

    kind = EV_SESSION

    def __init__(self, session):
        self.session = session


__all__ = ["Command", "Telemetry", "Tick", "TICK", "Operator", "Fault", "Session"]
