"""What changed between two envelopes, for the person who reviews the change for safety.

Each change is one line in engineering units with its effect on what the governor lets
through: **widens** (more is allowed, or a restriction applies less, later or more gently),
**tightens** (the opposite) or **neutral** (neither: a description, a unit, a precision, a
safe value that moves inside the range). A change whose effect cannot be told from the two
values alone (an interlock condition on another input, a new comparison) is marked
*widens*, so a reviewer never reads "neutral" where a restriction may have been loosened.

Both compiled hashes are shown: they are what the device reports and what the lineage
records. Host-side settings (``[modbus]``) are compared too, and a Modbus register that
moves gets a warning: a PLC program written for the old map would write the wrong channel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from .admission import Admitted, ScaledChannel
from .compile import CompiledEnvelope

WIDENS, TIGHTENS, NEUTRAL = "widens", "tightens", "neutral"

# Orders from the most permissive to the strictest (a move to the right tightens).
BREACH_ORDER = ("clamp", "reject", "escalate", "hold", "trip")
STOP_ORDER = ("SS1", "STO")  # SS1 keeps an output moving while it ramps; STO cuts at once
HOLD_ORDER = ("stay", "ramp")  # ramp brings the output to its safe value
ROLE_ORDER = ("plain", "estop")


@dataclass(frozen=True)
class Change:
    """One difference: where, from what to what (None: absent), in which unit, its effect."""

    path: str
    old: str | None
    new: str | None
    effect: str
    unit: str = ""

    def line(self) -> str:
        unit = f" {self.unit}" if self.unit and not self.unit.startswith("/") else self.unit
        if self.old is None:
            what = f"added: {self.new}"
        elif self.new is None:
            what = f"removed (was {self.old})"
        else:
            what = f"{self.old} → {self.new}{unit}"
        return f"{self.path}: {what}  [{self.effect}]"

    def to_json(self) -> dict:
        return {"path": self.path, "old": self.old, "new": self.new, "unit": self.unit,
                "effect": self.effect}


@dataclass
class EnvelopeDiff:
    """The differences between an old and a new compiled envelope."""

    old: CompiledEnvelope
    new: CompiledEnvelope
    changes: list[Change] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return not self.changes and self.old.hash == self.new.hash

    @property
    def exit_code(self) -> int:
        return 0 if self.identical else 1

    def counts(self) -> dict[str, int]:
        return {e: sum(c.effect == e for c in self.changes) for e in (WIDENS, TIGHTENS, NEUTRAL)}

    def summary_lines(self) -> list[str]:
        lines = [f"old: {self.old.source}  sha256 {self.old.hash}  (device "
                 f"{self.old.admitted.device_id})",
                 f"new: {self.new.source}  sha256 {self.new.hash}  (device "
                 f"{self.new.admitted.device_id})"]
        if self.identical:
            return [*lines, "no changes: the envelopes are the same"]
        n = self.counts()
        lines.append(f"{len(self.changes)} change{'' if len(self.changes) == 1 else 's'}: "
                     f"{n[WIDENS]} widen, {n[TIGHTENS]} tighten, {n[NEUTRAL]} neutral")
        lines += [f"  {c.line()}" for c in self.changes]
        lines += [f"WARNING: {w}" for w in self.warnings]
        return lines

    def to_json(self) -> dict:
        from ..adapters.modbus_map import map_of

        def side(c: CompiledEnvelope) -> dict:
            return {"file": c.source, "sha256": c.hash, "device": c.admitted.device_id,
                    "modbus_map_sha256": map_of(c).map_digest.hex()}

        return {"identical": self.identical, "old": side(self.old), "new": side(self.new),
                "counts": self.counts(), "changes": [c.to_json() for c in self.changes],
                "warnings": list(self.warnings)}


def diff(old: CompiledEnvelope, new: CompiledEnvelope) -> EnvelopeDiff:
    """Compare two compiled envelopes table by table (channels, inputs, interlocks, modes,
    link, approval, modbus), in a stable order."""
    d = EnvelopeDiff(old, new)
    a, b = old.admitted, new.admitted
    out = d.changes
    _plain(out, "device.id", a.device_id, b.device_id, NEUTRAL)
    _plain(out, "device.description", a.description, b.description, NEUTRAL)
    _channels(out, a, b)
    _inputs(out, a, b)
    _interlocks(out, a, b)
    _modes(out, a, b)
    _link(out, a, b)
    _approval(out, a, b)
    _modbus(d, a, b)
    return d


# ----------------------------------------------------------------- helpers


def _eng(value: int | None, resolution: Decimal | None) -> Decimal | None:
    if value is None:
        return None
    return value * (resolution or Decimal(1))


def _text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, Decimal):
        text = format(value.normalize(), "f")
        return "0" if text == "-0" else text
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _plain(out: list, path: str, old, new, effect: str, unit: str = "") -> None:
    if old != new:
        out.append(Change(path, _text(old), _text(new), effect, unit))


def _upper(out: list, path: str, old, new, unit: str = "") -> None:
    """An upper bound: larger widens (None = no bound, the widest)."""
    if old == new:
        return
    if old is None or new is None:
        effect = WIDENS if new is None else TIGHTENS
        out.append(Change(path, _text(old) or "none", _text(new) or "none", effect, unit))
        return
    out.append(Change(path, _text(old), _text(new), WIDENS if new > old else TIGHTENS, unit))


def _lower(out: list, path: str, old, new, unit: str = "") -> None:
    """A lower bound: smaller widens (None = no bound, the widest)."""
    if old == new:
        return
    if old is None or new is None:
        effect = WIDENS if new is None else TIGHTENS
        out.append(Change(path, _text(old) or "none", _text(new) or "none", effect, unit))
        return
    out.append(Change(path, _text(old), _text(new), WIDENS if new < old else TIGHTENS, unit))


def _ordered(out: list, path: str, old: str, new: str, order: tuple) -> None:
    if old != new:
        effect = TIGHTENS if order.index(new) > order.index(old) else WIDENS
        out.append(Change(path, old, new, effect))


def _presence(out: list, path: str, old, new, describe, added_effect: str) -> bool:
    """Record an added or removed item; True when both exist (compare their fields)."""
    if old is None and new is not None:
        out.append(Change(path, None, describe(new), added_effect))
    elif new is None and old is not None:
        removed = {WIDENS: TIGHTENS, TIGHTENS: WIDENS}.get(added_effect, NEUTRAL)
        out.append(Change(path, describe(old), None, removed))
    return old is not None and new is not None


# ----------------------------------------------------------------- tables


def _describe_channel(ch: ScaledChannel) -> str:
    r, u = ch.resolution, f" {ch.unit}" if ch.unit else ""
    return (f"[{_text(_eng(ch.min, r))}, {_text(_eng(ch.max, r))}]{u}, rate "
            f"{_text(_eng(ch.rate, r))}{u}/s, safe {_text(_eng(ch.safe, r))}, {ch.stop}, "
            f"on_breach {ch.on_breach}")


def _channels(out: list, a: Admitted, b: Admitted) -> None:
    for name in sorted(set(a.channels) | set(b.channels)):
        old, new = a.channels.get(name), b.channels.get(name)
        path = f"channels.{name}"
        # a new channel is a new actuator the governor passes commands to: more allowed
        if not _presence(out, path, old, new, _describe_channel, WIDENS):
            continue
        u, ro, rn = new.unit, old.resolution, new.resolution
        _plain(out, path + ".unit", old.unit, new.unit, NEUTRAL)
        _plain(out, path + ".resolution", ro, rn, NEUTRAL, u)
        _lower(out, path + ".min", _eng(old.min, ro), _eng(new.min, rn), u)
        _upper(out, path + ".max", _eng(old.max, ro), _eng(new.max, rn), u)
        _upper(out, path + ".rate_per_s", _eng(old.rate, ro), _eng(new.rate, rn), u + "/s")
        _upper(out, path + ".accel_per_s2", _eng(old.accel or None, ro),
               _eng(new.accel or None, rn), u + "/s²")
        _plain(out, path + ".safe", _eng(old.safe, ro), _eng(new.safe, rn), NEUTRAL, u)
        _ordered(out, path + ".stop", old.stop, new.stop, STOP_ORDER)
        _ordered(out, path + ".on_breach", old.on_breach, new.on_breach, BREACH_ORDER)
        _ordered(out, path + ".on_rate", old.on_rate, new.on_rate, BREACH_ORDER)
        _ordered(out, path + ".hold", old.hold, new.hold, HOLD_ORDER)
        if "escalate" in (old.on_breach, new.on_breach):
            _lower(out, path + ".approved_min", _eng(old.approved_min, ro),
                   _eng(new.approved_min, rn), u)
            _upper(out, path + ".approved_max", _eng(old.approved_max, ro),
                   _eng(new.approved_max, rn), u)


def _inputs(out: list, a: Admitted, b: Admitted) -> None:
    def describe(i) -> str:
        if i.type == "bool":
            return f"bool, {i.role}, stale after {i.stale_after_ms} ms"
        return (f"number [{_text(_eng(i.min, i.resolution))}, "
                f"{_text(_eng(i.max, i.resolution))}] {i.unit}".rstrip()
                + f", stale after {i.stale_after_ms} ms")

    for name in sorted(set(a.inputs) | set(b.inputs)):
        old, new = a.inputs.get(name), b.inputs.get(name)
        path = f"inputs.{name}"
        # an input alone constrains nothing; an interlock that uses it says what it does
        effect = TIGHTENS if (old or new).role == "estop" else NEUTRAL
        if not _presence(out, path, old, new, describe, effect):
            continue
        _plain(out, path + ".type", old.type, new.type, NEUTRAL)
        _ordered(out, path + ".role", old.role, new.role, ROLE_ORDER)
        # a reading counts as fresh for longer: a dead sensor is noticed later
        _upper(out, path + ".stale_after_ms", old.stale_after_ms, new.stale_after_ms, "ms")
        if old.type == new.type == "number":
            _plain(out, path + ".unit", old.unit, new.unit, NEUTRAL)
            _plain(out, path + ".resolution", old.resolution, new.resolution, NEUTRAL)
            _plain(out, path + ".min", _eng(old.min, old.resolution),
                   _eng(new.min, new.resolution), NEUTRAL, new.unit)
            _plain(out, path + ".max", _eng(old.max, old.resolution),
                   _eng(new.max, new.resolution), NEUTRAL, new.unit)


_OP_WORDS = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}


def _conditions_text(adm: Admitted, conds) -> str:
    parts = []
    for name, op, value in conds:
        inp = adm.inputs[name]
        shown = ("true" if value else "false") if inp.type == "bool" else \
            f"{_text(_eng(value, inp.resolution))}{' ' + inp.unit if inp.unit else ''}"
        parts.append(f"{name} {_OP_WORDS[op]} {shown}")
    return " and ".join(parts)


def _threshold_effect(a: Admitted, b: Admitted, old, new) -> str:
    """How moving one condition's threshold changes when the restriction applies."""
    if len(old) != 1 or len(new) != 1:
        return WIDENS  # cannot tell from the values alone: a reviewer must look
    (ni, op, vo), (nj, op2, vn) = old[0], new[0]
    if ni != nj or op != op2 or op in ("eq", "ne"):
        return WIDENS
    ro, rn = a.inputs[ni].resolution, b.inputs[nj].resolution
    grows = _eng(vn, rn) > _eng(vo, ro)
    applies_more = grows if op in ("lt", "le") else not grows
    return TIGHTENS if applies_more else WIDENS


