"""``edgegov bench mqtt``: proposal → decision latency through Mosquitto, against a bare MQTT
echo service on the same broker in the same run, plus an optional 1 kHz soak.

Both the governor (``edgegov run``) and the echo run as their own processes with their own
asyncio loops; one client sends a proposal and an echo request alternately at ``rate`` Hz
each and times the answers. Figures are printed, never asserted.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edgegov.adapters.mqtt import NO_DELAY, publish_now
from edgegov.host.net import free_port as _free_port
from edgegov.host.net import wait_port as _wait_port

ECHO_IN, ECHO_OUT = "bench/echo/in", "bench/echo/out"
ENVELOPE = Path(__file__).resolve().parents[2] / "boards" / "envelopes" / "spindle-cell.toml"
KEY = bytes(range(32))




async def echo(port: int, direct: bool = False) -> None:
    """The bare MQTT echo service: what an MQTT round trip costs without the governor.
    ``direct``: answer the way the service publishes its decisions (``publish_now``:
    written to the socket at once, not on the loop's next write turn)."""
    import aiomqtt

    async with aiomqtt.Client("127.0.0.1", port, identifier="bench-echo",
                              socket_options=NO_DELAY) as client:
        await client.subscribe(ECHO_IN)
        async for m in client.messages:
            if not (direct and publish_now(client, ECHO_OUT, m.payload)):
                await client.publish(ECHO_OUT, m.payload)


def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return round(s[min(len(s) - 1, int(p / 100 * len(s)))], 3)


async def _sleep_until(t: float) -> None:
    delay = t - time.perf_counter()
    if delay > 0:
        await asyncio.sleep(delay)


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


SOAK_SEQ0 = 10_000_000  # soak proposals are numbered from here


class Bench:
    def __init__(self, port: int) -> None:
        self.port = port
        self.sent: dict[int, float] = {}
        self.echo_sent: dict[int, float] = {}
        self.lat: list[float] = []
        self.soak_lat: list[float] = []
        self.echo_lat: list[float] = []
        self.state = ""

    async def listen(self, client) -> None:
        async for m in client.messages:
            t = time.perf_counter()
            topic = str(m.topic)
            doc = json.loads(m.payload)
            if topic.endswith("/decision"):
                t0 = self.sent.pop(doc["seq"], None)
                if t0 is not None:
                    lat = self.soak_lat if doc["seq"] >= SOAK_SEQ0 else self.lat
                    lat.append((t - t0) * 1000)
            elif topic == ECHO_OUT:
                t0 = self.echo_sent.pop(doc["seq"], None)
                if t0 is not None:
                    self.echo_lat.append((t - t0) * 1000)
            elif topic.endswith("/state"):
                self.state = doc.get("state", "")

    async def arm(self, client, base: str) -> None:
        from edgegov.core import codes
        from edgegov.core.auth import sign_op

        counter = time.time_ns() // 1000
        for action in (codes.OP_RESET, codes.OP_ARM):
            counter += 1
            mac = sign_op(KEY, "cell-7", action, 0, counter)
            await client.publish(f"{base}/op", json.dumps(
                {"action": action, "arg": 0, "counter": counter, "mac": mac.hex()}), qos=1)
            await asyncio.sleep(0.3)

    async def plant(self, client, base: str) -> None:
        values = {"door_closed": True, "estop_button": False, "hydraulic_pressure": 200}
        while True:
            await client.publish(f"{base}/telemetry", json.dumps({"values": values}))
            await asyncio.sleep(0.05)

    async def stream(self, client, base: str, rate: int, seconds: float, seq0: int,
                     with_echo: bool, settle: float = 0.5) -> tuple[int, float]:
        """``rate`` proposals per second; with ``with_echo`` an echo request in the second
        half of each period, so neither round trip shares its moment with the other (sent
        back to back, the second one's clock starts after the first one's write: a bias of
        ~0.1 ms whichever goes second). Each send falls at a random point of its half
        period (a fixed seed): a planner's clock is not the governor's, so a fixed phase
        against the governor's 10 ms tick would make every run a different experiment."""
        period = 1.0 / rate
        half = period / 2
        n = int(seconds * rate)
        rng = random.Random(seq0)
        start = time.perf_counter()
        for i in range(n):
            seq = seq0 + i
            if with_echo:
                await _sleep_until(start + i * period + rng.random() * half)
            self.sent[seq] = time.perf_counter()
            await client.publish(f"{base}/cmd", b'{"seq":%d,"values":{"spindle":0,"coolant":0}}'
                                 % seq)
            if with_echo:
                await _sleep_until(start + i * period + half + rng.random() * half)
                self.echo_sent[seq] = time.perf_counter()
                await client.publish(ECHO_IN, b'{"seq":%d}' % seq)
            await _sleep_until(start + (i + 1) * period)
        elapsed = time.perf_counter() - start
        await asyncio.sleep(settle)
        return n, elapsed


async def _measure(port: int, rate: int, seconds: float, soak_s: float, soak_rate: int,
                   service_pid: int, echo_pid: int) -> dict:
    import aiomqtt

    base = "edgegov/cell-7"
    b = Bench(port)
    async with aiomqtt.Client("127.0.0.1", port, identifier="bench-client",
                              max_queued_incoming_messages=0, socket_options=NO_DELAY) as client:
        for t in (f"{base}/decision", f"{base}/state", ECHO_OUT):
            await client.subscribe(t)
        listener = asyncio.create_task(b.listen(client))
        for _ in range(600):  # the service's first state: it is up (creating a ring takes a while)
            if b.state:
                break
            await asyncio.sleep(0.05)
        plant = asyncio.create_task(b.plant(client, base))
        await asyncio.sleep(0.3)
        await b.stream(client, base, 100, 0.3, 1, False)  # engage the link
        await b.arm(client, base)
        b.lat.clear()
        b.sent.clear()
        # With a soak to follow, it starts at once: a pause longer than the envelope's
        # link budget would (rightly) trip the governor and spoil the soak.
        cpu0 = _cpu_s(service_pid), _cpu_s(echo_pid)
        n, elapsed = await b.stream(client, base, rate, seconds, 10_000, True,
                                    settle=0.0 if soak_s else 0.5)
        cpu1 = _cpu_s(service_pid), _cpu_s(echo_pid)
        soak = None
        if soak_s:
            rss0 = _rss_kib(service_pid)
            soak = await b.stream(client, base, soak_rate, soak_s, SOAK_SEQ0, False)
            rss1 = _rss_kib(service_pid)
        dropped = len([s for s in b.sent if s < SOAK_SEQ0]) + len(b.echo_sent)
        e2e_p50, e2e_p99 = _pct(b.lat, 50), _pct(b.lat, 99)
        figures = {
            "rate_hz": rate, "proposals": n, "state": b.state,
            "e2e_p50_ms": e2e_p50, "e2e_p99_ms": e2e_p99,
            "echo_p50_ms": _pct(b.echo_lat, 50), "echo_p99_ms": _pct(b.echo_lat, 99),
            "ratio_p99": round(e2e_p99 / _pct(b.echo_lat, 99), 3), "goal_ratio_p99": 1.2,
            "sustained_hz": round(len(b.lat) / elapsed, 1), "dropped": dropped,
            # CPU use over the latency run: what each answer costs (and a busy loop shows)
            "service_cpu_pct": round(100 * (cpu1[0] - cpu0[0]) / elapsed, 1),
            "echo_cpu_pct": round(100 * (cpu1[1] - cpu0[1]) / elapsed, 1),
        }
        if soak is not None:
            n, elapsed = soak
            figures.update({
                "soak_seconds": soak_s, "soak_rate_hz": soak_rate, "soak_proposals": n,
                "soak_sustained_hz": round(len(b.soak_lat) / elapsed, 1),
                "soak_dropped": len([s for s in b.sent if s >= SOAK_SEQ0]),
                "soak_p99_ms": _pct(b.soak_lat, 99),
                "soak_rss_start_kib": rss0, "soak_rss_end_kib": rss1,
                "soak_rss_growth_kib": rss1 - rss0, "soak_state": b.state,
            })
        plant.cancel()
        listener.cancel()
    return figures


def run(seconds: float, rate: int, soak_s: float, soak_rate: int, mqtt_url: str | None,
        echo_direct: bool = False) -> dict:
    work = Path(tempfile.mkdtemp(prefix="edgegov-bench-"))
    procs: list[subprocess.Popen] = []
    try:
        if mqtt_url:
            port = int(mqtt_url.rsplit(":", 1)[1])
        else:
            port = _free_port()
            conf = work / "mosquitto.conf"
            conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n"
                            "persistence false\nuser root\nmax_queued_messages 100000\n"
                            "set_tcp_nodelay true\n")
            mosq = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
            procs.append(subprocess.Popen([mosq, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))
            _wait_port(port)
        key = work / "bench.key"
        key.write_text(KEY.hex())
        key.chmod(0o600)
        no_fsync = ["--no-fsync"] if os.environ.get("EDGEGOV_BENCH_NOFSYNC") else []
        svc = subprocess.Popen([sys.executable, "-m", "edgegov_cli.main", "run", "--config",
                                str(ENVELOPE), "--key", str(key), "--mqtt",
                                f"mqtt://127.0.0.1:{port}", "--lineage",
                                str(work / "bench.lineage"), *no_fsync],
                               stderr=subprocess.DEVNULL)
        procs.append(svc)
        echo_proc = subprocess.Popen([sys.executable, "-m", "edgegov_cli.bench_mqtt", "echo",
                                      str(port), *(["direct"] if echo_direct else [])])
        procs.append(echo_proc)
        time.sleep(1.5)
        figures = asyncio.run(_measure(port, rate, seconds, soak_s, soak_rate, svc.pid,
                                       echo_proc.pid))
        figures["lineage_bytes"] = os.path.getsize(work / "bench.lineage")
        figures["echo"] = "direct write" if echo_direct else "aiomqtt publish"
        return figures
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__" and sys.argv[1:2] == ["echo"]:
    try:
        asyncio.run(echo(int(sys.argv[2]), sys.argv[3:4] == ["direct"]))
    except KeyboardInterrupt:
        pass
