# ruff: noqa: E741, UP031 -- MicroPython 1.9.2: %-formatting
# egmain: the micro:bit v1 board loop around egg (MicroPython 1.9.2). Every PER ms:
#   UART bytes -> frames -> governor events (each recorded) -> tick -> e-stop pin,
#   then toggle the external-watchdog kick pin (only after a complete, healthy cycle).
# Frames both ways: "@" body "#" crc32(body) as 8 hex digits "\n"; anything else is ignored,
# so garbage never reaches the governor (firmware/PROTOCOL.md). The e-stop pin is written
# before a record is encoded: the line never waits for the lineage.
import gc

import egg as G
import egr
import microbit
import utime
from egc import EF, PER, PI, PK, PO, RB, RN, N
from egr import M, crc

U = microbit.uart
FB = bytearray(96)
LN = -1
BAD = 0
RUN = 1
PR = 0
KP = 0
NOW = 0
LAST = 0


def pin(n):
    return getattr(microbit, 'pin%d' % n) if n >= 0 else None


EO = pin(PO)
EO.write_digital(0)  # e-stop asserted until the governor says otherwise
KIK = pin(PK)
EIN = pin(PI)


def send(t):
    b = bytes(t, 'utf-8')
    h, l = crc(b, 0, len(b), 0, 0)
    U.write('@%s#%04x%04x\n' % (t, h, l))


def clock():
    # wrap-safe ticks_ms -> monotonic now_ms
    global NOW, LAST
    t = utime.ticks_ms()
    NOW += utime.ticks_diff(t, LAST)
    LAST = t
    return NOW


def outs():
    return '%d %d %d %s %d' % (G.V, G.RE, G.ST, ' '.join([str(x) for x in G.OUT]), G.EO)


# The C stack allows only ~5 nested Python calls below main.py (1.9.2 micro:bit: a 1800 B
# limit, ~232 B per call): frame receipt, decoding and the request dispatch are inlined in
# main(), so main -> G.command -> gov -> ev -> sv is the deepest chain.
def main():
    global LAST, LN, BAD, RUN, PR, KP
    import machine
    import micropython
    micropython.kbd_intr(-1)  # a 0x03 in line noise must not stop the loop
    if EIN:
        EIN.set_pull(EIN.PULL_UP)
    rr = machine.mem32[0x40000400]  # nRF51 POWER.RESETREAS (write 1s to clear)
    machine.mem32[0x40000400] = rr
    G.start(0)
    G.rboot(0, 0, rr)
    LAST = utime.ticks_ms()
    gc.collect()
    send('B %d %d' % (gc.mem_free(), RB * RN))
    nxt = utime.ticks_ms()
    while RUN:
        try:
            # -- UART bytes -> frames -> requests
            # (uart.any() is a bool on 1.9.2 micro:bit; read(n) returns what is there, <= n)
            for b in (U.read(64) if U.any() else b''):
                if b == 64:  # '@' starts a frame (and abandons a partial one)
                    LN = 0
                elif LN >= 0:
                    if b == 10 or b == 13:
                        k = LN - 9
                        LN = -1
                        if k < 1 or FB[k] != 35:
                            BAD += 1
                            continue
                        try:
                            h, l = crc(FB, 0, k, 0, 0)
                            if int(bytes(FB[k + 1:k + 9]), 16) != h << 16 | l:
                                BAD += 1
                                continue
                            t = bytes(FB[0:k]).split()
                            op = t[0]
                            a = [int(x) for x in t[1:]]
                            now = clock()
                            if op == b'C':
                                if len(a) != N + 1 or a[0] < 0:
                                    send('E 2')
                                    continue
                                G.command(a[0], a[1:], now)
                                EO.write_digital(0 if G.EO else 1)
                                G.rcmd(a[0], a[1:], now)
                                send('D %d %s' % (a[0], outs()))
                            elif op == b'A':
                                if len(a) != 3 or a[0] not in (1, 2, 3) or a[2] < 0:
                                    send('E 3')
                                    continue
                                r = G.operator(a[0], a[1], a[2], now)
                                EO.write_digital(0 if G.EO else 1)
                                if r:
                                    G.revt(4, a[0], a[2], now)
                                send('K %d %s' % (a[0], outs()))
                            elif op == b'N':
                                if len(a) != 1 or not 0 <= a[0] < 1 << 30:
                                    send('E 2')
                                    continue
                                if G.session(a[0], now):
                                    G.revt(6, a[0], 0, now)
                                EO.write_digital(0 if G.EO else 1)
                                send('N %d %s' % (a[0], outs()))
                            elif op == b'S':
                                gc.collect()
                                send('S %d %d %d %d %d %d %d %d %d %s' % (
                                    G.ST, G.LNK, G.EO, G.CAU, now, BAD, G.LOST, egr.SEQ,
                                    gc.mem_free(), ' '.join([str(x) for x in G.OUT])))
                            elif op == b'L':
                                if not a:
                                    send('L %d %d %d' % (RB * RN, RB, RN))
                                    continue
                                o = a[0]
                                send('H %d %s' % (o, ''.join(['%02x' % M[i] for i in range(
                                    o, min(o + 40, RB * RN))])))
                            elif op == b'Q':
                                EO.write_digital(0)
                                send('Q')
                                RUN = 0
                            elif op in (b'V', b'W', b'U'):
                                send('E 6')  # no envelope push: no hashlib, no flash slots
                            else:
                                send('E 4')
                        except Exception:
                            BAD += 1
                            send('E 1')
                    elif LN < 96:
                        FB[LN] = b
                        LN += 1
                    else:
                        LN = -1
            # -- the period: e-stop input, tick, e-stop output, kick
            now = clock()
            if EIN:
                p = EIN.read_digital() == 0
                if p != PR:
                    PR = p
                    r = G.fault(EF, p, now)
                    EO.write_digital(0 if G.EO else 1)
                    if r:
                        G.revt(5, EF, p, now)
            r = G.tick(now)
            EO.write_digital(0 if G.EO else 1)
            if r:
                G.revt(3, 0, 0, now)
            if G.KICK and KIK:
                KP ^= 1
                KIK.write_digital(KP)
        except Exception:
            pass
        nxt = utime.ticks_add(nxt, PER)
        d = utime.ticks_diff(nxt, utime.ticks_ms())
        if d > 0:
            utime.sleep_ms(d)
        else:
            nxt = utime.ticks_ms()
    micropython.kbd_intr(3)
