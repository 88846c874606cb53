"""Real Modbus peers around the governing service, for the Modbus tests.

``Rig`` runs one ``GovernorService`` (spindle cell, lineage file) with a ``ModbusGateway``
on the real monotonic clock, a ticker (plant telemetry + cycle every 10 ms), a real
pymodbus server as the drive (``Drive``, which can be told to misbehave) and a real pymodbus
client as the PLC (``Plc``). TCP on loopback, or RTU over two pty pairs bridged in-process.
"""

from __future__ import annotations

import asyncio
import os
import time
import tty

from edgegov.adapters import modbus_map as mm
from edgegov.config.compile import compile_file
from edgegov.core import codes
from edgegov.core.envelope import Envelope
from edgegov.core.events import Telemetry
from edgegov.core.governor import Governor
from edgegov.host.aio import cancel_and_wait, stop_requested
from edgegov.host.lineage_store import open_lineage
from edgegov.host.net import free_port
from edgegov.service.clock import MonotonicClock
from edgegov.service.loop import GovernorService
from edgegov.service.modbus_gateway import ModbusGateway, ModbusOptions
from edgegov.service.topics import Topics
from edgegov.service.wire import Inbound
from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice
from service_harness import ENVELOPE, KEY

COMPILED = compile_file(ENVELOPE)
ENV = Envelope.from_blob(COMPILED.blob, COMPILED.digest)
MAP = mm.build_map(ENV)
CHANNELS = [s.name for s in MAP.channels]  # coolant, press, spindle
PLANT = {"door_closed": True, "estop_button": False, "hydraulic_pressure": 2000}



class PtyLine:
    """Two pty pairs whose masters are bridged: a null-modem serial line in-process.
    ``a`` and ``b`` are the tty paths of the two ends; ``inject_to_b`` puts raw bytes on the
    wire toward ``b`` (garbage, bad CRCs)."""

    def __init__(self) -> None:
        self.m1, s1 = os.openpty()
        self.m2, s2 = os.openpty()
        for fd in (s1, s2):
            tty.setraw(fd)
        self.a, self.b = os.ttyname(s1), os.ttyname(s2)
        self._slaves = (s1, s2)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader(self.m1, self._pump, self.m1, self.m2)
        loop.add_reader(self.m2, self._pump, self.m2, self.m1)

    def _pump(self, src: int, dst: int) -> None:
        try:
            os.write(dst, os.read(src, 4096))
        except OSError:
            pass

    def inject_to_b(self, data: bytes) -> None:
        os.write(self.m2, data)

    def close(self) -> None:
        loop = asyncio.get_running_loop()
        for fd in (self.m1, self.m2):
            loop.remove_reader(fd)
        for fd in (self.m1, self.m2, *self._slaves):
            try:
                os.close(fd)
            except OSError:
                pass


class Drive:
    """A real pymodbus server as the downstream drive; ``mode`` makes it misbehave:
    ``"ok"``, ``"invert_coil"`` (reads back the wrong e-stop level), ``"exception"``
    (answers register writes with DEVICE_FAILURE)."""

    def __init__(self, endpoint) -> None:
        self.endpoint = endpoint  # ("tcp", port) or ("rtu", path)
        self.mode = "ok"
        self.writes: list[list[int]] = []
        self.coil: bool | None = None  # the e-stop coil as last written
        self.reads: list[float] = []  # time.monotonic() of each coil read (the readbacks)
        self.server = None

    async def _action(self, fc, start, address, count, registers, values):
        if fc == 16 and values is not None:
            if self.mode == "exception":
                return ExcCodes.DEVICE_FAILURE
            self.writes.append(list(values))
        if fc == 5 and values is not None:
            self.coil = bool(values[0])
        if fc == 1 and values is None:
            self.reads.append(time.monotonic())
            if self.mode == "invert_coil":
                registers[0] ^= 1
        return None

    def device(self) -> SimDevice:
        return SimDevice(id=1, action=self._action, simdata=(
            [SimData(0, count=16, values=False, datatype=DataType.BITS)],
            [SimData(0, count=16, values=False, datatype=DataType.BITS)],
            [SimData(0, count=32, values=0, datatype=DataType.REGISTERS)],
            [SimData(0, count=16, values=0, datatype=DataType.REGISTERS)]))

    async def start(self) -> None:
        kind, where = self.endpoint
        if kind == "tcp":
            self.server = ModbusTcpServer(self.device(), address=("127.0.0.1", where))
        else:
            self.server = ModbusSerialServer(self.device(), framer=FramerType.RTU, port=where,
                                             baudrate=115200)
        await self.server.serve_forever(background=True)

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.shutdown()
            self.server = None


    def outputs(self) -> dict | None:
        if not self.writes:
            return None
        words = self.writes[-1]
        out, k = {}, 0
        for s in MAP.channels:
            out[s.name] = mm.decode(words[k:k + s.words], s.words)
            k += s.words
        return out


