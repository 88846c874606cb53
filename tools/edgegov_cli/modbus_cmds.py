"""``edgegov modbus map FILE [--json]`` and ``edgegov bench modbus [--json PATH]``."""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import click
from edgegov.host.net import free_port as _free_port


@click.group("modbus")
def modbus_group() -> None:
    """The Modbus interface: register map of a device."""


@modbus_group.command("map")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the map as JSON.")
def map_cmd(file: str, as_json: bool) -> None:
    """Print the Modbus register map derived from envelope FILE."""
    from edgegov.adapters.modbus_map import map_of, render_text

    from .envelope_cmds import compile_or_exit

    compiled = compile_or_exit(file)
    regmap = map_of(compiled)
    from edgegov.adapters.drive_profile import drive_json, render_drive

    operator = compiled.admitted.modbus_operator
    drive = compiled.admitted.modbus_drive
    if as_json:
        click.echo(json.dumps({**regmap.to_dict(), "operator_actions": operator,
                               "drive": drive_json(drive) if drive else None}, indent=2))
    else:
        click.echo(render_text(regmap))
        if drive is not None:
            click.echo("\n" + "\n".join(render_drive(drive)))
        click.echo("\noperator actions over Modbus (H0/H1): " + (
            "ENABLED by [modbus] operator_actions (unauthenticated; each one is logged)"
            if operator else "disabled (enable with [modbus] operator_actions = true)"))


# --------------------------------------------------------------------------- bench


@click.command("modbus")
@click.option("--samples", default=2000, show_default=True,
              help="Writes per path (as many as bench mqtt's 10 s at 200 Hz).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write figures here.")
def bench_modbus_cmd(samples: int, json_path: str | None) -> None:
    """PLC write → drive write latency through the governor vs a pass-through proxy."""
    figures = asyncio.run(_bench(samples))
    click.echo(json.dumps(figures, indent=2))
    if json_path:
        Path(json_path).write_text(json.dumps(figures, indent=2) + "\n")



