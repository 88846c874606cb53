# The full-core board loop (firmware/edgegov_fw) under the MicroPython unix port, with a
# fake HAL: pins are variables, the link is a byte queue, time is advanced by hand (and
# starts just below the 2**30 ticks wrap of 32-bit ports).
import gc
import sys

HERE = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
sys.path.insert(0, HERE + "/../../firmware")

from edgegov.core import codes as C  # noqa: E402
from edgegov.core.auth import sign_op  # noqa: E402
from edgegov.core.blockdev import RamBlockDevice  # noqa: E402
from edgegov.core.envelope import Envelope  # noqa: E402
from edgegov.core.lineage import Lineage  # noqa: E402
from edgegov.core.replay import Replayer  # noqa: E402
from edgegov.core.ring import RingLog, scan_image  # noqa: E402
from edgegov_fw.link import frame  # noqa: E402
from edgegov_fw.loop import BoardLoop  # noqa: E402

KEY = b"fw-loop-test-key-0123456789abcde"
_WRAP = 1 << 30


class FakeHal:
    period_ms = 10

    def __init__(self):
        self.t = _WRAP - 25  # ticks wrap during the first periods
        self.rx = bytearray()
        self.pos = 0
        self.tx = []
        self.estop = None  # True: asserted
        self.kicks = 0
        self.pressed = False
        self.outputs = None

    def ticks_ms(self):
        return self.t % _WRAP

    def ticks_diff(self, a, b):
        return ((a - b + _WRAP // 2) % _WRAP) - _WRAP // 2

    def ticks_add(self, a, d):
        return (a + d) % _WRAP

    def sleep_ms(self, ms):
        self.t += ms

    def read(self, buf):
        k = 0
        n = len(self.rx)
        while k < len(buf) and self.pos < n:
            buf[k] = self.rx[self.pos]
            self.pos += 1
            k += 1
        return k

    def write(self, data):
        self.tx.append(bytes(data))

    def set_estop(self, asserted):
        self.estop = asserted

    def estop_pressed(self):
        return self.pressed

    def write_outputs(self, outputs):
        self.outputs = list(outputs)

    def kick(self):
        self.kicks += 1

    def reset_cause(self):
        return 3

    def mem_free(self):
        return gc.mem_free()

    def send(self, body):
        self.rx.extend(frame(body))

    def replies(self):
        out = []
        for data in self.tx:
            out.append(data[1 : data.index(b"#")].decode().split())
        self.tx = []
        return out


def _board():
    with open(HERE + "/data/microbit-v1.cbor", "rb") as f:
        blob = f.read()
    env = Envelope.from_blob(blob, b"\x01" * 32)
    ring = RingLog(RamBlockDevice(1024, 8))
    ring.format()
    hal = FakeHal()
    loop = BoardLoop(hal, env, Lineage(ring, env, KEY, checkpoint_every=64), KEY, blob)
    loop.boot()
    return hal, loop, env


def _op(hal, env, action, counter):
    mac = sign_op(KEY, env.device_id, action, 0, counter)
    hal.send("A %d 0 %d %s" % (action, counter, "".join(["%02x" % b for b in mac])))


def _run(hal, loop, ms):
    for _ in range(ms // hal.period_ms):
        loop.cycle()
        hal.t += hal.period_ms


def _armed():
    hal, loop, env = _board()
    _op(hal, env, C.OP_RESET, 1)
    _op(hal, env, C.OP_ARM, 2)
    _run(hal, loop, 10)
    seq = 0
    for _ in range(20):  # engage the link (engage_after_ms = 100)
        seq += 1
        hal.send("C %d 0 0 0 0" % seq)
        _run(hal, loop, 10)
    assert loop.gov.state == C.ST_ARMED and loop.gov.link == C.LINK_OK
    hal.replies()
    return hal, loop, env, seq


def test_boots_safe_with_a_boot_record():
    hal, loop, env = _board()
    assert hal.estop is True and loop.gov.state == C.ST_TRIPPED
    _run(hal, loop, 100)
    assert hal.estop is True and hal.kicks == 10
    recs = loop.lineage.ring.read_all()
    assert recs[0][1][1] == 1  # BOOT


def test_commands_are_governed_and_answered():
    hal, loop, env, seq = _armed()
    seq += 1
    hal.send("C %d 50 1 -2 2" % seq)  # gripper 50 at 200/s in 10 ms: clamped to 2
    _run(hal, loop, 10)
    r = hal.replies()[0]
    assert r[0] == "D" and int(r[2]) == C.CLAMP, r
    assert hal.estop is False
    seq += 1
    hal.send("C %d 0 0 0 600" % seq)  # y above max: on_breach trip
    _run(hal, loop, 10)
    r = hal.replies()[0]
    assert int(r[2]) == C.TRIP and hal.estop is True


def test_garbage_changes_nothing():
    hal, loop, env, seq = _armed()
    seq += 1
    hal.send("C %d 1 1 1 1" % seq)
    _run(hal, loop, 10)
    hal.replies()
    before = (list(loop.gov.out), loop.gov.state, hal.estop)
    x = 12345
    junk = bytearray()
    for _ in range(3000):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        junk.append((x >> 16) & 0xFF)
    junk.extend(b"@C 99 1 1 1 1#00000000\n@Z#zz\n@@@\n")
    step = len(junk) // 60 + 1
    for k in range(60):  # garbage in every period, between valid commands that hold still
        hal.rx.extend(junk[k * step : (k + 1) * step])
        seq += 1
        hal.send("C %d 1 1 1 1" % seq)
        loop.cycle()
        hal.t += 10
    replies = hal.replies()
    assert len(replies) == 60, replies[:3]
    assert all(r[0] == "D" and r[5:9] == ["1"] * 4 for r in replies), replies[:3]
    assert (list(loop.gov.out), loop.gov.state, hal.estop) == before
    assert loop.reader.bad > 0


def test_link_loss_holds_then_trips_within_two_periods():
    hal, loop, env, seq = _armed()
    last = loop.clock.now
    deadline = last + env.trip_after_ms
    tripped_at = None
    for _ in range(200):
        _run(hal, loop, 10)
        if hal.estop and tripped_at is None:
            tripped_at = loop.clock.now
    assert loop.gov.state == C.ST_TRIPPED and loop.gov.causes & C.C_LINK_LOST
    late = tripped_at - deadline
    print("link loss: e-stop asserted %d ms after the deadline (period 10 ms)" % late)
    assert late <= 2 * hal.period_ms


def test_lineage_pulled_over_the_link_replays_identically():
    hal, loop, env, seq = _armed()
    for k in range(30):
        seq += 1
        hal.send("C %d %d %d %d %d" % (seq, k % 7, k, -k, k % 3))
        _run(hal, loop, 20)
    _run(hal, loop, 1000)  # link lost: trip
    hal.replies()
    hal.send("L")
    _run(hal, loop, 10)
    size = int(hal.replies()[0][1])
    image = bytearray()
    while len(image) < size:
        hal.send("L %d" % len(image))
        _run(hal, loop, 10)
        r = hal.replies()[0]
        assert r[0] == "H" and int(r[1]) == len(image)
        image.extend(bytes.fromhex(r[2]))
    rep = scan_image(bytes(image))
    assert len(rep.records) > 40
    report = Replayer({b"\x01" * 32: env}).run(rep.records)
    assert report.identical and report.compared > 40


def _pull_image(hal, loop):
    hal.send("L")
    _run(hal, loop, 10)
    size = int(hal.replies()[0][1])
    image = bytearray()
    while len(image) < size:
        hal.send("L %d" % len(image))
        _run(hal, loop, 10)
        image.extend(bytes.fromhex(hal.replies()[0][2]))
    return bytes(image)


def test_sealed_pull_with_host_time_over_the_link():
    from edgegov.core.lineage import attestation_mac, sealed_head
    from edgegov.core.record import K_CHECKPOINT, K_TIME, decode
    from edgegov.core.verify import verify

    hal, loop, env, seq = _armed()
    hal.send("T 1796366000000")  # the host's wall clock: a first reading is a step
    _run(hal, loop, 10)
    assert hal.replies() == [["T", "1"]]
    hal.send("T 1796366000015")  # 10 ms later by the board, 15 ms by the host: no step
    _run(hal, loop, 10)
    assert hal.replies() == [["T", "0"]]
    hal.send("P 1796366000123456")
    _run(hal, loop, 10)
    r = hal.replies()[0]
    assert r[0] == "P" and r[3] == "1796366000123456" and r[5] == env.device_id
    head_seq, chain_head, mac = int(r[1]), bytes.fromhex(r[2]), bytes.fromhex(r[4])
    assert mac == attestation_mac(KEY, env.device_id, head_seq, chain_head, 1796366000123456)
    records = scan_image(_pull_image(hal, loop)).records
    by_seq = {}
    for s, p in records:
        by_seq[s] = p
    seal = decode(by_seq[head_seq])
    assert seal[0] == K_CHECKPOINT and sealed_head(seal[3], head_seq, by_seq[head_seq]) == \
        chain_head
    assert seal[8] == 1796366000015 + 10  # the last reading, 10 ms of board time later
    times = [decode(p) for s, p in records if p[1] == K_TIME]
    assert len(times) == 1 and times[0][2] == 1796366000000
    upto = [(s, p) for s, p in records if ((head_seq - s) & 0xFFFFFFFF) < 0x80000000]
    assert verify(upto, (), KEY).ok


def test_a_new_session_restarts_the_sequence_and_engages_afresh():
    # firmware/PROTOCOL.md "N session"; README "Planner sessions"
    hal, loop, env, seq = _armed()
    hal.send("N 5")
    _run(hal, loop, 10)
    r = hal.replies()[0]
    assert r[:2] == ["N", "5"] and int(r[2]) == C.HOLD and int(r[3]) == C.R_LINK_NOT_ENGAGED
    assert loop.gov.link == C.LINK_DOWN
    held = 0
    for k in range(1, 30):  # seq from 1 again; HOLD until engage_after_ms of commands
        hal.send("C %d 0 0 0 0" % k)
        _run(hal, loop, 10)
        if loop.gov.link == C.LINK_OK:
            break
        held += 1
    assert held == env.engage_after_ms // 10, held
    hal.replies()
    hal.send("C 3 0 0 0 0")  # an older seq within the session: stale
    _run(hal, loop, 10)
    assert int(hal.replies()[0][3]) == C.R_STALE_SEQ
    hal.send("N 1073741824")  # beyond the link's range: refused, nothing restarts
    _run(hal, loop, 10)
    assert hal.replies()[0] == ["E", "2"] and loop.gov.session == 5
    recs = loop.lineage.ring.read_all()
    report = Replayer({b"\x01" * 32: env}).run(recs)
    assert report.identical and report.compared > 30


def test_idle_period_allocates_nothing():
    hal, loop, env, seq = _armed()
    _run(hal, loop, 1000)  # link lost -> tripped, outputs safe: steady idle ticks
    _run(hal, loop, 100)
    gc.collect()
    gc.disable()
    before = gc.mem_alloc()
    for _ in range(200):
        loop.cycle()
        hal.t += 10
    after = gc.mem_alloc()
    gc.enable()
    print("idle period allocation: %d bytes over 200 periods" % (after - before))
    assert after - before == 0


def test_command_period_allocation_figure():
    hal, loop, env, seq = _armed()
    frames = []
    for k in range(100):
        frames.append(frame("C %d %d 0 0 0" % (seq + 1 + k, k % 2)))
    _run(hal, loop, 10)
    hal.replies()
    gc.collect()
    gc.disable()
    before = gc.mem_alloc()
    for f in frames:
        hal.rx.extend(f)
        loop.cycle()
        hal.t += 10
    after = gc.mem_alloc()
    gc.enable()
    n = len(hal.replies())
    assert n == 100
    print("command period allocation: %d bytes per period (decide + record + reply)"
          % ((after - before) // 100))


def _pushed(hal, loop, blob, action, counter, key=KEY):
    # firmware/PROTOCOL.md "Envelope push": V size, W chunks, U action counter mac
    import hashlib

    from edgegov.core.auth import hmac_sha256
    from edgegov_fw.envpush import push_message

    hal.send("V %d" % (len(blob) if action == 1 else 0))
    for off in range(0, len(blob) if action == 1 else 0, 48):
        hal.send("W %d %s" % (off, "".join(["%02x" % b for b in blob[off : off + 48]])))
        _run(hal, loop, 10)
    digest = hashlib.sha256(blob).digest()
    mac = hmac_sha256(key, push_message(loop.env.device_id, action, digest, counter))
    hal.send("U %d %d %s" % (action, counter, "".join(["%02x" % b for b in mac])))
    _run(hal, loop, 10)
    return hal.replies()


def test_envelope_push_over_the_link_restarts_on_the_flash_copy():
    import hashlib

    from edgegov.core.record import K_BOOT, decode
    from edgegov_fw.envstore import EnvelopeStore

    with open(HERE + "/data/microbit-v1.cbor", "rb") as f:
        blob = f.read()
    with open(HERE + "/data/spindle-cell.cbor", "rb") as f:
        other = f.read()
    digest = hashlib.sha256(blob).digest()
    flash = RamBlockDevice(256, 12)
    store = EnvelopeStore(flash, 0, 5)
    store.write(blob)
    env = Envelope.from_blob(blob, digest)
    ring = RingLog(RamBlockDevice(1024, 8))
    ring.format()
    hal = FakeHal()
    loop = BoardLoop(hal, env, Lineage(ring, env, KEY, checkpoint_every=64), KEY, blob, store)
    loop.boot()
    _op(hal, env, C.OP_RESET, 1)
    _run(hal, loop, 10)
    hal.replies()
    assert loop.gov.state == C.ST_DISARMED
    r = _pushed(hal, loop, other, 1, 5)  # another device's envelope: refused (3)
    assert r[-1][:3] == ["U", "3", "5"], r
    r = _pushed(hal, loop, other, 1, 5)  # ... and its counter is used up (2)
    assert r[-1][:2] == ["U", "2"], r
    r = _pushed(hal, loop, blob, 1, 6, b"another key, another board.....")  # bad MAC (1)
    assert r[-1][:2] == ["U", "1"], r
    r = _pushed(hal, loop, blob, 2, 7)  # a rollback: nothing before it on the flash (6)
    assert r[-1][:2] == ["U", "6"], r
    r = _pushed(hal, loop, blob, 1, 8)  # applied (0): the governor restarts, TRIPPED
    assert r[-1][:2] == ["U", "0"] and loop.gov.state == C.ST_TRIPPED, r
    assert EnvelopeStore(flash, 0, 5).counter == 8 and store.previous()[1] == digest
    hal.send("V 99999")  # more than a flash slot holds
    _run(hal, loop, 10)
    assert hal.replies() == [["V", "-1"]]
    recs = ring.read_all()
    hal2, loop2, env2 = _board()  # no envelope store: pushes refused, E 6
    hal2.send("V 10")
    _run(hal2, loop2, 10)
    assert hal2.replies()[-1] == ["E", "6"]
    boots = [decode(p) for s, p in recs if p[1] == K_BOOT]
    assert len(boots) == 2 and boots[1][3] == C.RESET_ENVELOPE and boots[1][2] == 1
    report = Replayer({digest: env}).run(recs)
    assert report.identical and report.compared > 5


def test_the_boot_path_runs_on_the_envelope_pushed_into_the_slot_file():
    # boot_main.py: EnvelopeStore over FileBlockDevice("envelope.slots"), written erased by a
    # deploy; boot_blob() boots the deployed envelope first, then whatever is in force
    import hashlib

    from edgegov.core.blockdev import erased_buffer
    from edgegov_fw.envstore import EnvelopeStore, FileBlockDevice, store_blocks

    path = "/tmp/edgegov-mpy-envelope.slots"
    with open(path, "wb") as f:
        f.write(erased_buffer(256 * store_blocks(16)))
    with open(HERE + "/data/microbit-v1.cbor", "rb") as f:
        deployed = f.read()
    with open(HERE + "/data/bench8.cbor", "rb") as f:
        other = f.read()

    def boot():
        return EnvelopeStore(FileBlockDevice(path, 256, store_blocks(16)), 0, 16)

    store = boot()
    assert store.current() is None and store.boot_blob(deployed) == deployed
    store.keep_counter(9)
    store.write(other)  # what an applied push does
    again = boot()  # power off, on: the file holds it
    assert again.boot_blob(deployed) == other and again.counter == 9
    assert again.previous()[1] == hashlib.sha256(deployed).digest()
