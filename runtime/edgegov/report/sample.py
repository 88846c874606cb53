"""Long lineages from the real governor, for the report's benchmark and tests.

``edgegov demo`` runs its scenario once, into a 1 MiB ring. A report has to cope with much
more: hours of records (10⁶ and up), several boots, incidents spread all over. This drives
the same simulated cell, planner and operator as the demo (``edgegov.sim``), but repeats
the demo's script every ``SCRIPT_PERIOD_MS`` and can reboot the governor part-way, writing
into a ring sized for it. Everything in the file is what the governor decided.
"""

from __future__ import annotations

import random
from pathlib import Path

from .. import __version__
from ..config.compile import CompiledEnvelope
from ..core import codes
from ..core.envelope import Envelope
from ..core.events import TICK
from ..core.governor import Governor
from ..demo import DEMO_KEY
from ..host.lineage_store import DEFAULT_BLOCK_SIZE, open_lineage
from ..operator import OperatorSigner
from ..sim import (
    CONTROL_PERIOD_MS,
    TELEMETRY_PERIOD_MS,
    Operator,
    Planner,
    Plant,
    active_misbehaviours,
    apply_plant_script,
)

SCRIPT_PERIOD_MS = 20_000  # the demo's script is 20 s long
BYTES_PER_RECORD = 40  # generous average (frame included), to size the ring
RESET_WATCHDOG = 3  # reset reason recorded for the simulated reboots
OFF_MS = 90_000  # with wall time: the device is off this long between two boots


def ring_blocks(records: int, block_size: int = DEFAULT_BLOCK_SIZE) -> int:
    """Sectors for ``records`` records without wrapping (plus slack for checkpoints)."""
    return max(64, records * BYTES_PER_RECORD // block_size * 5 // 4)


def generate(path, compiled: CompiledEnvelope, records: int, seed: int = 7, boots: int = 1,
             block_count: int | None = None, mode_every_ms: int = 0, progress=None,
             wall_ms: int | None = None) -> int:
    """Write at least ``records`` records to a lineage at ``path`` (replaced); return how
    many were written (a small ring may drop some: they count). ``boots`` > 1 reboots the
    governor evenly along the way (watchdog reset reason, boot counter counting up), as a
    device would after a hang.
    ``mode_every_ms`` > 0: every so often the operator moves the cell to its next mode
    (authenticated, at the next moment the governor is disarmed, as it requires).
    ``wall_ms``: the wall time (ms since the epoch, UTC) of the first boot, recorded in
    every BOOT record (each later boot starts ``OFF_MS`` after the previous one ended), as a
    gateway with a set clock records it; None records no wall time."""
    Path(path).unlink(missing_ok=True)
    env = Envelope.from_blob(compiled.blob, compiled.digest)
    blocks = block_count or ring_blocks(records)
    appended = 0
    per_boot = -(-records // boots)
    for boot in range(1, boots + 1):
        lineage = open_lineage(path, env, DEMO_KEY, block_count=blocks, durable=False)
        target = min(per_boot, records - appended)
        run = _Run(lineage, env, boot, seed + boot, mode_every_ms)
        appended += run.until(compiled, target, progress, appended, records, wall_ms)
        if wall_ms is not None:
            wall_ms += run.ran_ms + OFF_MS
    return appended


class _Run:
    """One boot of the governor in the simulated cell, recorded into ``lineage``."""

    def __init__(self, lineage, env, boot: int, seed: int, mode_every_ms: int):
        self.lineage, self.env, self.boot = lineage, env, boot
        self.gov = Governor(env, DEMO_KEY)
        self.plant, self.planner = Plant(), Planner(random.Random(seed))
        self.operator = Operator(OperatorSigner(DEMO_KEY, env.device_id))
        self.mode_every_ms = mode_every_ms
        self.next_mode = None

    def until(self, compiled, target: int, progress, done: int, total: int,
              wall_ms: int | None = None) -> int:
        lineage, gov = self.lineage, self.gov
        reason = 0 if self.boot == 1 else RESET_WATCHDOG
        decision = lineage.boot(gov, 0, boot_count=self.boot, reset_reason=reason,
                                fw_version=__version__, envelope_blob=compiled.blob,
                                wall_ms=wall_ms)
        self.operator.signer.counter = gov.op_counter
        start = lineage.appended + lineage.lost
        now = 0
        # Records the ring had to drop (every other sector frozen) count too: a small ring
        # full of frozen incidents must not make this run forever.
        while lineage.appended + lineage.lost - start < target:
            decision = self.period(now, decision)
            if progress is not None and now % 10_000 == 0:
                progress(done + lineage.appended - start, total)
            now += CONTROL_PERIOD_MS
        self.ran_ms = now
        lineage.checkpoint(gov, now)
        lineage.sync()
        lineage.device.close()
        return lineage.appended + lineage.lost - start

    def period(self, now: int, decision):
        """One control period, as ``edgegov.demo.run_scenario`` runs it."""
        active = active_misbehaviours(now % SCRIPT_PERIOD_MS)
        apply_plant_script(self.plant, active)
        events = [self.plant.telemetry()] if now % TELEMETRY_PERIOD_MS == 0 else []
        command = self.planner.propose(now, active)
        if command is not None:
            events.append(command)
        for event in events:
            decision = self.call(event, now)
        for action in self._mode_change(decision, now) + self.operator.react(decision, now):
            decision = self.call(action, now)
        decision = self.call(TICK, now)
        outputs = dict(zip(self.env.ch_names, decision.output, strict=True))
        self.plant.step(outputs, CONTROL_PERIOD_MS)
        if decision.state != codes.ST_ARMED:
            self.planner.follow(outputs)
        return decision

    def call(self, event, now: int):
        decision = self.gov.handle(event, now)
        self.lineage.record(event, now, decision, self.gov)
        if decision.n_events and codes.E_MODE in decision.ev_code[: decision.n_events]:
            self.next_mode = None
        return decision

    def _mode_change(self, decision, now: int) -> list:
        every = self.mode_every_ms
        if every and now and now % every == 0:
            self.next_mode = (self.gov.mode + 1) % len(self.env.modes)
        if self.next_mode is None or decision.state != codes.ST_DISARMED:
            return []
        return [self.operator.signer.sign(codes.OP_MODE, self.next_mode)]


__all__ = ["generate", "ring_blocks", "SCRIPT_PERIOD_MS"]
