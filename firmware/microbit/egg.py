# ruff: noqa: F403, F405, E741, UP031 -- MicroPython 1.9.2: %-formatting, star config import
# egg: the minimal governor (micro:bit v1, MicroPython 1.9.2) for the compiled-envelope
# subset: range, rate, safe value, stop category, hold, link heartbeat -> hold -> trip,
# e-stop latch, arm/reset/estop, external faults. Every rule mirrors
# runtime/edgegov/core/governor.py for that subset (worst-verdict merge, margins, rate
# carry, 20 ms sample cap, link stages, ramps, e-stop output) and its lineage records are the core's
# (edgegov.core.record), so a pulled ring replays bit-exactly through edgegov.core.replay:
# tests/test_firmware_microbit.py checks that on random runs.
# Written for a ~9 KB heap and a ~5-call C stack: module-level state and functions (no
# classes), few helpers, at most 4 nested calls below an event entry.
# Operator actions carry no MAC (no hashlib): recorded as mac null, authentic true.
from egc import *
from egr import put as rput

F = 1 << 30
ST = 0  # 0 TRIPPED, 1 SAFE (reset), 2 ARMED
CAU = 1  # trip causes; 1 = boot
FLT = 0
LSEQ = -1
SES = None  # the planner session in force
OPC = 0
NOW = 0
SL = list(SAFE)
OUT = list(SAFE)
POUT = list(SAFE)
CAR = [0] * N
CAND = [0] * N
CCAR = [0] * N
PROP = [None] * N
LNK = 0  # 0 down, 1 up, 2 hold, 3 lost
LV = -1
ALV = -1
STL = -1
EO = True  # e-stop output asserted
EV = []
B = bytearray(160)
P = T = SREF = LOST = OA = 0
SMP = 0  # time of the last recorded decision: rate budgets count from it, at most 20 ms
APL = 0  # this decision applied a command (every channel set: no ramp step on top)
V = RU = RE = MA = CH = XT = ND = 0
CMD = OVF = DIRTY = 0
KICK = 1


def clr(now):
    global V, RU, RE, MA, CH, EV, CMD, KICK, NOW, APL
    V = RE = MA = CMD = APL = 0
    RU = CH = -1
    EV = []
    KICK = 0 if CAU & 128 else 1  # no kick while an internal fault is latched
    for i in range(N):
        PROP[i] = None
    if now < NOW:
        raise ValueError
    NOW = now


def sv(v, ru, re, ma, ch):
    # Decision.set_verdict: worst wins; among ALLOWs the smallest margin
    global V, RU, RE, MA, CH
    if v < V or v == V and not (RU < 0 <= ru or v == 0 and (
            CH < 0 or ma < MA or ma == MA and 0 <= ch < CH)):
        return
    V, RU, RE, MA, CH = v, ru, re, ma, ch


def e(c, a):
    EV.append(c)
    EV.append(a)


# The board's C stack allows ~5 nested Python calls below main.py (1800 B, ~232 B per call
# on 1.9.2): each event entry runs the prologue and epilogue itself (no generic runner), so
# egmain.main -> command -> gov -> ev -> sv is the deepest chain.
def start(now):
    global SMP
    clr(now)
    SMP = now
    e(1, CAU)


def post(tick):
    # the epilogue of every event: ramps, the tick's own verdict, the e-stop output
    ramp(NOW)
    if tick:
        regime(21 if CAU & 128 else 34 if CAU == 1 else 7)
    fin()


def tick(now):
    # SMP: a recorded tick or command, or a decision that moved an output, is a sample
    global DIRTY, SMP
    try:
        clr(now)
        DIRTY = 0
        ltime(now)
        post(1)
    except Exception:
        fint()
    if DIRTY:
        SMP = now
    return DIRTY


