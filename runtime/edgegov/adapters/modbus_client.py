"""The downstream Modbus client: governed outputs and the e-stop coil to a drive / remote I/O.

The governing loop never waits for the drive. It hands the latest outputs and e-stop level
to ``DriveClient`` (``set_outputs``/``set_estop``, plain assignments) and the client's own
asyncio task writes them, reads the e-stop coil back every ``poll_ms`` (right after a write
while writes flow, else within ``IDLE_POLL`` × ``poll_ms``) so a drive that dies while
nothing changes is still noticed. Every request is bounded by ``timeout_ms`` (the pymodbus
client's own timeout with ``retries=0``; connecting under ``asyncio.timeout``), so a silent
peer costs one timeout, never more.

What the client saw is reported as fault flags (``faults()``), which the service turns into
``Fault`` events (a trip; a reset needs the fault gone):

- ``F_DRIVE_LINK`` (4): no answer within the timeout, connection refused or lost;
- ``F_DRIVE_EXCEPTION`` (5): the drive answered with a Modbus exception;
- the coil readback itself goes to ``host.estop_modbus.ModbusCoilEstop`` (fault 1).

Drive layout, without a drive map: the outputs are written with one FC16 at
``output_base`` in the register map's output layout (channel order, int16 or int32 high word
first); the e-stop coil is ``coil`` (FC5 write, FC1 readback; 1 = stop asserted). With the
envelope's ``[modbus.drive]`` map (``profile``, see ``drive_profile``): each channel's
setpoint at its own register in its own type (contiguous ones in one FC16), the stop as a
coil or as a control word (FC6, one pattern to run, one to stop), read back from the drive's
status word (FC3/FC4) or, without one, from the control word itself.
"""

from __future__ import annotations

import asyncio
import logging
import time

from .. import names
from ..host.aio import stop_requested
from ..names import F_DRIVE_EXCEPTION, F_DRIVE_LINK
from . import modbus_map as mm
from .modbus_server import parse_endpoint

log = logging.getLogger("edgegov.modbus.drive")

# With nothing to do the client task wakes every IDLE_POLL × poll_ms (a readback, or a
# reconnect attempt). The readback is due every poll_ms; while a PLC keeps writing, the
# write that finds it due starts it right after itself, so the readback takes its turn on
# the link in the gap before the next write instead of at a random moment that delays one.
IDLE_POLL = 1.25


