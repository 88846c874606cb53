"""Admission checks: from a parsed TOML document to a validated, scaled envelope model.

Every problem is collected (never stop at the first) with its dotted location; the caller
adds file name and line. One line per root cause: a table with a bad key is still checked
on its good keys, and a reference to a name the file declares, but that has problems of its
own, is not reported again (no "unknown channel" for a channel with a typo inside, no mode
blamed for its channel's bad range). Scaling happens here: each channel declares its
resolution and every value is stored as an integer count of that resolution, refused when it
does not fit exactly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal

from pydantic import BaseModel, ValidationError

from . import schema, wording

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
    modbus_addresses: dict[str, int] = field(default_factory=dict)  # [modbus.addresses]
    modbus_drive: object | None = None  # [modbus.drive]: a config.drive.DriveMap


class _Collector:
    """Collects located problems; validates tables so that one bad key hides nothing else."""

    def __init__(self) -> None:
        self.problems: list[tuple[tuple, str]] = []

    def add(self, loc: tuple, message: str) -> None:
        self.problems.append((loc, message))

    def model(self, cls: type[BaseModel], data: object, loc: tuple):
        """Validate one table. Its problems are recorded; what is returned holds every key
        that is good (bad or absent required keys are None), or None when it is no table."""
        if not isinstance(data, dict):
            self.add(loc, f"must be a table (got {wording.shown(data)})")
            return None
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            bad = self._explain(cls, data, err.errors(), loc)
        clean = {k: v for k, v in data.items() if k not in bad}
        # a bad key is None, never its default: no check may run on a value nobody wrote
        return schema.partial(cls).model_validate(clean).model_copy(
            update={k: None for k in bad if k in cls.model_fields})

    def _explain(self, cls, data: dict, errors: list, loc: tuple) -> set:
        """Record the errors of one table in words; return the keys that were bad."""
        bad, unknown, missing = set(), [], []
        for e in wording.merge_unions(errors, cls):
            key = e["loc"][0] if e["loc"] else None
            bad.add(key)
            if e["type"] == "extra_forbidden":
                unknown.append(key)
            elif e["type"] == "missing":
                missing.append(key)
            else:
                self.add(loc + tuple(e["loc"]), wording.message(e, cls))
        explained = set()
        for key in unknown:
            hint = wording.did_you_mean(key, missing)
            if hint:  # a typo: one root cause, so the key it misspells is not "missing" too
                explained.add(hint.split("'")[1])
            else:
                hint = (wording.did_you_mean(key, set(cls.model_fields) - set(data))
                        or wording.did_you_mean(key, cls.model_fields))
            self.add(loc + (key,), "unknown key" + hint)
        for key in missing:
            if key not in explained:
                self.add(loc + (key,), "required key is missing")
        return bad

    def scale(self, value: Decimal | None, resolution: Decimal, loc: tuple) -> int | None:
        if value is None:
            return None
        steps = value / resolution
        if steps != steps.to_integral_value():
            self.add(loc, f"{value} does not fit the resolution {resolution}")
            return None
        scaled = int(steps)
        if not -LIMIT_30BIT < scaled < LIMIT_30BIT:
            self.add(loc, f"{value} is too large for the resolution {resolution}: {scaled} steps"
                          f" (the 30-bit limit is {LIMIT_30BIT - 1})")
            return None
        return scaled

    def count(self) -> int:
        return len(self.problems)


@dataclass
class _Scope:
    """What the file declares, sound or not: a reference to a declared name that has a
    problem of its own is not reported again (one line per root cause)."""

    channels: dict[str, ScaledChannel] = field(default_factory=dict)  # sound ones
    channel_names: set[str] = field(default_factory=set)
    resolutions: dict[str, Decimal] = field(default_factory=dict)  # usable ones
    escalating: list[str] = field(default_factory=list)
    inputs: dict[str, ScaledInput] = field(default_factory=dict)  # sound ones
    input_names: set[str] = field(default_factory=set)


def _eng(scaled: int, resolution: Decimal, unit: str = "") -> str:
    """A scaled value back in engineering units, for messages."""
    text = format((scaled * resolution).normalize(), "f")
    return f"{'0' if text == '-0' else text} {unit}".rstrip()


def _tables(c: _Collector, data, loc: tuple) -> dict:
    """A table of named sub-tables (``[channels.*]``), sorted; {} when it is no table."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        c.add(loc, f"must be a table (got {wording.shown(data)})")
        return {}
    return dict(sorted(data.items()))


