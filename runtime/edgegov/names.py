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


def causes(mask: int) -> list[str]:
    return [name for bit, name in sorted(CAUSES.items()) if mask & bit]
