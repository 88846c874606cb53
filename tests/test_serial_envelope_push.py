"""A signed envelope push over a board's serial link, as a user runs it: the full-core board
loop (firmware/edgegov_fw) with its envelope store on an emulated NOR flash serves its
CRC-framed link on a TCP socket (a pyserial ``socket://`` URL); ``edgegov envelope push
--serial`` pulls its lineage over the link for the what-if gate, sends the compiled blob in
chunks with the counter and MAC, and the board answers (firmware/PROTOCOL.md, Envelope
push; README, Envelopes). Then ``edgegov lineage pull --serial`` and ``lineage replay``
follow the change, and ``envelope rollback --serial`` restores the old one."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time

import pytest
from edgegov.config.compile import compile_file, compile_text
from edgegov.config.push import sign
from edgegov.core import codes
from edgegov.core.auth import sign_op
from edgegov.core.blockdev import RamBlockDevice
from edgegov.core.envelope import Envelope
from edgegov.core.lineage import Lineage
from edgegov.core.record import K_BOOT, K_CHECKPOINT, K_ENVELOPE, decode
from edgegov.core.ring import RingLog
from edgegov.host.lineage_store import read_dump
from service_harness import KEY, REPO, write_key
from test_serial_seal import SocketHal

for _sub in ("firmware", "emulation", "hil"):
    sys.path.insert(0, str(REPO / _sub))
from boardlink import GovLink, SerialStream  # noqa: E402
from edgegov_fw.envstore import BLOB_AT, EnvelopeStore  # noqa: E402
from edgegov_fw.loop import BoardLoop  # noqa: E402
from emuflash import EmulatedFlash  # noqa: E402
from qemu_microbit import Uart  # noqa: E402

pytestmark = pytest.mark.timeout(240)

ENVELOPE = REPO / "boards" / "microbit-v1" / "envelope.toml"  # 4 channels, no inputs
OLD = compile_file(ENVELOPE)
DEVICE = OLD.admitted.device_id


def _tightened(text: str, path):
    """``text`` with x limited to ±200 mm (was ±500), written to ``path``: its compiled."""
    path.write_text(text.replace("min = -500\nmax = 500\nrate_per_s = 250\n"
                                 "safe = 0\nstop = \"SS1\"",
                                 "min = -200\nmax = 200\nrate_per_s = 250\n"
                                 "safe = 0\nstop = \"SS1\"", 1))
    compiled = compile_file(path)
    assert compiled.hash != compile_text(text, "x").hash
    return compiled


@pytest.fixture
def tight(tmp_path):
    path = tmp_path / "tight.toml"
    return path, _tightened(ENVELOPE.read_text(), path)


class Board:
    """The board loop on a thread, taking one TCP client after another (a serial port)."""

    def __init__(self, compiled=OLD):
        self.flash = EmulatedFlash(256, 2 * 5 + 2)
        self.store = EnvelopeStore(self.flash, 0, 5)
        self.store.write(compiled.blob)  # deployed: the envelope in force
        self.compiled = compiled
        env = Envelope.from_blob(compiled.blob, compiled.digest)
        ring = RingLog(RamBlockDevice(1024, 16))  # holds the ENVELOPE copy
        ring.format()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"socket://127.0.0.1:{self.server.getsockname()[1]}"
        self.stop = threading.Event()
        self.hal = None
        self.loop = None
        self._args = (env, Lineage(ring, env, KEY, checkpoint_every=32))
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        self.server.settimeout(0.05)
        while not self.stop.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                if self.loop is not None:
                    self.loop.cycle()
                continue
            if self.loop is None:
                self.hal = SocketHal(conn)
                env, lineage = self._args
                self.loop = BoardLoop(self.hal, env, lineage, KEY, self.compiled.blob,
                                      self.store)
                self.loop.boot()
            else:
                self.hal.conn = conn
                conn.setblocking(False)
            while not self.stop.is_set():
                try:
                    self.loop.cycle()
                except OSError:  # the client went away
                    break
                if conn.fileno() < 0 or _closed(conn):
                    break
                time.sleep(0.005)

    def close(self):
        self.stop.set()
        self.thread.join(10)
        self.server.close()


def _closed(conn: socket.socket) -> bool:
    try:
        return conn.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


@pytest.fixture
def board():
    b = Board()
    yield b
    b.close()


def _session(board, *bodies):
    """Send frames over a link of our own (a second client after the CLI's)."""
    uart = Uart(SerialStream(board.url))
    try:
        link = GovLink(uart)
        return [link.reply_to(body, ("K", "D", "S", "E"), 5.0) for body in bodies]
    finally:
        uart.sock.close()


def _op(action: int, counter: int) -> str:
    mac = sign_op(KEY, DEVICE, action, 0, counter)
    return f"A {action} 0 {counter} {mac.hex()}"


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgegov_cli.main", *args],
                          capture_output=True, text=True, timeout=120)


