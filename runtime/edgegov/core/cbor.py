"""A small deterministic CBOR (RFC 8949) subset, shared by the gateway and the MCU.

Encodes: int, bytes/bytearray, str, list/tuple (arrays), dict with small non-negative int
keys (written in ascending key order), True/False/None. No floats, no tags, no indefinite
lengths: one value has exactly one encoding, so a record's bytes and its hash are the same
on every runtime. The decoder accepts exactly that subset in its shortest form and raises
``CBORError`` (with the byte offset) for anything else, so decode(encode(x)) == x and
encode(decode(b)) == b for every ``b`` it accepts.
"""

from .compat import const

_MAX_DEPTH = const(16)
_UINT64 = 0xFFFFFFFFFFFFFFFF


class CBORError(ValueError):
    """Bytes that are not the accepted CBOR subset. ``offset`` is where decoding stopped."""

    def __init__(self, msg, offset=0):
        super().__init__(msg)
        self.msg = msg
        self.offset = offset

    def __str__(self):
        return "%s at byte %d" % (self.msg, self.offset)


def _head(out, major, n):
    mt = major << 5
    if n < 24:
        out.append(mt | n)
    elif n < 0x100:
        out.append(mt | 24)
        out.append(n)
    elif n < 0x10000:
        out.append(mt | 25)
        out.append(n >> 8)
        out.append(n & 0xFF)
    elif n < 0x100000000:
        out.append(mt | 26)
        for shift in (24, 16, 8, 0):
            out.append((n >> shift) & 0xFF)
    elif n <= _UINT64:
        out.append(mt | 27)
        for shift in (56, 48, 40, 32, 24, 16, 8, 0):
            out.append((n >> shift) & 0xFF)
    else:
        raise CBORError("integer too large", len(out))


def encode_into(out, obj, depth=0):
    """Append the encoding of ``obj`` to the bytearray ``out``."""
    if depth > _MAX_DEPTH:
        raise CBORError("nesting too deep", len(out))
    if obj is None:
        out.append(0xF6)
    elif obj is True:
        out.append(0xF5)
    elif obj is False:
        out.append(0xF4)
    elif isinstance(obj, int):
        if obj >= 0:
            _head(out, 0, obj)
        else:
            _head(out, 1, -1 - obj)
    elif isinstance(obj, (bytes, bytearray, memoryview)):
        _head(out, 2, len(obj))
        out.extend(obj)
    elif isinstance(obj, str):
        raw = obj.encode("utf-8")
        _head(out, 3, len(raw))
        out.extend(raw)
    elif isinstance(obj, (list, tuple)):
        _head(out, 4, len(obj))
        for item in obj:
            encode_into(out, item, depth + 1)
    elif isinstance(obj, dict):
        keys = sorted(obj)
        for k in keys:
            if not isinstance(k, int) or isinstance(k, bool) or k < 0:
                raise CBORError("map keys must be non-negative integers", len(out))
        _head(out, 5, len(keys))
        for k in keys:
            _head(out, 0, k)
            encode_into(out, obj[k], depth + 1)
    else:
        raise CBORError("cannot encode type %s" % type(obj).__name__, len(out))


def dumps(obj):
    """Encode ``obj`` to bytes."""
    out = bytearray()
    encode_into(out, obj)
    return bytes(out)


def _arg(data, pos, info, end):
    """Read a head argument; return (value, new_pos). Rejects non-shortest forms."""
    if info < 24:
        return info, pos
    if info == 31:
        raise CBORError("indefinite lengths are not allowed", pos - 1)
    if info > 27:
        raise CBORError("reserved additional info %d" % info, pos - 1)
    size = 1 << (info - 24)
    if pos + size > end:
        raise CBORError("truncated", pos)
    n = 0
    for i in range(size):
        n = (n << 8) | data[pos + i]
    if n < (24 if size == 1 else 1 << (4 * size)):
        raise CBORError("non-shortest integer encoding", pos - 1)
    return n, pos + size


def decode_from(data, pos, end, depth=0):
    """Decode one item from ``data[pos:end]``; return (value, new_pos)."""
    if depth > _MAX_DEPTH:
        raise CBORError("nesting too deep", pos)
    if pos >= end:
        raise CBORError("truncated", pos)
    ib = data[pos]
    major = ib >> 5
    info = ib & 0x1F
    start = pos
    pos += 1
    if major == 7:
        if info == 20:
            return False, pos
        if info == 21:
            return True, pos
        if info == 22:
            return None, pos
        raise CBORError("unsupported simple value or float", start)
    if major == 6:
        raise CBORError("tags are not allowed", start)
    n, pos = _arg(data, pos, info, end)
    if major == 0:
        return n, pos
    if major == 1:
        return -1 - n, pos
    if major == 2 or major == 3:
        if n > end - pos:
            raise CBORError("truncated string", start)
        raw = bytes(data[pos : pos + n])
        if major == 2:
            return raw, pos + n
        try:
            return str(raw, "utf-8"), pos + n
        except UnicodeError:
            raise CBORError("invalid UTF-8 in text", start) from None
    if major == 4:
        if n > end - pos:  # each item needs at least one byte
            raise CBORError("truncated array", start)
        items = []
        for _ in range(n):
            item, pos = decode_from(data, pos, end, depth + 1)
            items.append(item)
        return items, pos
    if major == 5:
        if 2 * n > end - pos:
            raise CBORError("truncated map", start)
        result = {}
        last = -1
        for _ in range(n):
            kpos = pos
            if pos >= end or data[pos] >> 5 != 0:
                raise CBORError("map key must be a non-negative integer", pos)
            k, pos = _arg(data, pos + 1, data[pos] & 0x1F, end)
            if k <= last:
                raise CBORError("map keys not in ascending order", kpos)
            last = k
            result[k], pos = decode_from(data, pos, end, depth + 1)
        return result, pos
    raise CBORError("unsupported major type %d" % major, start)


def loads(data):
    """Decode exactly one item that spans all of ``data``."""
    value, pos = decode_from(data, 0, len(data))
    if pos != len(data):
        raise CBORError("trailing bytes", pos)
    return value


__all__ = ["CBORError", "dumps", "loads", "encode_into", "decode_from"]