def command(seq, vals, now):
    # a proposal: sequence, link heartbeat (engage), then the governed values
    global CMD, DIRTY, LSEQ, LV, ALV, LNK, STL, SMP
    try:
        clr(now)
        DIRTY = 1
        ltime(now)
        if not 0 <= seq < 1 << 53:
            refuse(30, -1)
        elif seq <= LSEQ:
            refuse(15, -1)
        elif ST == 2 and LNK == 1:
            if gov(vals, now):
                LSEQ = seq
                LV = now
        else:
            for i in range(N):
                v = vals[i]
                if not -F < v < F:
                    refuse(30, i)
                    break
                PROP[i] = v
            else:
                LSEQ = seq
                if LV < 0 or now - LV > HMS:
                    ALV = now
                LV = now
                if LNK != 1 and now - ALV >= EMS:
                    LNK = 1
                    STL = -1
                    e(15, now - ALV)
                if regime(7):
                    gov(vals, now)
        post(0)
    except Exception:
        fint()
    CMD = 1
    SMP = now
    return DIRTY


def operator(a, arg, ctr, now):
    global OA
    OA = arg
    return step(op, a, ctr, now)


def fault(code, act, now):
    return step(flt, code, act, now)


def session(s, now):
    return step(ses, s, 0, now)


def step(f, a, b, now):
    # An operator action or a fault: decided by f(a, b, now); a failure latches (fint).
    global DIRTY, SMP
    try:
        clr(now)
        DIRTY = 1
        ltime(now)
        f(a, b, now)
        post(0)
    except Exception:
        fint()
    if OUT != POUT:  # moved since the last record (unrecorded ticks never move)
        SMP = now
    return DIRTY


def fint():
    global ST, CAU, EO, KICK, V, RU, RE, CH, DIRTY, SMP
    ST = KICK = 0
    SMP = NOW
    CAU |= 128
    for i in range(N):
        OUT[i] = SAFE[i]
        CAR[i] = 0
    EO = DIRTY = 1
    V, RU, RE, CH = 5, RF, 21, -1
    e(18, -1)


def ltime(now):
    global LNK, STL, DIRTY
    if LNK == 1 and now - LV > HMS:
        LNK = 2
        STL = LV
        DIRTY = 1
        e(16, now - LV)
    if ST == 2 and LNK != 1 and STL >= 0 and now - STL >= TMS:
        LNK = 3
        e(17, now - STL)
        trip(8, RLT, 10, 0)


def regime(r):
    # the state's own verdict; true when commands may be governed
    if ST == 0:
        sv(5, RS, r, 0, -1)
    elif ST == 1:
        sv(4, RS, 6, 0, -1)
    elif LNK != 1:
        sv(4, RLH, 9 if LNK == 2 else 8, 0, -1)
    else:
        return 1


def refuse(re, ch):
    global V, RU
    V, RU = 0, -1
    sv(2, RC, re, 0, ch)


def gov(vals, now):
    global APL
    bi = br = -1
    bm = 0
    dt = min(now - SMP, 20)
    for i in range(N):
        p = PROP[i] = vals[i]
        lo = LO[i]
        hi = HI[i]
        if lo <= p <= hi:
            al = (RATE[i] * dt + CAR[i]) // 1000
            if -al <= p - OUT[i] <= al:
                CAND[i] = p
                CCAR[i] = 0
                m, r = hi - p, RMAX[i]
                if p - lo < m:
                    m, r = p - lo, RMIN[i]
                if bi < 0 or m < bm:
                    bm, bi, br = m, i, r
                continue
        if not -F < p < F:
            for j in range(i, N):
                PROP[j] = None
            refuse(30, i)
            return 0
        ev(i, p, dt)
    if bi >= 0:
        sv(0, br, 0, bm, bi)
    if V <= 1:
        APL = 1
        for i in range(N):
            OUT[i] = CAND[i]
            CAR[i] = CCAR[i]
    elif V == 5:
        trip(16, RU, RE, MA)
    return 1


