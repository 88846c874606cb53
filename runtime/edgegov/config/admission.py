"""Admission checks: from a parsed TOML document to a validated, scaled envelope model.

Every problem is collected (never stop at the first) with its dotted location; the caller
adds file name and line. Scaling happens here: each channel declares its resolution and every
value is stored as an integer count of that resolution, refused when it does not fit exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from pydantic import BaseModel, ValidationError

from . import schema

LIMIT_30BIT = 1 << 30  # MCU small-int range: keep every scaled value inside it
BREACH_NAMES = ("clamp", "reject", "escalate", "hold", "trip")
DEFAULT_MODE = "default"


@dataclass
class ScaledChannel:
    name: str
    unit: str
    resolution: Decimal
    min: int
    max: int
    rate: int
    accel: int  # 0: no acceleration limit
    safe: int
    stop: str
    on_breach: str
    on_rate: str
    hold: str
    approved_min: int
    approved_max: int
    modes: dict[str, tuple[int, int, int, str, str, str]] = field(default_factory=dict)


@dataclass
class ScaledInput:
    name: str
    type: str
    role: str
    stale_after_ms: int
    unit: str
    resolution: Decimal | None
    min: int
    max: int


@dataclass
class ScaledInterlock:
    name: str
    on_breach: str
    conditions: list[tuple[str, str, int]]  # (input, op, scaled value; bools as 0/1)
    limits: dict[str, tuple[int | None, int | None]]
    description: str = ""


@dataclass
class Admitted:
    device_id: str
    description: str
    channels: dict[str, ScaledChannel]
    inputs: dict[str, ScaledInput]
    interlocks: dict[str, ScaledInterlock]
    modes: list[str]
    initial_mode: str
    link: tuple[int, int, int] | None
    approval: tuple[int, int] | None
    modbus_operator: bool = False  # [modbus] operator_actions


class _Collector:
    def __init__(self) -> None:
        self.problems: list[tuple[tuple, str]] = []

    def add(self, loc: tuple, message: str) -> None:
        self.problems.append((loc, message))

    def model(self, cls: type[BaseModel], data: object, loc: tuple):
        """Validate one table; record its errors and return None when it does not fit."""
        if not isinstance(data, dict):
            self.add(loc, "must be a table")
            return None
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            for e in err.errors():
                self.add(loc + tuple(e["loc"]), _message(e))
            return None

    def scale(self, value: Decimal | None, resolution: Decimal, loc: tuple) -> int | None:
        if value is None:
            return None
        steps = value / resolution
        if steps != steps.to_integral_value():
            self.add(loc, f"{value} does not fit the resolution {resolution}")
            return None
        scaled = int(steps)
        if not -LIMIT_30BIT < scaled < LIMIT_30BIT:
            self.add(loc, f"{value} is too large for the resolution {resolution} (30-bit limit)")
            return None
        return scaled


def _message(error: dict) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key"
    if error["type"] == "missing":
        return "required key is missing"
    return str(error["msg"]).removeprefix("Value error, ")


def admit(doc: dict) -> tuple[Admitted | None, list[tuple[tuple, str]]]:
    """Validate and scale a parsed envelope document; return (model or None, problems)."""
    c = _Collector()
    top = c.model(schema.Top, doc, ())
    if top is None:
        return None, c.problems
    device = c.model(schema.Device, top.device, ("device",))
    channels = _channels(c, top.channels)
    inputs = _inputs(c, top.inputs)
    modes, initial = _modes(c, top, channels)
    interlocks = _interlocks(c, top.interlocks, channels, inputs)
    link = _link(c, top.link)
    approval = _approval(c, top.approval, channels)
    modbus = None if top.modbus is None else c.model(schema.Modbus, top.modbus, ("modbus",))
    _duplicates(c, channels, inputs)
    if c.problems or device is None:
        return None, c.problems
    return (
        Admitted(
            device.id, device.description, channels, inputs, interlocks, modes, initial, link,
            approval, modbus is not None and modbus.operator_actions,
        ),
        [],
    )


def _channels(c: _Collector, tables: dict) -> dict[str, ScaledChannel]:
    out = {}
    for name, data in sorted(tables.items()):
        loc = ("channels", name)
        if not _valid_name(c, name, loc):
            continue
        ch = c.model(schema.Channel, data, loc)
        if ch is None:
            continue
        scaled = _scale_channel(c, name, ch, loc)
        if scaled is not None:
            out[name] = scaled
    return out


def _valid_name(c: _Collector, name: str, loc: tuple) -> bool:
    import re

    if re.fullmatch(r"[a-z][a-z0-9_]{0,31}", name):
        return True
    c.add(loc, "name must be lower-case letters, digits and _ (at most 32), starting with a letter")
    return False


def _scale_channel(c: _Collector, name: str, ch: schema.Channel, loc: tuple):
    res = ch.resolution
    if res <= 0:
        c.add(loc + ("resolution",), "must be positive")
        return None
    before = len(c.problems)
    values = {
        key: c.scale(getattr(ch, key), res, loc + (key,))
        for key in ("min", "max", "rate_per_s", "accel_per_s2", "safe", "approved_min",
                    "approved_max")
    }
    if len(c.problems) > before:
        return None
    lo, hi, rate, safe = values["min"], values["max"], values["rate_per_s"], values["safe"]
    if lo > hi:
        c.add(loc + ("max",), f"min ({ch.min}) must be <= max ({ch.max})")
    if rate <= 0:
        c.add(loc + ("rate_per_s",), "must be positive")
    accel = values["accel_per_s2"]
    if accel is not None and accel <= 0:
        c.add(loc + ("accel_per_s2",), "must be positive")
    if not lo <= safe <= hi:
        c.add(loc + ("safe",), f"safe value {ch.safe} is outside [{ch.min}, {ch.max}]")
    amin, amax = _approved(c, ch, values, loc)
    return ScaledChannel(
        name, ch.unit, res, lo, hi, rate, accel or 0, safe, ch.stop, ch.on_breach, ch.on_rate,
        ch.hold, amin, amax,
    )


def _approved(c: _Collector, ch: schema.Channel, values: dict, loc: tuple) -> tuple[int, int]:
    amin, amax = values["approved_min"], values["approved_max"]
    if ch.on_breach != "escalate":
        for key in ("approved_min", "approved_max"):
            if values[key] is not None:
                c.add(loc + (key,), "only meaningful with on_breach = \"escalate\"")
        return values["min"], values["max"]
    if amin is None and amax is None:
        c.add(loc + ("on_breach",), "escalate needs approved_min and/or approved_max")
    amin = values["min"] if amin is None else amin
    amax = values["max"] if amax is None else amax
    if amin > values["min"]:
        c.add(loc + ("approved_min",), "must be <= min (approval widens the range)")
    if amax < values["max"]:
        c.add(loc + ("approved_max",), "must be >= max (approval widens the range)")
    return amin, amax


def _inputs(c: _Collector, tables: dict) -> dict[str, ScaledInput]:
    out = {}
    for name, data in sorted(tables.items()):
        loc = ("inputs", name)
        if not _valid_name(c, name, loc):
            continue
        inp = c.model(schema.Input, data, loc)
        if inp is None:
            continue
        if inp.type == "bool":
            for key in ("resolution", "min", "max"):
                if getattr(inp, key) is not None:
                    c.add(loc + (key,), "not allowed for a bool input")
            out[name] = ScaledInput(name, "bool", inp.role, inp.stale_after_ms, "", None, 0, 1)
            continue
        if inp.role == "estop":
            c.add(loc + ("role",), "an estop input must be of type bool")
        scaled = _scale_input(c, name, inp, loc)
        if scaled is not None:
            out[name] = scaled
    return out


def _scale_input(c: _Collector, name: str, inp: schema.Input, loc: tuple):
    missing = [k for k in ("resolution", "min", "max") if getattr(inp, k) is None]
    for key in missing:
        c.add(loc + (key,), "required for a number input")
    if missing:
        return None
    if inp.resolution <= 0:
        c.add(loc + ("resolution",), "must be positive")
        return None
    lo = c.scale(inp.min, inp.resolution, loc + ("min",))
    hi = c.scale(inp.max, inp.resolution, loc + ("max",))
    if lo is None or hi is None:
        return None
    if lo > hi:
        c.add(loc + ("max",), f"min ({inp.min}) must be <= max ({inp.max})")
    return ScaledInput(
        name, "number", inp.role, inp.stale_after_ms, inp.unit, inp.resolution, lo, hi
    )


def _modes(c: _Collector, top: schema.Top, channels: dict) -> tuple[list[str], str]:
    names = sorted(top.modes) or [DEFAULT_MODE]
    initial = top.initial_mode
    if initial is None:
        initial = names[0] if len(names) == 1 else None
        if initial is None:
            c.add(("initial_mode",), "required when more than one mode is declared")
    elif initial not in names:
        c.add(("initial_mode",), f"unknown mode {initial!r} (modes: {', '.join(names)})")
    for mode in names:
        data = top.modes.get(mode, {})
        loc = ("modes", mode)
        if mode != DEFAULT_MODE and not _valid_name(c, mode, loc):
            continue
        parsed = c.model(schema.Mode, data, loc)
        overrides = parsed.channels if parsed else {}
        for ch_name in sorted(overrides):
            if ch_name not in channels:
                c.add(loc + ("channels", ch_name), f"unknown channel {ch_name!r}")
        for ch_name, ch in sorted(channels.items()):
            _mode_limits(c, mode, ch, overrides.get(ch_name), loc + ("channels", ch_name))
    return names, initial or names[0]


def _mode_limits(c: _Collector, mode: str, ch: ScaledChannel, override, loc: tuple) -> None:
    base = f"channels.{ch.name}."
    lo, hi, rate = ch.min, ch.max, ch.rate
    rules = [base + "min", base + "max", base + "rate"]
    if override is not None:
        for i, key in enumerate(("min", "max", "rate_per_s")):
            value = c.scale(getattr(override, key), ch.resolution, loc + (key,))
            if value is None:
                continue
            rules[i] = f"modes.{mode}.channels.{ch.name}." + ("rate" if i == 2 else key)
            if i == 0:
                lo = value
            elif i == 1:
                hi = value
            else:
                rate = value
        if lo < ch.min or hi > ch.max:
            c.add(loc, f"mode limits [{lo}, {hi}] must lie inside the channel's "
                       f"[{ch.min}, {ch.max}]"
                  " (in resolution steps)")
        if lo > hi:
            c.add(loc + ("max",), "min must be <= max")
        if not 0 < rate <= ch.rate:
            c.add(loc + ("rate_per_s",), "must be positive and <= the channel's rate_per_s")
    if not lo <= ch.safe <= hi:
        c.add(loc, f"safe value of {ch.name} is outside mode {mode!r}'s range")
    ch.modes[mode] = (lo, hi, rate, rules[0], rules[1], rules[2])


_OPS = ("eq", "ne", "lt", "le", "gt", "ge")


def _interlocks(c: _Collector, tables: dict, channels: dict, inputs: dict) -> dict:
    out = {}
    for name, data in sorted(tables.items()):
        loc = ("interlocks", name)
        if not _valid_name(c, name, loc):
            continue
        il = c.model(schema.Interlock, data, loc)
        if il is None:
            continue
        conds = [_condition(c, cond, inputs, loc + ("when", i)) for i, cond in enumerate(il.when)]
        limits = {}
        for ch_name, limit in sorted(il.limits.items()):
            scaled = _interlock_limit(c, ch_name, limit, channels, loc + ("limits", ch_name))
            if scaled is not None:
                limits[ch_name] = scaled
        if None not in conds:
            out[name] = ScaledInterlock(name, il.on_breach, conds, limits, il.description)
    return out


def _condition(c: _Collector, cond: schema.Condition, inputs: dict, loc: tuple):
    ops = [op for op in _OPS if getattr(cond, op) is not None]
    if len(ops) != 1:
        c.add(loc, "give exactly one of eq, ne, lt, le, gt, ge")
        return None
    op, value = ops[0], getattr(cond, ops[0])
    inp = inputs.get(cond.input)
    if inp is None:
        c.add(loc + ("input",), f"unknown input {cond.input!r}")
        return None
    if inp.type == "bool":
        if not isinstance(value, bool) or op not in ("eq", "ne"):
            c.add(loc + (op,), "a bool input is compared with eq/ne and true/false")
            return None
        return (cond.input, op, int(value))
    if isinstance(value, bool):
        c.add(loc + (op,), "a number input is compared with a number")
        return None
    scaled = c.scale(value, inp.resolution, loc + (op,))
    return None if scaled is None else (cond.input, op, scaled)


def _interlock_limit(c: _Collector, ch_name: str, limit, channels: dict, loc: tuple):
    ch = channels.get(ch_name)
    if ch is None:
        c.add(loc, f"unknown channel {ch_name!r}")
        return None
    lo = c.scale(limit.min, ch.resolution, loc + ("min",))
    hi = c.scale(limit.max, ch.resolution, loc + ("max",))
    if lo is None and hi is None:
        if limit.min is None and limit.max is None:
            c.add(loc, "give min and/or max")
        return None
    if lo is not None and hi is not None and lo > hi:
        c.add(loc + ("max",), "min must be <= max")
    if (lo is not None and ch.safe < lo) or (hi is not None and ch.safe > hi):
        c.add(loc, f"safe value of {ch_name} violates this interlock: the governor would boot"
              " already in breach")
    return (lo, hi)


def _link(c: _Collector, data):
    if data is None:
        return None
    link = c.model(schema.Link, data, ("link",))
    if link is None:
        return None
    if link.trip_after_ms <= link.hold_after_ms:
        c.add(("link", "trip_after_ms"), "must be greater than hold_after_ms")
    return (link.hold_after_ms, link.trip_after_ms, link.engage_after_ms)


def _approval(c: _Collector, data, channels: dict):
    approval = None if data is None else c.model(schema.Approval, data, ("approval",))
    if approval is None:
        for name, ch in sorted(channels.items()):
            if ch.on_breach == "escalate" and data is None:
                c.add(("channels", name, "on_breach"), "escalate needs an [approval] table")
        return None
    return (approval.timeout_ms, approval.grant_ms)


def _duplicates(c: _Collector, channels: dict, inputs: dict) -> None:
    for name in sorted(set(channels) & set(inputs)):
        c.add(("inputs", name), f"duplicate id: {name!r} is already a channel")
