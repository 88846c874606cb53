"""Watchdog backends through their real protocols: a character device stand-in (a pty,
which records every byte written and answers ENOTTY to watchdog ioctls) and a real
``NOTIFY_SOCKET`` datagram socket, path and abstract; and the service feeding them only at
the end of healthy cycles (scripted time)."""

from __future__ import annotations

import os
import select
import socket
import tty

import pytest
from edgegov.config.compile import compile_file
from edgegov.core.envelope import Envelope
from edgegov.core.governor import Governor
from edgegov.host.watchdog import DeviceWatchdog, SystemdNotifier
from edgegov.service.loop import GovernorService
from edgegov.service.topics import Topics
from edgegov.service.wire import Inbound
from service_harness import ENVELOPE, KEY


@pytest.fixture
def pty_device():
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    yield master, path
    os.close(master)
    os.close(slave)


def written(master, settle_s: float = 0.3) -> bytes:
    """Everything written to the device so far: a pty hands bytes over in pieces, so read
    until nothing more arrives for ``settle_s``."""
    out = b""
    while select.select([master], [], [], settle_s)[0]:
        try:
            chunk = os.read(master, 4096)
        except (BlockingIOError, OSError):
            break
        if not chunk:
            break
        out += chunk
    return out


def test_device_keepalive_writes_and_magic_close_only_when_orderly(pty_device):
    master, path = pty_device
    wd = DeviceWatchdog(path, timeout_s=10)
    assert wd.timeout_s is None  # the stand-in does not support WDIOC_SETTIMEOUT
    wd.kick()
    wd.kick()
    wd.stop(orderly=True)
    assert written(master) == b"\0\0V"
    wd = DeviceWatchdog(path)
    wd.kick()
    wd.stop(orderly=False)  # a crash path: stays armed, the hardware will reset
    assert written(master) == b"\0"


def _receiver(address):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(0.5)
    return sock


def _messages(sock) -> list[str]:
    out = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except (TimeoutError, BlockingIOError):
            return out


@pytest.mark.parametrize("abstract", [False, True])
def test_sd_notify_path_and_abstract_socket(tmp_path, abstract):
    name = f"edgegov-test-{os.getpid()}"
    env_value = f"@{name}" if abstract else str(tmp_path / "notify")
    sock = _receiver(b"\0" + name.encode() if abstract else env_value)
    notifier = SystemdNotifier.from_env({"NOTIFY_SOCKET": env_value})
    notifier.ready()
    notifier.kick()
    notifier.stop(orderly=True)
    assert _messages(sock) == ["READY=1\nSTATUS=governing", "WATCHDOG=1", "STOPPING=1"]


def test_sd_notify_throttles_to_a_quarter_of_watchdog_usec():
    t = [0.0]
    n = SystemdNotifier(None, watchdog_usec=4_000_000, clock=lambda: t[0])
    n.sock = object()  # nothing sent without a socket; count via ``_last`` instead
    kicks = []
    n.notify = kicks.append
    for step in range(30):
        t[0] = step * 0.1
        n.kick()
    assert len(kicks) == 3  # every 1 s over 3 s


class Broken(Exception):
    pass


def service_with(notifier, tmp_path):
    compiled = compile_file(ENVELOPE)
    env = Envelope.from_blob(compiled.blob, compiled.digest)
    posted = []
    svc = GovernorService(Governor(env, KEY), Topics(env.device_id),
                          lambda *a: posted.append(a), watchdogs=[notifier])
    return svc, posted


class UnknownEvent:
    kind = 99  # the governor cannot decide it: an internal fault, fail closed


def test_service_feeds_only_healthy_cycles(tmp_path):
    name = f"edgegov-svc-{os.getpid()}"
    sock = _receiver(b"\0" + name.encode())
    svc, _ = service_with(SystemdNotifier(f"@{name}"), tmp_path)
    svc.boot(0)
    assert svc.cycle(10) and svc.cycle(20)
    assert _messages(sock) == ["READY=1\nSTATUS=governing", "WATCHDOG=1", "WATCHDOG=1"]
    svc.submit(Inbound(UnknownEvent()), 25)  # decision.kick is False
    assert not svc.cycle(30)
    assert _messages(sock) == []
    assert svc.gov.state == 0  # TRIPPED, fault latched
    # fail closed: while the internal fault is latched no WATCHDOG=1 goes out, so systemd's
    # watchdog restarts the process (which boots TRIPPED and records the reset reason)
    assert [svc.cycle(40 + 10 * k) for k in range(10)] == [False] * 10
    assert _messages(sock) == []


def test_device_watchdog_gets_no_keepalive_while_an_internal_fault_is_latched(tmp_path):
    dev = tmp_path / "watchdog"  # a /dev/watchdog stand-in: keepalives land as bytes
    dev.write_bytes(b"")
    wd = DeviceWatchdog(str(dev))
    svc, _ = service_with(wd, tmp_path)
    svc.boot(0)
    assert svc.cycle(10) and svc.cycle(20)
    assert dev.read_bytes() == b"\0\0"
    svc.submit(Inbound(UnknownEvent()), 25)
    assert [svc.cycle(30 + 10 * k) for k in range(20)] == [False] * 20
    assert dev.read_bytes() == b"\0\0"  # the device would bite
    wd.stop(orderly=False)
