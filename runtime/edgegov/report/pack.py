"""Compact column encodings for the page's data (decoded by the page's script, ``assets``).

The page's weight is the plotly bundle plus the data; the data has to stay small for long
dumps, so it travels column-wise and the columns are encoded so gzip finds them cheap:

- ``delta(ints)``: integers as differences from the previous one (times, sequence numbers,
  byte offsets: mostly the same small step). ``None`` entries stay ``None`` and do not move
  the running value.
- ``decimal(values, decimals)``: engineering values as delta-encoded integers of
  ``value × 10^decimals`` when every value round-trips exactly that way; otherwise the
  values as they are (``{"raw": [...]}``).
- ``records(rows, strings)``: decoded records (``lineage decode``'s dicts) as one set of
  columns per record *shape* (the ordered key paths), so that the page can rebuild each
  record exactly, keys in order, without carrying a dict per record.
"""

from __future__ import annotations

import json
import math
from itertools import accumulate, chain, compress, count, repeat
from operator import is_, mul, sub, truediv


def delta(values) -> list:
    """Integers (or None) → first value, then differences; None stays None."""
    vs = values if type(values) is list else list(values)
    try:  # no None: one subtraction per pair, at C speed
        return _steps(vs)
    except TypeError:
        pass
    nones = _nones(vs)
    if not nones:
        return _delta_each(vs)
    try:
        return _with_nones(_steps(_filled(vs, nones)), nones)
    except TypeError:
        return _delta_each(vs)


def _steps(vs: list) -> list:
    return list(map(sub, vs, chain((0,), vs)))  # (map stops at the end of vs)


def _nones(vs: list) -> list:
    """Indices of the None entries."""
    return list(compress(count(), map(is_, vs, repeat(None))))


def _filled(vs: list, nones: list) -> list:
    """``vs`` with each None (at the indices ``nones``) replaced by the value before it, or
    0 at the start: the running value, so that the differences around it stay right."""
    out = vs.copy()
    for i in nones:
        out[i] = out[i - 1] if i else 0
    return out


def _with_nones(steps: list, nones: list) -> list:
    """``steps`` with None put back at the indices ``nones`` (in place)."""
    for i in nones:
        steps[i] = None
    return steps


def _delta_each(values) -> list:
    out, last = [], 0
    for v in values:
        if v is None:
            out.append(None)
            continue
        out.append(v - last)
        last = v
    return out


def undelta(values) -> list:
    """The inverse of ``delta`` (tests use it; the page has its own)."""
    vs = values if type(values) is list else list(values)
    try:  # 0 + the first, as the running value starts
        out = list(accumulate(vs, initial=0))
    except TypeError:  # None among them
        return _undelta_each(vs)
    del out[0]
    return out


def _undelta_each(values) -> list:
    out, last = [], 0
    for v in values:
        if v is None:
            out.append(None)
            continue
        last += v
        out.append(last)
    return out


def ms(x) -> int | None:
    """Report time (s, float) → integer milliseconds, the unit the page's times travel in."""
    if x is None or (type(x) is float and math.isnan(x)):
        return None
    return round(x * 1000)


def times(xs) -> list:
    """Report times (s) → delta-encoded milliseconds."""
    xs = xs if type(xs) is list else list(xs)
    try:  # None or NaN among them raises (TypeError, ValueError): then one by one
        return _steps(list(map(round, map(mul, xs, repeat(1000)))))
    except (TypeError, ValueError, OverflowError):
        return delta([ms(x) for x in xs])


_NUMBERS = {int, float, type(None)}
_EXACT_INT = 2**53  # an int of at most this size is a float exactly: × 10^d / 10^d gives it


def decimal(values, decimals: int) -> dict:
    """Numbers (or None) → ``{"d": decimals, "v": delta ints}`` when exact, else raw."""
    kinds = set(map(type, values)) if type(values) is list else ()
    if not kinds or not kinds <= _NUMBERS:  # not a list of numbers: one by one
        return _decimal_each(values, decimals)
    nones = _nones(values) if type(None) in kinds else ()
    given = _filled(values, nones) if nones else values  # (copies are exact as they are)
    try:  # NaN or an infinity raises: one by one says what it is
        ints = _scaled(given, decimals, float in kinds)
    except (ValueError, OverflowError):
        return _decimal_each(values, decimals)
    if ints is None:
        return {"raw": list(values)}
    steps = _steps(ints)
    return {"d": decimals, "v": _with_nones(steps, nones) if nones else steps}