def ev(i, p, dt):
    # one channel outside the fast path: breach and rate rules, worst first
    lo = LO[i]
    hi = HI[i]
    v = re = 0
    ma, ru, tg = hi - p, RMAX[i], p
    if p - lo < ma:
        ma, ru = p - lo, RMIN[i]
    if p > hi or p < lo:
        a = p > hi
        ru, re, v, tg = (RMAX[i], 1, BREACH[i], hi) if a else (RMIN[i], 2, BREACH[i], lo)
    if v <= 1:
        c = OUT[i]
        w = tg - c
        bud = RATE[i] * dt + CAR[i]
        al = bud // 1000
        if abs(w) <= al:
            CAND[i] = tg
            CCAR[i] = 0
        else:
            CAND[i] = c + al if w > 0 else c - al
            CCAR[i] = bud - al * 1000
            a = ONRATE[i]
            if a > v or v == 0:
                v, ru, re = a, RRATE[i], 3
                ma = -abs(tg - CAND[i])
    else:
        CAND[i] = OUT[i]
    sv(v, ru, re, ma, i)


def op(a, ctr, now):
    global OPC, CAU, ST, STL
    if ctr <= OPC:
        e(20, 17)  # auth_refused: replayed; then how far behind the last accepted counter
        e(28, OPC - ctr)
        return sv(2, RO, 17, 0, -1)
    OPC = ctr
    st = ST
    if a == 3:
        return trip(4, RO, 19, 0)
    # refusals: the event names the action (4 reset_refused, 6 arm_refused), its arg the
    # reason; the blocking causes follow (27 blocking_causes)
    if not (st == 0 and a == 2 or st == 1 and a == 1):
        e(4 if a == 2 else 6, 28)
        return sv(2, RS, 28, 0, -1)
    if a == 2:
        if OUT != SL:
            e(4, 37)  # the stop has not finished
            return sv(2, RS, 37, 0, -1)
        b = (8 if CAU & 8 and (LV < 0 or NOW - LV > HMS) else 0) | (64 if CAU & 64 and FLT else 0)
        if b:
            e(4, 27)
            e(27, b)
            return sv(2, RS, 27, 0, -1)
        CAU = 0
        e(3, 0)
        ST = 1
        return
    if CAU:
        e(6, 27)
        e(27, CAU)
        return sv(2, RS, 27, 0, -1)
    e(5, 0)
    if LNK != 1:
        STL = now
    for i in range(N):
        CAR[i] = 0
    ST = 2


def ses(s, b, now):
    # a planner session: a new one restarts the sequence and the link engages afresh
    global SES, LSEQ, LNK, STL, LV, ALV
    if s != SES:
        e(30, LSEQ)
        SES = s
        LSEQ = -1
        if LNK == 1:
            if ST == 2:
                STL = now
            LNK = 0
        LV = ALV = -1
    regime(21 if CAU & 128 else 34 if CAU == 1 else 7)


def flt(code, act, now):
    global FLT
    b = 1 << code
    if act:
        FLT |= b
        e(18, code)
        trip(64, RF, 20, 0)
    elif FLT & b:
        FLT &= ~b
        e(19, code)


def trip(cause, ru, re, ma):
    global CAU, DIRTY, ST
    sv(5, ru, re, ma, CH)
    if CAU & cause and ST == 0:
        return
    CAU |= cause
    DIRTY = 1
    if ST == 0:
        return
    ST = 0
    e(2, re)
    for i in range(N):
        if STOP[i] == 0 and OUT[i] != SAFE[i]:
            OUT[i] = SAFE[i]
            CAR[i] = 0


def ramp(now):
    # tripped: every channel to safe; held: the hold=ramp ones; else back inside the range
    global DIRTY
    if APL:
        return
    tr = ST == 0
    hd = ST == 1 or ST == 2 and LNK != 1
    dt = min(now - SMP, 20)
    for i in range(N):
        c = OUT[i]
        if tr or hd and HOLD[i]:
            tg = SAFE[i]
        else:
            tg = LO[i] if c < LO[i] else HI[i] if c > HI[i] else c
        if tg != c:
            bud = RATE[i] * dt + CAR[i]
            al = bud // 1000
            if al <= 0:
                if bud != CAR[i]:  # less than a step so far: carried (recorded)
                    CAR[i] = bud
                    DIRTY = 1
                continue
            w = tg - c
            if abs(w) <= al:
                OUT[i] = tg
                CAR[i] = 0
            else:
                OUT[i] = c + al if w > 0 else c - al
                CAR[i] = bud - al * 1000
            DIRTY = 1


