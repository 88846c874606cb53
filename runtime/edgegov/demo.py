"""The built-in scenario: governor + simulated cell + misbehaving planner, in one process.

Runs on scripted time (10 ms control period) so the same seed gives the same decisions.
``run_scenario`` calls ``observe(event, now_ms, decision)`` for every governor call, which
is where the CLI shows progress and where lineage or any other consumer attaches.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__, names
from .config.compile import CompiledEnvelope, compile_file
from .core import codes
from .core.envelope import Envelope
from .core.events import TICK
from .core.governor import Governor
from .host.lineage_store import open_lineage
from .operator import OperatorSigner
from .sim import (
    CONTROL_PERIOD_MS,
    SCRIPT,
    TELEMETRY_PERIOD_MS,
    Operator,
    Planner,
    Plant,
    active_misbehaviours,
    apply_plant_script,
)

DEMO_KEY = bytes(range(32))  # the demo's device key; a real device reads its key file
EXAMPLE = Path(__file__).resolve().parents[2] / "boards" / "envelopes" / "spindle-cell.toml"


@dataclass
class Notable:
    now_ms: int
    text: str
    key: str | None = None  # what counts as a repeat of it (Story.add)


@dataclass
class DemoResult:
    seconds: int
    calls: int = 0
    command_verdicts: Counter = field(default_factory=Counter)
    events: Counter = field(default_factory=Counter)
    notable: list[Notable] = field(default_factory=list)
    final_state: str = ""
    lineage_records: int = 0


def default_envelope() -> CompiledEnvelope:
    return compile_file(EXAMPLE)


def run_scenario(compiled: CompiledEnvelope, seconds: int = 20, seed: int = 7, observe=None,
                 lineage_path=None):
    """Run the scenario for ``seconds`` of scenario time; return a ``DemoResult``.

    With ``lineage_path`` every recorded decision goes into a fresh lineage file there.
    """
    env = Envelope.from_blob(compiled.blob, compiled.digest)
    gov = Governor(env, DEMO_KEY)
    plant, planner = Plant(), Planner(random.Random(seed))
    operator = Operator(OperatorSigner(DEMO_KEY, env.device_id))
    result = DemoResult(seconds)
    lineage = None
    if lineage_path is not None:
        Path(lineage_path).unlink(missing_ok=True)
        lineage = open_lineage(lineage_path, env, DEMO_KEY, group_commit=True)
        decision = lineage.boot(gov, 0, boot_count=1, fw_version=__version__,
                                envelope_blob=compiled.blob)
    else:
        decision = gov.start(0)
    if lineage is not None:
        observe = _recording(lineage, gov, observe)
    _note(result, env, None, 0, decision, observe)
    for now in range(0, seconds * 1000 + 1, CONTROL_PERIOD_MS):
        active = active_misbehaviours(now)
        for note in script_starts(now, CONTROL_PERIOD_MS):
            result.notable.append(Notable(now, note))
        apply_plant_script(plant, active)
        events = []
        if now % TELEMETRY_PERIOD_MS == 0:
            events.append(plant.telemetry())
        command = planner.propose(now, active)
        if command is not None:
            events.append(command)
        for event in events:
            decision = gov.handle(event, now)
            _note(result, env, event, now, decision, observe)
        for action in operator.react(decision, now):
            decision = gov.handle(action, now)
            _note(result, env, action, now, decision, observe)
        decision = gov.handle(TICK, now)
        _note(result, env, TICK, now, decision, observe)
        if lineage is not None:
            lineage.device.flush()  # group commit: one fdatasync per control period
        outputs = dict(zip(env.ch_names, decision.output, strict=True))
        plant.step(outputs, CONTROL_PERIOD_MS)
        if decision.state != codes.ST_ARMED:
            planner.follow(outputs)
    result.final_state = names.state(gov.state)
    if lineage is not None:
        lineage.checkpoint(gov, seconds * 1000)
        lineage.sync()
        lineage.device.flush()
        lineage.device.close()
        result.lineage_records = lineage.appended
    return result


def script_starts(now_ms: int, period_ms: int) -> list[str]:
    """``scripted: ...`` for each misbehaviour of the script starting in this period."""
    return [f"scripted: {m.note}" for m in SCRIPT
            if now_ms <= m.at_ms < now_ms + period_ms]


def script_due(now_ms: int, announced: set) -> list[str]:
    """``scripted: ...`` for each misbehaviour started by ``now_ms`` and not yet in
    ``announced`` (which it updates): on the wall clock a late step never skips one."""
    due = [m for m in SCRIPT if m.at_ms <= now_ms and m.kind not in announced]
    announced.update(m.kind for m in due)
    return [f"scripted: {m.note}" for m in due]


def _recording(lineage, gov, observe):
    def record(event, now_ms, d):
        if event is not None:
            lineage.record(event, now_ms, d, gov)
        if observe is not None:
            observe(event, now_ms, d)

    return record


_NOTABLE_EVENTS = {
    codes.E_TRIP, codes.E_RESET, codes.E_RESET_REFUSED, codes.E_ARM, codes.E_ARM_REFUSED,
    codes.E_APPROVAL_ASKED, codes.E_APPROVAL_GRANTED, codes.E_APPROVAL_DENIED,
    codes.E_APPROVAL_EXPIRED, codes.E_LINK_ENGAGED, codes.E_LINK_STALE, codes.E_LINK_LOST,
    codes.E_ESTOP_OUT, codes.E_BOOT, codes.E_FAULT, codes.E_MODE,
}


def _note(result: DemoResult, env: Envelope, event, now: int, d, observe) -> None:
    result.calls += 1
    if event is not None and event.kind == codes.EV_COMMAND:
        result.command_verdicts[names.verdict(d.verdict)] += 1
        if d.verdict != codes.ALLOW and _first_of_streak(result, d):
            result.notable.append(Notable(now, decision_text(env, d, d.seq),
                                          decision_key(env, d)))
    for i in range(d.n_events):
        code, arg = d.ev_code[i], d.ev_arg[i]
        result.events[names.event(code)] += 1
        if code in _NOTABLE_EVENTS:
            result.notable.append(Notable(now, _event_text(env, d, code, arg)))
    if observe is not None:
        observe(event, now, d)


def _first_of_streak(result: DemoResult, d) -> bool:
    """Report a run of identical refusals once, not every control period."""
    key = (d.verdict, d.reason, d.rule)
    first = getattr(result, "_last_key", None) != key
    result._last_key = key  # type: ignore[attr-defined]
    return first


def decision_text(env: Envelope, d, seq) -> str:
    """``command #412: CLAMP (rate, rule channels.spindle.rate, spindle margin -12 rpm)``."""
    from .service.messages import Vocabulary

    where = f"rule {_rule(env, d.rule)}"
    if 0 <= d.channel < len(env.ch_names) and d.margin:
        value = Vocabulary(env).eng(d.channel, d.margin)
        where += f", {env.ch_names[d.channel]} margin " \
                 f"{names.with_unit(value, env.ch_units[d.channel])}"
    return f"command #{seq}: {names.verdict(d.verdict)} ({names.reason(d.reason)}, {where})"