def _ref(c: _Collector, kind: str, name: str, declared, loc: tuple) -> bool:
    """True when ``name`` is declared; otherwise record 'unknown KIND' with a guess."""
    if name in declared:
        return True
    c.add(loc, f"unknown {kind} {name!r}" + wording.did_you_mean(name, declared))
    return False


def admit(doc: dict) -> tuple[Admitted | None, list[tuple[tuple, str]]]:
    """Validate and scale a parsed envelope document; return (model or None, problems)."""
    c = _Collector()
    top = c.model(schema.Top, doc, ())
    if top is None:
        return None, c.problems
    device = None if top.device is None else c.model(schema.Device, top.device, ("device",))
    scope = _Scope()
    _misspelt_tables(doc, scope)
    _channels(c, _tables(c, top.channels, ("channels",)), scope)
    _inputs(c, _tables(c, top.inputs, ("inputs",)), scope)
    modes, initial = _modes(c, top, scope)
    interlocks = _interlocks(c, _tables(c, top.interlocks, ("interlocks",)), scope)
    link = _link(c, top.link)
    approval = _approval(c, top.approval, scope)
    modbus = None if top.modbus is None else c.model(schema.Modbus, top.modbus, ("modbus",))
    pins = _pins(c, modbus, scope)
    drive = None
    if modbus is not None and modbus.drive is not None:
        from .drive import admit_drive

        drive = admit_drive(c, modbus.drive, scope)
    _duplicates(c, scope)
    if c.problems or device is None or device.id is None:
        return None, c.problems
    return (
        Admitted(
            device.id, device.description, scope.channels, scope.inputs, interlocks, modes,
            initial, link, approval, modbus is not None and bool(modbus.operator_actions),
            pins, drive,
        ),
        [],
    )


def _misspelt_tables(doc: dict, scope: _Scope) -> None:
    """Names declared under a misspelt ``[channel.X]`` / ``[input.X]``: the typo is the one
    root cause (reported as an unknown key), so a reference to X is not reported again."""
    for key, value in doc.items():
        if key in schema.Top.model_fields or not isinstance(value, dict):
            continue
        guess = wording.did_you_mean(key, ("channels", "inputs"))
        if "'channels'" in guess:
            scope.channel_names.update(value)
        elif "'inputs'" in guess:
            scope.input_names.update(value)


# ----------------------------------------------------------------- channels


def _channels(c: _Collector, tables: dict, scope: _Scope) -> None:
    for name, data in tables.items():
        loc = ("channels", name)
        scope.channel_names.add(name)
        before = c.count()
        _valid_name(c, name, loc)
        ch = c.model(schema.Channel, data, loc)
        if ch is None:
            continue
        if ch.on_breach == "escalate":
            scope.escalating.append(name)
        scaled = _scale_channel(c, ch, loc, scope)
        if scaled is not None and c.count() == before:
            scaled.name = name
            scope.channels[name] = scaled


def _valid_name(c: _Collector, name: str, loc: tuple) -> bool:
    if re.fullmatch(schema.NAME_PATTERN, name):
        return True
    c.add(loc, f"name must be {wording.PATTERN_WORDS[schema.NAME_PATTERN]} (got {name!r})")
    return False


_CHANNEL_VALUES = ("min", "max", "rate_per_s", "accel_per_s2", "safe", "approved_min",
                   "approved_max")


