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


def _recording(lineage, gov, observe):
    def record(event, now_ms, d):
        if event is not None:
            lineage.record(event, now_ms, d, gov)
        if observe is not None:
            observe(event, now_ms, d)

    return record


_NOTABLE_EVENTS = {
    codes.E_TRIP, codes.E_RESET, codes.E_ARM, codes.E_APPROVAL_ASKED, codes.E_APPROVAL_GRANTED,
    codes.E_APPROVAL_DENIED, codes.E_APPROVAL_EXPIRED, codes.E_LINK_ENGAGED, codes.E_LINK_STALE,
    codes.E_LINK_LOST, codes.E_ESTOP_OUT, codes.E_BOOT,
}


def _note(result: DemoResult, env: Envelope, event, now: int, d, observe) -> None:
    result.calls += 1
    if event is not None and event.kind == codes.EV_COMMAND:
        result.command_verdicts[names.verdict(d.verdict)] += 1
        if d.verdict != codes.ALLOW and _first_of_streak(result, d):
            rule = env.rules[d.rule] if d.rule >= 0 else "-"
            result.notable.append(Notable(now, f"command #{d.seq}: {names.verdict(d.verdict)} "
                                               f"({names.reason(d.reason)}, rule {rule}, "
                                               f"margin {d.margin})"))
    for i in range(d.n_events):
        code, arg = d.ev_code[i], d.ev_arg[i]
        result.events[names.event(code)] += 1
        if code in _NOTABLE_EVENTS:
            result.notable.append(Notable(now, _event_text(code, arg)))
    if observe is not None:
        observe(event, now, d)


def _first_of_streak(result: DemoResult, d) -> bool:
    """Report a run of identical refusals once, not every control period."""
    key = (d.verdict, d.reason, d.rule)
    first = getattr(result, "_last_key", None) != key
    result._last_key = key  # type: ignore[attr-defined]
    return first


def _event_text(code: int, arg: int) -> str:
    if code == codes.E_TRIP:
        return f"TRIP ({names.reason(arg)})"
    if code == codes.E_ESTOP_OUT:
        return "e-stop output " + ("ASSERTED" if arg else "released")
    if code in (codes.E_LINK_STALE, codes.E_LINK_LOST):
        return f"{names.event(code)} after {arg} ms of silence"
    if code in (codes.E_APPROVAL_ASKED, codes.E_APPROVAL_GRANTED, codes.E_APPROVAL_DENIED,
                codes.E_APPROVAL_EXPIRED):
        return f"{names.event(code)} (request {arg})"
    return names.event(code)


VERDICT_ORDER = ("ALLOW", "CLAMP", "REJECT", "ESCALATE", "HOLD", "TRIP")


def print_summary(console, verdicts, timeline) -> None:
    """The demo's closing tables: proposals by verdict, then (seconds, text) events."""
    from rich.table import Table

    table = Table(title="Proposals by verdict")
    table.add_column("verdict")
    table.add_column("commands", justify="right")
    for verdict in VERDICT_ORDER:
        table.add_row(verdict, str(verdicts.get(verdict, 0)))
    console.print(table)
    happened = Table(title="What happened")
    happened.add_column("t (s)", justify="right")
    happened.add_column("")
    for t_s, text in timeline:
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
    console.print(f"  try: edgegov lineage decode {path} | head; "
                  f"edgegov lineage replay {path} --envelope OTHER.toml")
    return 0 if rep.ok and replay.identical else 1


__all__ = ["run_scenario", "default_envelope", "check_lineage", "print_summary",
           "DemoResult", "SCRIPT", "DEMO_KEY",
           "write_demo_key"]
