"""The plant inputs over time, for the report's inputs lane: every telemetry record's
values (not only the plotted ones), kept as change points, with the stretches in which the
governor held an input stale (from its ``input_stale`` event to the next value of it).

Booleans are kept at every change (exact). Numbers are kept at every change too, then
thinned like the channel lines when there are very many: per bucket of consecutive points,
the first, last, lowest and highest survive, so every excursion is still drawn.
"""

from __future__ import annotations

from ..core.envelope import OPS
from .shadow import eng, scale_of

NUMBER_POINTS_MAX = 8000  # per number input, after thinning


class InputTrack:
    """Fed every placed record (``feed(x, row)``); ``finish()`` gives the lane's data."""

    def __init__(self, envelopes: dict, units: dict[str, str]):
        self.specs = input_specs(envelopes, units)
        self.index = {s["name"]: k for k, s in enumerate(self.specs)}
        self.x: list[list] = [[] for _ in self.specs]
        self.v: list[list] = [[] for _ in self.specs]
        self.stale: list[list] = [[] for _ in self.specs]  # [x0, x1 or None]
        self._open: dict[int, list] = {}
        self._applied = None  # the telemetry values applied last (the same again: nothing moves)
        self.last_x = None

    def feed(self, x: float, row: dict) -> None:
        self.last_x = x
        inp = row.get("input")
        if isinstance(inp, dict) and inp.get("type") == "telemetry":
            values = inp.get("values")
            if isinstance(values, dict):
                for name, value in values.items():
                    self._value(name, x, value)
                self._applied = values
        events = row.get("events", ())
        if not events:
            return
        for e in events:
            if e.get("event") == "input_stale" and type(e.get("arg")) is int:
                k = e["arg"]
                if 0 <= k < len(self.specs) and k not in self._open:
                    self._open[k] = [x, None]
                    self.stale[k].append(self._open[k])

    def quiet(self, x: float, seq: int, kind: str, row, values: dict | None) -> None:
        """``feed`` of a record with no event: ``values`` its telemetry values as shown (None
        for a decision or a tick); ``row`` (a ``LazyRow``) is not needed here."""
        self.last_x = x
        if values and (values is not self._applied or self._open):
            for name, value in values.items():
                self._value(name, x, value)
            self._applied = values

    def _value(self, name, x: float, value) -> None:
        k = self.index.get(name)
        if k is None:
            return
        band = self._open.pop(k, None)
        if band is not None:
            band[1] = x
        if isinstance(value, bool):
            value = int(value)
        elif type(value) not in (int, float):
            value = None
        vs = self.v[k]
        if vs and vs[-1] == value and band is None:
            return
        self.x[k].append(x)
        vs.append(value)

    def finish(self) -> list[dict]:
        for band in self._open.values():
            band[1] = self.last_x
        out = []
        for k, spec in enumerate(self.specs):
            xs, vs = self.x[k], self.v[k]
            if spec["number"] and len(xs) > NUMBER_POINTS_MAX:
                xs, vs = thin(xs, vs, NUMBER_POINTS_MAX // 4)
            if self.last_x is not None and xs and xs[-1] < self.last_x:
                xs, vs = xs + [self.last_x], vs + [vs[-1]]  # the step holds to the end
            out.append(dict(spec, x=xs, v=vs, stale=[b for b in self.stale[k] if b[1]
                                                     is not None]))
        return out


def thin(xs: list, vs: list, buckets: int) -> tuple[list, list]:
    """First, last, lowest and highest point of each of ``buckets`` runs of points."""
    size = -(-len(xs) // buckets)
    keep = []
    for b in range(0, len(xs), size):
        idx = [i for i in range(b, min(b + size, len(xs))) if vs[i] is not None]
        if not idx:
            keep.append(b)
            continue
        lo = min(idx, key=vs.__getitem__)
        hi = max(idx, key=vs.__getitem__)
        keep.extend(sorted({b, idx[0], lo, hi, idx[-1], min(b + size, len(xs)) - 1}))
    keep = sorted(set(keep))
    return [xs[i] for i in keep], [vs[i] for i in keep]


def input_specs(envelopes: dict, units: dict[str, str]) -> list[dict]:
    """Every input of the envelopes, sorted by name: kind, unit, limits and the interlock
    thresholds on it, all in engineering units."""
    found: dict[str, dict] = {}
    for env in envelopes.values():
        for i, name in enumerate(env.in_names):
            if name in found:
                continue
            number = env.in_number[i]
            scale = scale_of(env.in_res[i]) if number else (1.0, 0)
            found[name] = {
                "name": name, "number": number, "estop": env.in_estop[i],
                "unit": units.get(name, "") if number else "",
                "stale_after_ms": env.in_stale[i],
                "min": eng(env.in_min[i], scale) if number else None,
                "max": eng(env.in_max[i], scale) if number else None,
                "thresholds": _thresholds(env, i, scale, number),
            }
    return [found[n] for n in sorted(found)]


def _thresholds(env, i: int, scale, number: bool) -> list[dict]:
    out = []
    for k, conds in enumerate(env.il_conds):
        for inp, op, value in conds:
            if inp == i:
                v = eng(value, scale) if number else bool(value)
                word = str(v).lower() if isinstance(v, bool) else v
                out.append({"interlock": env.il_names[k], "op": OPS[op],
                            "value": v, "label": f"{env.il_names[k]}: {OPS[op]} {word}"})
    return out


def input_units(records) -> dict[str, str]:
    """Input name → unit text, read from the dump's ENVELOPE records (the core envelope
    keeps no units: they are for people only)."""
    import cbor2

    from ..core.record import K_ENVELOPE

    out: dict[str, str] = {}
    for _, payload in records:
        if len(payload) < 2 or payload[1] != K_ENVELOPE:
            continue
        try:
            blob = cbor2.loads(payload)[2]
            for c in cbor2.loads(blob)[6]:
                if isinstance(c, list) and len(c) > 7 and isinstance(c[7], str):
                    out.setdefault(c[0], c[7])
        except Exception:  # noqa: BLE001 - units are a nicety; a damaged record has none
            continue
    return out


def unit_of_blob(blob: bytes) -> dict[str, str]:
    """Input name → unit of a compiled envelope blob (a what-if or ``--envelope`` file)."""
    import cbor2

    try:
        return {c[0]: c[7] for c in cbor2.loads(blob)[6]
                if isinstance(c, list) and len(c) > 7 and isinstance(c[7], str)}
    except Exception:  # noqa: BLE001
        return {}


__all__ = ["InputTrack", "input_specs", "input_units", "unit_of_blob", "thin"]
