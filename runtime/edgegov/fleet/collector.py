"""``edgegov fleet collect``: hear every device's trips through the broker, archive each once.

Subscriptions (MQTT 5):

- ``$share/GROUP/PREFIX/+/event`` (QoS 1): a ``trip`` event becomes a job. Shared: the
  broker hands each message to one collector of the group, so N collectors split the fleet.
- ``$share/GROUP/PREFIX/+/decision`` (QoS 0, unless ``decisions=False``): counted per
  device (decisions, clamps, rejects) and added to ``devices`` once a second.
- ``PREFIX/+/state`` (QoS 1), *not* shared: retained messages are not delivered to shared
  subscriptions, and a device that tripped while no collector ran says so only in its
  retained state. Every collector hears every state (and will). A TRIPPED state other
  than the one a device boots in (causes exactly ``boot``; a trip whose cause has cleared
  stays TRIPPED with none), heard first or after another state of that boot, becomes a
  job: the trip's own id ``trip:DEVICE:BOOT:T_MS`` when it is the state the trip
  published (the database keeps one of the two), else a pull that archives whatever
  incident the dump holds. Later states while still tripped add nothing.

Handling a message never waits for a pull: it updates memory or inserts one row, so the
client's incoming queue stays short; the work itself waits in the database (``jobs``), which
a burst of trips across the fleet only lengthens. Workers (``workers`` per collector) claim
jobs with a lease, renew it while they pull, verify, replay and report, and finish in one
transaction that archives the incidents only while they still hold the lease. A collector
that dies mid-pull leaves a lease that runs out; another claims the job. Each pull archives
every incident its dump holds that the archive lacks, so a trip heard by nobody is archived
with the device's next pull.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt

from .. import names
from ..adapters.mqtt import MqttSettings, make_client
from ..adapters.resilience import backoff_delay_ms
from ..host.aio import cancel_and_wait
from ..host.walltime import format_wall
from ..operator import KeyFileError, load_key
from ..service.client import PullError, pull_lineage
from ..service.topics import Topics, valid_device_id
from .analyse import DumpUnreadable, analyse
from .archive import Archive, Job

MAX_ATTEMPTS = 8  # pulls of one job before it is marked failed
RETRY_BASE_MS, RETRY_CAP_MS = 2_000, 60_000
IDLE_POLL_S = 1.0  # how often an idle worker looks for jobs other collectors queued


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


async def pull_image(settings: MqttSettings, topics: Topics,
                     timeout_s: float) -> tuple[bytes, dict | None]:
    """The device's lineage image and its head attestation: a sealed pull where this
    edgegov has one (``service.client.pull_sealed``). A device whose service predates
    sealed pulls answers without an attestation; its image is pulled plainly and archived
    with ``attested`` NULL, which ``fleet incidents`` shows."""
    try:
        from ..service.client import pull_sealed
    except ImportError:
        return await pull_lineage(settings, topics, timeout_s), None
    try:
        pulled = await pull_sealed(settings, topics, timeout_s)
    except PullError as err:
        if "no usable head attestation" not in str(err):
            raise
        return await pull_lineage(settings, topics, timeout_s), None
    return pulled.image, pulled.attestation


@dataclass
class CollectorOptions:
    settings: MqttSettings
    archive: str
    keys_dir: Path
    prefix: str = "edgegov"
    group: str = "edgegov-collectors"
    store: str | None = None
    name: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    workers: int = 2
    lease_ms: int = 30_000
    pull_timeout_s: float = 30.0
    decisions: bool = True
    report: bool = True
    progress_s: float = 5.0


class Collector:
    """One collector process: ``await run(stop)``."""

    def __init__(self, opts: CollectorOptions, say=None) -> None:
        self.opts = opts
        self.say = say or (lambda line: print(line, file=sys.stderr, flush=True))
        self._db_pool = ThreadPoolExecutor(1, thread_name_prefix="fleet-db")
        self._cpu_pool = ThreadPoolExecutor(max(1, opts.workers), thread_name_prefix="fleet")
        self.archive: Archive | None = None
        self.wake = asyncio.Event()
        self.boots: dict[str, int] = {}
        self.last_state: dict[str, tuple] = {}  # device -> (boot, state) last heard online
        self.counts: dict[str, list[int]] = {}
        self.received = {"state": 0, "event": 0, "decision": 0}
        self.archived = 0
        self.jobs_done = 0
        self.archive_cpu_s = 0.0  # CPU seconds spent verifying, replaying and reporting
        self._pending_db: set = set()
        self._loop = None

    # ------------------------------------------------------------ the database thread

    async def db(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._db_pool, fn, *args)

    def db_soon(self, fn, *args) -> None:
        """Queue a write in order on the database thread without waiting for it."""
        fut = asyncio.get_running_loop().run_in_executor(self._db_pool, fn, *args)
        self._pending_db.add(fut)
        fut.add_done_callback(self._db_done)

    def _db_done(self, fut) -> None:
        self._pending_db.discard(fut)
        if not fut.cancelled() and fut.exception() is not None:
            self.say(f"archive write failed: {fut.exception()}")

    # ------------------------------------------------------------ running

    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> int:
        o = self.opts
        self._loop = asyncio.get_running_loop()
        self.archive = await self.db(Archive.open, o.archive, o.store)
        self.say(f"collector {o.name}: archive {self.archive.where} "
                 f"({self.archive.dialect}), store {self.archive.store.root}, group {o.group}, "
                 f"{o.workers} workers")
        tasks = [asyncio.create_task(self._mqtt(stop, ready))]
        tasks += [asyncio.create_task(self._worker(i, stop)) for i in range(o.workers)]
        tasks.append(asyncio.create_task(self._ticker(stop)))
        try:
            await stop.wait()
        finally:
            for t in tasks:
                await cancel_and_wait(t, 10)
            await self._flush_counts()
            await asyncio.gather(*list(self._pending_db), return_exceptions=True)
            self.say(f"collector {o.name}: stopped; {sum(self.received.values())} messages "
                     f"received, {self.archived} incidents archived here")
            await self.db(self.archive.close)
            self._db_pool.shutdown()
            self._cpu_pool.shutdown(wait=False, cancel_futures=True)
        return 0

    async def _mqtt(self, stop: asyncio.Event, ready: asyncio.Event | None) -> None:
        attempt = 0
        while not stop.is_set():
            try:
                async with make_client(self.opts.settings,
                                       f"edgegov-collector-{self.opts.name}") as client:
                    await self._subscribe(client)
                    attempt = 0
                    if ready is not None:
                        ready.set()
                    async for message in client.messages:
                        self._on_message(str(message.topic), message.payload)
            except aiomqtt.MqttError as err:
                delay = backoff_delay_ms(attempt, 200, 5_000)
                attempt += 1
                self.say(f"broker: {err}; reconnecting in {delay} ms")
                await asyncio.sleep(delay / 1000)

    async def _subscribe(self, client) -> None:
        p, g = self.opts.prefix, self.opts.group
        await client.subscribe(f"$share/{g}/{p}/+/event", qos=1)
        if self.opts.decisions:
            await client.subscribe(f"$share/{g}/{p}/+/decision", qos=0)
        await client.subscribe(f"{p}/+/state", qos=1)

    # ------------------------------------------------------------ messages

    def _on_message(self, topic: str, payload) -> None:
        parts = topic.split("/")
        if len(parts) < 3 or not valid_device_id(parts[-2]):
            return
        device, kind = parts[-2], parts[-1]
        if kind not in self.received:
            return
        self.received[kind] += 1
        try:
            doc = json.loads(payload)
        except (ValueError, TypeError):
            return
        if not isinstance(doc, dict):
            return
        if kind == "decision":
            self._count(device, doc)
        elif kind == "event":
            self._event(device, doc)
        else:
            self._state(device, doc)

    def _count(self, device: str, doc: dict) -> None:
        c = self.counts.get(device)
        if c is None:
            c = self.counts[device] = [0, 0, 0]
        c[0] += 1
        verdict = doc.get("verdict")
        if verdict == "CLAMP":
            c[1] += 1
        elif verdict == "REJECT":
            c[2] += 1

    def _event(self, device: str, doc: dict) -> None:
        if doc.get("event") != "trip" or type(doc.get("t_ms")) is not int:
            return
        arg = doc.get("arg")
        cause = names.reason(arg) if type(arg) is int else None
        self._trip(device, self.boots.get(device), doc["t_ms"], cause)

    def _state(self, device: str, doc: dict) -> None:
        doc.setdefault("device", device)
        if doc.get("device") != device:
            return
        if type(doc.get("boot")) is int:
            self.boots[device] = doc["boot"]
        self.db_soon(self.archive.note_state, doc, wall_ms())
        if doc.get("status") != "online":
            return
        seen = (self.boots.get(device), doc.get("state"))
        before = self.last_state.get(device)
        self.last_state[device] = seen
        if before == seen:
            return  # a change while tripped (a cause cleared, the link): the same trip
        causes = doc.get("trip_causes")
        if (doc.get("state") == "TRIPPED" and isinstance(causes, list)
                and set(causes) != {"boot"} and type(doc.get("t_ms")) is int):
            self._trip(device, self.boots.get(device), doc["t_ms"], ",".join(map(str, causes)))

    def _trip(self, device: str, boot: int | None, t_ms: int, cause: str | None) -> None:
        job_id = f"trip:{device}:{boot if boot is not None else '?'}:{t_ms}"
        self.db_soon(self._enqueue, job_id, device, boot, t_ms, cause)

    def _enqueue(self, job_id, device, boot, t_ms, cause) -> None:
        if self.archive.enqueue(job_id, device, "trip", wall_ms(), boot, t_ms, cause):
            self._wake_threadsafe()

    def _wake_threadsafe(self) -> None:
        self._loop.call_soon_threadsafe(self.wake.set)

    # ------------------------------------------------------------ workers

    async def _worker(self, index: int, stop: asyncio.Event) -> None:
        owner = f"{self.opts.name}/{index}"
        while not stop.is_set():
            job = await self.db(self.archive.claim, owner, wall_ms(), self.opts.lease_ms)
            if job is None:
                self.wake.clear()
                try:
                    await asyncio.wait_for(self.wake.wait(), IDLE_POLL_S)
                except TimeoutError:
                    pass
                continue
            await self._leased(job)

    async def _leased(self, job: Job) -> None:
        """Work on ``job`` while renewing its lease; stop at once if the lease is lost."""
        work = asyncio.create_task(self._process(job))
        renew_every_s = self.opts.lease_ms / 3000
        try:
            while not work.done():
                done, _ = await asyncio.wait({work}, timeout=renew_every_s)
                if done:
                    break
                if not await self.db(self.archive.renew, job, wall_ms(), self.opts.lease_ms):
                    self.say(f"job {job.id}: lease lost to another collector; dropped")
                    await cancel_and_wait(work)
                    return
            work.result()
        except asyncio.CancelledError:
            await cancel_and_wait(work)
            await self.db(self.archive.fail, job, "collector stopped", wall_ms(), wall_ms())
            raise
        except Exception as err:  # noqa: BLE001 - one job's failure must not stop the worker
            await self._retry(job, f"{type(err).__name__}: {err}")

    async def _process(self, job: Job) -> None:
        o = self.opts
        try:
            key = load_key(o.keys_dir / f"{job.device}.key")
        except KeyFileError as err:
            await self._give_up(job, str(err))
            return
        self.say(f"job {job.id}: pulling {job.device} (attempt {job.attempts})")
        t0 = time.monotonic()
        try:
            image, attestation = await pull_image(o.settings, Topics(job.device, o.prefix),
                                                  o.pull_timeout_s)
        except (PullError, aiomqtt.MqttError, TimeoutError) as err:
            await self._retry(job, f"pull: {err}")
            return
        pulled_s = time.monotonic() - t0
        known = await self.db(self.archive.incident_ids, job.device)
        try:
            result = await asyncio.get_running_loop().run_in_executor(
                self._cpu_pool, self._analyse, image, key, job, o.report, attestation)
        except DumpUnreadable as err:
            await self._give_up(job, str(err))
            return
        await self._finish(job, result, known, pulled_s, time.monotonic() - t0)

    def _analyse(self, image: bytes, key: bytes, job: Job, report: bool, attestation):
        """``analyse`` on a worker thread, adding the thread's CPU time to ``archive_cpu_s``
        (so message handling and archiving work can be told apart)."""
        t0 = time.thread_time()
        try:
            return analyse(image, key, self.archive.store, job.device, job.boot, report,
                           attestation)
        finally:
            self.archive_cpu_s += time.thread_time() - t0

    async def _finish(self, job: Job, result, known: set, pulled_s: float, took_s: float):
        now = wall_ms()
        rows = []
        for inc in result.incidents:
            if inc["id"] in known:
                continue
            if inc["trip_wall_ms"] is None and job.trip_t_ms == inc["trip_t_ms"]:
                inc["trip_wall_ms"] = job.heard_wall_ms
            rows.append({**inc, "envelope": result.envelope, "firmware": result.firmware,
                         "dump_sha256": result.dump_sha256, "dump_bytes": result.dump_bytes,
                         "records": result.records, "verify_ok": int(result.verify_ok),
                         "macs_checked": int(result.macs_checked),
                         "verify_text": result.verify_text, "replay_ok": int(result.replay_ok),
                         "replay_text": result.replay_text,
                         "report_sha256": result.report_sha256,
                         "report_error": result.report_error, "job_id": job.id,
                         "attested": result.attested, "attest_text": result.attest_text,
                         "collector": job.lease_owner, "archived_wall_ms": now})
        note = (f"{len(rows)} incident(s) archived from dump {result.dump_sha256[:16]}"
                if rows else f"no new incident in dump {result.dump_sha256[:16]}")
        new = await self.db(self.archive.finish, job, rows, note, now)
        if new is None:
            self.say(f"job {job.id}: lease lost before archiving; left to its new owner")
            return
        self.jobs_done += 1
        self.archived += new
        for inc in rows:
            self._tell_archived(inc, result, pulled_s, took_s)
        if not rows:
            self.say(f"job {job.id}: {note}")

    def _tell_archived(self, inc: dict, result, pulled_s: float, took_s: float) -> None:
        when = format_wall(inc["trip_wall_ms"]) if inc["trip_wall_ms"] else "time unknown"
        code = f" ({inc['cause_code']})" if inc["cause_code"] is not None else ""
        if result.report_sha256:
            report = str(self.archive.store.path(result.report_sha256, ".html"))
        else:
            report = f"no report: {result.report_error or 'not asked for'}"
        self.say(f"archived {inc['device']} boot {inc['boot']} trip at {when}: "
                 f"{inc['cause']}{code}; verify {'ok' if result.verify_ok else 'FAILED'}"
                 f"{'' if result.attested is not None else ' (head not attested)'}, "
                 f"replay {'identical' if result.replay_ok else 'NOT identical'}; "
                 f"pull {pulled_s * 1000:.0f} ms, total {took_s * 1000:.0f} ms; {report}")

    async def _retry(self, job: Job, error: str) -> None:
        if job.attempts >= MAX_ATTEMPTS:
            await self._give_up(job, f"{error} (after {job.attempts} attempts)")
            return
        delay = backoff_delay_ms(job.attempts - 1, RETRY_BASE_MS, RETRY_CAP_MS)
        self.say(f"job {job.id}: {error}; retrying in {delay / 1000:.0f} s")
        await self.db(self.archive.fail, job, error, wall_ms(), wall_ms() + delay)

    async def _give_up(self, job: Job, error: str) -> None:
        self.say(f"job {job.id}: FAILED: {error}")
        await self.db(self.archive.fail, job, error, wall_ms(), None)

    # ------------------------------------------------------------ counters and progress

    async def _flush_counts(self) -> None:
        if not self.counts or self.archive is None:
            return
        counts, self.counts = self.counts, {}
        await self.db(self.archive.add_decisions, {d: tuple(c) for d, c in counts.items()},
                      wall_ms())

    async def _ticker(self, stop: asyncio.Event) -> None:
        last = time.monotonic()
        seen = sum(self.received.values())
        next_progress = last + self.opts.progress_s
        while not stop.is_set():
            await asyncio.sleep(1.0)
            await self._flush_counts()
            now = time.monotonic()
            if now < next_progress:
                continue
            total = sum(self.received.values())
            rate = (total - seen) / (now - last)
            last, seen, next_progress = now, total, now + self.opts.progress_s
            jobs = await self.db(self.archive.job_counts)
            self.say(f"collector {self.opts.name}: {rate:.0f} msg/s (state "
                     f"{self.received['state']}, event {self.received['event']}, decision "
                     f"{self.received['decision']}); jobs pending {jobs['pending']}, running "
                     f"{jobs['running']}, done {jobs['done']}, failed {jobs['failed']}; "
                     f"archived here {self.archived} (archive CPU {self.archive_cpu_s:.2f} s)")


__all__ = ["Collector", "CollectorOptions", "pull_image", "MAX_ATTEMPTS"]
