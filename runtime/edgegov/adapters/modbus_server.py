"""The PLC-facing Modbus server (TCP or RTU): register writes in, governed decisions out.

Two layers, as with MQTT:

- ``PlcFrontend`` translates register writes into core events and decides them at once
  through the service (``GovernorService.decide``), so a write is decided before its Modbus
  response is sent — well within the control period. It holds no socket and is driven by
  ``now_ms`` from the caller, so tests can script it.
- ``PlcServer`` is the pymodbus server around it: a ``SimDevice`` whose ``action`` hook
  sees every request before it touches the registers (pymodbus ≥ 3.13 routes all datastore
  access through ``SimDevice(action=...)``; overriding a data block is silently ignored).
  It forwards the governed outputs to the drive (``after_write``) before the decision is
  recorded and published (``GovernorService.settle``), and answers the PLC after both: the
  drive sees a write one governor call after the PLC sent it.

Wire rules (``docs/modbus.md``):

- One write request = one proposal: the channels whose registers it covers. A 32-bit
  channel must be written whole in one request; half a pair is malformed.
- The heartbeat (H2) is the sequence number of Modbus proposals. A proposal is *fresh* when
  the heartbeat changed since the previous proposal (in the same request, before the
  proposal registers, or by an earlier heartbeat write). A stale proposal reaches the
  governor with a repeated sequence number, so it is refused (``stale_seq``), recorded, and
  never counts as link liveness. A heartbeat write that changes the value also proposes the
  standing setpoints (the proposal registers) at once, so a PLC that only toggles its
  heartbeat keeps the link alive; an unchanged heartbeat proposes nothing.
- The answer is exception 03 (ILLEGAL_VALUE) when the governor refused the write (REJECT:
  out of range on a rejecting channel, stale heartbeat, malformed, value beyond 30 bits …)
  or when the written value itself tripped it (a limit whose action is trip). CLAMP, HOLD,
  ESCALATE and TRIP-while-tripped are normal answers: read the outcome in the input
  registers. Refused writes leave the holding registers unchanged.
- Operator actions (H0/H1) are refused unless enabled; Modbus has no authentication, so
  when enabled the gateway signs them with the device key and logs each one as
  unauthenticated. The e-stop request coil is always honoured: a stop is never refused.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ..core import codes
from ..core.auth import sign_op
from ..core.events import Command, Operator, Session
from ..service.wire import Inbound
from . import modbus_map as mm

log = logging.getLogger("edgegov.modbus")

FC_READ_COILS, FC_READ_DISCRETE, FC_READ_HOLDING, FC_READ_INPUT = 1, 2, 3, 4
FC_WRITE_COIL, FC_WRITE_REGISTER, FC_WRITE_COILS, FC_WRITE_REGISTERS = 5, 6, 15, 16

EXC_ILLEGAL_ADDRESS = 2
EXC_ILLEGAL_VALUE = 3
SOURCE_MODBUS = 2  # Command.source of proposals that came over Modbus

# A TRIP with one of these reasons was caused by the written value itself.
_VALUE_REASONS = frozenset((codes.R_ABOVE_MAX, codes.R_BELOW_MIN, codes.R_RATE, codes.R_ACCEL,
                            codes.R_INTERLOCK, codes.R_OUT_OF_RANGE))
MALFORMED = "malformed"  # the raw value handed to the governor for a malformed write


@dataclass
class Outcome:
    """The last Modbus write decided: what the input registers report."""

    verdict: int = codes.TRIP
    reason: int = codes.R_BOOT
    rule: int = -1
    margin: int = 0
    exception: int = 0


class PlcFrontend:
    """Register writes → core events, decided through a ``GovernorService``."""

    def __init__(self, service, regmap: mm.RegisterMap, key: bytes,
                 operator_enabled: bool = False) -> None:
        self.service = service
        self.map = regmap
        self._key = key
        self.operator_enabled = operator_enabled
        env = service.gov.env
        # The standing proposal per channel (scaled), initially the safe values.
        self.standing = list(env.ch_safe)
        self.heartbeat: int | None = None  # last heartbeat value seen (None: none yet)
        self.fresh = False  # a heartbeat change not yet used by a proposal write
        self.last = Outcome()
        self.decided = 0
        self.refused = 0
        self.repeats = 0
        self.hb_counted = 0
        self.unauthenticated_ops = 0
        self.op_arg = 0  # the stored H1 (the server keeps it current from the registers)
        # (name, channel index, first proposal register, words) per channel, for the
        # per-write decoding.
        self._slots = tuple((s.name, s.index, s.proposal, s.words) for s in regmap.channels)
        self._holes = regmap.holes  # holding registers between pinned channels: no one's
        # The input-register image, kept between reads: the identity block never changes;
        # the outputs go in runs of (first register, layout) — one run unless pinned.
        self._inregs = [0] * regmap.input_count
        self._inregs[mm.I_IDENT:mm.I_IDENT + mm.IDENT_COUNT] = regmap.ident_words()
        loose = tuple((s.index, s.words) for s in regmap.channels if not s.pinned)
        self._out_runs = ((mm.I_OUTPUTS, loose),) + tuple(
            (s.output, ((s.index, s.words),)) for s in regmap.channels if s.pinned)

    # ------------------------------------------------------------ holding registers

    def write_holding(self, address: int, values: list[int], now_ms: int) -> int | None:
        """Decide one holding-register write; return an exception code or None (accept)."""
        end = address + len(values)
        if address <= mm.H_OP_ARG:
            if end > mm.H_HEARTBEAT:
                return self._malformed(now_ms)  # operator registers are written alone
            return self._operator_write(address, values, now_ms)
        if self._holes and self._holes.issuperset(range(address, end)):
            return EXC_ILLEGAL_ADDRESS  # only registers between pinned channels: no one's
        session = self.map.session
        if address <= session < end:
            if values[session - address] != self.service.gov.session:
                self._submit(Session(values[session - address]), now_ms)
                self.fresh = False  # a heartbeat change before the session belongs to the old
            if end - address == 1:
                return None  # the session alone
            values = values[: session - address]
            end = session
        changed_hb = address == mm.H_HEARTBEAT and values[0] != self.heartbeat
        if changed_hb:
            self.heartbeat = values[0]
            self.fresh = True
        proposal = self._proposal(address, end, values)
        if proposal is None:
            return self._malformed(now_ms)
        if not proposal:
            if not changed_hb:
                self.repeats += 1
                return None
            proposal = {name: self.standing[i] for name, i, _, _ in self._slots}
        return self._propose(proposal, now_ms)

    def _proposal(self, address: int, end: int, values: list[int]) -> dict | None:
        """The channels a write to ``[address, end)`` covers; None when malformed."""
        proposal = {}
        for name, _, first, words in self._slots:
            if first >= end or first + words <= address:
                continue
            if first < address or first + words > end:
                return None  # half a 32-bit pair
            k = first - address
            if words == 1:  # mm.decode of one word, inline: this runs for every write
                v = values[k] & 0xFFFF
                proposal[name] = v - 0x10000 if v & 0x8000 else v
            else:
                proposal[name] = mm.decode(values[k:k + 2], 2)
        return proposal

    def _propose(self, values: dict, now_ms: int) -> int | None:
        gov = self.service.gov
        seq = gov.last_seq + 1 if self.fresh else gov.last_seq
        self.fresh = False
        d = self._submit(Command(seq, values, SOURCE_MODBUS), now_ms)
        if gov.last_seq == seq:  # accepted as a valid proposal: it becomes the standing one
            self.hb_counted = self.heartbeat or 0
            standing = self.standing
            for name, i, _, _ in self._slots:
                if name in values:
                    standing[i] = values[name]
        return self._answer(d)

    def _malformed(self, now_ms: int) -> int:
        first = self.map.channels[0].name
        d = self._submit(Command(self.service.gov.last_seq + 1, {first: MALFORMED},
                                 SOURCE_MODBUS), now_ms)
        return self._answer(d) or EXC_ILLEGAL_VALUE

    # ------------------------------------------------------------ operator actions

    def _operator_write(self, address: int, values: list[int], now_ms: int) -> int | None:
        regs = dict(zip(range(address, address + len(values)), values, strict=True))
        if mm.H_OP_ACTION not in regs:
            return None  # the argument alone: stored, acts with the next action write
        action = regs[mm.H_OP_ACTION]
        if action == 0:
            return None
        arg = mm.decode([regs.get(mm.H_OP_ARG, self.op_arg)], 1)
        return self._answer(self._operator(action, arg, now_ms, self.operator_enabled))

    def _operator(self, action: int, arg: int, now_ms: int, allowed: bool):
        gov = self.service.gov
        counter = gov.op_counter + 1
        mac = None
        if allowed and codes.OP_ARM <= action <= codes.OP_DENY:  # unknown codes: refused
            self.unauthenticated_ops += 1
            log.warning("unauthenticated operator action over Modbus: action=%d arg=%d "
                        "(signed by the gateway)", action, arg)
            self.service.post(self.service.topics.event, _event_json(
                now_ms, action, arg), 1, False)
            mac = sign_op(self._key, gov.env.device_id, action, arg, counter)
        return self._submit(Operator(action, arg, counter, mac), now_ms)

    # ------------------------------------------------------------ coils

    def write_coils(self, address: int, values: list[bool], now_ms: int) -> int | None:
        if address != mm.C_ESTOP_REQUEST or len(values) != 1:
            return EXC_ILLEGAL_ADDRESS
        if values[0]:
            # A stop is always honoured, whatever the operator setting.
            self._operator(codes.OP_ESTOP, 0, now_ms, True)
        return None

    # ------------------------------------------------------------ decide and report

    def _submit(self, event, now_ms: int):
        """Decide now; the record and publishing follow at the service's next ``settle``."""
        return self.service.decide(Inbound(event), now_ms)

    def _answer(self, d) -> int | None:
        refused = d.verdict == codes.REJECT or (
            d.verdict == codes.TRIP and d.reason in _VALUE_REASONS)
        exc = EXC_ILLEGAL_VALUE if refused else None
        last = self.last  # updated in place (one object per gateway, not per write)
        last.verdict, last.reason, last.rule, last.margin = d.verdict, d.reason, d.rule, d.margin
        last.exception = exc or 0
        if refused:
            self.refused += 1
        else:
            self.decided += 1
        return exc

    def input_registers(self) -> list[int]:
        """The input-register image (I0 …) of the current state."""
        gov = self.service.gov
        last = self.last
        regs = self._inregs
        regs[mm.I_STATE:mm.I_OUTPUTS] = [
            gov.state, gov.mode, gov.link, int(self.service._estop_level), gov.causes & 0xFFFF,
            gov.faults & 0xFFFF, last.verdict, last.reason,
            mm.NO_RULE if last.rule < 0 else last.rule, mm.encode(last.margin, 1)[0],
            last.exception, self.hb_counted & 0xFFFF, *mm.u32(self.decided),
            *mm.u32(self.refused), *mm.u32(gov.last_now)]
        for first, layout in self._out_runs:
            outputs = mm.encode_all(layout, gov.out)
            regs[first:first + len(outputs)] = outputs
        return regs

    def discrete_inputs(self) -> list[bool]:
        gov = self.service.gov
        return [bool(self.service._estop_level), gov.state == codes.ST_TRIPPED,
                gov.state == codes.ST_ARMED, gov.link == codes.LINK_OK]


