"""Lineage records → plain dicts for people and tools (JSON lines, CSV, reports).

Values are shown in engineering units (scaled value × the channel's resolution); rule,
verdict, reason and event codes as words. Decoding follows the same context rules as
replay (``edgegov.core.replay.Decoder``); records that cannot be placed (before the first
surviving anchor, or after a hole until the next checkpoint) are shown with their raw
fields.
"""

from __future__ import annotations

from decimal import Decimal

from edgegov import names
from edgegov.core.codes import EV_FAULT, EV_OPERATOR, EV_SESSION, EV_TELEMETRY, EV_TICK
from edgegov.core.record import (
    K_BOOT,
    K_CHECKPOINT,
    K_DECISION,
    K_ENVELOPE,
    K_EVENT,
    K_GAP,
    K_TIME,
    RecordError,
)
from edgegov.core.replay import Decoder, ReplayError

from .walltime import BootIndex, dump_wall_clock, format_wall

KIND_NAMES = {K_BOOT: "boot", K_DECISION: "decision", K_EVENT: "event", K_GAP: "gap",
              K_CHECKPOINT: "checkpoint", K_ENVELOPE: "envelope", K_TIME: "time"}
GAP_CAUSES = {1: "dropped", 2: "overwritten", 3: "host"}


def _eng(res_text: str, scaled) -> object:
    """A scaled integer in engineering units (``scaled`` × the resolution given as text)."""
    if type(scaled) is not int:
        return _plain(scaled)
    key = (res_text, scaled)
    got = _ENG.get(key)
    if got is None:
        value = scaled * Decimal(res_text)
        got = int(value) if value == value.to_integral_value() else float(value)
        if len(_ENG) >= _ENG_MAX:
            _ENG.clear()
        _ENG[key] = got
    return got


_ENG: dict = {}  # (resolution, scaled) → value: outputs and proposals repeat a lot
_ENG_MAX = 1 << 16


def _plain(v):
    if isinstance(v, float):
        if v != v:
            return "NaN"
        return ("Infinity" if v > 0 else "-Infinity") if abs(v) == float("inf") else v
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).hex()
    if isinstance(v, (str, int, bool)) or v is None:
        return v
    return repr(v)


def decode_dump(dump, envelopes: dict | None = None):
    """Yield one dict per record of ``dump`` (a ``Dump``), in ring order."""
    decoder = Decoder(envelopes if envelopes is not None else dump.envelopes())
    wall = dump_wall_clock(dump.records)
    boots = BootIndex()
    prev = None
    for seq, payload in dump.records:
        boot = boots.see(payload[1] if len(payload) > 1 else -1)
        if prev is not None and seq != (prev + 1) & 0xFFFFFFFF:
            decoder.anchored = False  # times and outputs are relative: wait for an anchor
        prev = seq
        base = {"seq": seq, "offset": dump.offsets.get(seq, -1)}
        try:
            kind, rec, outcome = decoder.read(seq, payload)
        except (RecordError, ReplayError) as err:
            yield {**base, "kind": "error", "error": str(err), "bytes": payload.hex()}
            decoder.anchored = False
            continue
        row = {**base, **_describe(decoder, kind, rec, outcome)}
        t_ms = row.get("t_ms")
        wall_ms = wall.at(boot, t_ms) if type(t_ms) is int and wall.known else None
        if wall_ms is not None:
            row["wall"] = format_wall(wall_ms)  # recorded by the host, never decided on
        yield row


def _describe(decoder, kind, rec, outcome) -> dict:
    env = decoder.env
    out = {"kind": KIND_NAMES[kind]}
    if kind == K_BOOT:
        out.update(t_ms=rec[1], boot_count=rec[2], reset_reason=rec[3], firmware=rec[4],
                   envelope=bytes(rec[5]).hex(), device=rec[6], op_counter=rec[7],
                   outputs=_by_name(env, rec[8]), wall_ms=rec[9])
    elif kind == K_ENVELOPE:
        out.update(envelope=bytes(rec[1]).hex(), bytes=len(rec[2]))
    elif kind == K_CHECKPOINT:
        state = rec[6]
        out.update(t_ms=rec[1], head=bytes(rec[3]).hex(), keyed=rec[4] is not None,
                   state=names.state(state[1]), mode=_mode(env, state[5]),
                   trip_causes=names.causes(state[2]), outputs=_by_name(env, state[8]))
        if len(rec) > 8:
            out["wall_ms"] = rec[8]
    elif kind == K_TIME:
        out.update(t_ms=rec[1], wall_ms=rec[2])
    elif kind == K_GAP:
        out.update(t_ms=rec[1], first_lost=rec[2], count=rec[3],
                   cause=GAP_CAUSES.get(rec[4], rec[4]))
    elif outcome is None:
        out.update(unplaced=True, raw=_plain(repr(rec)))
    else:
        out.update(_outcome(env, outcome))
    return out