def _push(board, key, path, *extra):
    return _cli("envelope", "push", str(path), "--serial", board.url, "--key", str(key),
                "--accept-diff", *extra)


def test_push_over_the_link_is_applied_only_when_safe_and_replay_follows(board, tmp_path,
                                                                         tight):
    path, new = tight
    key = write_key(tmp_path / "device.key")
    uart = Uart(SerialStream(board.url))
    try:  # armed (the link would trip it within 600 ms: pushed at once, in-process)
        link = GovLink(uart)
        for body in (_op(codes.OP_RESET, 1), _op(codes.OP_ARM, 2), "C 1 0 0 0 0"):
            link.reply_to(body, ("K", "D"), 5.0)
        assert board.loop.gov.state == codes.ST_ARMED
        push = sign(KEY, DEVICE, "push", new.digest, 10)
        t0 = time.perf_counter()
        armed = link.push_envelope(1, 10, push.mac, new.blob)
        ms = (time.perf_counter() - t0) * 1000
        print(f"envelope over the link: {len(new.blob)} bytes in "
              f"{-(-len(new.blob) // 48)} W frames + V + U: {ms:.0f} ms (TCP, board "
              "period 10 ms)")
        link.reply_to(_op(codes.OP_ESTOP, 3), ("K",), 5.0)
    finally:
        uart.sock.close()
    assert armed["result"] == 4 and armed["old"] == OLD.hash, armed  # not DISARMED/TRIPPED
    assert board.store.current()[1] == OLD.digest
    assert board.loop.gov.state == codes.ST_TRIPPED
    replayed = _push(board, key, path, "--counter", "10")  # the counter was used up
    assert replayed.returncode == 1 and "stale counter" in replayed.stderr, replayed.stderr
    assert "what-if" in replayed.stdout
    done = _push(board, key, path, "--counter", "11")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"applied: {OLD.hash[:16]} → {new.hash[:16]}" in done.stdout
    assert board.store.current()[1] == new.digest and board.store.previous()[1] == OLD.digest
    assert board.loop.gov.env.digest == new.digest and board.loop.gov.state == codes.ST_TRIPPED
    assert board.store.counter == 11
    again = EnvelopeStore(board.flash.reboot(), 0, 5)  # what a reboot reads: the new one
    assert again.current()[1] == new.digest and again.counter == 11

    dump = tmp_path / "board.lineage"
    pull = _cli("lineage", "pull", "--serial", board.url, "-o", str(dump))
    assert pull.returncode == 0, pull.stdout + pull.stderr
    records = [decode(p) for _, p in read_dump(dump).records]
    boots = [i for i, r in enumerate(records) if r[0] == K_BOOT]
    assert len(boots) == 2
    before, boot, env_rec = records[boots[1] - 1], records[boots[1]], records[boots[1] + 1]
    assert before[0] == K_CHECKPOINT and bytes(before[7]) == OLD.digest  # old ...
    assert boot[3] == codes.RESET_ENVELOPE and bytes(boot[5]) == new.digest  # ... → new
    assert env_rec[0] == K_ENVELOPE and bytes(env_rec[2]) == new.blob
    replay = _cli("lineage", "replay", str(dump))
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert "identical" in replay.stdout
    html = tmp_path / "board.html"
    report = _cli("lineage", "report", str(dump), "-o", str(html))
    assert report.returncode == 0, report.stdout + report.stderr
    page = html.read_text()
    assert OLD.hash[:12] in page and new.hash[:12] in page  # both boots' envelopes
    assert "<td class='n'>-1 (envelope change)</td>" in page  # the boot table says why

    back = _cli("envelope", "rollback", "--to", str(ENVELOPE), "--serial", board.url,
                "--key", str(key), "--counter", "12")
    assert back.returncode == 0, back.stdout + back.stderr
    assert board.store.current()[1] == OLD.digest and board.loop.gov.env.digest == OLD.digest
    given = _push(board, key, path, "--counter", "13", "--lineage", str(dump))  # no pull
    assert given.returncode == 0 and "what-if" in given.stdout, given.stdout + given.stderr
    assert board.store.current()[1] == new.digest