def _interlocks(out: list, a: Admitted, b: Admitted) -> None:
    for name in sorted(set(a.interlocks) | set(b.interlocks)):
        old, new = a.interlocks.get(name), b.interlocks.get(name)
        path = f"interlocks.{name}"
        src = a if new is None else b

        def describe(il, src=src) -> str:
            return (f"when {_conditions_text(src, il.conditions)}: "
                    f"{', '.join(sorted(il.limits))} ({il.on_breach})")

        if not _presence(out, path, old, new, describe, TIGHTENS):
            continue
        co, cn = _conditions_text(a, old.conditions), _conditions_text(b, new.conditions)
        if co != cn:
            effect = _threshold_effect(a, b, old.conditions, new.conditions)
            out.append(Change(path + ".when", co, cn, effect))
        _ordered(out, path + ".on_breach", old.on_breach, new.on_breach, BREACH_ORDER)
        for ch in sorted(set(old.limits) | set(new.limits)):
            lo_o, hi_o = old.limits.get(ch, (None, None))
            lo_n, hi_n = new.limits.get(ch, (None, None))
            res_o = a.channels[ch].resolution if ch in a.channels else None
            res_n = b.channels[ch].resolution if ch in b.channels else None
            unit = (b.channels.get(ch) or a.channels[ch]).unit
            lpath = f"{path}.limits.{ch}"
            _lower(out, lpath + ".min", _eng(lo_o, res_o), _eng(lo_n, res_n), unit)
            _upper(out, lpath + ".max", _eng(hi_o, res_o), _eng(hi_n, res_n), unit)