def _outcome(env, o) -> dict:
    out = {"t_ms": o.t}
    ev = o.event
    if o.kind == K_DECISION:
        out["cmd_seq"] = _plain(ev.seq)
        out["proposed"] = _values(env, ev.values)
    else:
        out["input"] = _input(env, ev)
    rule = o.rule
    rules = env.rules
    out["verdict"] = names.verdict(o.verdict)
    out["reason"] = names.reason(o.reason)
    out["rule"] = rules[rule] if 0 <= rule < len(rules) else None
    out["margin"] = o.margin
    out["output"] = _by_name(env, o.output)
    out["events"] = [names.event_doc(c, a) for c, a in o.events] if o.events else []
    return out


def _values(env, values) -> object:
    if not isinstance(values, dict):
        return _plain(values)
    shown = {}
    index = env.ch_index.get
    res = env.ch_res
    cached = _ENG.get
    for k, v in values.items():
        i = index(k) if isinstance(k, str) else None
        if i is None:
            shown[str(k)] = _plain(v)
            continue
        got = cached((res[i], v)) if type(v) is int else None
        shown[str(k)] = _eng(res[i], v) if got is None else got
    return shown


def _input(env, ev) -> dict:
    if ev.kind == EV_TICK:
        return {"type": "tick"}
    if ev.kind == EV_TELEMETRY:
        return _input_of_values(env, ev.values if isinstance(ev.values, dict) else {})
    if ev.kind == EV_OPERATOR:
        action = ev.action
        return {"type": "operator",
                "action": names.op(action) if type(action) is int else _plain(action),
                "arg": _plain(ev.arg), "counter": _plain(ev.counter),
                "authentic": getattr(ev, "recorded_auth", None)}
    if ev.kind == EV_FAULT:
        return {"type": "fault", "code": _plain(ev.code), "active": ev.active}
    if ev.kind == EV_SESSION:
        return {"type": "session", "session": _plain(ev.session)}
    return {"type": "unknown"}


def _input_of_values(env, values: dict) -> dict:
    """A telemetry input (``values``: input name → recorded value) for people."""
    return {"type": "telemetry", "values": {str(k): _telemetry(env, k, v)
                                            for k, v in values.items()}}


def _telemetry(env, name, scaled) -> object:
    """A telemetry input in engineering units (numbers scaled by the input's resolution)."""
    i = env.in_index.get(name) if env is not None and isinstance(name, str) else None
    if i is None or not env.in_number[i]:
        return _plain(scaled)
    return _eng(env.in_res[i], scaled)


def _by_name(env, values) -> dict:
    if env is None:
        return {str(i): v for i, v in enumerate(values)}
    names_ = env.ch_names
    if (type(values) is not list or len(values) > len(names_)
            or len(values) > len(env.ch_res)):
        return {names_[i]: _eng(env.ch_res[i], v) for i, v in enumerate(values)}
    out = {}
    cached = _ENG.get
    # _eng of each, its cache inline (values is no longer than names and resolutions)
    for name, res, v in zip(names_, env.ch_res, values, strict=False):
        got = cached((res, v)) if type(v) is int else None
        out[name] = _eng(res, v) if got is None else got
    return out


def _mode(env, index: int):
    return env.modes[index] if env is not None and 0 <= index < len(env.modes) else index


CSV_FIXED = ("seq", "offset", "kind", "t_ms", "wall", "cmd_seq", "input", "verdict", "reason",
             "rule", "margin", "events")


def csv_rows(rows, channel_names: list[str]):
    """Flatten decoded dicts to CSV rows (header first)."""
    header = list(CSV_FIXED)
    for ch in channel_names:
        header += [f"proposed_{ch}", f"output_{ch}"]
    yield header
    for row in rows:
        line = [row.get(k, "") for k in CSV_FIXED[:6]]
        inp = row.get("input")
        line.append(inp.get("type", "") if isinstance(inp, dict) else "")
        line += [row.get(k, "") for k in CSV_FIXED[7:11]]
        line.append(";".join(f"{e['event']}:{e['arg']}" for e in row.get("events", [])))
        proposed = row.get("proposed") if isinstance(row.get("proposed"), dict) else {}
        output = row.get("output") or row.get("outputs") or {}
        for ch in channel_names:
            line += [proposed.get(ch, ""), output.get(ch, "")]
        yield line