def decision_key(env: Envelope, d) -> str:
    """What makes two refused commands the same line of the story: verdict, reason, rule."""
    return f"command {names.verdict(d.verdict)} {names.reason(d.reason)} {_rule(env, d.rule)}"


def _rule(env: Envelope, index: int) -> str:
    return env.rules[index] if 0 <= index < len(env.rules) else "-"


def _event_text(env: Envelope, d, code: int, arg: int) -> str:
    doc = names.describe_event(code, arg, env)
    if code == codes.E_TRIP:
        doc["rule"] = _rule(env, d.rule)
    return names.event_text(doc)


class Story:
    """What happened, for people: (time, text) lines in order, where a line that repeats
    one of the last two is counted on it instead of added (an operator's reset refused
    every 0.3 s becomes two lines with counts, and the trip before it stays in view)."""

    def __init__(self) -> None:
        self.entries: list[list] = []  # [t_first_s, t_last_s, text, count, key]

    def add(self, t_s: float, text: str, key: str | None = None) -> None:
        """Add a line; ``key`` (default: the text) says what counts as a repeat, e.g. the
        same verdict on the same rule for commands with different sequence numbers."""
        key = text if key is None else key
        for entry in self.entries[-2:]:
            if entry[4] == key:
                entry[1] = t_s
                entry[3] += 1
                return
        self.entries.append([t_s, t_s, text, 1, key])

    def rows(self) -> list[tuple[float, str]]:
        """(first time, text with ``×N, until T s`` when repeated)."""
        return [(t0, text if n == 1 else f"{text}  (×{n}, until {t1:.2f} s)")
                for t0, t1, text, n, _ in self.entries]

    def tail(self, n: int) -> list[str]:
        return [f"{t:6.2f}s  {text}" for t, text in self.rows()[-n:]]

    def __len__(self) -> int:
        return len(self.entries)