def _modes(out: list, a: Admitted, b: Admitted) -> None:
    for mode in sorted(set(a.modes) | set(b.modes)):
        path = f"modes.{mode}"
        if mode not in a.modes or mode not in b.modes:
            _presence(out, path, mode if mode in a.modes else None,
                      mode if mode in b.modes else None, lambda m: "mode", NEUTRAL)
            continue
        for ch in sorted(set(a.channels) & set(b.channels)):
            _mode_channel(out, f"{path}.channels.{ch}", a.channels[ch], b.channels[ch], mode)
    _plain(out, "initial_mode", a.initial_mode, b.initial_mode, NEUTRAL)


def _mode_channel(out: list, path: str, old: ScaledChannel, new: ScaledChannel, mode: str):
    lo_o, hi_o, rate_o, *rules_o = old.modes[mode]
    lo_n, hi_n, rate_n, *rules_n = new.modes[mode]
    ro, rn, u = old.resolution, new.resolution, new.unit
    # only where the mode sets its own limit on either side: the channel's own were shown
    overridden = [ro_.startswith("modes.") or rn_.startswith("modes.")
                  for ro_, rn_ in zip(rules_o, rules_n, strict=True)]
    if overridden[0]:
        _lower(out, path + ".min", _eng(lo_o, ro), _eng(lo_n, rn), u)
    if overridden[1]:
        _upper(out, path + ".max", _eng(hi_o, ro), _eng(hi_n, rn), u)
    if overridden[2]:
        _upper(out, path + ".rate_per_s", _eng(rate_o, ro), _eng(rate_n, rn), u + "/s")


