"""Modbus on the service: the PLC-facing server and the downstream drive, wired to one
``GovernorService``.

``ModbusGateway.attach`` installs the drive as the service's output sink and its coil as the
e-stop backend (before ``boot``, so the boot's safe outputs and asserted e-stop go out
first); ``start`` opens the server and the drive task; ``poll(now_ms)``, called by the
ticker before each ``service.cycle``, turns the drive's fault flags into ``Fault`` events
(set and clear) so they are decided, recorded and latched like any other fault.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from ..adapters import modbus_map as mm
from ..adapters.modbus_client import DriveClient
from ..adapters.modbus_server import PlcFrontend, PlcServer
from ..core.events import Fault
from ..host.aio import cancel_and_wait
from ..host.estop_modbus import ModbusCoilEstop
from .wire import Inbound

STOP_TIMEOUT_S = 2.0  # longest a stop may wait on the PLC server or the drive client

log = logging.getLogger("edgegov.modbus")


@dataclass
class ModbusOptions:
    """The ``edgegov run --modbus-*`` options."""

    server: str | None = None  # HOST:PORT, a serial device or a pyserial URL
    target: str | None = None
    operator: bool = False  # operator actions over Modbus (unauthenticated!); `edgegov run`
    # takes it from the envelope's [modbus] operator_actions
    unit: int = 1
    target_unit: int = 1
    baudrate: int = 19200
    timeout_ms: int = 50
    poll_ms: int = 100
    readback_ms: int = 200
    output_base: int = 0
    coil: int = 0
    compiled: object | None = None  # the CompiledEnvelope: its [modbus] pins and drive map


class ModbusGateway:
    """A PLC server and/or a drive client around one service."""

    def __init__(self, service, clock, key: bytes, opts: ModbusOptions) -> None:
        self.service = service
        self.clock = clock
        self.opts = opts
        pins = opts.compiled.admitted.modbus_addresses if opts.compiled is not None else None
        self.map = mm.build_map(service.gov.env, pins)
        self.frontend = PlcFrontend(service, self.map, key, opts.operator)
        self.server = (PlcServer(self.frontend, clock, opts.server, opts.unit, opts.baudrate)
                       if opts.server else None)
        self.drive = None
        if opts.target:
            profile = opts.compiled.admitted.modbus_drive if opts.compiled is not None else None
            self.drive = DriveClient(opts.target, self.map, opts.target_unit, opts.output_base,
                                     opts.coil, opts.timeout_ms, opts.poll_ms, opts.baudrate,
                                     profile)
            if self.server is not None:
                self.server.after_write = self.drive.flush
        self._reported: dict[int, bool] = {}
        self._task: asyncio.Task | None = None

    def attach(self) -> None:
        """Make the drive the service's output sink and e-stop backend (before boot)."""
        if self.drive is None:
            return
        self.service.outputs = self.drive.set_outputs  # (scaled, now_ms)
        self.service.estop = ModbusCoilEstop(self.drive, self.opts.readback_ms)

    async def start(self) -> None:
        if self.drive is not None:
            self._task = asyncio.create_task(self.drive.run())
        if self.server is not None:
            await self.server.start()

    def poll(self, now_ms: int) -> None:
        """Feed changed drive faults to the governor (call before ``service.cycle``)."""
        if self.drive is None:
            return
        for code, active in sorted(self.drive.faults().items()):
            if self._reported.get(code, False) != active:
                self._reported[code] = active
                self.service.submit(Inbound(Fault(code, active)), now_ms)

    async def stop(self) -> None:
        """Stop serving and driving, in bounded time: an orderly shutdown of the service
        must go on (publish offline, close the lineage) even if a peer hangs."""
        if self.server is not None:
            try:
                await asyncio.wait_for(self.server.stop(), STOP_TIMEOUT_S)
            except TimeoutError:
                log.warning("Modbus server did not shut down within %s s", STOP_TIMEOUT_S)
        await cancel_and_wait(self._task, STOP_TIMEOUT_S)


__all__ = ["ModbusGateway", "ModbusOptions"]