VERDICT_ORDER = ("ALLOW", "CLAMP", "REJECT", "ESCALATE", "HOLD", "TRIP")
# The other envelope the closing hint names: the same cell with a slower spindle and a
# shorter link budget, so the what-if replay has differences to show.
OTHER_ENVELOPE = EXAMPLE.with_name("spindle-cell-tight.toml")


def story_of(timeline) -> Story:
    """A ``Story`` from (seconds, text) pairs (a Story is returned as it is)."""
    if isinstance(timeline, Story):
        return timeline
    story = Story()
    for item in timeline:
        story.add(*item)
    return story


def print_summary(console, verdicts, timeline) -> None:
    """The demo's closing tables: proposals by verdict, then the whole run's story
    (a ``Story`` or (seconds, text) pairs), repeats grouped."""
    from rich.table import Table

    table = Table(title="Proposals by verdict")
    table.add_column("verdict")
    table.add_column("commands", justify="right")
    for verdict in VERDICT_ORDER:
        table.add_row(verdict, str(verdicts.get(verdict, 0)))
    table.add_row("total", str(sum(verdicts.get(v, 0) for v in VERDICT_ORDER)))
    console.print(table)
    happened = Table(title="What happened")
    happened.add_column("t (s)", justify="right")
    happened.add_column("")
    for t_s, text in story_of(timeline).rows():
        happened.add_row(f"{t_s:.2f}", text)
    console.print(happened)


def write_demo_key(out: Path) -> Path:
    """Write the demo's device key (hex, mode 600) as ``edgegov-demo.key`` in ``out``."""
    key_file = out / "edgegov-demo.key"
    key_file.unlink(missing_ok=True)
    key_file.write_text(DEMO_KEY.hex() + "\n")
    key_file.chmod(0o600)
    return key_file


def check_lineage(console, path: Path, key: bytes = DEMO_KEY) -> int:
    """What a user does after a run (or an incident): verify the lineage, replay it, write
    the incident report; print where everything is. 0 when it verifies and replays."""
    from .core.replay import Replayer
    from .core.verify import verify
    from .host.lineage_store import read_dump
    from .report import ReportError, write_report

    dump = read_dump(path)
    rep = verify(dump.records, dump.problems, key, dump.offsets, dump.genesis_seq)
    replay = Replayer(dump.envelopes()).run(dump.records)
    console.print(f"lineage: [bold]{path.resolve()}[/bold] ({len(dump.records)} records, "
                  f"{path.stat().st_size // 1024} KiB ring)")
    console.print(f"  verify: {'OK' if rep.ok else 'FAILED'} ({rep.checkpoints} keyed checkpoints)")
    console.print(f"  replay: {'identical' if replay.identical else 'DIVERGENT'} "
                  f"({replay.compared} records re-derived)")
    html = path.with_name(path.stem + "-report.html")
    try:
        write_report(path, html, key=key)
        console.print(f"  report: [bold]{html.resolve()}[/bold] (open it in a browser)")
    except ReportError as err:
        console.print(f"  report: not written: {err}")
    console.print(f"  try: edgegov lineage decode {path} | head")
    console.print(f"       edgegov lineage replay {path} --envelope {_shown(OTHER_ENVELOPE)}"
                  "   (what if the cell had run the tighter envelope?)")
    return 0 if rep.ok and replay.identical else 1


def _shown(path: Path) -> str:
    """The path relative to the current directory when it lies below it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


__all__ = ["run_scenario", "default_envelope", "check_lineage", "print_summary",
           "DemoResult", "SCRIPT", "DEMO_KEY", "Story", "story_of", "decision_text",
           "OTHER_ENVELOPE", "script_starts", "script_due", "decision_key", "write_demo_key"]
