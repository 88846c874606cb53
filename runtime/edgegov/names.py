"""Words for the core's codes (the core itself records only numbers)."""

from __future__ import annotations

from .core import codes

_PREFIX = {"verdict": "", "reason": "R_", "event": "E_", "state": "ST_", "op": "OP_"}
_VERDICTS = ("ALLOW", "CLAMP", "REJECT", "ESCALATE", "HOLD", "TRIP")


def _table(prefix: str) -> dict[int, str]:
    return {
        getattr(codes, name): name[len(prefix):].lower()
        for name in dir(codes)
        if name.startswith(prefix) and isinstance(getattr(codes, name), int)
    }


REASONS = _table("R_")
EVENTS = _table("E_")
STATES = {code: name.upper() for code, name in _table("ST_").items()}
OPS = _table("OP_")
LINKS = _table("LINK_")
VERDICTS = dict(enumerate(_VERDICTS))
CAUSES = _table("C_")


def verdict(code: int) -> str:
    return VERDICTS.get(code, f"verdict{code}")


def reason(code: int) -> str:
    return REASONS.get(code, f"reason{code}")


def event(code: int) -> str:
    return EVENTS.get(code, f"event{code}")


def state(code: int) -> str:
    return STATES.get(code, f"state{code}")


def op(code: int) -> str:
    return OPS.get(code, f"op{code}")


def op_code(name: str) -> int:
    for code, text in OPS.items():
        if text == name:
            return code
    raise KeyError(f"unknown operator action {name!r} (one of {', '.join(sorted(OPS.values()))})")


# Fault codes the host feeds the governor (``Fault(code)``, 0 <= code < 30): one table for
# the service, the adapters and what is published or decoded.
F_ESTOP_READBACK = 1  # the e-stop output reads back wrong
F_LINEAGE = 2  # the lineage cannot be written
F_OUTPUT = 3  # an output could not be performed
F_DRIVE_LINK = 4  # the Modbus drive does not answer
F_DRIVE_EXCEPTION = 5  # the Modbus drive answers with exceptions
F_UNKNOWN = codes.F_UNKNOWN  # what a malformed fault report counts as
FAULTS = {F_ESTOP_READBACK: "estop_readback", F_LINEAGE: "lineage", F_OUTPUT: "output",
          F_DRIVE_LINK: "drive_link", F_DRIVE_EXCEPTION: "drive_exception",
          F_UNKNOWN: "malformed_fault_report"}


def fault(code: int) -> str:
    return FAULTS.get(code, f"fault{code}")


def event_doc(code: int, arg: int) -> dict:
    """One decision event for people: its word, its argument, and the fault's name for
    fault events."""
    doc = {"event": event(code), "arg": arg}
    if code in (codes.E_FAULT, codes.E_FAULT_CLEARED) and arg >= 0:
        doc["fault"] = fault(arg)
    elif code in REFUSAL_EVENTS:
        doc["reason"] = reason(arg)
    elif code == codes.E_BLOCKING_CAUSES:
        doc["causes"] = causes(arg)
    elif code == codes.E_COUNTER_BEHIND:
        doc["behind"] = arg
    return doc


def causes(mask: int) -> list[str]:
    return [name for bit, name in sorted(CAUSES.items()) if mask & bit]


# Events whose argument is a reason code (a refused action names the action; the reason says
# why).
REFUSAL_EVENTS = (codes.E_ARM_REFUSED, codes.E_RESET_REFUSED, codes.E_PAUSE_REFUSED,
                  codes.E_RESUME_REFUSED, codes.E_OP_REFUSED, codes.E_MODE_REFUSED,
                  codes.E_AUTH_REFUSED)


# --------------------------------------------------------------------------- words for people
# Everything below builds on the tables above: the service's event payloads, its log, the
# op replies, `status`/`watch` and the demo all word codes here, so they say the same.

LINK_WORDS = {codes.LINK_DOWN: "down", codes.LINK_OK: "ok", codes.LINK_STALE: "stale",
              codes.LINK_LOST: "lost"}

