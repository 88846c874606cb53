#!/usr/bin/env python3
"""Turn .mpy files (format 2, MicroPython 1.9.x) into a frozen_mpy.c for the
micro:bit port of the same source tree.

    freeze_mpy.py SRC_TREE OUT.c NAME=FILE.mpy ...

SRC_TREE is the unpacked micro:bit MicroPython source: the opcode table is read
from its source/py/bc.c, the closure/raise opcodes from inc/py/bc0.h and the
firmware's own qstrs from inc/genhdr/qstrdefs.generated.h, so the output
matches that tree. The generated C holds the bytecode and constant tables as
const data (flash), an extra qstr pool for the new names, and the
mp_frozen_mpy_names / mp_frozen_mpy_content tables read by py/frozenmod.c.
The port needs MICROPY_MODULE_FROZEN_MPY (1) and
MICROPY_QSTR_EXTRA_POOL mp_qstr_frozen_const_pool.
"""

import ast
import re
import struct
import sys

MPY_VERSION = 2
SMALL_INT_BITS = 31          # MICROPY_OBJ_REPR_C on a 32-bit MCU
FEATURE_UNICODE = 2          # MICROPY_PY_BUILTINS_STR_UNICODE, no bytecode cache
QSTR_BYTES_IN_HASH = 1       # micro:bit mpconfigport.h
MPZ_DIG_SIZE = 16            # 32-bit target


# ---------------------------------------------------------------- tree data

def read_opcode_table(tree):
    src = open(tree + "/source/py/bc.c").read()
    body = src[src.index("opcode_format_table[64]"):]
    body = body[:body.index("};")]
    codes = {"U": 0, "B": 0, "Q": 1, "V": 2, "O": 3}
    fmt = []
    for m in re.finditer(r"OC4\((\w), (\w), (\w), (\w)\)", body):
        fmt.extend(codes[c] for c in m.groups())
    assert len(fmt) == 256, len(fmt)
    return fmt


def read_extra_byte_ops(tree):
    src = open(tree + "/inc/py/bc0.h").read()
    ops = set()
    for name in ("RAISE_VARARGS", "MAKE_CLOSURE", "MAKE_CLOSURE_DEFARGS"):
        m = re.search(r"#define MP_BC_%s\s+\((0x[0-9a-fA-F]+)\)" % name, src)
        ops.add(int(m.group(1), 16))
    return ops


def read_firmware_qstrs(tree):
    qs = {}
    for line in open(tree + "/inc/genhdr/qstrdefs.generated.h"):
        m = re.match(r'QDEF\((MP_QSTR_\w+), \(const byte\*\)"(?:\\x[0-9a-f]{2})+" (".*")\)$', line.strip())
        if m:
            data = ast.literal_eval("b" + m.group(2)).decode("latin-1")
            qs.setdefault(data, m.group(1))
    return qs


# ---------------------------------------------------------------- .mpy reader

class Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def byte(self):
        b = self.data[self.pos]
        self.pos += 1
        return b

    def bytes(self, n):
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def uint(self):
        n = 0
        while True:
            b = self.byte()
            n = (n << 7) | (b & 0x7F)
            if not b & 0x80:
                return n

    def qstr(self):
        return self.bytes(self.uint()).decode("utf-8")


def decode_uint(bc, ip):
    n = 0
    while True:
        b = bc[ip]
        ip += 1
        n = (n << 7) | (b & 0x7F)
        if not b & 0x80:
            return n, ip


class RawCode:
    pass


def load_obj(r):
    t = chr(r.byte())
    if t == "e":
        return ("e", None)
    data = r.bytes(r.uint())
    if t == "s":
        return ("s", data.decode("utf-8"))
    if t == "b":
        return ("b", bytes(data))
    if t == "i":
        return ("i", int(data.decode()))
    if t == "f":
        return ("f", float(data.decode()))
    raise ValueError("unsupported constant type %r" % t)


def load_raw_code(r, ctx):
    rc = RawCode()
    bc = bytearray(r.bytes(r.uint()))
    ip = 0
    _, ip = decode_uint(bc, ip)          # n_state
    _, ip = decode_uint(bc, ip)          # n_exc_stack
    rc.scope_flags, rc.n_pos_args, rc.n_kwonly_args = bc[ip], bc[ip + 1], bc[ip + 2]
    ip += 4
    code_info_size, ip2 = decode_uint(bc, ip)
    ip += code_info_size
    while bc[ip] != 255:
        ip += 1
    ip += 1
    qrefs = {}                            # offset in bytecode -> qstr text
    rc.simple_name = r.qstr()
    rc.source_file = r.qstr()
    qrefs[ip2] = rc.simple_name
    qrefs[ip2 + 2] = rc.source_file
    while ip < len(bc):
        op = bc[ip]
        f = (ctx.fmt[op] if op < 256 else 0)
        if f == 1:
            qrefs[ip + 1] = r.qstr()
            ip += 3
            continue
        start = ip
        ip += 1
        if f == 2:
            while bc[ip] & 0x80:
                ip += 1
            ip += 1
        elif f == 3:
            ip += 2
        if bc[start] in ctx.extra_ops:
            ip += 1
    assert ip == len(bc), "bytecode walk overran"
    rc.bytecode, rc.qrefs = bc, qrefs
    n_obj, n_raw = r.uint(), r.uint()
    rc.arg_names = [r.qstr() for _ in range(rc.n_pos_args + rc.n_kwonly_args)]
    rc.objs = [load_obj(r) for _ in range(n_obj)]
    rc.children = [load_raw_code(r, ctx) for _ in range(n_raw)]
    return rc


