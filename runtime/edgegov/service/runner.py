"""``edgegov run``: the governor as an asyncio service on MQTT.

Wires the pieces: envelope + key + lineage file → ``GovernorService``; the clock shim; the
MQTT link (``adapters.mqtt`` under ``adapters.resilience``); watchdog and e-stop backends;
an embedded broker when no URL is given. The ticker calls ``service.cycle`` once per
control period on absolute deadlines; inbound messages are decided as they arrive.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass, field
from pathlib import Path

from ..config.compile import compile_file
from ..core import codes
from ..core.envelope import Envelope
from ..core.governor import Governor
from ..core.record import K_BOOT, K_CHECKPOINT, K_EVENT, RecordError, decode
from ..host import attest
from ..host.aio import cancel_and_wait
from ..host.estop import MqttRelayEstop, NoEstopOutput
from ..host.lineage_store import open_lineage, read_dump
from ..host.lock import DeviceInUse, LineageLock
from ..host.ringsize import MIN_HISTORY_H
from ..host.ringsize import plan as ring_plan
from ..host.wallsource import WallRecorder
from ..host.watchdog import DeviceWatchdog, SystemdNotifier
from ..operator import load_key
from .activity import Activity
from .clock import MonotonicClock, next_deadline_ms
from .envelope_updates import envelope_update
from .log import set_device
from .loop import GovernorService
from .topics import Topics
from .wire import Inbound, Scaler, decode_command, decode_operator, decode_telemetry, dumps

log = logging.getLogger("edgegov.service")


@dataclass
class ServiceConfig:
    """Everything ``edgegov run`` takes."""

    envelope: str
    key_file: str
    lineage: str | None = None
    mqtt_url: str | None = None  # None: embedded broker on loopback
    broker_port: int = 1883
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    client_key_file: str | None = None
    protocol: int | None = None  # 5 (MQTT 5) or 4 (3.1.1); default 5, 4 on the embedded
    period_ms: int = 10
    prefix: str = "edgegov"
    watchdog_device: str | None = None
    watchdog_timeout_s: int | None = None
    systemd: bool = True
    estop_relay: bool = False
    readback_ms: int = 500
    durable: bool = True
    lineage_blocks: int | None = None  # None: an existing file's, else the gateway board's
    min_history_h: float = MIN_HISTORY_H  # warn at start when the ring holds less
    expected_rate: float | None = None  # records/s for that check (None: the envelope's)
    client_id: str | None = None
    modbus: object | None = None  # service.modbus_gateway.ModbusOptions (--modbus-*)
    extra: dict = field(default_factory=dict)


def previous_run(path: str | Path) -> tuple[int, int]:
    """(boot count, highest accepted operator counter) found in an existing lineage file,
    so a restart keeps counting boots and still refuses replays of old operator actions."""
    if not Path(path).exists() or Path(path).stat().st_size == 0:
        return 0, 0
    try:
        dump = read_dump(path)
    except Exception:  # noqa: BLE001 - an unreadable file is recovered by open_lineage
        return 0, 0
    boots, counter = 0, 0
    for _, payload in dump.records:
        try:
            rec = decode(payload)
        except RecordError:
            continue
        if rec[0] == K_BOOT:
            boots += 1
            counter = max(counter, _int(rec[7]))
        elif rec[0] == K_CHECKPOINT and isinstance(rec[6], list) and len(rec[6]) > 7:
            counter = max(counter, _int(rec[6][7]))
        elif rec[0] == K_EVENT and isinstance(rec[2], list) and len(rec[2]) == 6 \
                and rec[2][0] == codes.EV_OPERATOR and rec[2][5] is True:
            counter = max(counter, _int(rec[2][3]))
    return boots, counter


def _int(v) -> int:
    return v if type(v) is int else 0


class Runner:
    """One running service: build with a config, ``await serve(stop_event)``."""

    def __init__(self, cfg: ServiceConfig, clock=None) -> None:
        self.cfg = cfg
        self.clock = clock or MonotonicClock()
        self.compiled = compile_file(cfg.envelope)
        self.env = Envelope.from_blob(self.compiled.blob, self.compiled.digest)
        self.key = load_key(cfg.key_file)
        self.scaler = Scaler(self.compiled)
        self.topics = Topics(self.env.device_id, cfg.prefix)
        self.lineage_path = cfg.lineage or f"edgegov-{self.env.device_id}.lineage"
        set_device(self.env.device_id)  # every log line from here on names the device
        self.link = None
        self.service: GovernorService | None = None
        self.broker = None
        self.modbus = None
        self.errors = 0

    # ------------------------------------------------------------ construction

    def _build(self) -> None:
        from ..adapters.mqtt import publish_now
        from ..adapters.resilience import ResilientLink

        boots, counter = previous_run(self.lineage_path)
        block_size, blocks = ring_plan(self.lineage_path, self.compiled.admitted,
                                       self.cfg.lineage_blocks, self.cfg.min_history_h,
                                       self.cfg.expected_rate, log.warning)
        lineage = open_lineage(self.lineage_path, self.env, self.key, group_commit=True,
                               durable=self.cfg.durable, block_size=block_size,
                               block_count=blocks)
        gov = Governor(self.env, self.key, counter)
        self.link = ResilientLink(self._connect, self._on_connected, self._on_message,
                                  errors=(Exception,), publish_now=publish_now)
        estop = (MqttRelayEstop(self.link.post, self.topics.estop_set, self.cfg.readback_ms)
                 if self.cfg.estop_relay else NoEstopOutput())
        self.activity = Activity(self)  # log lines and status fields (service/activity.py)
        self.service = GovernorService(gov, self.topics, self.activity.tap(self.link.post),
                                       lineage, estop, self._watchdogs(), self.compiled.hash,
                                       boots + 1)
        self.service.state_extra = self.activity.state_extra
        self.service.wall = WallRecorder(lineage)
        self.service.attestation_path = attest.path_for(self.lineage_path)  # at orderly stop

    def _watchdogs(self) -> list:
        dogs = []
        if self.cfg.watchdog_device:
            dogs.append(DeviceWatchdog(self.cfg.watchdog_device, self.cfg.watchdog_timeout_s))
        if self.cfg.systemd:
            dogs.append(SystemdNotifier.from_env())
        return dogs

    # ------------------------------------------------------------ MQTT

    def _settings(self):
        from ..adapters.mqtt import parse_url

        cfg = self.cfg
        url = cfg.mqtt_url or f"mqtt://127.0.0.1:{cfg.broker_port}"
        protocol = cfg.protocol or (5 if cfg.mqtt_url else 4)  # amqtt speaks 3.1.1 only
        return parse_url(url, username=cfg.username, password=cfg.password,
                         ca_file=cfg.ca_file, cert_file=cfg.cert_file,
                         key_file=cfg.client_key_file, protocol=protocol,
                         tls=True if cfg.ca_file else None)

    def _connect(self):
        from ..adapters.mqtt import make_client

        offline = dumps({"status": "offline", "reason": "connection lost",
                         "device": self.topics.device_id})
        client_id = self.cfg.client_id or f"edgegov-{self.topics.device_id}"
        return make_client(self.settings, client_id, will=(self.topics.state, offline))

    async def _on_connected(self, client) -> None:
        # Listen first: "online" promises that what is sent from then on is heard, so it
        # goes out only once the broker has acknowledged every subscription (SUBACK).
        await client.subscribe([(topic, 1) for topic in self.topics.inbound()])
        # Then the current state, before any backlog: retained, so newcomers see it.
        await client.publish(self.topics.state, self.service.state_payload(), qos=1, retain=True)
        if isinstance(self.service.estop, MqttRelayEstop):
            self.service.estop.republish()
        self.activity.connected()

    def _on_message(self, message) -> None:
        from ..adapters.mqtt import payload_of, reply_address, topic_of

        try:
            self._dispatch(topic_of(message), payload_of(message), reply_address(message))
        except Exception:  # noqa: BLE001 - one bad message must not stop the service
            self.errors += 1
            self.service.healthy = False
            log.exception("inbound message failed")

    def _dispatch(self, topic: str, payload: bytes, reply_to) -> None:
        t = self.topics
        now = self.clock.now_ms()
        svc = self.service
        reply = self._replier(reply_to) if reply_to else None
        if topic == t.cmd:
            svc.submit(decode_command(payload, self.scaler), now, reply)
        elif topic == t.telemetry:
            svc.submit(decode_telemetry(payload, self.scaler), now, reply)
        elif topic == t.op:
            svc.submit(decode_operator(payload), now, reply)
        elif topic == t.lineage_pull:
            for chunk_topic, data in svc.pull(payload, now):
                self.link.post(chunk_topic, data, 1, False)
        elif topic == t.estop_state:
            svc.estop_readback(payload, now)
        elif topic == t.envelope:  # a signed envelope change: applied only when safe
            envelope_update(self, payload, now, reply)

    def _replier(self, reply_to):
        from ..adapters.mqtt import reply_properties

        topic, correlation = reply_to

        def reply(msg: dict) -> None:
            self.link.post(topic, dumps(msg), 1, False, reply_properties(correlation))

        return reply

    # ------------------------------------------------------------ running

    async def serve(self, stop: asyncio.Event, started: asyncio.Event | None = None) -> int:
        self.lock = LineageLock(self.lineage_path).acquire()  # one writer, or LineageInUse
        try:
            return await self._serve(stop, started)
        finally:
            self.lock.release()

    async def _serve(self, stop: asyncio.Event, started: asyncio.Event | None) -> int:
        self.settings = self._settings()
        if self.cfg.mqtt_url is not None:
            await self._refuse_second_instance()
        self._build()  # lineage first: a file that cannot be written stops us before the broker
        if self.cfg.mqtt_url is None:
            from .broker import start_embedded_broker

            self.broker = await start_embedded_broker(self.cfg.broker_port)
        svc = self.service
        if self.cfg.modbus is not None:
            from .modbus_gateway import ModbusGateway

            opts = self.cfg.modbus
            opts.operator = self.compiled.admitted.modbus_operator  # the envelope decides
            opts.compiled = self.compiled  # its [modbus] register pins and drive map
            self.modbus = ModbusGateway(svc, self.clock, self.key, opts)
            self.modbus.attach()
        svc.boot(self.clock.now_ms(), self.compiled.blob)
        if self.modbus is not None:
            await self.modbus.start()
        link_task = asyncio.create_task(self.link.run())
        tick_task = asyncio.create_task(self._tick(stop))
        if started is not None:
            started.set()
        self.activity.started()
        try:
            await stop.wait()
        finally:
            await cancel_and_wait(tick_task)
            await self._shutdown(link_task)
            self.activity.stopped()
        return 0

    async def _refuse_second_instance(self) -> None:
        from .client import live_instance

        other = await live_instance(self.settings, self.topics)
        if other is not None:
            raise DeviceInUse(self.topics.device_id, other.get("boot"))

    async def _tick(self, stop: asyncio.Event) -> None:
        period = self.cfg.period_ms
        deadline = self.clock.now_ms()
        while not stop.is_set():
            await self.clock.sleep_until(deadline)
            now = self.clock.now_ms()
            try:
                if self.modbus is not None:
                    self.modbus.poll(now)
                self.service.cycle(now)
                self.activity.tick(now)
            except Exception:  # noqa: BLE001 - a failed cycle is not kicked; go on governing
                self.errors += 1
                log.exception("control cycle failed")
            deadline = next_deadline_ms(deadline, self.clock.now_ms(), period)

    async def _shutdown(self, link_task) -> None:
        if self.modbus is not None:
            await self.modbus.stop()
        self.service.stop(self.clock.now_ms())  # posts the retained offline state
        self.link.stopping = True
        await self.link.drain(2.0)
        await cancel_and_wait(link_task)
        if self.broker is not None:
            await self.broker.shutdown()


def run(cfg: ServiceConfig) -> int:
    """Run until SIGINT/SIGTERM; orderly stop (offline state, magic close)."""

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await Runner(cfg).serve(stop)

    return asyncio.run(main())


__all__ = ["ServiceConfig", "Runner", "run", "previous_run", "Inbound"]