def _link(out: list, a: Admitted, b: Admitted) -> None:
    def describe(link) -> str:
        return f"hold after {link[0]} ms, trip after {link[1]} ms, engage after {link[2]} ms"

    if not _presence(out, "link", a.link, b.link, describe, TIGHTENS):
        return
    # later hold and trip: a silent command source is acted on later
    _upper(out, "link.hold_after_ms", a.link[0], b.link[0], "ms")
    _upper(out, "link.trip_after_ms", a.link[1], b.link[1], "ms")
    # a longer engage time: the link must prove itself longer before it counts
    _lower(out, "link.engage_after_ms", a.link[2], b.link[2], "ms")


def _approval(out: list, a: Admitted, b: Admitted) -> None:
    def describe(ap) -> str:
        return f"timeout {ap[0]} ms, grant {ap[1]} ms"

    if not _presence(out, "approval", a.approval, b.approval, describe, NEUTRAL):
        return
    # more time to answer, and a granted range that lasts longer: more is let through
    _upper(out, "approval.timeout_ms", a.approval[0], b.approval[0], "ms")
    _upper(out, "approval.grant_ms", a.approval[1], b.approval[1], "ms")


def _modbus(d: EnvelopeDiff, a: Admitted, b: Admitted) -> None:
    # unauthenticated operator actions allowed: more is let through
    _ordered(d.changes, "modbus.operator_actions", _text(a.modbus_operator),
             _text(b.modbus_operator), ("true", "false"))
    for change, warning in _address_moves(d.old, d.new):
        d.changes.append(change)
        d.warnings.append(warning)
    drive = _drive_changes(a.modbus_drive, b.modbus_drive)
    if drive:
        d.changes += drive
        d.warnings.append("the downstream drive's map changes: check it against the drive's "
                          "manual before it runs (a wrong register or scale moves the wrong "
                          "thing)")


def _drive_changes(old, new) -> list[Change]:
    """The drive map, leaf by leaf (neutral: it says where outputs go, not what is let
    through; the warning asks for a check against the drive)."""
    from ..adapters.drive_profile import drive_json

    def leaves(drive) -> dict[str, str]:
        if drive is None:
            return {}
        doc = drive_json(drive)
        out = {"unit": str(doc["unit"])}
        for ch in doc["channels"]:
            out |= {f"channels.{ch['name']}.{k}": str(v) for k, v in ch.items() if k != "name"}
        for table in ("stop", "status"):
            out |= {f"{table}.{k}": str(v) for k, v in (doc[table] or {}).items()}
        return out

    lo, ln = leaves(old), leaves(new)
    return [Change(f"modbus.drive.{k}", lo.get(k), ln.get(k), NEUTRAL)
            for k in sorted(set(lo) | set(ln)) if lo.get(k) != ln.get(k)]


def _address_moves(old: CompiledEnvelope, new: CompiledEnvelope):
    """A changed Modbus register per channel kept in both maps, and a moved session
    register, each with its warning."""
    from ..adapters.modbus_map import map_of

    mo, mn = map_of(old), map_of(new)
    for slot in mn.channels:
        try:
            was = mo.slot(slot.name)
        except KeyError:
            continue
        if (was.proposal, was.output, was.words) != (slot.proposal, slot.output, slot.words):
            yield (Change(f"modbus.channels.{slot.name}", was.where(), slot.where(), NEUTRAL),
                   f"the Modbus registers of {slot.name} move ({was.where()} → "
                   f"{slot.where()}): a PLC program written for the old map would write the "
                   "wrong channel (pin it in [modbus.addresses]; docs/modbus.md)")
    if mo.session != mn.session:
        was, now = f"H{mo.session}", f"H{mn.session}"
        yield (Change("modbus.session", was, now, NEUTRAL),
               f"the Modbus session register moves ({was} → {now}): a PLC program written "
               "for the old map would start no new planner session (docs/modbus.md)")


__all__ = ["diff", "EnvelopeDiff", "Change", "WIDENS", "TIGHTENS", "NEUTRAL"]
