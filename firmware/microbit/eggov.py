# edgegov minimal governor for 16 KB boards (micro:bit v1, MicroPython 1.9.2).
#
# Runs the compiled-envelope subset (range, rate, safe value, stop category, hold, link
# heartbeat -> hold -> trip, e-stop latch, arm/reset/estop, external faults) and writes
# its lineage into a RAM ring in the *same* record and frame format as the full core
# (docs/lineage-format.md), so a pulled dump replays bit-exactly through
# edgegov.core.replay on a gateway: the two implementations check each other.
#
# Every rule below mirrors runtime/edgegov/core/governor.py for that subset, line for
# line where it matters (worst-verdict merge, margins, rate carry, dt cap, link stages,
# ramps, e-stop output); tests/test_firmware_microbit.py replays random runs through the
# full core. Written for MicroPython 1.9.2: no f-strings, no memoryview, no bytearray
# slice assignment, no hashlib/binascii (CRC32 on 16-bit halves: small ints only).
#
# Operator actions carry no MAC here (no hashlib): they are recorded with mac = null and
# authentic = true ("accepted as local, unauthenticated"), which a keyless replay follows.

# CRC-32/ISO-HDLC nibble tables, split into 16-bit halves.
_TH = (0, 0x1DB7, 0x3B6E, 0x26D9, 0x76DC, 0x6B6B, 0x4DB2, 0x5005,
       0xEDB8, 0xF00F, 0xD6D6, 0xCB61, 0x9B64, 0x86D3, 0xA00A, 0xBDBD)
_TL = (0, 0x1064, 0x20C8, 0x30AC, 0x4190, 0x51F4, 0x6158, 0x713C,
       0x8320, 0x9344, 0xA3E8, 0xB38C, 0xC2B0, 0xD2D4, 0xE278, 0xF21C)
_FAR = 1 << 30


def crc(m, a, b, h, l):
    # zlib.crc32(m[a:b], (h << 16) | l) as (hi, lo) halves
    h ^= 0xFFFF
    l ^= 0xFFFF
    for i in range(a, b):
        l ^= m[i]
        k = l & 15
        l = ((l >> 4) | ((h & 15) << 12)) ^ _TL[k]
        h = (h >> 4) ^ _TH[k]
        k = l & 15
        l = ((l >> 4) | ((h & 15) << 12)) ^ _TL[k]
        h = (h >> 4) ^ _TH[k]
    return h ^ 0xFFFF, l ^ 0xFFFF


def w32(m, p, v):
    for i in range(4):
        m[p + i] = (v >> (8 * i)) & 255


class Ring:
    # The core's RingLog sector/frame format in RAM (docs/lineage-format.md).
    def __init__(s, bs, nb):
        s.bs = bs
        s.nb = nb
        s.m = bytearray(bs * nb)
        for i in range(bs * nb):
            s.m[i] = 255
        s.blk = -1
        s.off = bs
        s.seq = 0
        s.es = 0
        s.sh = 0
        s.sl = 0

    def _start(s):
        b = (s.blk + 1) % s.nb
        m = s.m
        p = b * s.bs
        for i in range(p, p + s.bs):
            m[i] = 255
        for i in range(4):
            m[p + i] = b"EGRL"[i]
        m[p + 4] = 1
        m[p + 5] = 28
        m[p + 6] = 0
        m[p + 7] = 0
        w32(m, p + 8, s.es)
        w32(m, p + 12, s.seq)
        w32(m, p + 16, s.bs)
        s.sh, s.sl = crc(m, p, p + 20, 0, 0)
        w32(m, p + 20, (s.sh << 16) | s.sl)
        s.blk = b
        s.off = 28
        s.es += 1

    def put(s, src, n):
        if s.off + n + 10 > s.bs:
            s._start()
        m = s.m
        p = s.blk * s.bs + s.off
        m[p] = n & 255
        m[p + 1] = n >> 8
        w32(m, p + 2, s.seq)
        for i in range(n):
            m[p + 6 + i] = src[i]
        h, l = crc(m, p, p + 6 + n, s.sh, s.sl)
        p += 6 + n
        m[p] = l & 255
        m[p + 1] = l >> 8
        m[p + 2] = h & 255
        m[p + 3] = h >> 8
        s.off += n + 10
        s.seq += 1