# What a trip's reason says about its cause (the governor latches one cause bit per trip).
_CAUSE_OF_REASON = {
    codes.R_ESTOP_INPUT: codes.C_ESTOP_INPUT, codes.R_ESTOP_OPERATOR: codes.C_ESTOP_OPERATOR,
    codes.R_LINK_LOST: codes.C_LINK_LOST, codes.R_INTERLOCK: codes.C_INTERLOCK,
    codes.R_FAULT: codes.C_FAULT, codes.R_INTERNAL_FAULT: codes.C_INTERNAL,
    codes.R_INPUT_STALE: codes.C_INTERLOCK,
}

# Events whose argument is a trip-cause mask, a duration, a request id, a reason, etc.
_ARG_CAUSES = (codes.E_BOOT,)  # blocking_causes: event_doc
_ARG_MS = {codes.E_LINK_STALE: "silent_ms", codes.E_LINK_LOST: "lost_after_ms",
           codes.E_LINK_ENGAGED: "alive_ms"}
_ARG_REQUEST = (codes.E_APPROVAL_ASKED, codes.E_APPROVAL_GRANTED, codes.E_APPROVAL_DENIED,
                codes.E_APPROVAL_EXPIRED)
_ARG_MODE = (codes.E_ARM, codes.E_RESUME, codes.E_MODE)


def link(code: int) -> str:
    return LINK_WORDS.get(code, f"link{code}")


def trip_cause(reason_code: int) -> str:
    """The cause word of a trip, from its reason (limits and rates: ``limit``)."""
    bit = _CAUSE_OF_REASON.get(reason_code, codes.C_LIMIT)
    return CAUSES.get(bit, f"cause{bit}")


def _named(table, index: int) -> str:
    return table[index] if table is not None and 0 <= index < len(table) else str(index)


def describe_event(code: int, arg: int, env=None) -> dict:
    """One governor event for people and machines: ``event`` (word), ``code`` and ``arg``
    (numbers, as recorded) and what the argument means, in words: trip ``reason`` and
    ``cause``; ``causes`` at boot; link durations in ms; approval
    ``request``; ``mode``, ``channel`` and ``input_name`` by name (with ``env``, an
    ``Envelope``); ``fault`` by name; the e-stop level. A refused action's ``reason`` and
    the ``causes`` blocking it (``blocking_causes``) come from ``event_doc``."""
    doc = event_doc(code, arg)
    doc["code"] = code
    if type(arg) is not int:
        return doc
    if code == codes.E_TRIP:
        doc["reason"] = reason(arg)
        doc["cause"] = trip_cause(arg)
    elif code in REFUSAL_EVENTS or code in (codes.E_BLOCKING_CAUSES, codes.E_COUNTER_BEHIND):
        pass  # event_doc worded it
    elif code in _ARG_CAUSES:
        doc["causes"] = causes(arg)
    elif code in _ARG_MS:
        doc[_ARG_MS[code]] = arg
    elif code in _ARG_REQUEST:
        doc["request"] = arg
    elif code in _ARG_MODE:
        doc["mode"] = _named(getattr(env, "modes", None), arg)
    elif code == codes.E_INPUT_STALE:
        doc["input_name"] = _named(getattr(env, "in_names", None), arg)
    elif code == codes.E_PERMIT_EXPIRED:
        doc["channel"] = _named(getattr(env, "ch_names", None), arg)
    elif code == codes.E_ESTOP_OUT:
        doc["estop"] = bool(arg)
    return doc