def fin():
    global EO, DIRTY
    x = ST == 0 and OUT == SL
    if x != EO:
        EO = x
        DIRTY = 1
        e(21, 1 if x else 0)


# ---- lineage records (edgegov.core.record, compact CBOR)
def h(mt, v):
    global P, OVF
    if P > 150:
        OVF = 1
        return
    mt <<= 5
    if v < 24:
        B[P] = mt | v
        P += 1
        return
    k = 1 if v < 256 else 2 if v < 65536 else 4 if v < 4294967296 else 8
    B[P] = mt | 24 + (0, 0, 1, 0, 2, 0, 0, 0, 3)[k]
    for j in range(k):
        B[P + k - j] = (v >> 8 * j) & 255
    P += k + 1


def ci(v):
    if v >= 0:
        h(0, v)
    else:
        h(1, -1 - v)


def raw(d):
    for x in d:
        h(7, 0)
        B[P - 1] = x


def xp(i):
    p = PROP[i]
    return p if CMD and V <= 1 and p is not None else POUT[i]


def beg(base):
    # record header: the outcome array's length says what follows (extra, diffs, events)
    global P, OVF, XT, ND
    P = OVF = ND = 0
    for i in range(N):
        if OUT[i] != xp(i):
            ND += 1
    XT = 2 if EV else 1 if ND else 0
    h(4, base + XT)


def tail():
    global LOST
    ci(V * 64 + RE)
    ci(RU)
    ci(MA)
    if XT:
        h(4, ND)
        for i in range(N):
            if OUT[i] != xp(i):
                h(4, 2)
                ci(i)
                ci(OUT[i])
    if XT == 2:
        h(4, len(EV) // 2)
        for k in range(0, len(EV), 2):
            h(4, 2)
            ci(EV[k])
            ci(EV[k + 1])
    for i in range(N):
        POUT[i] = OUT[i]
    if OVF:
        LOST += 1
    return not OVF


def rcmd(seq, vals, now):
    global T, SREF
    beg(7)
    h(0, 2)
    ci(now - T)
    ci(seq - SREF)
    T, SREF = now, seq
    h(4, N)
    for v in vals:
        ci(v)
    if tail():
        rput(B, P)


def revt(kind, a, b, now):
    # kind 3 tick, 4 operator (a action, b counter, arg in OA), 5 fault (a code, b active),
    # 6 session (a)
    global T
    beg(6)
    h(0, 3)
    ci(now - T)
    T = now
    if kind == 3:
        h(0, 3)
    elif kind == 4:
        h(4, 6)
        h(0, 4)
        ci(a)
        ci(OA)
        ci(b)
        h(7, 22)  # null: no MAC on this board
        h(7, 21)  # true: accepted as local, unauthenticated
    elif kind == 6:
        h(4, 2)
        h(0, 6)
        ci(a)
    else:
        h(4, 3)
        h(0, 5)
        ci(a)
        h(7, 21 if b else 20)
    if tail():
        rput(B, P)


def rboot(now, bc, rr):
    global P, OVF, T, SREF
    P = OVF = SREF = 0
    T = now
    h(4, 11)
    h(0, 1)
    ci(now)
    ci(bc)
    ci(rr)
    h(3, len(FW))
    raw(FW)
    h(2, len(DIGEST))
    raw(DIGEST)
    h(3, len(DEVID))
    raw(DEVID)
    ci(0)
    h(4, N)
    for v in SAFE:
        ci(v)
    h(7, 22)
    ci(1)
    rput(B, P)