def load_mpy(path, ctx):
    r = Reader(open(path, "rb").read())
    hdr = r.bytes(4)
    if hdr[0] != ord("M") or hdr[1] != MPY_VERSION:
        raise SystemExit("%s: not a version-%d .mpy" % (path, MPY_VERSION))
    if hdr[2] != FEATURE_UNICODE:
        raise SystemExit("%s: feature flags %d, need %d (unicode, no -mcache-lookup-bc)" % (path, hdr[2], FEATURE_UNICODE))
    if hdr[3] > SMALL_INT_BITS:
        raise SystemExit("%s: compiled for %d-bit small ints; use -msmall-int-bits=%d" % (path, hdr[3], SMALL_INT_BITS))
    return load_raw_code(r, ctx)


# ---------------------------------------------------------------- C output

def qstr_hash(data):
    h = 5381
    for b in data:
        h = ((h << 5) + h) ^ b
    h &= (1 << (8 * QSTR_BYTES_IN_HASH)) - 1
    return h or 1


def c_bytes(data):
    out = []
    for b in data:
        if 32 <= b < 127 and chr(b) not in '"\\?':
            out.append(chr(b))
        else:
            out.append("\\x%02x" % b)
    # keep hex escapes from swallowing following hex digits
    s = "".join(out)
    return '"' + re.sub(r'(\\x[0-9a-f]{2})(?=[0-9a-fA-F])', r'\1""', s) + '"'


class Ctx:
    def __init__(self, tree):
        self.fmt = read_opcode_table(tree)
        self.extra_ops = read_extra_byte_ops(tree)
        self.fw_qstrs = read_firmware_qstrs(tree)
        self.new_qstrs = []
        self.new_index = {}
        self.n = 0
        self.out = []

    def q(self, s):
        if s in self.fw_qstrs:
            return self.fw_qstrs[s]
        if s not in self.new_index:
            self.new_index[s] = "FQ_%d" % len(self.new_qstrs)
            self.new_qstrs.append(s)
        return self.new_index[s]

    def emit_obj(self, name, obj):
        t, v = obj
        if t == "e":
            return "(mp_uint_t)&mp_const_ellipsis_obj"
        if t in ("s", "b"):
            data = v.encode("utf-8") if t == "s" else v
            typ = "mp_type_str" if t == "s" else "mp_type_bytes"
            self.out.append("STATIC const mp_obj_str_t %s = {{&%s}, %d, %d, (const byte*)%s};"
                            % (name, typ, qstr_hash(data), len(data), c_bytes(data)))
            return "(mp_uint_t)&" + name
        if t == "i":
            if -(1 << (SMALL_INT_BITS - 1)) <= v < (1 << (SMALL_INT_BITS - 1)):
                return "(mp_uint_t)MP_OBJ_NEW_SMALL_INT(%d)" % v
            neg, mag = v < 0, abs(v)
            digs = []
            while mag:
                digs.append(mag & ((1 << MPZ_DIG_SIZE) - 1))
                mag >>= MPZ_DIG_SIZE
            self.out.append("STATIC const mpz_dig_t %s_d[] = {%s};" % (name, ", ".join("0x%x" % d for d in digs)))
            self.out.append("STATIC const mp_obj_int_t %s = {{&mp_type_int}, {.neg = %d, .fixed_dig = 1, "
                            ".alloc = %d, .len = %d, .dig = (mpz_dig_t*)%s_d}};"
                            % (name, neg, len(digs), len(digs), name))
            return "(mp_uint_t)&" + name
        if t == "f":
            # MICROPY_OBJ_REPR_C: a float is boxed into the object word
            bits = struct.unpack("<I", struct.pack("<f", v))[0]
            return "(mp_uint_t)((((0x%08x) & ~3) | 2) + 0x80800000)" % bits
        raise ValueError(t)

    def emit_raw_code(self, rc):
        idx = self.n
        self.n += 1
        children = [self.emit_raw_code(c) for c in rc.children]
        bc = rc.bytecode
        items = []
        i = 0
        while i < len(bc):
            if i in rc.qrefs:
                q = self.q(rc.qrefs[i])
                items.append("(byte)(%s & 0xff)" % q)
                items.append("(byte)(%s >> 8)" % q)
                i += 2
            else:
                items.append("0x%02x" % bc[i])
                i += 1
        self.out.append("STATIC const byte bytecode_data_%d[%d] = {" % (idx, len(bc)))
        for k in range(0, len(items), 12):
            self.out.append("    " + ", ".join(items[k:k + 12]) + ",")
        self.out.append("};")
        consts = ["(mp_uint_t)MP_OBJ_NEW_QSTR(%s)" % self.q(a) for a in rc.arg_names]
        consts += [self.emit_obj("const_obj_%d_%d" % (idx, k), o) for k, o in enumerate(rc.objs)]
        consts += ["(mp_uint_t)&raw_code_%d" % c for c in children]
        if consts:
            self.out.append("STATIC const mp_uint_t const_table_data_%d[%d] = {" % (idx, len(consts)))
            self.out.extend("    %s," % c for c in consts)
            self.out.append("};")
            table = "const_table_data_%d" % idx
        else:
            table = "NULL"
        self.out.append("STATIC const mp_raw_code_t raw_code_%d = {" % idx)
        self.out.append("    .kind = MP_CODE_BYTECODE, .scope_flags = %d, .n_pos_args = %d,"
                        % (rc.scope_flags, rc.n_pos_args))
        self.out.append("    .data.u_byte = {.bytecode = bytecode_data_%d, .const_table = %s," % (idx, table))
        self.out.append("        #if MICROPY_PERSISTENT_CODE_SAVE")
        self.out.append("        .bc_len = %d, .n_obj = %d, .n_raw_code = %d," % (len(bc), len(rc.objs), len(children)))
        self.out.append("        #endif")
        self.out.append("    },")
        self.out.append("};")
        return idx