def _scale_channel(c: _Collector, ch, loc: tuple, scope: _Scope):
    """Scale and cross-check one channel; every check that has its values runs."""
    res = ch.resolution
    if res is None:
        return None
    if res <= 0:
        c.add(loc + ("resolution",), f"must be positive (got {res})")
        return None
    scope.resolutions[loc[-1]] = res
    v = {key: c.scale(getattr(ch, key), res, loc + (key,)) for key in _CHANNEL_VALUES}
    lo, hi, rate, safe, accel = v["min"], v["max"], v["rate_per_s"], v["safe"], v["accel_per_s2"]
    if rate is not None and rate <= 0:
        c.add(loc + ("rate_per_s",), f"must be positive (got {ch.rate_per_s})")
    if accel is not None and accel <= 0:
        c.add(loc + ("accel_per_s2",), f"must be positive (got {ch.accel_per_s2})")
    if lo is None or hi is None:
        return None
    if lo > hi:
        c.add(loc + ("max",), f"min ({ch.min}) must be <= max ({ch.max})")
        return None
    if safe is not None and not lo <= safe <= hi:
        c.add(loc + ("safe",), f"safe value {ch.safe} is outside [{ch.min}, {ch.max}]"
                               f"{' ' + ch.unit if ch.unit else ''}")
    amin, amax = _approved(c, ch, v, loc)
    if None in (rate, safe, ch.stop, ch.on_breach, ch.on_rate, ch.hold):
        return None
    return ScaledChannel(
        loc[-1], ch.unit, res, lo, hi, rate, accel or 0, safe, ch.stop, ch.on_breach,
        ch.on_rate, ch.hold, amin, amax,
    )


def _approved(c: _Collector, ch, values: dict, loc: tuple) -> tuple[int, int]:
    amin, amax = values["approved_min"], values["approved_max"]
    if ch.on_breach != "escalate":
        for key in ("approved_min", "approved_max"):
            if values[key] is not None and ch.on_breach is not None:
                c.add(loc + (key,), "only meaningful with on_breach = \"escalate\"")
        return values["min"], values["max"]
    if ch.approved_min is None and ch.approved_max is None:
        c.add(loc + ("on_breach",), "escalate needs approved_min and/or approved_max")
    amin = values["min"] if amin is None else amin
    amax = values["max"] if amax is None else amax
    if amin > values["min"]:
        c.add(loc + ("approved_min",), f"must be <= min ({ch.min}): approval widens the range")
    if amax < values["max"]:
        c.add(loc + ("approved_max",), f"must be >= max ({ch.max}): approval widens the range")
    return amin, amax


# ----------------------------------------------------------------- inputs


def _inputs(c: _Collector, tables: dict, scope: _Scope) -> None:
    for name, data in tables.items():
        loc = ("inputs", name)
        scope.input_names.add(name)
        before = c.count()
        _valid_name(c, name, loc)
        inp = c.model(schema.Input, data, loc)
        if inp is None or inp.type is None:
            continue
        if inp.type == "bool":
            for key in ("resolution", "min", "max"):
                if getattr(inp, key) is not None:
                    c.add(loc + (key,), "not allowed for a bool input")
            scaled = ScaledInput(name, "bool", inp.role, inp.stale_after_ms, "", None, 0, 1)
        else:
            if inp.role == "estop":
                c.add(loc + ("role",), "an estop input must be of type bool")
            scaled = _scale_input(c, name, inp, loc)
        if scaled is not None and None not in (inp.role, inp.stale_after_ms) \
                and c.count() == before:
            scope.inputs[name] = scaled


def _scale_input(c: _Collector, name: str, inp, loc: tuple):
    missing = [k for k in ("resolution", "min", "max") if getattr(inp, k) is None]
    for key in missing:
        if key not in inp.model_fields_set:
            c.add(loc + (key,), "required for a number input")
    if inp.resolution is None:
        return None
    if inp.resolution <= 0:
        c.add(loc + ("resolution",), f"must be positive (got {inp.resolution})")
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


# ----------------------------------------------------------------- modes


