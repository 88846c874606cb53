"""The fleet simulator: many devices in one process, each the real governor and service loop.

Each simulated device is an ``edgegov run`` service (``service.runner.Runner``: the core
governor, the lineage file, the MQTT link with its will) with its own envelope copy (device
id ``sim-0000``…), its own key file and its own MQTT connection, all on one asyncio loop.
A driver plays planner and operator over MQTT: it resets and arms every device with signed
actions, proposes a smooth value to each at ``hz``, and on the schedule proposes a value
beyond the channel's range, which the envelope answers with a TRIP; ``recover_s`` later it
resets and arms the device again.

Trips are staggered over ``trip_every_s`` (device *i* first trips at ``first_trip_s + i ×
trip_every_s / devices``), or all at once with ``burst`` (the collector's back-pressure
case). ``pull_delay_ms`` makes every device answer lineage pulls that much later (a slow
cellular link; the tests kill a collector in that window).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import aiomqtt

from ..adapters.mqtt import MqttSettings, make_client, publish_now
from ..adapters.resilience import backoff_delay_ms
from ..core import auth, codes
from ..host.aio import cancel_and_wait
from ..operator import load_key, write_key
from ..service.runner import Runner, ServiceConfig
from ..service.wire import encode_operator

log = logging.getLogger("edgegov.fleet.sim")
TRIP_VALUE = 900  # mm/s: beyond the axis' 500 mm/s range, whose breach action is trip


@dataclass
class SimOptions:
    url: str
    workdir: Path
    devices: int = 10
    hz: int = 50
    prefix: str = "edgegov"
    keys_dir: Path | None = None  # default WORKDIR/keys
    trip_every_s: float = 0.0  # 0: no trips
    first_trip_s: float = 1.0
    trips: int = 0  # per device; 0: no limit
    burst: bool = False
    recover_s: float = 1.0
    pull_delay_ms: int = 0
    lineage_blocks: int = 32
    start_index: int = 0


@dataclass
class _Plan:
    """Where the driver is in its schedule (kept across broker reconnects)."""

    t0: float
    schedule: dict
    recover: dict = field(default_factory=dict)
    seq: int = 0
    tick: int = 0


@dataclass
class SimStats:
    trips: list[tuple[str, int]] = field(default_factory=list)  # (device, wall ms sent)
    commands: int = 0
    started_wall_ms: int = 0

    def to_json(self) -> dict:
        return {"trips": [{"device": d, "wall_ms": w} for d, w in self.trips],
                "commands": self.commands, "started_wall_ms": self.started_wall_ms}


def device_ids(opts: SimOptions) -> list[str]:
    return [f"sim-{i:04d}" for i in range(opts.start_index, opts.start_index + opts.devices)]


def envelope_text(device: str) -> str:
    base = resources.files(__package__).joinpath("sim-device.toml").read_text()
    return base.replace('id = "sim-0000"', f'id = "{device}"')


def ensure_key(keys_dir: Path, device: str) -> bytes:
    """The device's key file ``DEVICE.key`` (mode 600), made once."""
    path = keys_dir / f"{device}.key"
    return load_key(path) if path.exists() else write_key(path)


class _SimRunner(Runner):
    """The service of one simulated device; answers lineage pulls after a delay. Its
    control periods come from the simulator's one ticker (one timer for the whole fleet
    instead of one per device), each a ``GovernorService.cycle`` at the device's own clock.
    """

    pull_delay_s = 0.0
    _closing = False

    def _on_message(self, message) -> None:
        if not self._closing:  # the lineage file is closed once the service stops
            super()._on_message(message)

    async def _shutdown(self, link_task) -> None:
        self._closing = True
        await super()._shutdown(link_task)

    async def _tick(self, stop: asyncio.Event) -> None:
        await stop.wait()  # FleetSim._tick_all runs the periods

    def cycle(self) -> None:
        if self.service is None or self._closing:
            return
        try:
            self.service.cycle(self.clock.now_ms())
        except Exception:  # noqa: BLE001 - as Runner._tick: a failed cycle is not kicked
            self.errors += 1
            log.exception("control cycle failed")

    def _dispatch(self, topic: str, payload: bytes, reply_to) -> None:
        if topic == self.topics.lineage_pull and self.pull_delay_s > 0:
            asyncio.get_running_loop().call_later(
                self.pull_delay_s, super()._dispatch, topic, payload, reply_to)
            return
        super()._dispatch(topic, payload, reply_to)