def event_text(doc: dict) -> str:
    """One line for a described event (``describe_event`` or an MQTT event payload)."""
    ev = doc.get("event", "?")
    if ev == "trip":
        cause, why = doc.get("cause", "?"), doc.get("reason", "?")
        parts = [why] if why != cause else []
        if doc.get("rule"):
            parts.append(f"rule {doc['rule']}")
        if doc.get("margin_eng"):
            value = with_unit(doc["margin_eng"], doc.get("unit"))
            parts.append(f"{doc.get('channel')} margin {value}")
        elif doc.get("margin"):
            parts.append(f"margin {doc['margin']} steps")
        return f"TRIP: {cause}" + (f" ({', '.join(parts)})" if parts else "")
    if ev in ("boot", "blocking_causes"):
        label = "blocked by" if ev == "blocking_causes" else "boot"
        return f"{label}: {', '.join(doc.get('causes') or ['no cause'])}"
    if ev.endswith("_refused") and doc.get("reason"):
        return f"{ev.replace('_', ' ')}: {doc['reason']}"
    if ev == "counter_behind":
        return (f"operator counter {doc.get('behind', doc.get('arg'))} behind the last "
                "accepted one")
    if ev == "session":
        return f"new planner session (the previous one ended at seq {doc.get('arg')})"
    if ev == "estop_out":
        return "e-stop output " + ("ASSERTED" if doc.get("estop", doc.get("arg")) else "released")
    if ev == "link_stale":
        return f"link stale after {doc.get('silent_ms', doc.get('arg'))} ms of silence"
    if ev == "link_lost":
        return f"link lost {doc.get('lost_after_ms', doc.get('arg'))} ms after going stale"
    if ev == "link_engaged":
        return f"link engaged (alive {doc.get('alive_ms', doc.get('arg'))} ms)"
    if "request" in doc:
        return f"{ev.replace('_', ' ')} (request {doc['request']})"
    for key in ("mode", "input_name", "channel", "fault"):
        if key in doc:
            label = {"input_name": "input"}.get(key, key)
            if label == ev:  # "mode: setup", not "mode: mode setup"
                return f"{ev}: {doc[key]}"
            return f"{ev.replace('_', ' ')}: {label} {doc[key]}"
    if ev == "rejected":
        note = f" ({doc['note']})" if doc.get("note") else ""
        return f"rejected {doc.get('input', '?')}: {doc.get('reason', '?')}{note}"
    return ev.replace("_", " ")


def with_unit(value, unit: str | None) -> str:
    """``3020 rpm``; a value without a unit as it is; None as ``-``."""
    if value is None:
        return "-"
    return f"{value} {unit}" if unit else f"{value}"


def outputs_text(values: dict, units: dict | None = None) -> str:
    """``spindle=3020 rpm, press=40.5 mm`` (sorted by name)."""
    units = units or {}
    return ", ".join(f"{k}={with_unit(v, units.get(k))}" for k, v in sorted(values.items()))


# Appended: what a board answers to an envelope push over its link (firmware/PROTOCOL.md,
# Envelope push; codes in firmware/edgegov_fw/envpush.py).
PUSH_RESULTS = {
    0: "applied",
    1: "bad MAC (not signed with this board's key for this board and this envelope; for a "
       "rollback: or not the previous envelope this board keeps)",
    2: "replayed or stale counter (not above the last one this board accepted)",
    3: "the envelope does not load on the board, or is for another device",
    4: "refused while ARMED or PAUSED: disarm (or trip) first",
    5: "an output held now, or a safe value, lies outside the new envelope's ranges",
    6: "no previous envelope on this board to roll back to",
    7: "the transfer was not whole",
    8: "the board's flash write failed (the old envelope stays in force)",
}
LINK_ERRORS = {1: "malformed request", 2: "bad request", 3: "bad operator action",
               4: "unknown request", 5: "seal not written",
               6: "this board's firmware takes no envelope pushes (micro:bit: no hashlib, "
                  "no flash slots); deploy the envelope instead (edgegov deploy)"}


def push_result(code: int) -> str:
    """``refused while ARMED ... (4)``."""
    return f"{PUSH_RESULTS.get(code, 'unknown result')} ({code})"


def reset_reason(code) -> str:
    """A BOOT's reset reason for people. Only ``-1`` (the governor restarted on a changed
    envelope) means the same everywhere; other values are what the platform reports
    (docs/lineage-format.md, *Reset reasons*), shown as the number."""
    if code == codes.RESET_ENVELOPE:
        return "-1 (envelope change)"
    return str(code)

