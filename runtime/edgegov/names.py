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