def _modes(c: _Collector, top, scope: _Scope) -> tuple[list[str], str]:
    tables = _tables(c, top.modes, ("modes",))
    names = list(tables) or [DEFAULT_MODE]
    initial = top.initial_mode
    if initial is None:
        initial = names[0] if len(names) == 1 else None
        if initial is None:
            c.add(("initial_mode",), "required when more than one mode is declared "
                                     f"({', '.join(names)})")
    elif initial not in names:
        c.add(("initial_mode",), f"unknown mode {initial!r}{wording.did_you_mean(initial, names)}"
                                 f"; the modes are {', '.join(names)}")
    for mode in names:
        loc = ("modes", mode)
        if mode != DEFAULT_MODE and not _valid_name(c, mode, loc):
            continue
        parsed = c.model(schema.Mode, tables.get(mode, {}), loc)
        overrides = _tables(c, parsed.channels if parsed else {}, loc + ("channels",))
        for ch_name, data in overrides.items():
            if _ref(c, "channel", ch_name, scope.channel_names, loc + ("channels", ch_name)):
                if ch_name not in scope.channels:  # a broken channel: check what can be
                    _mode_override(c, mode, ch_name, data, scope, loc + ("channels", ch_name))
        for ch_name, ch in scope.channels.items():
            _mode_limits(c, mode, ch, overrides.get(ch_name), loc + ("channels", ch_name))
    return names, initial or names[0]


def _mode_override(c: _Collector, mode: str, ch_name: str, data, scope: _Scope, loc: tuple):
    """The mode's own values for a channel that has problems of its own: scaled only."""
    limit = c.model(schema.ModeLimit, data, loc)
    res = scope.resolutions.get(ch_name)
    if limit is not None and res is not None:
        for key in ("min", "max", "rate_per_s"):
            c.scale(getattr(limit, key), res, loc + (key,))


def _mode_limits(c: _Collector, mode: str, ch: ScaledChannel, data, loc: tuple) -> None:
    base = f"channels.{ch.name}."
    lo, hi, rate = ch.min, ch.max, ch.rate
    rules = [base + "min", base + "max", base + "rate"]
    sound = True
    if data is not None:
        before = c.count()
        override = c.model(schema.ModeLimit, data, loc)
        scaled = [None if override is None else
                  c.scale(getattr(override, key), ch.resolution, loc + (key,))
                  for key in ("min", "max", "rate_per_s")]
        sound = c.count() == before and override is not None
        prefix = f"modes.{mode}.channels.{ch.name}."
        for i, key in enumerate(("min", "max", "rate")):
            if scaled[i] is not None:
                rules[i] = prefix + key
        lo, hi, rate = (ch.min if scaled[0] is None else scaled[0],
                        ch.max if scaled[1] is None else scaled[1],
                        ch.rate if scaled[2] is None else scaled[2])
        if scaled[2] is not None and not 0 < rate <= ch.rate:
            c.add(loc + ("rate_per_s",), f"must be positive and <= the channel's rate_per_s "
                                         f"({_eng(ch.rate, ch.resolution, ch.unit + '/s')})")
    if sound:
        _mode_range(c, mode, ch, lo, hi, loc)
    ch.modes[mode] = (lo, hi, rate, rules[0], rules[1], rules[2])


def _mode_range(c: _Collector, mode: str, ch: ScaledChannel, lo: int, hi: int, loc: tuple):
    """One line for the first range problem of a mode: they share one root cause."""
    r, u = ch.resolution, ch.unit

    def span(a: int, b: int) -> str:
        return f"[{_eng(a, r)}, {_eng(b, r)}]" + (f" {u}" if u else "")

    if lo < ch.min or hi > ch.max:
        c.add(loc, f"mode limits {span(lo, hi)} must lie inside the channel's "
                   f"{span(ch.min, ch.max)}")
    elif lo > hi:
        c.add(loc + ("max",), f"min must be <= max (got {span(lo, hi)})")
    elif not lo <= ch.safe <= hi:
        c.add(loc, f"safe value of {ch.name} ({_eng(ch.safe, r, u)}) is outside the range "
                   f"of mode {mode!r} {span(lo, hi)}")


# ----------------------------------------------------------------- interlocks

_OPS = ("eq", "ne", "lt", "le", "gt", "ge")