class Gov:
    def __init__(s, c, ring):
        n = c.N
        s.c = c
        s.n = n
        s.ring = ring
        s.st = 0  # TRIPPED
        s.causes = 1  # C_BOOT
        s.faults = 0
        s.last_seq = -1
        s.opc = 0
        s.now = 0
        s.out = list(c.SAFE)
        s.carry = [0] * n
        s.ref = [0] * n
        s.cand = [0] * n
        s.ccar = [0] * n
        s.prop = [None] * n
        s.cap = [max(1000, 1000 // r + 1) for r in c.RATE]
        s.link = 0  # DOWN
        s.lv = -1  # last valid command (ms)
        s.alive = -1
        s.stale = -1
        s.eo = True  # e-stop output asserted
        s.ev = []  # events of this call: code, arg, code, arg, ...
        # record encoder state (edgegov.core.record.Encoder)
        s.b = bytearray(160)
        s.p = 0
        s.t = 0
        s.sref = 0
        s.pout = list(c.SAFE)
        s.lost = 0

    # ---------------------------------------------------------------- decisions
    def _clear(s, now):
        s.v = 0
        s.ru = -1
        s.re = 0
        s.ma = 0
        s.ch = -1
        s.ev = []
        s.mov = False
        s.cmd = False
        s.kick = True
        for i in range(s.n):
            s.prop[i] = None
        if now < s.now:
            raise ValueError
        s.now = now

    def _sv(s, v, ru, re, ma, ch):
        # Decision.set_verdict: worst wins; among ALLOWs the smallest margin
        if v < s.v:
            return
        if v == s.v and not ((s.ru < 0 and ru >= 0) or (v == 0 and (
                s.ch < 0 or ma < s.ma or (ma == s.ma and 0 <= ch < s.ch)))):
            return
        s.v = v
        s.ru = ru
        s.re = re
        s.ma = ma
        s.ch = ch

    def _e(s, code, arg):
        s.ev.append(code)
        s.ev.append(arg)

    def _run(s, f, a, b, now, tick):
        try:
            s._clear(now)
            s.dirty = not tick
            s._link_time(now)
            f(a, b, now)
            s._ramp(now)
            if tick:
                s._regime()
            s._finish()
        except Exception:
            s._fault_internal()
        return s.dirty

    def start(s, now):
        s._clear(now)
        s._e(1, s.causes)  # E_BOOT

    def tick(s, now):
        return s._run(s._nop, 0, 0, now, True)

    def command(s, seq, vals, now):
        r = s._run(s._command, seq, vals, now, False)
        s.cmd = True
        return r

    def operator(s, action, arg, counter, now):
        s.oa = arg
        return s._run(s._operator, action, counter, now, False)

    def fault(s, code, active, now):
        return s._run(s._fault, code, active, now, False)

    def _nop(s, a, b, now):
        pass

    def _fault_internal(s):
        c = s.c
        s.st = 0
        s.causes |= 128
        for i in range(s.n):
            s.out[i] = c.SAFE[i]
            s.carry[i] = 0
        s.eo = True
        s.kick = False
        s.v = 5
        s.ru = c.R_FAULT
        s.re = 21
        s.ch = -1
        s.dirty = True
        s._e(18, -1)

    # ---------------------------------------------------------------- link
    def _link_time(s, now):
        c = s.c
        if s.link == 1 and now - s.lv > c.HOLD_MS:
            s.link = 2
            s.stale = s.lv
            s.dirty = True
            s._e(16, now - s.lv)
        if s.st == 2 and s.link != 1 and s.stale >= 0 and now - s.stale >= c.TRIP_MS:
            s.link = 3
            s._e(17, now - s.stale)
            s._trip(8, c.R_LTRIP, 10, 0)

    def _link_alive(s, now):
        c = s.c
        if s.lv < 0 or now - s.lv > c.HOLD_MS:
            s.alive = now
        s.lv = now
        if s.link != 1 and now - s.alive >= c.ENGAGE_MS:
            s.link = 1
            s.stale = -1
            s._e(15, now - s.alive)

    # ---------------------------------------------------------------- commands
    def _refuse(s, re, ch):
        s.v = 0
        s.ru = -1
        s._sv(2, s.c.R_COMMAND, re, 0, ch)

    def _command(s, seq, vals, now):
        c = s.c
        if not 0 <= seq < 1 << 53:
            return s._refuse(30, -1)
        if seq <= s.last_seq:
            return s._refuse(15, -1)
        if s.st == 2 and s.link == 1:
            if s._govern(vals, now):
                s.last_seq = seq
                s.lv = now
            return
        for i in range(s.n):
            v = vals[i]
            if not -_FAR < v < _FAR:
                return s._refuse(30, i)
            s.prop[i] = v
        s.last_seq = seq
        s._link_alive(now)
        if s.st == 0:
            s._sv(5, c.R_STATE, 7, 0, -1)
        elif s.st == 1:
            s._sv(4, c.R_STATE, 6, 0, -1)
        elif s.link != 1:
            s._sv(4, c.R_LHOLD, 9 if s.link == 2 else 8, 0, -1)
        else:
            s._govern(vals, now)

    def _govern(s, vals, now):
        c = s.c
        bi = -1
        bm = 0
        br = -1
        for i in range(s.n):
            p = vals[i]
            s.prop[i] = p
            lo = c.LO[i]
            hi = c.HI[i]
            if lo <= p <= hi:
                dt = now - s.ref[i]
                if dt > s.cap[i]:
                    dt = s.cap[i]
                al = (c.RATE[i] * dt + s.carry[i]) // 1000
                if -al <= p - s.out[i] <= al:
                    s.cand[i] = p
                    s.ccar[i] = 0
                    m = hi - p
                    r = c.RMAX[i]
                    if p - lo < m:
                        m = p - lo
                        r = c.RMIN[i]
                    if bi < 0 or m < bm:
                        bm = m
                        bi = i
                        br = r
                    continue
            if not -_FAR < p < _FAR:
                for j in range(i, s.n):
                    s.prop[j] = None
                s._refuse(30, i)
                return False
            s._evaluate(i, p, now)
        if bi >= 0:
            s._sv(0, br, 0, bm, bi)
        v = s.v
        if v <= 1:
            for i in range(s.n):
                if s.cand[i] != s.out[i]:
                    s.out[i] = s.cand[i]
                    s.mov = True
                s.carry[i] = s.ccar[i]
                s.ref[i] = now
        elif v == 5:
            s._trip(16, s.ru, s.re, s.ma)
        return True

    def _evaluate(s, i, p, now):
        c = s.c
        lo = c.LO[i]
        hi = c.HI[i]
        v = 0
        ma = hi - p
        ru = c.RMAX[i]
        if p - lo < ma:
            ma = p - lo
            ru = c.RMIN[i]
        re = 0
        tg = p
        if p > hi or p < lo:
            above = p > hi
            ru = c.RMAX[i] if above else c.RMIN[i]
            re = 1 if above else 2
            v = c.BREACH[i]
            tg = hi if above else lo
        if v <= 1:
            if s._rate(i, tg, now):
                a = c.ONRATE[i]
                if a > v or v == 0:
                    v = a
                    ru = c.RRATE[i]
                    re = 3
                    g = tg - s.cand[i]
                    ma = -g if g > 0 else g
        else:
            s.cand[i] = s.out[i]
        s._sv(v, ru, re, ma, i)

    def _rate(s, i, tg, now):
        cur = s.out[i]
        want = tg - cur
        dt = now - s.ref[i]
        if dt > s.cap[i]:
            dt = s.cap[i]
        bud = s.c.RATE[i] * dt + s.carry[i]
        al = bud // 1000
        if (want if want >= 0 else -want) <= al:
            s.cand[i] = tg
            s.ccar[i] = 0
            return False
        s.cand[i] = cur + al if want > 0 else cur - al
        s.ccar[i] = bud - al * 1000
        return True

    # ---------------------------------------------------------------- operator, faults
    def _operator(s, a, ctr, now):
        c = s.c
        s.oc = ctr
        if ctr <= s.opc:
            s._e(20, ctr)
            return s._sv(2, c.R_OPERATOR, 17, 0, -1)
        s.opc = ctr
        st = s.st
        if a == 3:  # OP_ESTOP
            s._e(2, 19)
            return s._trip(4, c.R_OPERATOR, 19, 0)
        ref = 4 if st == 0 else 6
        if not ((st == 0 and a == 2) or (st == 1 and a == 1)):
            s._e(ref, 28)
            return s._sv(2, c.R_STATE, 28, 0, -1)
        if a == 2:
            if not s._gone():
                s._e(4, s.causes)
                return s._sv(2, c.R_STATE, 27, 0, -1)
            s.causes = 0
            s._e(3, 0)
            s.st = 1
            return
        if s.causes:
            s._e(6, s.causes)
            return s._sv(2, c.R_STATE, 27, 0, -1)
        s._e(5, 0)
        if s.link != 1:
            s.stale = now
        for i in range(s.n):
            s.ref[i] = now
            s.carry[i] = 0
        s.st = 2

    def _gone(s):
        c = s.c
        for i in range(s.n):
            if s.out[i] != c.SAFE[i]:
                return False
        if s.causes & 8 and (s.lv < 0 or s.now - s.lv > c.HOLD_MS):
            return False
        if s.causes & 64 and s.faults:
            return False
        return True

    def _fault(s, code, active, now):
        bit = 1 << code
        if active:
            s.faults |= bit
            s._e(18, code)
            s._trip(64, s.c.R_FAULT, 20, 0)
        elif s.faults & bit:
            s.faults &= ~bit
            s._e(19, code)

    def _trip(s, cause, ru, re, ma):
        c = s.c
        s._sv(5, ru, re, ma, s.ch)
        if s.causes & cause and s.st == 0:
            return
        s.causes |= cause
        s.dirty = True
        if s.st == 0:
            return
        s.st = 0
        s._e(2, re)
        for i in range(s.n):
            if c.STOP[i] == 0 and s.out[i] != c.SAFE[i]:
                s.out[i] = c.SAFE[i]
                s.carry[i] = 0
                s.mov = True

    # ---------------------------------------------------------------- ramps, effects
    def _ramp(s, now):
        c = s.c
        tr = s.st == 0
        hold = s.st == 1 or (s.st == 2 and s.link != 1)
        for i in range(s.n):
            cur = s.out[i]
            if tr or (hold and c.HOLD[i]):
                tg = c.SAFE[i]
            else:
                tg = c.LO[i] if cur < c.LO[i] else c.HI[i] if cur > c.HI[i] else cur
            if tg != cur:
                dt = now - s.ref[i]
                if dt > s.cap[i]:
                    dt = s.cap[i]
                bud = c.RATE[i] * dt + s.carry[i]
                al = bud // 1000
                if al <= 0:
                    continue
                want = tg - cur
                if (want if want >= 0 else -want) <= al:
                    s.out[i] = tg
                    s.carry[i] = 0
                else:
                    s.out[i] = cur + al if want > 0 else cur - al
                    s.carry[i] = bud - al * 1000
                s.ref[i] = now
                s.mov = True
                s.dirty = True

    def _regime(s):
        c = s.c
        if s.st == 0:
            re = 7
            if s.causes & 128:
                re = 21
            elif s.causes == 1:
                re = 34
            s._sv(5, c.R_STATE, re, 0, -1)
        elif s.st == 1:
            s._sv(4, c.R_STATE, 6, 0, -1)
        elif s.link != 1:
            s._sv(4, c.R_LHOLD, 9 if s.link == 2 else 8, 0, -1)

    def _finish(s):
        e = s.st == 0
        if e:
            for i in range(s.n):
                if s.out[i] != s.c.SAFE[i]:
                    e = False
                    break
        if e != s.eo:
            s.eo = e
            s.dirty = True
            s._e(21, 1 if e else 0)

    # ---------------------------------------------------------------- lineage records
    def _h(s, mt, v):
        b = s.b
        p = s.p
        if p > 150:
            s.ovf = True
            return
        mt <<= 5
        if v < 24:
            b[p] = mt | v
            s.p = p + 1
            return
        k = 1 if v < 256 else 2 if v < 65536 else 4 if v < 0x100000000 else 8
        b[p] = mt | (24 + (0, 0, 1, 0, 2, 0, 0, 0, 3)[k])
        for j in range(k):
            b[p + k - j] = (v >> (8 * j)) & 255
        s.p = p + k + 1

    def _i(s, v):
        if v >= 0:
            s._h(0, v)
        else:
            s._h(1, -1 - v)

    def _raw(s, data):
        for x in data:
            if s.p > 150:
                s.ovf = True
                return
            s.b[s.p] = x
            s.p += 1

    def _exp(s, i):
        p = s.prop[i]
        if s.cmd and s.v <= 1 and p is not None:
            return p
        return s.pout[i]

    def _outcome(s, base):
        ne = len(s.ev) // 2
        nd = 0
        for i in range(s.n):
            if s.out[i] != s._exp(i):
                nd += 1
        extra = 2 if ne else 1 if nd else 0
        s._h(4, base + extra)
        return extra, nd

    def _tail(s, extra, nd):
        s._i(s.v * 64 + s.re)
        s._i(s.ru)
        s._i(s.ma)
        if extra:
            s._h(4, nd)
            for i in range(s.n):
                if s.out[i] != s._exp(i):
                    s._h(4, 2)
                    s._i(i)
                    s._i(s.out[i])
        if extra == 2:
            s._h(4, len(s.ev) // 2)
            for k in range(0, len(s.ev), 2):
                s._h(4, 2)
                s._i(s.ev[k])
                s._i(s.ev[k + 1])
        for i in range(s.n):
            s.pout[i] = s.out[i]

    def rec_boot(s, now, boot_count, reset_reason, fw):
        c = s.c
        s.p = 0
        s.ovf = False
        s._h(4, 11)
        s._h(0, 1)
        s._i(now)
        s.t = now
        s._i(boot_count)
        s._i(reset_reason)
        s._h(3, len(fw))
        s._raw(fw)
        s._h(2, len(c.DIGEST))
        s._raw(c.DIGEST)
        s._h(3, len(c.DEVID))
        s._raw(c.DEVID)
        s._i(0)  # op counter
        s._h(4, s.n)
        for i in range(s.n):
            s._i(c.SAFE[i])
        s.b[s.p] = 0xF6
        s.p += 1
        s._i(1)  # format version
        s.sref = 0
        s._put()

    def rec_cmd(s, seq, vals, now):
        s.p = 0
        s.ovf = False
        extra, nd = s._outcome(7)
        s._h(0, 2)
        s._i(now - s.t)
        s.t = now
        s._i(seq - s.sref)
        s.sref = seq
        s._h(4, s.n)
        for i in range(s.n):
            s._i(vals[i])
        s._tail(extra, nd)
        s._put()

    def rec_event(s, kind, a, b, now):
        # kind 3 tick, 4 operator (a action, b counter, arg in s.oa), 5 fault (a code, b active)
        s.p = 0
        s.ovf = False
        extra, nd = s._outcome(6)
        s._h(0, 3)
        s._i(now - s.t)
        s.t = now
        if kind == 3:
            s._h(0, 3)
        elif kind == 4:
            s._h(4, 6)
            s._h(0, 4)
            s._i(a)
            s._i(s.oa)
            s._i(b)
            s.b[s.p] = 0xF6  # no MAC on this board
            s.b[s.p + 1] = 0xF5  # accepted as local, unauthenticated
            s.p += 2
        else:
            s._h(4, 3)
            s._h(0, 5)
            s._i(a)
            s.b[s.p] = 0xF5 if b else 0xF4
            s.p += 1
        s._tail(extra, nd)
        s._put()

    def _put(s):
        if s.ovf:
            s.lost += 1
        else:
            s.ring.put(s.b, s.p)