class DriveError(Exception):
    """One failed drive request; ``code`` is the fault it means."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(detail)
        self.code = code


class DriveClient:
    """Writes outputs and the e-stop coil to one Modbus peer; reads the coil back."""

    def __init__(self, spec: str, regmap: mm.RegisterMap, unit: int = 1, output_base: int = 0,
                 coil: int = 0, timeout_ms: int = 50, poll_ms: int = 100,
                 baudrate: int = 19200, profile=None) -> None:
        self.kind, self.where = parse_endpoint(spec)
        self.codec = None  # the envelope's drive map (a drive_profile.DriveCodec), if any
        if profile is not None:
            from .drive_profile import DriveCodec

            self.codec = DriveCodec(profile, [s.name for s in sorted(
                regmap.channels, key=lambda s: s.index)], [s.resolution for s in sorted(
                    regmap.channels, key=lambda s: s.index)])
            unit = profile.unit
            coil = profile.stop_coil if profile.stop_coil is not None else coil
        self.map = regmap
        self.unit = unit
        self.output_base = output_base
        self.coil = coil
        self.timeout_s = timeout_ms / 1000
        self.poll_s = poll_ms / 1000
        self.baudrate = baudrate
        self.outputs: list[int] | None = None  # desired (scaled, per channel)
        self.estop: bool | None = None  # desired coil level
        self._written_outputs: list[int] | None = None
        self._written_estop: bool | None = None
        self.readback: bool | None = None  # the coil as last read from the drive
        self.readback_for: bool | None = None  # the level commanded when it was read
        self._read_at = float("-inf")
        self._faults = {F_DRIVE_LINK: False, F_DRIVE_EXCEPTION: False}
        self.last_error = ""
        self.requests = 0
        self.client = None
        self._wake = asyncio.Event()
        self._wake_soon: asyncio.Handle | None = None  # set_outputs' pending wake-up
        self._lost: tuple = (TimeoutError, OSError)  # what a lost peer raises (+ pymodbus's)
        self._layout = regmap.layout  # the drive's registers are in the map's output layout
        self._lock = asyncio.Lock()
        self.on_write = None  # test/bench hook: called after each successful output write

    # ------------------------------------------------------------ the loop's side

    def set_outputs(self, scaled: list[int], _now_ms: int | None = None) -> None:
        """New outputs to write. The client task is woken on the next loop iteration, not
        now, and only if nobody wrote them by then: a caller that ``flush()``es right after
        (the PLC server) cancels the wake-up, so the request's path to the drive is not
        interleaved with a task switch that finds nothing to do."""
        self.outputs = list(scaled)
        if self._wake_soon is not None:
            return
        try:
            self._wake_soon = asyncio.get_running_loop().call_soon(self._woken)
        except RuntimeError:  # no loop yet (set up before start): the task sees it first
            self._wake.set()

    def _woken(self) -> None:
        self._wake_soon = None
        self._wake.set()

    def set_estop(self, level: bool) -> None:
        if level != self.estop:
            self.estop = level
            self._wake.set()

    def faults(self) -> dict[int, bool]:
        return dict(self._faults)

    # ------------------------------------------------------------ the client task

    def _make_client(self):
        from pymodbus import FramerType
        from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
        from pymodbus.exceptions import ModbusException

        self._lost = (TimeoutError, ModbusException, OSError)
        if self.kind == "tcp":
            host, port = self.where
            return AsyncModbusTcpClient(host, port=port, timeout=self.timeout_s, retries=0,
                                        reconnect_delay=0)
        return AsyncModbusSerialClient(self.where, framer=FramerType.RTU, baudrate=self.baudrate,
                                       timeout=self.timeout_s, retries=0, reconnect_delay=0)

    async def run(self) -> None:
        """Until cancelled: write what changed, read the coil back, poll while idle."""
        self.client = self._make_client()
        try:
            while not stop_requested():
                try:
                    await asyncio.wait_for(self._wake.wait(), self.poll_s * IDLE_POLL)
                except TimeoutError:
                    pass
                self._wake.clear()
                await self.exchange()
        finally:
            self.client.close()

    async def flush(self) -> None:
        """Write changed outputs now, from the caller's task (the PLC request that caused
        them), saving a task switch; when the client is busy or the drive is faulted, the
        client task does it instead. A readback that is due follows at once, on the client
        task. Bounded by ``timeout_ms``; never raises."""
        if self.client is None or self._lock.locked() or self._faults[F_DRIVE_LINK] \
                or not self.client.connected:
            return
        if self._wake_soon is not None:  # written here: the task need not wake for it
            self._wake_soon.cancel()
            self._wake_soon = None
        async with self._lock:
            try:
                await self._write_outputs()
            except DriveError as err:
                self._fail(err.code, str(err))
                self._wake.set()
                return
        if time.monotonic() - self._read_at >= self.poll_s:
            self._wake.set()  # the readback that is due: now, in the gap after this write

    async def exchange(self) -> None:
        """One round: connect if needed, outputs, coil, readback. Never raises."""
        async with self._lock:
            await self._exchange()

    async def _exchange(self) -> None:
        try:
            await self._connect()
            await self._write_outputs()
            await self._estop_round()
        except DriveError as err:
            self._fail(err.code, str(err))
            return
        self._faults[F_DRIVE_LINK] = False
        self._faults[F_DRIVE_EXCEPTION] = False

    def _fail(self, code: int, detail: str) -> None:
        if not self._faults[code]:
            log.warning("drive %s: %s", names.fault(code), detail)
        self._faults[code] = True
        self.last_error = detail
        if code == F_DRIVE_LINK:
            self._written_outputs = None  # unknown what the drive holds: write again
            self._written_estop = None

    async def _connect(self) -> None:
        if self.client.connected:
            return
        try:
            async with asyncio.timeout(self.timeout_s):
                ok = await self.client.connect()
        except self._lost as err:
            raise self._link_lost(err) from None
        if not ok:
            raise DriveError(F_DRIVE_LINK, "cannot connect")

    async def _write_outputs(self) -> None:
        if self.outputs is None or self.outputs == self._written_outputs:
            return
        outputs = self.outputs
        if self.codec is None:
            words = mm.encode_all(self._layout, outputs)
            await self._request(self.client.write_registers(self.output_base, words,
                                                            device_id=self.unit))
        else:
            for first, words in self.codec.writes(outputs):
                await self._request(self.client.write_registers(first, words,
                                                                device_id=self.unit))
        self._written_outputs = outputs
        if self.on_write is not None:
            self.on_write(outputs)

    async def _estop_round(self) -> None:
        level = self.estop
        if level is None:
            return
        now = time.monotonic()
        word = self.codec is not None and self.codec.drive.stop_register is not None
        if level != self._written_estop:
            if word:
                await self._request(self.client.write_register(
                    self.codec.drive.stop_register, self.codec.stop_pattern(level),
                    device_id=self.unit))
            else:
                await self._request(self.client.write_coil(self.coil, level,
                                                           device_id=self.unit))
            self._written_estop = level
        elif now - self._read_at < self.poll_s:
            return  # read back on a change, else once per poll period
        self._read_at = now
        self.readback = await (self._read_status(level) if word else self._read_coil())
        self.readback_for = level

    async def _read_coil(self) -> bool | None:
        rr = await self._request(self.client.read_coils(self.coil, count=1, device_id=self.unit))
        return bool(rr.bits[0]) if rr.bits else None

    async def _read_status(self, level: bool) -> bool | None:
        """The stop level the drive reports (its status word, else the control word)."""
        d = self.codec.drive
        if d.status_register is None:
            read, register = self.client.read_holding_registers, d.stop_register
        else:
            register = d.status_register
            read = (self.client.read_input_registers if d.status_table == "input"
                    else self.client.read_holding_registers)
        rr = await self._request(read(register, count=1, device_id=self.unit))
        return self.codec.stopped(rr.registers[0], level) if rr.registers else None

    async def _request(self, coro):
        self.requests += 1
        # pymodbus bounds each request by the client's timeout (retries=0), and this client
        # never has two requests in flight (``_lock``): no second timer on the write path.
        try:
            rr = await coro
        except self._lost as err:
            raise self._link_lost(err) from None
        if rr is None:
            raise DriveError(F_DRIVE_LINK, "no response")
        if rr.isError():
            code = getattr(rr, "exception_code", 0)
            raise DriveError(F_DRIVE_EXCEPTION, f"exception {code}")
        return rr

    def _link_lost(self, err: Exception) -> DriveError:
        if self.client is not None and self.kind == "tcp":
            self.client.close()  # a fresh connection next round
        return DriveError(F_DRIVE_LINK, f"{type(err).__name__}: {err}")

__all__ = ["DriveClient", "DriveError", "F_DRIVE_LINK", "F_DRIVE_EXCEPTION"]
