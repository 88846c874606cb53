"""What the service publishes: decisions, events, state and outputs as JSON-able dicts.

Values are in engineering units (scaled value × resolution); codes are words from
``edgegov.names``. Built from the reused ``Decision`` right after the call that produced it.
"""

from __future__ import annotations

from decimal import Decimal

from .. import names
from ..core import codes
from .wire import INPUT_KINDS

_EXACT = 10**28  # the default Decimal context's 28 digits

LINK_WORDS = names.LINK_WORDS


class Vocabulary:
    """Turns one envelope's indices and scaled values into names and engineering units."""

    def __init__(self, env) -> None:
        self.env = env
        self.res = [Decimal(r) for r in env.ch_res]
        self.ratio = [r.as_integer_ratio() for r in self.res]

    def eng(self, i: int, scaled):
        """scaled × resolution: an int when whole, else the nearest float."""
        if type(scaled) is not int:
            return None
        num, den = self.ratio[i]
        x = scaled * num
        if -_EXACT < x < _EXACT:  # what the Decimal product below holds exactly
            if den == 1:
                return x
            return x // den if x % den == 0 else x / den  # int / int: correctly rounded
        value = scaled * self.res[i]
        return int(value) if value == value.to_integral_value() else float(value)

    def outputs(self, scaled: list) -> dict:
        return {self.env.ch_names[i]: self.eng(i, v) for i, v in enumerate(scaled)}

    def rule(self, index: int) -> str | None:
        return self.env.rules[index] if 0 <= index < len(self.env.rules) else None

    def mode(self, index: int) -> str:
        modes = self.env.modes
        return modes[index] if 0 <= index < len(modes) else str(index)

    def events(self, d) -> list[dict]:
        return [names.describe_event(c, a, self.env) for c, a in d.events()]

    def margin(self, d) -> dict:
        """The decision's margin in the channel's unit, when it concerns a channel."""
        i = d.channel
        if not 0 <= i < len(self.env.ch_names):
            return {}
        return {"channel": self.env.ch_names[i], "margin_eng": self.eng(i, d.margin),
                "unit": self.env.ch_units[i]}

    def decision(self, d, seq, note: str | None) -> dict:
        """The ``decision`` message for one command."""
        proposed = {self.env.ch_names[i]: self.eng(i, p)
                    for i, p in enumerate(d.proposed) if type(p) is int}
        msg = {
            "seq": seq if type(seq) is int else None,
            "t_ms": d.now_ms,
            "verdict": names.verdict(d.verdict),
            "reason": names.reason(d.reason),
            "verdict_code": d.verdict,
            "reason_code": d.reason,
            "rule": self.rule(d.rule),
            "margin": d.margin,
            "proposed": proposed,
            "output": self.outputs(d.output),
            "state": names.state(d.state),
            "mode": self.mode(d.mode),
            "link": LINK_WORDS.get(d.link, str(d.link)),
            "estop": bool(d.estop),
            "events": self.events(d),
        }
        if note:
            msg["note"] = note
        return msg

    def refusal(self, d, kind: int, note: str | None) -> dict:
        """The ``event`` message for input the governor refused (REJECT of the input)."""
        msg = {"t_ms": d.now_ms, "event": "rejected", "input": INPUT_KINDS.get(kind, "?"),
               "reason": names.reason(d.reason), "reason_code": d.reason,
               "rule": self.rule(d.rule)}
        if note:
            msg["note"] = note
        return msg

    def ack(self, d, kind: int, note: str | None) -> dict:
        """The MQTT 5 reply to a non-command input (operator actions, telemetry)."""
        msg = {"t_ms": d.now_ms, "input": INPUT_KINDS.get(kind, "?"),
               "verdict": names.verdict(d.verdict), "reason": names.reason(d.reason),
               "verdict_code": d.verdict, "reason_code": d.reason,
               "rule": self.rule(d.rule), "state": names.state(d.state),
               "mode": self.mode(d.mode), "events": self.events(d)}
        if note:
            msg["note"] = note
        return msg

    def event(self, d, kind: int, code: int, arg: int) -> dict:
        """The ``event`` message: the code and its argument as numbers, and in words (a
        trip also names its rule, and the margin in the channel's unit)."""
        msg = {"t_ms": d.now_ms, **names.describe_event(code, arg, self.env),
               "input": INPUT_KINDS.get(kind, "?"), "state": names.state(d.state)}
        if code == codes.E_TRIP:
            msg["rule"] = self.rule(d.rule)
            msg["margin"] = d.margin
            msg.update(self.margin(d))
        return msg

    def state(self, gov, status: str, extra: dict) -> dict:
        return {
            "status": status,
            "state": names.state(gov.state),
            "mode": self.mode(gov.mode),
            "link": LINK_WORDS.get(gov.link, str(gov.link)),
            "estop": bool(gov.d.estop),
            "trip_causes": names.causes(gov.causes),
            "outputs": self.outputs(gov.out),
            "t_ms": gov.last_now,
            "op_counter": gov.op_counter,  # the last accepted operator counter
            **extra,
        }


__all__ = ["Vocabulary", "LINK_WORDS"]
