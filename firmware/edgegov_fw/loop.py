# The board loop for full-core MicroPython boards: the core from runtime/ runs as-is.
#
# One control period (cycle):
#   1. link: bytes -> frames (CRC-checked) -> governor events, each decided and recorded;
#   2. e-stop input pin: a change is an external fault (code ESTOP_FAULT) so it trips at
#      once and a reset needs it released;
#   3. TICK at now_ms (link stages, ramps);
#   4. effects: outputs, e-stop output (fail-safe polarity in the HAL), lineage sync;
#   5. watchdog kick, only after a complete, healthy cycle and when the decision allows.
# With an envelope store (envstore.EnvelopeStore on the board's flash), V/W/U frames push
# a signed envelope (envpush); applied, the governor restarts on it like a boot.
# The HAL (hal_machine.MachineHal on boards; a fake in tests) is the only board-specific
# part. An idle period (no bytes) allocates nothing under MicroPython.
from edgegov.core.codes import EV_COMMAND, RESET_ENVELOPE
from edgegov.core.events import TICK, Command, Fault, Operator, Session
from edgegov.core.lineage import attestation_mac

from .clock import Clock
from .link import FrameReader, frame, parse_ints

ESTOP_FAULT = 1  # fault code the e-stop input pin is reported as
WALL_STEP_MS = 1000  # host wall time this far from the last reading's is a step: TIME record
FW_VERSION = "edgegov-fw 0.1"