class Plc:
    """A real pymodbus client playing the PLC: heartbeat + proposals, operator registers."""

    def __init__(self, client, regmap: mm.RegisterMap = MAP) -> None:
        self.client = client
        self.map = regmap
        self.hb = 0
        self.standing = {s.name: 0 for s in regmap.channels}
        self.lock = asyncio.Lock()
        self._beat: asyncio.Task | None = None

    async def _call(self, coro):
        async with self.lock:
            return await coro

    async def propose(self, **values):
        """Write [heartbeat+1, every proposal] in one FC16; returns the response."""
        self.standing.update(values)
        self.hb = (self.hb + 1) & 0xFFFF
        return await self._call(self.client.write_registers(
            mm.H_HEARTBEAT, self.map.proposal_request(self.hb, self.standing), device_id=1))

    async def decide(self, **values):
        """``propose`` and read the status in one go (no heartbeat write in between)."""
        async with self.lock:
            await asyncio.sleep(0.02)  # rate budgets count from the last proposal: give time
            self.standing.update(values)
            self.hb = (self.hb + 1) & 0xFFFF
            words = self.map.proposal_request(self.hb, self.standing)
            rr = await self.client.write_registers(mm.H_HEARTBEAT, words, device_id=1)
            return rr, await self._status()

    async def beat(self, change: bool = True):
        if change:
            self.hb = (self.hb + 1) & 0xFFFF
        return await self._call(self.client.write_register(mm.H_HEARTBEAT, self.hb,
                                                           device_id=1))

    def start_heartbeat(self, period_s: float = 0.03) -> None:
        async def loop():
            while not stop_requested():
                await self.beat()
                await asyncio.sleep(period_s)

        self._beat = asyncio.create_task(loop())

    async def stop_heartbeat(self) -> None:
        await cancel_and_wait(self._beat, 5)
        self._beat = None

    async def op(self, action: int, arg: int = 0):
        return await self._call(self.client.write_registers(mm.H_OP_ACTION, [action, arg],
                                                            device_id=1))

    async def estop(self):
        return await self._call(self.client.write_coil(mm.C_ESTOP_REQUEST, True, device_id=1))

    async def status(self) -> dict:
        async with self.lock:
            return await self._status()

    async def _status(self) -> dict:
        rr = await self.client.read_input_registers(0, count=self.map.output_end,
                                                    device_id=1)
        regs = rr.registers
        st = {name: (mm.decode(regs[a:a + 1], 1) if name == "margin" else regs[a])
              if w == 1 else (regs[a] << 16) | regs[a + 1] for name, a, w in mm.STATUS_FIELDS}
        st["outputs"] = {s.name: mm.decode(regs[s.output:s.output + s.words], s.words)
                         for s in self.map.channels}
        return st