def main(argv):
    if len(argv) < 4:
        raise SystemExit(__doc__)
    tree, out_path, mods = argv[1], argv[2], argv[3:]
    ctx = Ctx(tree)
    tops = []
    for m in mods:
        name, path = m.split("=", 1)
        tops.append((name, ctx.emit_raw_code(load_mpy(path, ctx))))
    if not ctx.new_qstrs:
        ctx.q("<frozen>")  # the pool must not be empty (alloc below)
    head = [
        "// Generated by freeze_mpy.py: frozen bytecode, do not edit.",
        '#include "py/mpconfig.h"',
        '#include "py/objint.h"',
        '#include "py/objstr.h"',
        '#include "py/emitglue.h"',
        "",
        "#if MICROPY_LONGINT_IMPL != MICROPY_LONGINT_IMPL_MPZ || MICROPY_OBJ_REPR != MICROPY_OBJ_REPR_C",
        '#error "frozen code generated for MPZ long ints and MICROPY_OBJ_REPR_C"',
        "#endif",
        "#if MICROPY_QSTR_BYTES_IN_HASH != %d || MICROPY_QSTR_BYTES_IN_LEN != 1" % QSTR_BYTES_IN_HASH,
        '#error "frozen qstr pool generated for other qstr hash/len sizes"',
        "#endif",
        "#if MICROPY_OPT_CACHE_MAP_LOOKUP_IN_BYTECODE || !MICROPY_PY_BUILTINS_STR_UNICODE",
        '#error "frozen bytecode generated for unicode strings without bytecode map caching"',
        "#endif",
        "",
    ]
    if ctx.new_qstrs:
        head.append("enum {")
        for k, s in enumerate(ctx.new_qstrs):
            head.append("    FQ_%d = MP_QSTRnumber_of + %d," % (k, k))
        head.append("};")
        head.append("")
    # alloc as in py/qstr.c's own const pool: small, so the first pool grown in RAM
    # at run time holds 2 * alloc entries, not twice the size of this one
    alloc = min(10, len(ctx.new_qstrs))
    pool = ["", "extern const qstr_pool_t mp_qstr_const_pool;",
            "const qstr_pool_t mp_qstr_frozen_const_pool = {",
            "    (qstr_pool_t*)&mp_qstr_const_pool, MP_QSTRnumber_of, %d, %d, {"
            % (alloc, len(ctx.new_qstrs))]
    for s in ctx.new_qstrs:
        data = s.encode("utf-8")
        if len(data) > 255:
            raise SystemExit("qstr too long: %r" % s)
        pool.append('        (const byte*)"\\x%02x\\x%02x" %s,' % (qstr_hash(data), len(data), c_bytes(data)))
    pool.append("    },")
    pool.append("};")
    tail = ["",
            "const char mp_frozen_mpy_names[] = %s;"
            % "".join(c_bytes((n + "\0").encode()) for n, _ in tops),
            "const mp_raw_code_t *const mp_frozen_mpy_content[] = {"]
    tail += ["    &raw_code_%d," % i for _, i in tops]
    tail.append("};")
    with open(out_path, "w") as f:
        f.write("\n".join(head + ctx.out + pool + tail) + "\n")
    print("%s: %d modules, %d raw codes, %d new qstrs" % (out_path, len(tops), ctx.n, len(ctx.new_qstrs)))


if __name__ == "__main__":
    main(sys.argv)
