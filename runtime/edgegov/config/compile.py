"""Envelope TOML file → admitted model → compact CBOR blob a device loads, plus its hash.

The blob is a CBOR array (layout below, version 1) written by the core's deterministic
encoder, so the same file compiles to the same bytes and hash on any machine. Rule ids are
the config paths the limits came from (``channels.spindle.max``); the blob carries the sorted
list of them and the core refers to a rule by its index in that list.

    ["edgegov-envelope", 1, device_id, modes[], initial_mode, channels[], inputs[],
     interlocks[], link|null, approval|null, rules[]]
    channel   = [name, unit, resolution, safe, stop, on_breach, on_rate, hold, accel,
                 approved_min, approved_max, rule_accel, rule_approval, per_mode[]]
    per_mode  = [min, max, rate, rule_min, rule_max, rule_rate, approved_min, approved_max]
                (one per mode, in mode order; approval widens only bounds the mode left as-is)
    input     = [name, is_number, is_estop, stale_after_ms, min, max, resolution, unit, rule]
    interlock = [name, action, rule, conditions[[input, op, value]], limits[[channel, min, max]]]
    link      = [hold_after_ms, trip_after_ms, engage_after_ms, rule_hold, rule_trip]
    approval  = [timeout_ms, grant_ms]
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from ..core import cbor
from ..core.envelope import BUILTIN_RULES, FORMAT_MAGIC, FORMAT_VERSION, OPS
from . import admission
from .locate import key_lines, line_of
from .problems import EnvelopeConfigError, Problem

_STOP = {"STO": 0, "SS1": 1}
_ACTION = {"clamp": 1, "reject": 2, "escalate": 3, "hold": 4, "trip": 5}
_HOLD = {"stay": 0, "ramp": 1}


@dataclass(frozen=True)
class CompiledEnvelope:
    """A validated envelope: the admitted model, the device blob and its SHA-256."""

    source: str
    admitted: admission.Admitted
    blob: bytes

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.blob).hexdigest()

    @property
    def digest(self) -> bytes:
        return hashlib.sha256(self.blob).digest()

    def channel(self, name: str) -> admission.ScaledChannel:
        return self.admitted.channels[name]

    def to_scaled(self, channel: str, value: Decimal | int) -> int:
        """Engineering value → scaled integer, rounding half to even on the resolution."""
        steps = Decimal(value) / self.admitted.channels[channel].resolution
        return int(steps.to_integral_value())

    def from_scaled(self, channel: str, scaled: int) -> Decimal:
        return scaled * self.admitted.channels[channel].resolution


def rule_ids(adm: admission.Admitted) -> list[str]:
    ids = set(BUILTIN_RULES)
    for ch in adm.channels.values():
        base = f"channels.{ch.name}."
        ids.update((base + "accel", base + "approval"))
        for limits in ch.modes.values():
            ids.update(limits[3:])
    ids.update(f"interlocks.{name}" for name in adm.interlocks)
    ids.update(f"inputs.{name}" for name in adm.inputs)
    if adm.link:
        ids.update(("link.hold", "link.trip"))
    return sorted(ids)


def build_array(adm: admission.Admitted) -> list:
    rules = rule_ids(adm)
    rule = {rid: i for i, rid in enumerate(rules)}
    chan_names = sorted(adm.channels)
    input_names = sorted(adm.inputs)
    channels = [_channel(adm.channels[n], adm.modes, rule) for n in chan_names]
    inputs = [_input(adm.inputs[n], rule) for n in input_names]
    interlocks = [
        _interlock(adm.interlocks[n], rule, chan_names, input_names) for n in sorted(adm.interlocks)
    ]
    link = None
    if adm.link:
        link = [*adm.link, rule["link.hold"], rule["link.trip"]]
    approval = list(adm.approval) if adm.approval else None
    return [
        FORMAT_MAGIC, FORMAT_VERSION, adm.device_id, list(adm.modes),
        adm.modes.index(adm.initial_mode), channels, inputs, interlocks, link, approval, rules,
    ]


def _channel(ch: admission.ScaledChannel, modes: list[str], rule: dict) -> list:
    base = f"channels.{ch.name}."
    per_mode = [
        [lo, hi, rate, rule[r_lo], rule[r_hi], rule[r_rate],
         ch.approved_min if lo == ch.min else lo, ch.approved_max if hi == ch.max else hi]
        for lo, hi, rate, r_lo, r_hi, r_rate in (ch.modes[m] for m in modes)
    ]
    return [
        ch.name, ch.unit, str(ch.resolution), ch.safe, _STOP[ch.stop], _ACTION[ch.on_breach],
        _ACTION[ch.on_rate], _HOLD[ch.hold], ch.accel, ch.approved_min, ch.approved_max,
        rule[base + "accel"], rule[base + "approval"], per_mode,
    ]


def _input(inp: admission.ScaledInput, rule: dict) -> list:
    return [
        inp.name, int(inp.type == "number"), int(inp.role == "estop"), inp.stale_after_ms,
        inp.min, inp.max, str(inp.resolution or 1), inp.unit, rule[f"inputs.{inp.name}"],
    ]


def _interlock(il: admission.ScaledInterlock, rule: dict, chans: list, inputs: list) -> list:
    conds = [[inputs.index(i), OPS.index(op), v] for i, op, v in il.conditions]
    limits = [[chans.index(n), lo, hi] for n, (lo, hi) in sorted(il.limits.items())]
    return [il.name, _ACTION[il.on_breach], rule[f"interlocks.{il.name}"], conds, limits]


def compile_text(text: str, source: str = "<envelope>") -> CompiledEnvelope:
    """Validate and compile envelope TOML text; raise ``EnvelopeConfigError`` listing all."""
    try:
        doc = tomllib.loads(text, parse_float=Decimal)
    except tomllib.TOMLDecodeError as err:
        problem = Problem(source, (), f"not valid TOML: {err}", _toml_line(err))
        raise EnvelopeConfigError([problem]) from None
    adm, problems = admission.admit(doc)
    if problems:
        raise EnvelopeConfigError(located(problems, text, source))
    compiled = CompiledEnvelope(source, adm, cbor.dumps(build_array(adm)))
    if adm.modbus_addresses:  # pinned registers must fit the widths the ranges give
        from ..adapters.modbus_map import pin_problems
        from ..core.envelope import Envelope

        problems = pin_problems(Envelope.from_blob(compiled.blob), adm.modbus_addresses)
        if problems:
            raise EnvelopeConfigError(located(problems, text, source))
    return compiled


def located(problems: list[tuple[tuple, str]], text: str, source: str) -> list[Problem]:
    """(location, message) pairs → ``Problem`` lines with their TOML line, sorted by line
    (then location) and without repeats: the order a person fixes them in."""
    lines = key_lines(text)
    found = {Problem(source, loc, msg, line_of(lines, loc)) for loc, msg in problems}
    return sorted(found, key=lambda p: (p.line or 0, p.where, p.message))


def compile_file(path: str | Path) -> CompiledEnvelope:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise EnvelopeConfigError([Problem(str(path), (), f"cannot read: {err}")]) from None
    return compile_text(text, str(path))


def envelope_from_file(path: str | Path):
    """An envelope TOML (compiled here) or a compiled blob → (Envelope, blob, digest).

    Raises ``EnvelopeConfigError`` for a refused TOML, ``OSError`` for an unreadable file
    and ``EnvelopeError`` for a blob that is not an envelope."""
    from ..core.envelope import Envelope

    path = str(path)
    blob = compile_file(path).blob if path.endswith(".toml") else Path(path).read_bytes()
    digest = hashlib.sha256(blob).digest()
    return Envelope.from_blob(blob, digest), blob, digest


def _toml_line(err: tomllib.TOMLDecodeError) -> int | None:
    lineno = getattr(err, "lineno", None)
    if lineno:
        return lineno
    import re

    found = re.search(r"line (\d+)", str(err))
    return int(found.group(1)) if found else None
