"""``edgegov demo`` on the real service: the embedded broker, ``edgegov run``'s loop, and a
simulated cell, planner and operator talking to it over MQTT, on the wall clock.

The spindle/press cell (``edgegov.sim``) reports its inputs on ``telemetry`` and follows
what the service publishes on ``output``; the planner proposes on ``cmd`` every 10 ms and
misbehaves as ``sim.SCRIPT`` says (too-fast ramps, overspeed, out-of-range strokes, NaN,
unknown channels, the door opening under a turning spindle, going silent); a scripted
operator resets and arms after trips and answers approval requests with signed actions on
``op``. A live view shows proposals, verdicts and state. At the end the service stops in
order, and its lineage file is verified and replayed.

With ``plc=True`` the planner is a PLC instead: it proposes over Modbus TCP (a real
pymodbus client writing the heartbeat and the proposal registers of ``edgegov modbus map``
to the service's Modbus server), and the view counts the writes answered with exception 03.
Misbehaviours Modbus cannot carry (NaN, unknown channels, strings) are shown as skipped.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from pathlib import Path

from .. import names
from ..core import codes
from ..demo import (
    DEMO_KEY,
    EXAMPLE,
    VERDICT_ORDER,
    Story,
    check_lineage,
    print_summary,
    script_due,
    write_demo_key,
)
from ..host.aio import cancel_and_wait, stop_requested
from ..host.net import free_port
from ..operator import OperatorSigner
from ..sim import SCRIPT, Planner, Plant, active_misbehaviours, apply_plant_script
from .log import setup_logging
from .runner import Runner, ServiceConfig

_VERDICTS = VERDICT_ORDER


class PlcLink:
    """The planner as a PLC: one FC16 write of [heartbeat, every proposal register] per
    proposal, through a real pymodbus client."""

    def __init__(self, port: int, regmap) -> None:
        from pymodbus.client import AsyncModbusTcpClient

        self.client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=1, retries=0)
        self.map = regmap
        self.standing = {s.name: 0 for s in regmap.channels}
        self.heartbeat = 0
        self.writes = 0
        self.refused = 0  # answered with exception 03
        self.skipped = 0  # values Modbus cannot carry

    async def propose(self, values: dict) -> None:
        from ..adapters import modbus_map as mm

        for name, v in values.items():
            if name in self.standing and type(v) is int:
                self.standing[name] = v
            else:
                self.skipped += 1
        self.heartbeat = (self.heartbeat + 1) & 0xFFFF
        words = [self.heartbeat, *self.map.proposal_words(self.standing)]
        rr = await self.client.write_registers(mm.H_HEARTBEAT, words, device_id=1)
        self.writes += 1
        if rr.isError():
            self.refused += 1


class CellPeers:
    """Plant, planner and operator as one MQTT client of the service."""

    def __init__(self, client, base: str, device_id: str, seed: int,
                 plc: PlcLink | None = None, units: dict | None = None) -> None:
        self.client = client
        self.plc = plc
        self.base = base
        self.plant = Plant()
        self.planner = Planner(random.Random(seed))
        self.signer = OperatorSigner(DEMO_KEY, device_id, counter=time.time_ns() // 1000)
        self.outputs = {"spindle": 0, "press": 0, "coolant": 0}  # the plant's scaled units
        self.shown = dict(self.outputs)  # as published: engineering units
        self.units = units or {}
        self.state = "TRIPPED"
        self.causes: list[str] = []  # trip causes still present, in words
        self.verdicts: Counter = Counter()
        self.story = Story()  # the whole run, repeats grouped: the live view and summary
        self.last_trip = ""
        self.announced: set[str] = set()  # scripted misbehaviours already in the story
        self.approvals = 0
        self.next_op_s = 0.0
        self.t0 = time.monotonic()
        self.last_verdict = ""

    def t(self) -> float:
        return time.monotonic() - self.t0

    async def listen(self) -> None:
        async for m in self.client.messages:
            kind = str(m.topic).rsplit("/", 1)[-1]
            doc = json.loads(m.payload)
            if kind == "output":
                self.shown = doc["values"]
                self.outputs = {k: round(v * 10) if k == "press" else v
                                for k, v in doc["values"].items()}
            elif kind == "state" and doc.get("status") == "online":
                self.state = doc["state"]
                self.causes = doc.get("trip_causes") or []
            elif kind == "decision":
                self._decision(doc)
            elif kind == "event":
                await self._event(doc)

    def _decision(self, doc: dict) -> None:
        self.verdicts[doc["verdict"]] += 1
        key = f"{doc['verdict']} {doc['reason']} {doc['rule']}"
        scripted = active_misbehaviours(int(self.t() * 1000))
        # Wall-clock jitter makes some of the planner's steady ramps clamp: count those,
        # show clamps only while the script misbehaves.
        if doc["verdict"] != "ALLOW" and key != self.last_verdict and (
                doc["verdict"] != "CLAMP" or scripted):
            self.note(f"command #{doc['seq']}: {doc['verdict']} ({doc['reason']}, rule "
                      f"{doc['rule']})", key=f"command {key}")
        self.last_verdict = key

    async def _event(self, doc: dict) -> None:
        ev = doc["event"]
        if ev != "input_stale":
            self.note(names.event_text(doc))
        if ev == "trip":
            self.last_trip = f"{self.t():.2f} s {names.event_text(doc)}"
        if ev == "approval_asked":
            self.approvals += 1
            action = codes.OP_APPROVE if self.approvals == 1 else codes.OP_DENY
            await asyncio.sleep(0.2)
            await self.op(action, doc["arg"])

    def note(self, text: str, key: str | None = None) -> None:
        self.story.add(self.t(), text, key)

    async def op(self, action: int, arg: int = 0) -> None:
        op = self.signer.sign(action, arg)
        payload = json.dumps({"action": names.op(action), "arg": arg, "counter": op.counter,
                              "mac": op.mac.hex()})
        await self.client.publish(f"{self.base}/op", payload, qos=1)
        self.note(f"operator: {names.op(action)}")

    async def run(self, seconds: float) -> None:
        step = 0
        while self.t() < seconds:
            now_ms = int(self.t() * 1000)
            active = active_misbehaviours(now_ms)
            for text in script_due(now_ms, self.announced):
                self.note(text)
            apply_plant_script(self.plant, active)
            self.plant.step(self.outputs, 10)
            if step % 2 == 0:
                tel = self.plant.telemetry().values
                tel = {**tel, "hydraulic_pressure": tel["hydraulic_pressure"] / 10}
                await self.client.publish(f"{self.base}/telemetry",
                                          json.dumps({"values": tel}))
            if self.state != "ARMED":
                self.planner.follow(self.outputs)
            command = self.planner.propose(now_ms - now_ms % 10, active)
            if command is not None and self.plc is not None:
                await self.plc.propose(command.values)
            elif command is not None:
                values = {k: (v / 10 if k == "press" and isinstance(v, int) else v)
                          for k, v in command.values.items()}
                await self.client.publish(f"{self.base}/cmd",
                                          json.dumps({"seq": command.seq, "values": values}))
            await self._operator()
            step += 1
            await asyncio.sleep(0.01 - (self.t() % 0.01))

    async def _operator(self) -> None:
        if self.t() < self.next_op_s:
            return
        if self.state == "TRIPPED":
            await self.op(codes.OP_RESET)
            self.next_op_s = self.t() + 0.3
        elif self.state == "DISARMED":
            await self.op(codes.OP_ARM)
            self.next_op_s = self.t() + 0.3


def _view(peers: CellPeers, seconds: float):
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table

    head = Table.grid(padding=(0, 2))
    head.add_row(f"t {min(peers.t(), seconds):5.1f}/{seconds:.0f} s",
                 f"state [bold]{peers.state}[/bold]"
                 + (f" ({', '.join(peers.causes)})" if peers.causes else ""),
                 "outputs " + names.outputs_text(peers.shown, peers.units))
    if peers.last_trip:
        head.add_row("last trip", peers.last_trip, "")
    if peers.plc is not None:
        plc = peers.plc
        head.add_row("PLC over Modbus", f"writes {plc.writes}", f"exception 03: {plc.refused}",
                     f"not expressible: {plc.skipped}")
    counts = Table(show_header=True, box=None)
    for v in _VERDICTS:
        counts.add_column(v, justify="right")
    counts.add_row(*(str(peers.verdicts.get(v, 0)) for v in _VERDICTS))
    return Panel(Group(head, counts, "\n".join(peers.story.tail(12))),
                 title="edgegov demo (service)")


async def _demo(seconds: float, out: Path, seed: int, console, live: bool,
                plc: bool = False) -> tuple:
    lineage = out / "edgegov-demo.lineage"
    lineage.unlink(missing_ok=True)
    key_file = write_demo_key(out)
    port = free_port()
    cfg = ServiceConfig(envelope=str(EXAMPLE), key_file=str(key_file), lineage=str(lineage),
                        broker_port=port, systemd=False, durable=True, lineage_blocks=256)
    modbus_port = None
    if plc:
        from .modbus_gateway import ModbusOptions

        modbus_port = free_port()
        cfg.modbus = ModbusOptions(server=f"127.0.0.1:{modbus_port}")
    logs = setup_logging(stream=open(out / "edgegov-demo.log", "w"))  # noqa: SIM115
    try:
        return await _serve_demo(cfg, port, seconds, seed, console, live, modbus_port,
                                 lineage)
    finally:
        logs.close()
        logs.listener.handlers[0].stream.close()


async def _serve_demo(cfg, port, seconds, seed, console, live, modbus_port, lineage) -> tuple:
    import aiomqtt

    from ..adapters.mqtt import NO_DELAY

    runner = Runner(cfg)
    stop, started = asyncio.Event(), asyncio.Event()
    service = asyncio.create_task(runner.serve(stop, started))
    await started.wait()
    base = runner.topics.base
    async with aiomqtt.Client("127.0.0.1", port, identifier="edgegov-demo-cell",
                              protocol=aiomqtt.ProtocolVersion.V311,
                              socket_options=NO_DELAY) as client:
        for kind in ("output", "state", "decision", "event"):
            await client.subscribe(f"{base}/{kind}", qos=0)
        link = None
        if modbus_port is not None:
            from ..adapters.modbus_map import build_map

            link = PlcLink(modbus_port, build_map(runner.env))
            await link.client.connect()
        units = dict(zip(runner.env.ch_names, runner.env.ch_units, strict=True))
        peers = CellPeers(client, base, runner.env.device_id, seed, link, units)
        listener = asyncio.create_task(peers.listen())
        if live:
            from rich.live import Live

            with Live(_view(peers, seconds), console=console, refresh_per_second=8) as view:
                ticker = asyncio.create_task(_refresh(view, peers, seconds))
                await peers.run(seconds)
                await asyncio.sleep(0.2)  # the last decisions arrive: the view counts them
                await cancel_and_wait(ticker)
                await cancel_and_wait(listener)
                view.update(_view(peers, seconds))  # what the summary below counts too
        else:
            await peers.run(seconds)
            await asyncio.sleep(0.2)
            await cancel_and_wait(listener)
        if link is not None:
            link.client.close()
    stop.set()
    await service
    return runner, peers, lineage


async def _refresh(view, peers, seconds) -> None:
    while not stop_requested():
        view.update(_view(peers, seconds))
        await asyncio.sleep(0.125)


def run_service_demo(seconds: float = 20, out_dir: str | Path = ".", seed: int = 7,
                     live: bool = True, console=None, plc: bool = False) -> int:
    """Run the service demo for ``seconds`` of wall time; files go to ``out_dir``; with
    ``plc`` the planner proposes over Modbus. Returns 0 when the lineage verifies and
    replays identically."""
    from rich.console import Console

    console = console or Console()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    who = "a misbehaving PLC over Modbus TCP" if plc else "a misbehaving planner"
    console.print(f"[bold]edgegov demo[/bold]: the governor as a service on an embedded MQTT "
                  f"broker, a simulated spindle/press cell and {who}, {seconds:g} s")
    for m in SCRIPT:
        if m.at_ms < seconds * 1000:
            console.print(f"  at {m.at_ms / 1000:5.1f} s the planner/cell {m.note}")
    runner, peers, lineage = asyncio.run(_demo(seconds, out, seed, console, live, plc))
    return _report(console, runner, peers, lineage)


def _report(console, runner, peers: CellPeers, lineage: Path) -> int:
    print_summary(console, peers.verdicts, peers.story)
    if peers.plc is not None:
        plc = peers.plc
        console.print(f"PLC over Modbus: {plc.writes} writes, {plc.refused} answered with "
                      f"exception 03, {plc.skipped} values Modbus cannot carry were skipped")
    console.print(f"device key: {Path(runner.cfg.key_file).resolve()} (demo key, mode 600)")
    console.print(f"service log: {lineage.with_name('edgegov-demo.log').resolve()} (what "
                  "`edgegov run` writes to stderr)")
    return check_lineage(console, lineage)


__all__ = ["run_service_demo", "DEMO_KEY"]
