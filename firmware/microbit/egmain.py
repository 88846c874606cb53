# edgegov board loop for the micro:bit v1 (MicroPython 1.9.2): the HAL and the serial link
# around eggov. One control period every PERIOD_MS:
#   read UART bytes -> frames -> governor events (each recorded) -> tick -> e-stop pin,
#   then toggle the external-watchdog kick pin (only after a complete, healthy cycle).
# Frames (both ways): "@" body "#" crc32(body) as 8 hex digits "\n"; anything else on the
# line is ignored (garbage never reaches the governor). See firmware/PROTOCOL.md.
import gc
import micropython
import microbit
import utime
import machine
import egcfg as C
from eggov import Ring, Gov, crc

PINS = {0: microbit.pin0, 1: microbit.pin1, 2: microbit.pin2, 8: microbit.pin8,
        12: microbit.pin12, 16: microbit.pin16}
uart = microbit.uart


def send(text):
    b = text.encode()
    h, l = crc(b, 0, len(b), 0, 0)
    uart.write('@%s#%04x%04x\n' % (text, h, l))


def state(g):
    return '%d %d %d %s' % (g.v, g.re, g.st, ' '.join([str(x) for x in g.out]))


class Loop:
    def __init__(s):
        s.ring = Ring(C.RING_BLOCK, C.RING_BLOCKS)
        s.g = Gov(C, s.ring)
        s.buf = bytearray(96)
        s.ln = -1
        s.bad = 0
        s.kick = 0
        s.run = True
        s.pressed = False
        s.out = PINS[C.PIN_ESTOP_OUT]
        s.out.write_digital(0)  # e-stop asserted until the governor says otherwise
        s.kp = PINS.get(C.PIN_KICK)
        s.ein = PINS.get(C.PIN_ESTOP_IN)
        if s.ein:
            s.ein.set_pull(s.ein.PULL_UP)
        s.last = utime.ticks_ms()
        s.now = 0

    def clock(s):
        # wrap-safe ticks_ms -> monotonic now_ms
        t = utime.ticks_ms()
        s.now += utime.ticks_diff(t, s.last)
        s.last = t
        return s.now

    def boot(s):
        cause = machine.mem32[0x40000400]  # nRF51 POWER.RESETREAS
        machine.mem32[0x40000400] = cause
        s.g.start(0)
        s.g.rec_boot(0, 0, cause, C.FW)

    def effects(s):
        s.out.write_digital(0 if s.g.eo else 1)

    def rx(s):
        n = uart.any()
        if not n:
            return
        data = uart.read(n)
        buf = s.buf
        for b in data:
            if b == 64:  # '@' starts a frame (and abandons a partial one)
                s.ln = 0
            elif s.ln >= 0:
                if b == 10 or b == 13:
                    s.frame(s.ln)
                    s.ln = -1
                elif s.ln < 96:
                    buf[s.ln] = b
                    s.ln += 1
                else:
                    s.ln = -1

    def frame(s, n):
        buf = s.buf
        k = n - 9
        if k < 1 or buf[k] != 35:  # '#'
            s.bad += 1
            return
        try:
            h, l = crc(buf, 0, k, 0, 0)
            if int(bytes(buf[k + 1:n]), 16) != (h << 16) | l:
                s.bad += 1
                return
            tok = bytes(buf[0:k]).split()
            s.do(tok[0], [int(t) for t in tok[1:]])
        except Exception:
            s.bad += 1
            send('E 1')

    def do(s, op, a):
        g = s.g
        now = s.clock()
        if op == b'C':
            if len(a) != g.n + 1 or a[0] < 0:
                return send('E 2')
            v = a[1:]
            g.command(a[0], v, now)
            g.rec_cmd(a[0], v, now)
            s.effects()
            send('D %d %s %d' % (a[0], state(g), g.eo))
        elif op == b'A':
            if len(a) != 3 or a[0] not in (1, 2, 3) or a[2] < 0:
                return send('E 3')
            if g.operator(a[0], a[1], a[2], now):
                g.rec_event(4, a[0], a[2], now)
            s.effects()
            send('K %d %s %d' % (a[0], state(g), g.eo))
        elif op == b'S':
            gc.collect()
            send('S %d %d %d %d %d %d %d %d %d %s' % (
                g.st, g.link, g.eo, g.causes, now, s.bad, g.lost, s.ring.seq,
                gc.mem_free(), ' '.join([str(x) for x in g.out])))
        elif op == b'L':
            r = s.ring
            if not a:
                return send('L %d %d %d' % (r.bs * r.nb, r.bs, r.nb))
            o = a[0]
            e = min(o + 40, r.bs * r.nb)
            send('H %d %s' % (o, ''.join(['%02x' % r.m[i] for i in range(o, e)])))
        elif op == b'Q':
            s.out.write_digital(0)
            send('Q')
            s.run = False
        else:
            send('E 4')

    def estop_input(s, now):
        if not s.ein:
            return
        p = s.ein.read_digital() == 0
        if p != s.pressed:
            s.pressed = p
            if s.g.fault(C.ESTOP_FAULT, p, now):
                s.g.rec_event(5, C.ESTOP_FAULT, p, now)

    def cycle(s):
        s.rx()
        now = s.clock()
        s.estop_input(now)
        g = s.g
        if g.tick(now):
            g.rec_event(3, 0, 0, now)
        s.effects()
        if g.kick and s.kp:
            s.kick ^= 1
            s.kp.write_digital(s.kick)


def main():
    micropython.kbd_intr(-1)  # a 0x03 in line noise must not stop the loop
    gc.collect()
    lp = Loop()
    lp.boot()
    gc.collect()
    send('B %d %d' % (gc.mem_free(), lp.ring.bs * lp.ring.nb))
    nxt = utime.ticks_ms()
    while lp.run:
        try:
            lp.cycle()
        except Exception:
            lp.bad += 1
        nxt = utime.ticks_add(nxt, C.PERIOD_MS)
        d = utime.ticks_diff(nxt, utime.ticks_ms())
        if d > 0:
            utime.sleep_ms(d)
        else:
            nxt = utime.ticks_ms()
    micropython.kbd_intr(3)