class _Drive:
    """A plain pymodbus server standing in for a drive; timestamps each register write."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.waiter: tuple[int, asyncio.Future] | None = None
        self.server = None

    async def _action(self, fc, start, address, count, registers, values):
        if values is not None and fc == 16 and self.waiter is not None:
            want, fut = self.waiter
            if values[0] == want and not fut.done():
                fut.set_result(time.perf_counter_ns())
        return None

    async def start(self) -> None:
        from pymodbus.server import ModbusTcpServer
        from pymodbus.simulator import DataType, SimData, SimDevice

        dev = SimDevice(id=1, action=self._action, simdata=(
            [SimData(0, count=16, values=False, datatype=DataType.BITS)],
            [SimData(0, count=16, values=False, datatype=DataType.BITS)],
            [SimData(0, count=64, values=0, datatype=DataType.REGISTERS)],
            [SimData(0, count=16, values=0, datatype=DataType.REGISTERS)]))
        self.server = ModbusTcpServer(dev, address=("127.0.0.1", self.port))
        await self.server.serve_forever(background=True)


class _Proxy:
    """A plain pass-through: a PLC-facing server that forwards each register write."""

    def __init__(self, port: int, drive_port: int, offset: int) -> None:
        self.port = port
        self.drive_port = drive_port
        self.offset = offset  # the PLC writes [heartbeat, values…]; the drive gets values
        self.server = None
        self.client = None

    async def _action(self, fc, start, address, count, registers, values):
        if values is not None and fc == 16:
            await self.client.write_registers(0, list(values[self.offset:]), device_id=1)
        return None

    async def start(self) -> None:
        from pymodbus.client import AsyncModbusTcpClient
        from pymodbus.server import ModbusTcpServer
        from pymodbus.simulator import DataType, SimData, SimDevice

        self.client = AsyncModbusTcpClient("127.0.0.1", port=self.drive_port, timeout=1)
        await self.client.connect()
        dev = SimDevice(id=1, action=self._action, simdata=[
            SimData(0, count=64, values=0, datatype=DataType.REGISTERS)])
        self.server = ModbusTcpServer(dev, address=("127.0.0.1", self.port))
        await self.server.serve_forever(background=True)


async def _governed(tmp: Path, drive_port: int, plc_port: int):
    from edgegov.config.compile import compile_file
    from edgegov.core import codes
    from edgegov.core.auth import sign_op
    from edgegov.core.envelope import Envelope
    from edgegov.core.events import Operator, Telemetry
    from edgegov.core.governor import Governor
    from edgegov.host.lineage_store import open_lineage
    from edgegov.service.clock import MonotonicClock
    from edgegov.service.loop import GovernorService
    from edgegov.service.modbus_gateway import ModbusGateway, ModbusOptions
    from edgegov.service.topics import Topics
    from edgegov.service.wire import Inbound

    envelope = Path(__file__).resolve().parents[2] / "boards" / "envelopes" / "spindle-cell.toml"
    compiled = compile_file(envelope)
    env = Envelope.from_blob(compiled.blob, compiled.digest)
    key = bytes(range(32))
    lineage = open_lineage(tmp / "bench.lineage", env, key, group_commit=True, durable=False,
                           block_count=256)
    svc = GovernorService(Governor(env, key), Topics(env.device_id), lambda *a: None, lineage)
    clock = MonotonicClock()
    gw = ModbusGateway(svc, clock, key, ModbusOptions(
        server=f"127.0.0.1:{plc_port}", target=f"127.0.0.1:{drive_port}", timeout_ms=200))
    gw.attach()
    svc.boot(clock.now_ms(), compiled.blob)
    await gw.start()
    plant = Telemetry({"door_closed": True, "estop_button": False, "hydraulic_pressure": 2000})

    async def ticker():
        while True:
            now = clock.now_ms()
            svc.submit(Inbound(plant), now)
            gw.poll(now)
            svc.cycle(now)
            await asyncio.sleep(0.01)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.05)
    for n, action in enumerate((codes.OP_RESET, codes.OP_ARM), start=1):
        mac = sign_op(key, env.device_id, action, 0, n)
        svc.submit(Inbound(Operator(action, 0, n, mac)), clock.now_ms())
    return svc, gw, task


async def _bench(samples: int) -> dict:
    from edgegov.adapters.modbus_map import H_HEARTBEAT
    from pymodbus.client import AsyncModbusTcpClient

    ports = [_free_port() for _ in range(4)]
    gov_drive, proxy_drive = _Drive(ports[0]), _Drive(ports[1])
    await gov_drive.start()
    await proxy_drive.start()
    with tempfile.TemporaryDirectory() as tmp:
        svc, gw, ticker = await _governed(Path(tmp), ports[0], ports[2])
        proxy = _Proxy(ports[3], ports[1], 1)
        await proxy.start()
        plc_gov = AsyncModbusTcpClient("127.0.0.1", port=ports[2], timeout=1)
        plc_proxy = AsyncModbusTcpClient("127.0.0.1", port=ports[3], timeout=1)
        await plc_gov.connect()
        await plc_proxy.connect()
        # Channel order: coolant, press, spindle. The bench moves coolant (first word),
        # small steps inside its rate so every write is ALLOWed and reaches the drive.
        hb = 0
        for _ in range(30):  # engage the link (engage_after_ms = 100)
            hb += 1
            await plc_gov.write_registers(H_HEARTBEAT, [hb, 0, 0, 0], device_id=1)
            await asyncio.sleep(0.01)
        gov_ms, proxy_ms = [], []
        paths = [(plc_gov, gov_drive, gov_ms), (plc_proxy, proxy_drive, proxy_ms)]
        for i in range(samples):
            v = (i + 1) % 200  # a triangle 1..100..0: steps of 1 % every >= 6 ms (rate 200/s)
            value = v if v <= 100 else 200 - v
            # Same conditions for both paths: each write starts after the same idle gap (a
            # write right after another finds the loop and caches warm, one after a sleep
            # pays the wake-up: ~0.3 ms here), and the order alternates. The gap also keeps
            # the governed steps within the channel's rate.
            for plc, drive, out in paths if i % 2 == 0 else paths[::-1]:
                await asyncio.sleep(0.006)
                hb = (hb + 1) & 0xFFFF
                fut = asyncio.get_running_loop().create_future()
                drive.waiter = (value, fut)
                t0 = time.perf_counter_ns()
                await plc.write_registers(H_HEARTBEAT, [hb, value, 0, 0], device_id=1)
                try:
                    t1 = await asyncio.wait_for(fut, 0.2)
                except TimeoutError:
                    continue
                out.append((t1 - t0) / 1e6)
                drive.waiter = None
        ticker.cancel()
        await asyncio.gather(ticker, return_exceptions=True)
        plc_gov.close()
        plc_proxy.close()
        await gw.stop()
        await proxy.server.shutdown()
        proxy.client.close()
        await gov_drive.server.shutdown()
        await proxy_drive.server.shutdown()
        svc.lineage.device.close()
    return _figures(gov_ms, proxy_ms, samples, svc)


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def _figures(gov: list[float], proxy: list[float], samples: int, svc) -> dict:
    f = {
        "samples": samples,
        "gov_received": len(gov),
        "proxy_received": len(proxy),
        "gov_p50_ms": round(_pct(gov, 0.50), 4),
        "gov_p99_ms": round(_pct(gov, 0.99), 4),
        "proxy_p50_ms": round(_pct(proxy, 0.50), 4),
        "proxy_p99_ms": round(_pct(proxy, 0.99), 4),
        "gov_mean_ms": round(statistics.fmean(gov), 4) if gov else None,
        "proxy_mean_ms": round(statistics.fmean(proxy), 4) if proxy else None,
    }
    f["ratio_p99"] = round(f["gov_p99_ms"] / f["proxy_p99_ms"], 3) if proxy else None
    f["ratio_p50"] = round(f["gov_p50_ms"] / f["proxy_p50_ms"], 3) if proxy else None
    f["goal_ratio_p99"] = 1.2
    return f


def register(main, bench_group) -> None:
    """Add these commands to the ``edgegov`` group (called from ``main``)."""
    main.add_command(modbus_group)
    bench_group.add_command(bench_modbus_cmd)
