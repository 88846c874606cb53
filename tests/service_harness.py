"""Drive a real ``edgegov run`` process over a real broker: the peers of the service tests.

``ServiceProcess`` starts the service as a subprocess (so it can be SIGKILLed); ``Peer`` is
an aiomqtt client that plays planner, plant and operator and records everything the
service publishes.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiomqtt
from edgegov.adapters.mqtt import NO_DELAY
from edgegov.host.aio import cancel_and_wait, stop_requested

REPO = Path(__file__).resolve().parent.parent
ENVELOPE = REPO / "boards" / "envelopes" / "spindle-cell.toml"
DEVICE = "cell-7"
KEY = bytes(range(32))


def write_key(path: Path, key: bytes = KEY) -> Path:
    path.write_text(key.hex() + "\n")
    path.chmod(0o600)
    return path


class ServiceProcess:
    """``edgegov run`` as a child process."""

    def __init__(self, workdir: Path, url: str, *extra: str, lineage: str = "svc.lineage",
                 envelope: Path = ENVELOPE):
        self.workdir = workdir
        self.key_file = write_key(workdir / "device.key")
        self.lineage = workdir / lineage
        self.log = workdir / "service.log"
        self.args = [sys.executable, "-m", "edgegov_cli.main", "run", "--config", str(envelope),
                     "--key", str(self.key_file), "--mqtt", url, "--lineage", str(self.lineage),
                     "--no-fsync", "--lineage-blocks", "64", *extra]
        self.proc: subprocess.Popen | None = None

    def start(self, env: dict | None = None) -> ServiceProcess:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT,
                                         env={**os.environ, **(env or {})})
        return self

    def terminate(self, timeout_s: float = 10) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout_s)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(5)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def patient_inputs_envelope(workdir: Path) -> Path:
    """The cell with plant inputs that go stale only after 5 s: while the broker is down,
    the link stages (not a stale e-stop input) are what trips the governor."""
    text = ENVELOPE.read_text().replace("stale_after_ms = 500", "stale_after_ms = 5000")
    path = workdir / "patient-cell.toml"
    path.write_text(text.replace("stale_after_ms = 1000", "stale_after_ms = 5000"))
    return path


class Peer:
    """An MQTT client that records what the service publishes, by topic kind."""

    def __init__(self, port: int, identifier: str, **client_kw):
        self.port = port
        self.identifier = identifier
        self.client_kw = client_kw
        self.got: dict[str, list] = {"decision": [], "event": [], "state": [], "output": []}
        self.client: aiomqtt.Client | None = None
        self._reader: asyncio.Task | None = None
        self.seq = 0

    async def __aenter__(self) -> Peer:
        # TCP_NODELAY as a planner should: with Nagle, a command waits for the previous
        # one's ACK and two arrive in the same millisecond (a rate clamp, rightly).
        kw = {"protocol": aiomqtt.ProtocolVersion.V5, "socket_options": NO_DELAY,
              **self.client_kw}
        self.client = aiomqtt.Client("127.0.0.1", self.port, identifier=self.identifier, **kw)
        await self.client.__aenter__()
        for kind in self.got:
            await self.client.subscribe(f"edgegov/{DEVICE}/{kind}", qos=1)
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc) -> None:
        await cancel_and_wait(self._reader, 3)
        await self.client.__aexit__(*exc)

    async def _read(self) -> None:
        async for m in self.client.messages:
            kind = str(m.topic).rsplit("/", 1)[-1]
            self.got[kind].append(json.loads(m.payload))

    async def wait_for(self, kind: str, pred, timeout_s: float = 5.0):
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            for msg in self.got[kind]:
                if pred(msg):
                    return msg
            await asyncio.sleep(0.01)
        raise AssertionError(f"no {kind} message matching within {timeout_s}s; "
                             f"last: {self.got[kind][-3:]}")

    async def online(self, timeout_s: float = 10.0):
        """Wait for the service's online state; forget retained states seen before it."""
        msg = await self.wait_for("state", lambda m: m.get("status") == "online", timeout_s)
        del self.got["state"][: self.got["state"].index(msg)]
        return msg

    async def command(self, values: dict, seq: int | None = None) -> int:
        self.seq = self.seq + 1 if seq is None else seq
        await self.client.publish(f"edgegov/{DEVICE}/cmd",
                                  json.dumps({"seq": self.seq, "values": values}), qos=0)
        return self.seq

    async def telemetry(self, **values) -> None:
        await self.client.publish(f"edgegov/{DEVICE}/telemetry", json.dumps({"values": values}))

    async def raw(self, topic_kind: str, payload: bytes) -> None:
        await self.client.publish(f"edgegov/{DEVICE}/{topic_kind}", payload)


SAFE_PLANT = {"door_closed": True, "estop_button": False, "hydraulic_pressure": 200.0}


async def plant_loop(peer: Peer, period_s: float = 0.05, **overrides) -> None:
    """Report a healthy cell every ``period_s`` until cancelled."""
    values = {**SAFE_PLANT, **overrides}
    while not stop_requested():
        await peer.telemetry(**values)
        await asyncio.sleep(period_s)


async def planner_loop(peer: Peer, values: dict, period_s: float = 0.02) -> None:
    while not stop_requested():
        await peer.command(values)
        await asyncio.sleep(period_s)
