"""A sealed pull over a board's serial link, as a user runs it: the full-core board loop
(firmware/edgegov_fw) serves its CRC-framed link on a TCP socket (a pyserial
``socket://`` URL), ``edgegov lineage pull --serial`` sends the host's wall time, seals
and pulls, and ``lineage verify --key`` checks the head attestation; a dump cut at the
seal's block boundary fails."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time

import pytest
from edgegov.config.compile import compile_file
from edgegov.core.blockdev import RamBlockDevice
from edgegov.core.envelope import Envelope
from edgegov.core.lineage import Lineage
from edgegov.core.record import K_TIME
from edgegov.core.ring import RingLog
from edgegov.host import attest
from edgegov.host.lineage_store import read_dump
from service_harness import ENVELOPE, KEY, REPO, write_key

sys.path.insert(0, str(REPO / "firmware"))
from edgegov_fw.loop import BoardLoop  # noqa: E402

pytestmark = pytest.mark.timeout(120)


class SocketHal:
    """The board's pins and UART as a TCP connection and variables; real time."""

    period_ms = 10

    def __init__(self, conn: socket.socket):
        self.conn = conn
        conn.setblocking(False)
        self.estop = None
        self.t0 = time.monotonic()

    def ticks_ms(self):
        return int((time.monotonic() - self.t0) * 1000)

    def ticks_diff(self, a, b):
        return a - b

    def ticks_add(self, a, d):
        return a + d

    def sleep_ms(self, ms):
        time.sleep(ms / 1000)

    def read(self, buf):
        try:
            return self.conn.recv_into(buf)
        except BlockingIOError:
            return 0

    def write(self, data):
        self.conn.setblocking(True)
        self.conn.sendall(bytes(data))
        self.conn.setblocking(False)

    def set_estop(self, asserted):
        self.estop = asserted

    def estop_pressed(self):
        return False

    def write_outputs(self, outputs):
        pass

    def kick(self):
        pass

    def reset_cause(self):
        return 1

    def mem_free(self):
        return 0


def serve_board(server: socket.socket, stop: threading.Event, loops: list) -> None:
    compiled = compile_file(ENVELOPE)
    env = Envelope.from_blob(compiled.blob, compiled.digest)
    ring = RingLog(RamBlockDevice(512, 16))
    ring.format()
    conn, _ = server.accept()
    hal = SocketHal(conn)
    loop = BoardLoop(hal, env, Lineage(ring, env, KEY, checkpoint_every=16), KEY,
                     compiled.blob)
    loops.append(loop)
    loop.boot()
    while not stop.is_set() and loop.running:
        loop.cycle()
        time.sleep(0.01)
    conn.close()


def test_serial_sealed_pull_verifies_and_a_cut_fails(tmp_path):
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    stop = threading.Event()
    loops: list = []
    board = threading.Thread(target=serve_board, args=(server, stop, loops), daemon=True)
    board.start()
    dump = tmp_path / "board.lineage"
    try:
        pull = subprocess.run([sys.executable, "-m", "edgegov_cli.main", "lineage", "pull",
                               "--serial", f"socket://127.0.0.1:{port}", "-o", str(dump)],
                              capture_output=True, text=True, timeout=90)
    finally:
        stop.set()
        board.join(10)
        server.close()
    assert pull.returncode == 0, pull.stdout + pull.stderr
    assert "sealed at seq" in pull.stdout
    att = attest.load(attest.path_for(dump))
    assert att["device"] == "cell-7"
    records = read_dump(dump).records
    assert any(p[1] == K_TIME for _, p in records)  # the host's wall time went over the link
    key = write_key(tmp_path / "k")
    out = subprocess.run([sys.executable, "-m", "edgegov_cli.main", "lineage", "verify",
                          str(dump), "--key", str(key)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "attested head seq" in out.stdout and "wall time 20" in out.stdout
    d = read_dump(dump)
    at = d.offsets[att["head_seq"]]  # everything from the seal on erased: a clean ring
    image = dump.read_bytes()
    cut = tmp_path / "cut.lineage"
    cut.write_bytes(image[:at] + b"\xff" * (len(image) - at))
    attest.write(attest.path_for(cut), att)
    bad = subprocess.run([sys.executable, "-m", "edgegov_cli.main", "lineage", "verify",
                          str(cut), "--key", str(key)], capture_output=True, text=True)
    assert bad.returncode == 1 and "is not in the dump" in bad.stdout, bad.stdout