def test_a_push_signed_with_another_key_or_not_the_previous_is_refused(board, tmp_path,
                                                                       tight):
    path, new = tight
    other = write_key(tmp_path / "other.key", bytes(range(1, 33)))
    bad = _push(board, other, path, "--counter", "5")
    assert bad.returncode == 1 and "bad MAC" in bad.stderr, bad.stderr
    assert board.store.counter == 0  # an unverified push uses nothing up
    key = write_key(tmp_path / "device.key")
    nothing = _cli("envelope", "rollback", "--to", str(path), "--serial", board.url,
                   "--key", str(key), "--counter", "6")
    assert nothing.returncode == 1 and "no previous envelope" in nothing.stderr
    board_blocks = board.flash.mem[:BLOB_AT]
    assert bytes(board_blocks[:4]) == b"EGV1"


def test_push_needs_one_transport(tmp_path):
    key = write_key(tmp_path / "device.key")
    res = _cli("envelope", "push", str(ENVELOPE), "--key", str(key))
    assert res.returncode == 2 and "--serial PORT" in res.stderr
    res = _cli("envelope", "push", str(ENVELOPE), "--key", str(key), "--serial",
               "socket://127.0.0.1:1")
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr


def test_a_push_to_an_armed_board_is_refused_in_its_words(tmp_path):
    # README, Envelopes: "mb-01: push refused by the board: refused while ARMED or PAUSED:
    # disarm (or trip) first (4)". Without [link] nothing trips the board while the CLI
    # starts, so it is still ARMED when the push arrives.
    text = ENVELOPE.read_text().split("[link]")[0]
    linkless = compile_text(text, "linkless.toml")
    path = tmp_path / "tight.toml"
    new = _tightened(text, path)
    b = Board(linkless)
    try:
        _session(b, _op(codes.OP_RESET, 1), _op(codes.OP_ARM, 2))
        assert b.loop.gov.state == codes.ST_ARMED
        key = write_key(tmp_path / "device.key")
        res = _push(b, key, path, "--counter", "7")
        assert res.returncode == 1, res.stdout + res.stderr
        assert res.stderr.strip().splitlines()[-1] == (
            "mb-01: push refused by the board: refused while ARMED or PAUSED: disarm (or "
            "trip) first (4)")
        assert b.store.current()[1] == linkless.digest and b.store.counter == 7
        assert b.loop.gov.state == codes.ST_ARMED and new.digest != linkless.digest
    finally:
        b.close()


def test_an_envelope_with_another_channel_set_records_and_replays_exactly(tmp_path):
    # the encoder follows the new channel order at the change (Lineage.use)
    from edgegov.core.replay import Replayer, envelopes_in
    from edgegov.core.ring import scan_image
    from edgegov.host.lineage_store import load_envelope

    extra = ENVELOPE.read_text().replace("[channels.lift]", "[channels.clamp]\nunit = \"step\"\n"
                                         "resolution = 1\nmin = 0\nmax = 50\nrate_per_s = 100\n"
                                         "safe = 0\nstop = \"STO\"\non_breach = \"reject\"\n"
                                         "hold = \"stay\"\n\n[channels.lift]", 1)
    wider = compile_text(extra, "five.toml")
    b = Board()
    uart = Uart(SerialStream(b.url))
    try:
        link = GovLink(uart)
        push = sign(KEY, DEVICE, "push", wider.digest, 20)
        assert link.push_envelope(1, 20, push.mac, wider.blob)["result"] == 0
        assert b.loop.env.n == 5 and b.loop.env.ch_names[0] == "clamp"
        for body in (_op(codes.OP_RESET, 1), _op(codes.OP_ARM, 2)):
            link.reply_to(body, ("K",), 5.0)
        for seq in range(1, 40):
            d = link.command(seq, [min(seq, 50), seq % 3, 0, 0, 0])
        assert d["outputs"][0] > 0, (d, b.loop.gov.state, b.loop.gov.causes)
        image = link.pull_lineage()
    finally:
        uart.sock.close()
        b.close()
    records = scan_image(image).records
    report = Replayer(envelopes_in(records, load_envelope)).run(records)
    assert report.identical and report.compared > 40, report.divergences[:3]
