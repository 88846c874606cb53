"""The compiled envelope for humans: scaled integers next to engineering values."""

from __future__ import annotations

from .compile import CompiledEnvelope, build_array, rule_ids

LINK_KEYS = ("hold_after_ms", "trip_after_ms", "engage_after_ms")
APPROVAL_KEYS = ("timeout_ms", "grant_ms")


def compiled_json(compiled: CompiledEnvelope) -> dict:
    adm = compiled.admitted
    channels = {}
    for name, ch in sorted(adm.channels.items()):
        channels[name] = {
            "unit": ch.unit,
            "resolution": str(ch.resolution),
            "safe": ch.safe,
            "stop": ch.stop,
            "on_breach": ch.on_breach,
            "on_rate": ch.on_rate,
            "hold": ch.hold,
            "accel_per_s2": ch.accel or None,
            "approved": [ch.approved_min, ch.approved_max] if ch.on_breach == "escalate" else None,
            "modes": {
                mode: {"min": lo, "max": hi, "rate_per_s": rate, "rules": [r1, r2, r3]}
                for mode, (lo, hi, rate, r1, r2, r3) in sorted(ch.modes.items())
            },
        }
    return {
        "device": adm.device_id,
        "sha256": compiled.hash,
        "bytes": len(compiled.blob),
        "note": "values are scaled integers: engineering value = scaled * resolution",
        "modes": adm.modes,
        "initial_mode": adm.initial_mode,
        "channels": channels,
        "inputs": {
            name: {"type": i.type, "role": i.role, "stale_after_ms": i.stale_after_ms,
                   "min": i.min, "max": i.max, "resolution": str(i.resolution or "")}
            for name, i in sorted(adm.inputs.items())
        },
        "interlocks": {
            name: {"on_breach": il.on_breach, "when": [list(c) for c in il.conditions],
                   "limits": {ch: list(lim) for ch, lim in sorted(il.limits.items())}}
            for name, il in sorted(adm.interlocks.items())
        },
        "link": dict(zip(LINK_KEYS, adm.link, strict=True)) if adm.link else None,
        "approval": dict(zip(APPROVAL_KEYS, adm.approval, strict=True)) if adm.approval else None,
        "modbus": _modbus_json(adm),
        "rules": rule_ids(adm),
        "array": build_array(adm),
    }


def _modbus_json(adm) -> dict:
    """The host-side ``[modbus]`` settings (not in the blob)."""
    doc = {"operator_actions": adm.modbus_operator}
    if adm.modbus_addresses:
        doc["addresses"] = dict(sorted(adm.modbus_addresses.items()))
    if adm.modbus_drive is not None:
        from ..adapters.drive_profile import drive_json

        doc["drive"] = drive_json(adm.modbus_drive)
    return doc