class FleetSim:
    """Build with options; ``await run(stop)`` until ``stop`` is set."""

    def __init__(self, opts: SimOptions) -> None:
        self.opts = opts
        self.stats = SimStats()
        self.ids = device_ids(opts)
        work = Path(opts.workdir)
        self.keys_dir = Path(opts.keys_dir or work / "keys")
        for sub in ("envelopes", "lineage"):
            (work / sub).mkdir(parents=True, exist_ok=True)
        self.keys_dir.mkdir(parents=True, exist_ok=True)
        self.keys = {d: ensure_key(self.keys_dir, d) for d in self.ids}
        self.runners = [self._runner(d) for d in self.ids]
        self._counter = time.time_ns() // 1000

    def _runner(self, device: str) -> _SimRunner:
        work = Path(self.opts.workdir)
        env = work / "envelopes" / f"{device}.toml"
        env.write_text(envelope_text(device))
        cfg = ServiceConfig(
            envelope=str(env), key_file=str(self.keys_dir / f"{device}.key"),
            lineage=str(work / "lineage" / f"{device}.lineage"), mqtt_url=self.opts.url,
            protocol=5, period_ms=max(1, 1000 // self.opts.hz), prefix=self.opts.prefix,
            systemd=False, durable=False, lineage_blocks=self.opts.lineage_blocks)
        runner = _SimRunner(cfg)
        runner.pull_delay_s = self.opts.pull_delay_ms / 1000
        return runner

    async def run(self, stop: asyncio.Event, started: asyncio.Event | None = None) -> SimStats:
        self.stats.started_wall_ms = time.time_ns() // 1_000_000
        ready = [asyncio.Event() for _ in self.runners]
        serving = [asyncio.create_task(r.serve(stop, e)) for r, e in
                   zip(self.runners, ready, strict=True)]
        ticker = asyncio.create_task(self._tick_all(stop))
        try:
            await asyncio.gather(*(e.wait() for e in ready))
            await self._drive(stop, started)
        finally:
            stop.set()
            await asyncio.gather(*serving, return_exceptions=True)
            await cancel_and_wait(ticker)
        return self.stats

    async def _tick_all(self, stop: asyncio.Event) -> None:
        """Every device's control period, on absolute deadlines (skipping missed ones)."""
        period_s = max(1, 1000 // self.opts.hz) / 1000
        deadline = time.monotonic()
        while not stop.is_set():
            for r in self.runners:
                r.cycle()
            deadline += period_s
            now = time.monotonic()
            if deadline < now:
                deadline = now + period_s - (now - deadline) % period_s
            await asyncio.sleep(deadline - now)

    # ------------------------------------------------------------ planner and operator

    def _settings(self) -> MqttSettings:
        return self.runners[0].settings

    async def _drive(self, stop: asyncio.Event, started: asyncio.Event | None) -> None:
        """Plan and propose until stopped; a lost broker is waited for and the plan goes
        on where it was (the devices keep governing meanwhile: their link stages fire)."""
        plan = None
        attempt = 0
        while not stop.is_set():
            try:
                async with make_client(self._settings(),
                                       f"edgegov-sim-driver-{self.ids[0]}") as client:
                    if plan is None:
                        await self._arm_all(client)
                        plan = _Plan(time.monotonic(), self._schedule())
                        if started is not None:
                            started.set()
                    attempt = 0
                    await self._propose(client, stop, plan)
            except aiomqtt.MqttError as err:
                if stop.is_set():
                    return
                delay_ms = backoff_delay_ms(attempt, 200, 2_000)
                attempt += 1
                log.warning("simulator driver: broker lost (%s); again in %d ms", err, delay_ms)
                await asyncio.sleep(delay_ms / 1000)

    async def _arm_all(self, client, timeout_s: float = 120.0) -> None:
        """Reset and arm every device, again until its state says ARMED: a device
        publishes its state before it has subscribed to ``op``, so the first actions may
        reach no one."""
        pending = set(self.ids)
        topic = f"{self.opts.prefix}/+/state"
        await client.subscribe(topic, qos=1)
        end = time.monotonic() + timeout_s
        while pending and time.monotonic() < end:
            for d in sorted(pending):
                await self._reset_arm(client, d)
            try:
                async with asyncio.timeout(0.5):
                    async for m in client.messages:
                        doc = json.loads(m.payload)
                        if doc.get("status") == "online" and doc.get("state") == "ARMED":
                            pending.discard(doc.get("device"))
                        if not pending:
                            break
            except TimeoutError:
                pass
        await client.unsubscribe(topic)
        if pending:
            raise RuntimeError(f"{len(pending)} simulated devices never armed")

    async def _op(self, client, device: str, action: int) -> None:
        self._counter += 1
        mac = auth.sign_op(self.keys[device], device, action, 0, self._counter)
        await client.publish(f"{self.opts.prefix}/{device}/op",
                             encode_operator(action, 0, self._counter, mac), qos=1)

    async def _reset_arm(self, client, device: str) -> None:
        await self._op(client, device, codes.OP_RESET)
        await self._op(client, device, codes.OP_ARM)

    async def _propose(self, client, stop: asyncio.Event, plan: _Plan) -> None:
        o = self.opts
        period_s = 1.0 / o.hz
        schedule, recover = plan.schedule, plan.recover
        while not stop.is_set():
            plan.tick += 1
            now = time.monotonic() - plan.t0
            plan.seq += 1
            value = round(200 * math.sin(now))
            for d in self.ids:
                v = value
                if schedule.get(d) is not None and now >= schedule[d]:
                    v = TRIP_VALUE
                    self.stats.trips.append((d, time.time_ns() // 1_000_000))
                    schedule[d] = self._next_trip(d, schedule[d])
                    recover[d] = now + o.recover_s
                elif d in recover and now >= recover[d]:
                    del recover[d]
                    await self._reset_arm(client, d)
                topic = f"{o.prefix}/{d}/cmd"
                payload = json.dumps({"seq": plan.seq, "values": {"axis": v}}).encode()
                if not publish_now(client, topic, payload):
                    await client.publish(topic, payload, qos=0)
                self.stats.commands += 1
            delay = plan.t0 + plan.tick * period_s - time.monotonic()
            if delay > 0:
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                except TimeoutError:
                    pass
            else:
                await asyncio.sleep(0)

    def _schedule(self) -> dict[str, float | None]:
        o = self.opts
        if o.trip_every_s <= 0:
            return {}
        n = len(self.ids)
        return {d: o.first_trip_s + (0 if o.burst else i * o.trip_every_s / n)
                for i, d in enumerate(self.ids)}

    def _next_trip(self, device: str, at_s: float) -> float | None:
        o = self.opts
        done = sum(1 for d, _ in self.stats.trips if d == device)
        if o.trips and done >= o.trips:
            return None
        return at_s + o.trip_every_s


__all__ = ["FleetSim", "SimOptions", "SimStats", "device_ids", "envelope_text", "ensure_key",
           "TRIP_VALUE"]