class BoardLoop:
    def __init__(self, hal, env, lineage, key=b"", blob=None, store=None):
        self.hal = hal
        from edgegov.core.governor import Governor

        self.gov = Governor(env, key)
        self.key = key
        self.lineage = lineage
        self.blob = blob
        self.clock = Clock(hal.ticks_ms, hal.ticks_diff)
        self.reader = FrameReader()
        self.rx = bytearray(64)
        self._use(env)
        self.push = None
        if store is not None:
            from .envpush import EnvelopePush

            self.push = EnvelopePush(store, key)
        self.boot_count = 0
        self.fault_on = Fault(ESTOP_FAULT, True)
        self.fault_off = Fault(ESTOP_FAULT, False)
        self.pressed = False
        self.unsynced = False
        self.running = True
        self.errors = 0

    def _use(self, env):
        self.env = env
        self.ints = [0] * (env.n + 1)
        values = {}
        for name in env.ch_names:
            values[name] = 0
        self.cmd = Command(0, values)

    def boot(self, boot_count=0, reset_reason=None):
        now = self.clock.now_ms()
        self.hal.set_estop(True)
        self.boot_count = boot_count
        if reset_reason is None:
            reset_reason = self.hal.reset_cause()
        d = self.lineage.boot(self.gov, now, boot_count, reset_reason, FW_VERSION,
                              envelope_blob=self.blob)
        self.lineage.sync()
        self.hal.write_outputs(d.output)
        self.hal.set_estop(d.estop)
        return d

    # ------------------------------------------------------------------ one period
    def cycle(self):
        hal = self.hal
        for _ in range(8):  # up to 512 bytes a period; the rest waits in the UART buffer
            n = hal.read(self.rx)
            if not n:
                break
            self.reader.feed(self.rx, n, self._on_frame)
        now = self.clock.now_ms()
        self._estop_input(now)
        d = self.gov.handle(TICK, now)
        self._effects(TICK, d, now)
        if self.unsynced:
            self.lineage.sync()
            self.unsynced = False
        if d.kick:
            hal.kick()

    def _effects(self, event, d, now):
        if d.record:
            self.lineage.record(event, now, d, self.gov)
            self.unsynced = True
        if d.changed:
            self.hal.write_outputs(d.output)
        self.hal.set_estop(d.estop)

    def _decide(self, event):
        now = self.clock.now_ms()
        d = self.gov.handle(event, now)
        self._effects(event, d, now)
        return d

    def _estop_input(self, now):
        p = self.hal.estop_pressed()
        if p is None or p == self.pressed:
            return
        self.pressed = p
        ev = self.fault_on if p else self.fault_off
        d = self.gov.handle(ev, now)
        self._effects(ev, d, now)

    # ------------------------------------------------------------------ the link
    def _on_frame(self, mv, k):
        op = mv[0]
        try:
            if op == 67:  # C seq v1 .. vn
                self._command(mv, k)
            elif op == 65:  # A action arg counter mac
                self._operator(mv, k)
            elif op == 78:  # N session
                self._session(mv, k)
            elif op == 83:  # S
                self._status()
            elif op == 76:  # L [offset]
                self._lineage(mv, k)
            elif op == 80:  # P counter: seal the lineage, attest its head
                self._seal(mv, k)
            elif op == 84:  # T wall_ms: the host's wall clock (recorded, never decided on)
                self._time(mv, k)
            elif op == 86 or op == 87 or op == 85:  # V size / W offset hex / U apply
                self._envelope(op, mv, k)
            elif op == 81:  # Q
                self.hal.set_estop(True)
                self.running = False
                self.hal.write(frame("Q"))
            else:
                self.hal.write(frame("E 4"))
        except Exception:  # a malformed request never stops the loop
            self.errors += 1
            self.hal.write(frame("E 1"))

    def _command(self, mv, k):
        ints = self.ints
        if parse_ints(mv, 1, k, ints) != len(ints):
            self.hal.write(frame("E 2"))
            return
        cmd = self.cmd
        cmd.seq = ints[0]
        names = self.env.ch_names
        for i in range(len(names)):
            cmd.values[names[i]] = ints[i + 1]
        d = self._decide(cmd)
        self._reply("D %d" % ints[0], d)

    def _session(self, mv, k):
        args = [0]
        if parse_ints(mv, 1, k, args) != 1 or not 0 <= args[0] < 1 << 30:
            self.hal.write(frame("E 2"))
            return
        d = self._decide(Session(args[0]))
        self._reply("N %d" % args[0], d)

    def _operator(self, mv, k):
        text = bytes(mv[1:k]).decode().split()
        if len(text) != 4:
            self.hal.write(frame("E 3"))
            return
        action, arg, counter = int(text[0]), int(text[1]), int(text[2])
        d = self._decide(Operator(action, arg, counter, bytes.fromhex(text[3])))
        self._reply("K %d" % action, d)

    def _reply(self, head, d):
        outs = " ".join([str(v) for v in d.output])
        self.hal.write(frame("%s %d %d %d %s %d" % (head, d.verdict, d.reason, d.state, outs,
                                                     1 if d.estop else 0)))

    def _status(self):
        g = self.gov
        ring = self.lineage.ring
        self.hal.write(frame("S %d %d %d %d %d %d %d %d %d %s" % (
            g.state, g.link, 1 if g._estop_out else 0, g.causes, self.clock.now, self.reader.bad,
            self.lineage.lost, ring.next_seq, self.hal.mem_free(),
            " ".join([str(v) for v in g.out]))))

    def _lineage(self, mv, k):
        ring = self.lineage.ring
        size = ring._bsize * ring._bcount
        args = [0]
        if parse_ints(mv, 1, k, args) != 1:
            self.hal.write(frame("L %d %d %d" % (size, ring._bsize, ring._bcount)))
            return
        off = args[0]
        end = min(off + 40, size)
        chunk = bytearray(end - off)
        b = off // ring._bsize
        if end > (b + 1) * ring._bsize:
            chunk = bytearray((b + 1) * ring._bsize - off)
        ring._bd.read(b, off - b * ring._bsize, chunk)
        self.hal.write(frame("H %d %s" % (off, "".join(["%02x" % x for x in chunk]))))

    def _seal(self, mv, k):
        text = bytes(mv[1:k]).decode().split()
        counter = int(text[0]) if len(text) == 1 and text[0].isdigit() else -1
        if not 0 <= counter < (1 << 64):
            self.hal.write(frame("E 2"))
            return
        seq, head = self.lineage.seal(self.gov, self.clock.now_ms())
        self.lineage.sync()
        if seq < 0:
            self.hal.write(frame("E 5"))
            return
        dev = self.env.device_id
        key = self.lineage.key
        mac = attestation_mac(key, dev, seq, head, counter) if key else b""
        self.hal.write(frame("P %d %s %d %s %s" % (seq, _hex(head), counter,
                                                   _hex(mac) or "-", dev)))

    def _time(self, mv, k):
        text = bytes(mv[1:k]).decode().split()
        if len(text) != 1 or not text[0].isdigit():
            self.hal.write(frame("E 2"))
            return
        wall = int(text[0])
        now = self.clock.now_ms()
        known = self.lineage.wall_at(now)
        step = known is None or abs(wall - known) > WALL_STEP_MS
        if step:
            self.lineage.time_step(now, wall)
            self.unsynced = True
        else:
            self.lineage.set_wall(now, wall)
        self.hal.write(frame("T %d" % (1 if step else 0)))

    def _envelope(self, op, mv, k):
        if self.push is None:
            self.hal.write(frame("E 6"))  # no envelope store: pushes refused
            return
        text = bytes(mv[1:k]).decode().split()
        if op == 86 and len(text) == 1:
            self.hal.write(frame("V %d" % self.push.begin(int(text[0]))))
        elif op == 87 and len(text) == 2:
            have = self.push.chunk(int(text[0]), bytes.fromhex(text[1]))
            self.hal.write(frame("W %d" % have))
        elif op == 85 and len(text) == 3:
            self._apply_envelope(int(text[0]), int(text[1]), bytes.fromhex(text[2]))
        else:
            self.hal.write(frame("E 2"))

    def _apply_envelope(self, action, counter, mac):
        old = self.env.digest
        if action not in (1, 2) or not 0 <= counter < (1 << 64):
            self.hal.write(frame("E 2"))
            return
        result, digest, env, blob = self.push.apply(self.gov, action, counter, mac)
        if env is not None:
            self.restart(env, blob)
        self.hal.write(frame("U %d %d %s %s" % (result, counter, _hex(old),
                                                _hex(digest) or "-")))

    def restart(self, env, blob):
        """Start the governor again on ``env`` (applied from the flash): a CHECKPOINT with
        the old envelope's digest, then BOOT (reset reason RESET_ENVELOPE) and ENVELOPE
        with the new one; TRIPPED, outputs safe, as after any boot."""
        from edgegov.core.governor import Governor

        now = self.clock.now_ms()
        self.lineage.checkpoint(self.gov, now)
        self.gov = Governor(env, self.key, self.gov.op_counter)
        self.blob = blob
        self._use(env)
        self.lineage.use(env)
        self.boot(self.boot_count + 1, RESET_ENVELOPE)

    def run(self):
        """Pace cycles at the HAL's period until a Q frame stops the loop."""
        hal = self.hal
        nxt = hal.ticks_ms()
        while self.running:
            try:
                self.cycle()
            except Exception:  # fail closed: the e-stop goes out, the kick is withheld
                self.errors += 1
                hal.set_estop(True)
                continue
            nxt = hal.ticks_add(nxt, hal.period_ms)
            wait = hal.ticks_diff(nxt, hal.ticks_ms())
            if wait > 0:
                hal.sleep_ms(wait)
            else:
                nxt = hal.ticks_ms()


def _hex(data):
    return "".join(["%02x" % b for b in data])


__all__ = ["BoardLoop", "ESTOP_FAULT", "FW_VERSION", "EV_COMMAND"]