class Rig:
    """The governed service with a Modbus gateway, a drive and a PLC, on real time."""

    def __init__(self, tmp_path, transport: str = "tcp", operator: bool = True,
                 period_ms: int = 10, poll_ms: int = 100, compiled=None,
                 drive_factory=None) -> None:
        self.tmp_path = tmp_path
        self.compiled = compiled  # another build of the spindle cell (pins, drive map)
        self.map = MAP if compiled is None else mm.map_of(compiled)
        self.drive_factory = drive_factory  # port -> a drive (TCP only); default ``Drive``
        self.poll_ms = poll_ms
        self.transport = transport
        self.operator = operator
        self.period_ms = period_ms
        self.posted: list = []
        self.lines: list[PtyLine] = []

    async def __aenter__(self) -> Rig:
        self.clock = MonotonicClock()
        lineage = open_lineage(self.tmp_path / "modbus.lineage", ENV, KEY, group_commit=True,
                               durable=False, block_count=64)
        self.svc = GovernorService(Governor(ENV, KEY), Topics(ENV.device_id),
                                   lambda *a: self.posted.append(a), lineage)
        if self.transport == "tcp":
            plc_port, drive_port = free_port(), free_port()
            server, target = f"127.0.0.1:{plc_port}", f"127.0.0.1:{drive_port}"
            self.drive = (Drive(("tcp", drive_port)) if self.drive_factory is None
                          else self.drive_factory(drive_port))
            plc_client = AsyncModbusTcpClient("127.0.0.1", port=plc_port, timeout=1, retries=0)
        else:
            plc_line, drive_line = PtyLine(), PtyLine()
            self.lines = [plc_line, drive_line]
            for line in self.lines:
                line.start()
            server, target = plc_line.b, drive_line.a
            self.drive = Drive(("rtu", drive_line.b))
            plc_client = AsyncModbusSerialClient(plc_line.a, framer=FramerType.RTU,
                                                 baudrate=115200, timeout=1, retries=0)
        await self.drive.start()
        self.gw = ModbusGateway(self.svc, self.clock, KEY, ModbusOptions(
            server=server, target=target, operator=self.operator, baudrate=115200,
            poll_ms=self.poll_ms, timeout_ms=60 if self.transport == "tcp" else 120,
            compiled=self.compiled))
        self.gw.attach()
        self.svc.boot(self.clock.now_ms(), COMPILED.blob)
        await self.gw.start()
        self.plant = dict(PLANT)
        self._ticker = asyncio.create_task(self._tick())
        await plc_client.connect()
        self.plc = Plc(plc_client, self.map)
        return self

    async def _tick(self) -> None:
        while not stop_requested():
            now = self.clock.now_ms()
            self.svc.submit(Inbound(Telemetry(dict(self.plant))), now)
            self.gw.poll(now)
            self.svc.cycle(now)
            await asyncio.sleep(self.period_ms / 1000)

    async def __aexit__(self, *exc) -> None:
        await self.plc.stop_heartbeat()
        self.plc.client.close()
        await cancel_and_wait(self._ticker, 5)
        await asyncio.wait_for(self.gw.stop(), 5)
        await asyncio.wait_for(self.drive.stop(), 5)
        self.svc.stop(self.clock.now_ms())
        for line in self.lines:
            line.close()

    @property
    def gov(self):
        return self.svc.gov

    async def until(self, pred, timeout_s: float = 3.0, what: str = "condition") -> float:
        """Wait (polling) until ``pred()``; returns the seconds it took."""
        t0 = time.monotonic()
        while not pred():
            if time.monotonic() - t0 > timeout_s:
                raise AssertionError(f"timed out waiting for {what}; state={self.gov.state} "
                                     f"causes={self.gov.causes} faults={self.gov.faults} "
                                     f"out={self.gov.out}")
            await asyncio.sleep(0.005)
        return time.monotonic() - t0

    async def armed_and_live(self) -> None:
        """Reset, arm and engage the link (the PLC heartbeat runs from here on)."""
        await self.until(lambda: self.gov.in_fresh[ENV.in_index["estop_button"]], what="plant")
        self.plc.start_heartbeat()
        for action in (codes.OP_RESET, codes.OP_ARM):
            rr = await self.plc.op(action)
            assert not rr.isError(), (action, rr, self.gov.causes)
        await self.until(lambda: self.gov.link == codes.LINK_OK, what="link engaged")