def _event_json(now_ms: int, action: int, arg: int) -> bytes:
    from .. import names
    from ..service.wire import dumps

    return dumps({"t_ms": now_ms, "event": "modbus_operator", "action": names.op(action),
                  "arg": arg, "authenticated": False})


# --------------------------------------------------------------------------- the server


def parse_endpoint(spec: str) -> tuple[str, object]:
    """``HOST:PORT`` → ("tcp", (host, port)); a device path or a pyserial URL
    (``/dev/ttyUSB0``, ``socket://host:port``, ``rfc2217://…``) → ("rtu", spec)."""
    if "://" in spec or spec.startswith("/"):
        return "rtu", spec
    host, sep, port = spec.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"{spec!r}: expected HOST:PORT, a serial device or a pyserial URL")
    return "tcp", (host or "127.0.0.1", int(port))


class PlcServer:
    """pymodbus server (TCP or RTU) in front of a ``PlcFrontend``."""

    def __init__(self, frontend: PlcFrontend, clock, spec: str, unit: int = 1,
                 baudrate: int = 19200) -> None:
        self.frontend = frontend
        self.clock = clock
        self.kind, self.where = parse_endpoint(spec)
        self.unit = unit
        self.baudrate = baudrate
        self.server = None
        self.errors = 0
        self.after_write = None  # async hook after a decided write (the drive's flush)
        self._exc_codes = None  # pymodbus's ExcCodes (imported with the server)

    def device(self):
        from pymodbus.constants import ExcCodes
        from pymodbus.simulator import DataType, SimData, SimDevice

        self._exc_codes = ExcCodes

        m = self.frontend.map
        holding = [0] * m.holding_count
        for s in m.channels:
            holding[s.proposal:s.proposal + s.words] = mm.encode(
                self.frontend.standing[s.index], s.words)
        return SimDevice(id=self.unit, action=self._action, simdata=(
            [SimData(0, count=1, values=False, datatype=DataType.BITS)],
            [SimData(0, count=mm.N_DISCRETE, values=False, datatype=DataType.BITS,
                     readonly=True)],
            [SimData(0, count=m.holding_count, values=holding, datatype=DataType.REGISTERS)],
            [SimData(0, count=m.input_count, values=0, datatype=DataType.REGISTERS,
                     readonly=True)]))

    async def _action(self, fc, start, address, count, registers, values):
        try:
            exc = self._dispatch(fc, start, address, count, registers, values)
        except Exception:  # noqa: BLE001 - one bad request must not stop the server
            exc = self._failed()
        if values is not None and self.after_write is not None:
            await self.after_write()  # the drive first (never raises),
        try:
            self.frontend.service.settle()  # then the record and what is published
        except Exception:  # noqa: BLE001
            exc = self._failed()
        return self._exc_codes(exc) if exc else None  # pymodbus takes only ExcCodes members

    def _failed(self) -> int:
        self.errors += 1
        self.frontend.service.healthy = False
        log.exception("modbus request failed")
        return EXC_ILLEGAL_VALUE

    def _dispatch(self, fc, start, address, count, registers, values):
        fe = self.frontend
        now = self.clock.now_ms()
        if values is None:
            if fc == FC_READ_INPUT:
                registers[: fe.map.input_count] = fe.input_registers()
            elif fc == FC_READ_DISCRETE:
                from pymodbus.simulator.simutils import SimUtils

                bits = fe.discrete_inputs() + [False] * (16 - mm.N_DISCRETE)
                registers[0:1] = SimUtils.bitsToRegisters(bits)
            return None
        if fc in (FC_WRITE_COIL, FC_WRITE_COILS):
            return fe.write_coils(address, list(values), now)
        fe.op_arg = registers[mm.H_OP_ARG - start]
        return fe.write_holding(address, values, now)  # pymodbus: unsigned 16-bit words

    async def start(self) -> None:
        from pymodbus import FramerType
        from pymodbus.server import ModbusSerialServer, ModbusTcpServer

        if self.kind == "tcp":
            self.server = ModbusTcpServer(self.device(), address=self.where)
        else:
            self.server = ModbusSerialServer(self.device(), framer=FramerType.RTU,
                                             port=self.where, baudrate=self.baudrate)
        await self.server.serve_forever(background=True)

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.shutdown()
            self.server = None


__all__ = ["PlcFrontend", "PlcServer", "Outcome", "parse_endpoint", "SOURCE_MODBUS",
           "EXC_ILLEGAL_VALUE"]