def _scaled(given: list, decimals: int, floats: bool) -> list | None:
    """Numbers × 10^decimals as ints, or None when one of them is not so exactly."""
    if type(decimals) is int and decimals >= 0 and not floats:
        if decimals == 0:
            return given  # round(v * 1) is v
        if not given or (-_EXACT_INT <= min(given) and max(given) <= _EXACT_INT):
            return list(map(mul, given, repeat(10 ** decimals)))
    scale = 10 ** decimals
    ints = list(map(round, map(mul, given, repeat(scale))))
    back = list(map(truediv, ints, repeat(scale))) if decimals else ints
    return ints if back == given else None


def _decimal_each(values, decimals: int) -> dict:
    scale = 10 ** decimals
    ints = []
    for v in values:
        if v is None:
            ints.append(None)
            continue
        if type(v) not in (int, float) or v != v or v in (float("inf"), float("-inf")):
            return {"raw": list(values)}
        k = round(v * scale)
        if (k / scale if decimals else k) != v:
            return {"raw": list(values)}
        ints.append(k)
    return {"d": decimals, "v": delta(ints)}


def decimals_of(res) -> int:
    """Decimals a resolution text needs ("0.1" → 1, "1" → 0, "0.25" → 2)."""
    text = str(res)
    if "e" in text.lower():
        text = f"{float(text):f}".rstrip("0")
    return len(text.split(".", 1)[1].rstrip("0")) if "." in text else 0


# --------------------------------------------------------------------------- records

def _walk(obj: dict, values: list) -> tuple:
    """Append ``obj``'s leaf values to ``values`` (depth first, keys in order) and return
    its shape: per key, the key (a leaf), ``(key, shape)`` (a dict that is not empty) or
    ``(key, "=")`` (a list or an empty dict, one JSON text)."""
    shape = []
    for key, value in obj.items():
        t = type(value)
        if t is dict and value:
            shape.append((key, _walk(value, values)))
        elif t is dict or t is list:
            shape.append((key, "="))
            values.append(json.dumps(value, separators=(",", ":")) if value else
                          ("[]" if t is list else "{}"))
        else:
            shape.append(key)
            values.append(value)
    return tuple(shape)


def _paths(shape: tuple, prefix: tuple = ()) -> list[tuple]:
    """The key paths of a ``_walk`` shape, in the order of its values."""
    out = []
    for part in shape:
        if type(part) is not tuple:
            out.append(prefix + (part,))
        elif part[1] == "=":
            out.append(prefix + (part[0], "="))
        else:
            out.extend(_paths(part[1], prefix + (part[0],)))
    return out


def _column(values, strings) -> dict:
    kinds = {type(v) for v in values}
    kinds.discard(type(None))
    if kinds == {int}:
        return {"d": delta(values)}
    if kinds <= {str}:
        ids: dict = {}
        out = []
        for v in values:
            i = ids.get(v)
            if i is None:
                i = ids[v] = strings(v)
            out.append(i)
        return {"s": out}
    return {"r": list(values)}


def records(rows: list[dict], strings) -> dict:
    """Decoded records → ``{"shape": [shape index per record], "shapes": [{"paths",
    "cols"}]}``. A path ending in ``"="`` holds JSON text (a list or an empty dict)."""
    index: dict[tuple, int] = {}
    shapes: list[list] = []  # per shape: the value lists of its records
    order = []
    for row in rows:
        values: list = []
        sig = _walk(row, values)
        k = index.get(sig)
        if k is None:
            k = index[sig] = len(shapes)
            shapes.append([])
        shapes[k].append(values)
        order.append(k)
    packed = []
    for sig, k in index.items():  # (in the order the shapes were met: k = 0, 1, ...)
        packed.append({"paths": [list(p) for p in _paths(sig)],
                       "cols": [_column(c, strings) for c in zip(*shapes[k], strict=True)]})
    return {"shape": order, "shapes": packed}


def unrecords(packed: dict, strings: list[str]) -> list[dict]:
    """The inverse of ``records`` (the page's script does the same; tests use this)."""
    cols = []
    for shape in packed["shapes"]:
        decoded = []
        for c in shape["cols"]:
            if "d" in c:
                decoded.append(undelta(c["d"]))
            elif "s" in c:
                decoded.append([strings[k] if k >= 0 else None for k in c["s"]])
            else:
                decoded.append(c["r"])
        cols.append(decoded)
    cursor = [0] * len(packed["shapes"])
    out = []
    for k in packed["shape"]:
        j = cursor[k]
        cursor[k] += 1
        rec: dict = {}
        for path, col in zip(packed["shapes"][k]["paths"], cols[k], strict=True):
            _put(rec, path, col[j])
        out.append(rec)
    return out


def _put(rec: dict, path: list, value) -> None:
    if path[-1] == "=":
        path, value = path[:-1], json.loads(value)
    for key in path[:-1]:
        rec = rec.setdefault(key, {})
    rec[path[-1]] = value


__all__ = ["delta", "undelta", "times", "ms", "decimal", "decimals_of", "records",
           "unrecords"]