def _interlocks(c: _Collector, tables: dict, scope: _Scope) -> dict:
    out = {}
    for name, data in tables.items():
        loc = ("interlocks", name)
        before = c.count()
        _valid_name(c, name, loc)
        il = c.model(schema.Interlock, data, loc)
        if il is None:
            continue
        conds = [_condition(c, cond, scope, loc + ("when", i))
                 for i, cond in enumerate(il.when or [])]
        limits = {}
        for ch_name, limit in sorted((il.limits or {}).items()):
            scaled = _interlock_limit(c, ch_name, limit, scope, loc + ("limits", ch_name))
            if scaled is not None:
                limits[ch_name] = scaled
        if c.count() == before:
            out[name] = ScaledInterlock(name, il.on_breach, conds, limits, il.description)
    return out


def _condition(c: _Collector, data, scope: _Scope, loc: tuple):
    cond = c.model(schema.Condition, data, loc)
    if cond is None:
        return None
    ops = [op for op in _OPS if getattr(cond, op) is not None]
    if len(ops) != 1:
        if not ({*_OPS} & set(data)) - set(ops):  # a bad op value was reported already
            c.add(loc, "give exactly one of eq, ne, lt, le, gt, ge")
        return None
    if cond.input is None or not _ref(c, "input", cond.input, scope.input_names,
                                      loc + ("input",)):
        return None
    inp = scope.inputs.get(cond.input)
    if inp is None:
        return None  # the input has problems of its own
    op, value = ops[0], getattr(cond, ops[0])
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


def _interlock_limit(c: _Collector, ch_name: str, data, scope: _Scope, loc: tuple):
    if not _ref(c, "channel", ch_name, scope.channel_names, loc):
        return None
    limit = c.model(schema.Limit, data, loc)
    res = scope.resolutions.get(ch_name)
    if limit is None or res is None:
        return None
    if limit.min is None and limit.max is None:
        if not set(data) & {"min", "max"}:  # else a bad min/max was reported already
            c.add(loc, "give min and/or max")
        return None
    lo = c.scale(limit.min, res, loc + ("min",))
    hi = c.scale(limit.max, res, loc + ("max",))
    ch = scope.channels.get(ch_name)
    if (lo is None and limit.min is not None) or (hi is None and limit.max is not None):
        return None
    if lo is not None and hi is not None and lo > hi:
        c.add(loc + ("max",), f"min must be <= max (got [{limit.min}, {limit.max}])")
    elif ch is not None and ((lo is not None and ch.safe < lo) or
                             (hi is not None and ch.safe > hi)):
        c.add(loc, f"safe value of {ch_name} ({_eng(ch.safe, res, ch.unit)}) violates this "
                   "interlock: the governor would boot already in breach")
    return (lo, hi)


# ----------------------------------------------------------------- link, approval


def _link(c: _Collector, data):
    if data is None:
        return None
    link = c.model(schema.Link, data, ("link",))
    if link is None:
        return None
    if None not in (link.trip_after_ms, link.hold_after_ms) \
            and link.trip_after_ms <= link.hold_after_ms:
        c.add(("link", "trip_after_ms"), f"must be greater than hold_after_ms "
                                         f"({link.hold_after_ms} ms)")
    parts = (link.hold_after_ms, link.trip_after_ms, link.engage_after_ms)
    return None if None in parts else parts


def _approval(c: _Collector, data, scope: _Scope):
    if data is None:
        for name in scope.escalating:
            c.add(("channels", name, "on_breach"), "escalate needs an [approval] table")
        return None
    approval = c.model(schema.Approval, data, ("approval",))
    if approval is None or None in (approval.timeout_ms, approval.grant_ms):
        return None
    return (approval.timeout_ms, approval.grant_ms)


def _pins(c: _Collector, modbus, scope: _Scope) -> dict[str, int]:
    """``[modbus.addresses]``: channel -> register. Whether they fit one another is checked
    on the register map (``modbus_map.pin_problems``), once the widths are known."""
    pins = {}
    for name, address in sorted(((modbus.addresses if modbus else None) or {}).items()):
        if _ref(c, "channel", name, scope.channel_names, ("modbus", "addresses", name)):
            pins[name] = address
    return pins


def _duplicates(c: _Collector, scope: _Scope) -> None:
    for name in sorted(scope.channel_names & scope.input_names):
        c.add(("inputs", name), f"duplicate id: {name!r} is already a channel")
