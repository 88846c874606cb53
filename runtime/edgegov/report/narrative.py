"""Each incident told as a list a person reads: the lead-up, the trip, what the outputs
did, what operators did, and how it ended.

``Narrator`` sees every placed record once (not only the plotted ones) and follows the
report's one definition of an incident (``model``): it starts at a trip while the governor
is not tripped and lasts until an accepted reset or the next boot. Entries carry the
record's report time and sequence number, so the page can link them to the plots.
"""

from __future__ import annotations

from collections import deque

from .. import names
from ..core import codes
from .shadow import eng, resolve, scale_of

LEAD_S = 5.0  # lead-up looked at before a trip
LEAD_COMMANDS = 3  # last commands listed
LEAD_INPUT_CHANGES = 6
LEAD_LINK = 4
OPERATOR_EVENTS = ("reset", "reset_refused", "arm", "arm_refused", "pause", "resume",
                   "mode", "mode_refused", "auth_refused", "approval_granted",
                   "approval_denied")


def _fmt(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _values(d) -> str:
    return ", ".join(f"{k} {_fmt(v)}" for k, v in d.items()) if isinstance(d, dict) else ""


class Narrator:
    """Fed ``feed(x, row)`` for every placed record in order; ``incidents`` holds one
    narrative (dict) per incident, in order."""

    def __init__(self, envelopes: dict, units: dict[str, str]):
        self.units = units
        self.safe: dict[str, tuple] = {}  # channel → (safe value, stop category, unit)
        for env in envelopes.values():
            for i, name in enumerate(env.ch_names):
                stop = "SS1" if env.ch_stop[i] == codes.STOP_SS1 else "STO"
                self.safe.setdefault(name, (eng(env.ch_safe[i], scale_of(env.ch_res[i])),
                                            stop, env.ch_units[i]))
        self.commands: deque = deque(maxlen=LEAD_COMMANDS)
        self.changes: deque = deque(maxlen=LEAD_INPUT_CHANGES)
        self.link: deque = deque(maxlen=LEAD_LINK)
        self.inputs: dict = {}
        self.incidents: list[dict] = []
        self.open: dict | None = None
        self._reached: set = set()
        self._applied = None

    # ------------------------------------------------------------------ feeding

    def feed(self, x: float, row: dict) -> None:
        row_events = row.get("events", ())
        events = [e.get("event") for e in row_events] if row_events else []
        if self.open is not None and ("reset" in events or row["kind"] == "boot"):
            self._close(x, row, "reset" if "reset" in events else "boot")
        elif self.open is not None:
            self._during(x, row, events)
        if not row_events:
            self._remember(x, row, events)
            return
        for e in row_events:
            if e.get("event") == "trip":
                if self.open is None:
                    self._start(x, row, e.get("arg"))
                elif row["seq"] != self.open["seq"]:
                    self._add("trip", x, row["seq"], f"tripped again: {self._cause(e.get('arg'))}")
        self._remember(x, row, events)

    def quiet(self, x: float, seq: int, kind: str, row, values: dict | None) -> None:
        """``feed`` of a record with no event (``row`` a ``LazyRow``, built only if this
        record is told; ``values`` its telemetry values as shown, None for a decision or a
        tick)."""
        if self.open is not None and len(self._reached) < len(self.safe):
            self._outputs(x, seq, row.outputs())  # (``_during``: no event, no operator)
        if kind == "decision":  # (``_remember``)
            self.commands.append({"x": x, "seq": seq, "row": row})
        elif values and values is not self._applied:
            self._changes(x, seq, values)

    def finish(self, t_last) -> list[dict]:
        if self.open is not None:
            self.open["end"] = {"kind": "end", "x": t_last,
                                "text": "still tripped at the end of the dump"}
            self.open = None
        return self.incidents

    # ------------------------------------------------------------------ the lead-up

    def _remember(self, x: float, row: dict, events: list) -> None:
        inp = row.get("input")
        if row["kind"] == "decision":  # (worded only when a trip lists it)
            self.commands.append({"x": x, "seq": row["seq"], "row": row})
        elif isinstance(inp, dict) and inp.get("type") == "telemetry":
            self._changes(x, row["seq"], inp.get("values") or {})
        for e in row.get("events", ()):
            if str(e.get("event", "")).startswith("link_"):
                self.link.append({"x": x, "seq": row["seq"], "text": _link(e)})

    def _changes(self, x: float, seq: int, values: dict) -> None:
        self._applied = values  # (the same values again change nothing)
        inputs = self.inputs
        for name, value in values.items():
            if name not in inputs:
                inputs[name] = value
                continue
            old = inputs[name]
            if old != value:
                unit = self.units.get(name, "")
                self.changes.append({"x": x, "seq": seq,
                                     "text": f"input {name}: {_fmt(old)} → {_fmt(value)}"
                                             + (f" {unit}" if unit else "")})
            inputs[name] = value

    @staticmethod
    def _command(row: dict) -> str:
        text = f"command #{row.get('cmd_seq')}: {_values(row.get('proposed'))} → "
        text += row.get("verdict") or "?"
        if row.get("verdict") != "ALLOW":
            text += f" ({row.get('reason')}, rule {row.get('rule') or '-'})"
        return text

    # ------------------------------------------------------------------ the trip

    def _cause(self, arg) -> str:
        return names.reason(arg) if type(arg) is int else "?"

    def _start(self, x: float, row: dict, arg) -> None:
        commands = [{"x": e["x"], "seq": e["seq"], "text": self._command(resolve(e["row"]))}
                    for e in self.commands]
        lead = [e for e in list(self.changes) + list(self.link) + commands
                if e["x"] >= x - LEAD_S and e["seq"] != row["seq"]]
        lead.sort(key=lambda e: (e["x"], e["seq"]))
        cause = self._cause(arg)
        self.open = {"seq": row["seq"], "x": x, "cause": cause, "rule": row.get("rule"),
                     "lead": lead, "trip": self._trip_text(row, cause), "after": [],
                     "end": None}
        self._reached = set()
        self.incidents.append(self.open)
        self._during(x, row, [e.get("event") for e in row.get("events", ())])

    def _trip_text(self, row: dict, cause: str) -> str:
        what = {"estop_input": "the e-stop input was pressed",
                "estop_operator": "an operator pressed e-stop",
                "interlock": "an interlock was breached", "link_lost": "the command link "
                "was lost", "internal_fault": "an internal fault latched",
                "fault": "a fault was reported"}.get(cause, cause.replace("_", " "))
        text = f"TRIP: {what} (cause {cause}, rule {row.get('rule') or '-'}, margin " \
               f"{row.get('margin')})"
        inp = row.get("input")
        if isinstance(inp, dict) and inp.get("type") == "telemetry":
            text += f"; telemetry {_values(inp.get('values'))}"
        elif row["kind"] == "decision":
            text += f"; on command #{row.get('cmd_seq')}: {_values(row.get('proposed'))}"
        elif isinstance(inp, dict) and inp.get("type") == "operator":
            text += f"; operator action {inp.get('action')}"
        return text

    # ------------------------------------------------------------------ after the trip

    def _during(self, x: float, row: dict, events: list) -> None:
        inc = self.open
        dt = x - inc["x"]
        for e in row.get("events", ()):
            name = e.get("event")
            if name == "estop_out":
                state = "asserted" if e.get("arg") else "released"
                self._add("estop", x, row["seq"],
                          f"e-stop output {state} (+{dt:.3f} s after the trip)")
            elif str(name).startswith("link_"):
                self._add("link", x, row["seq"], _link(e))
        inp = row.get("input")
        if isinstance(inp, dict) and inp.get("type") == "operator":
            self._add("operator", x, row["seq"], operator_text(row))
        out = row.get("output") or row.get("outputs")
        if isinstance(out, dict):
            self._outputs(x, row["seq"], out)

    def _outputs(self, x: float, seq: int, out: dict) -> None:
        """Outputs (channel → value shown) that reached their safe value since the trip."""
        dt = x - self.open["x"]
        for ch, value in out.items():
            safe = self.safe.get(ch)
            if safe is None or ch in self._reached or value != safe[0]:
                continue
            self._reached.add(ch)
            how = "at once" if dt < 0.0005 else f"{dt:.3f} s after the trip"
            ramp = " (ramped down)" if safe[1] == "SS1" else ""
            self._add("output", x, seq, f"output {ch} at its safe value {_fmt(safe[0])} "
                                           f"{safe[2]} {how}: stop category {safe[1]}{ramp}")

    def _add(self, kind: str, x: float, seq: int, text: str) -> None:
        self.open["after"].append({"kind": kind, "x": x, "seq": seq, "text": text})

    def _close(self, x: float, row: dict, how: str) -> None:
        inc = self.open
        if how == "reset":
            self._add("operator", x, row["seq"], operator_text(row))
            text = (f"reset accepted {x - inc['x']:.3f} s after the trip; the governor is "
                    f"left disarmed (a separate arm restarts)")
        else:
            text = "ended by a reboot (BOOT record)"
        inc["end"] = {"kind": how, "x": x, "seq": row["seq"], "text": text}
        self.open = None


def _link(e: dict) -> str:
    name, arg = e.get("event"), e.get("arg")
    words = {"link_engaged": "link engaged", "link_stale": "link stale (stage 1: HOLD)",
             "link_lost": "link lost (stage 2: TRIP)"}.get(name, name)
    return f"{words} after {arg} ms"


REFUSAL_REASONS = ("auth_failed", "replayed", "not_allowed", "no_request", "unknown_mode",
                   "cause_present")


def refused(row: dict) -> bool:
    """Was this operator action refused (not authentic, replayed, not valid now, or a
    reset/arm/mode the governor declined)?"""
    inp = row.get("input") or {}
    return (inp.get("authentic") is False or row.get("reason") in REFUSAL_REASONS
            or any(str(e.get("event")).endswith("_refused") for e in row.get("events", ())))


def operator_text(row: dict) -> str:
    """One operator action in words: what, signed or not, accepted or refused and why."""
    inp = row.get("input") or {}
    auth = inp.get("authentic")
    signed = {True: "signed with the device key", False: "NOT authentic",
              None: "authenticity not recorded"}.get(auth, str(auth))
    text = f"operator {inp.get('action')} (counter {inp.get('counter')}, {signed})"
    if not refused(row):
        return text + ": accepted" + (f" → {row.get('verdict')} ({row.get('reason')})"
                                      if row.get("verdict") not in ("ALLOW", None) else "")
    why = str(row.get("reason"))
    for e in row.get("events", ()):
        if e.get("event") == "blocking_causes" and type(e.get("arg")) is int:
            why += ": " + (", ".join(names.causes(e["arg"])) or "no cause")
        elif e.get("event") == "counter_behind" and type(e.get("arg")) is int:
            why += f": counter {e['arg']} behind the last accepted one"
    return text + f": refused ({why})"


__all__ = ["Narrator", "operator_text", "refused", "LEAD_S"]
