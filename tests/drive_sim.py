"""A drive simulator that enforces its own register map (a real pymodbus server).

It reads the ``[modbus.drive]`` table of an envelope TOML with its own small decoder (not
the gateway's codec), and holds the gateway to it:

- a write that touches a register the map does not have, or half of a 32-bit value, is
  answered with exception 02 (ILLEGAL_ADDRESS);
- a setpoint that decodes, with the map's type, word order, scale and offset, to a value
  outside the channel's envelope range, or to a non-finite float, gets exception 03;
- a control word that is neither the run nor the stop pattern gets exception 03; a valid
  one sets the status word (stopped / running) that the gateway reads back.

So a gateway that writes the wrong register, type, word order or scale is caught by the
drive itself, as a real drive would (or would not, and move): the tests then fail.
"""

from __future__ import annotations

import math
import struct
import tomllib
from decimal import Decimal
from pathlib import Path

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

SIZES = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2}


def decode_words(words: list[int], kind: str, order: str) -> float | int:
    if order == "little":
        words = words[::-1]
    raw = b"".join(w.to_bytes(2, "big") for w in words)
    if kind == "float32":
        return struct.unpack(">f", raw)[0]
    return int.from_bytes(raw, "big", signed=kind.startswith("int"))


class DriveSim:
    """The drive of one envelope's ``[modbus.drive]`` map, on Modbus TCP."""

    def __init__(self, envelope: str | Path, port: int) -> None:
        doc = tomllib.loads(Path(envelope).read_text(), parse_float=Decimal)
        self.port = port
        drive = doc["modbus"]["drive"]
        self.unit = drive.get("unit", 1)
        self.channels = {}
        for name, ch in drive["channels"].items():
            env = doc["channels"][name]
            lo = min(env["min"], env.get("approved_min", env["min"]), env["safe"])
            hi = max(env["max"], env.get("approved_max", env["max"]), env["safe"])
            self.channels[name] = (ch["register"], ch.get("type", "int16"),
                                   ch.get("word_order", "big"), Decimal(ch.get("scale", 1)),
                                   Decimal(ch.get("offset", 0)), lo, hi)
        stop = drive.get("stop", {"coil": 0})
        self.stop_coil = stop.get("coil")
        self.control = stop.get("register")
        self.run_word, self.stop_word = stop.get("run"), stop.get("stop")
        status = drive.get("status")
        self.status_reg = status["register"] if status else None
        self.status = {True: status["stopped"], False: status.get("running", 0)} if status \
            else None
        self.values: dict[str, Decimal] = {}  # engineering values, as the drive decoded them
        self.stopped: bool | None = None  # the stop as last commanded
        self.refused: list[tuple[int, int, str]] = []  # (fc, address, why)
        self.writes = 0
        self.owner = {}  # register -> (channel, offset in the value)
        for name, (reg, kind, *_rest) in self.channels.items():
            for k in range(SIZES[kind]):
                self.owner[reg + k] = (name, k)
        self.server = None

    # ------------------------------------------------------------ the map, enforced

    def _write_registers(self, address: int, values: list[int]):
        regs = dict(zip(range(address, address + len(values)), values, strict=True))
        if self.control is not None and self.control in regs:
            if len(regs) != 1:
                return self._refuse(16, address, "control word with other registers")
            word = regs[self.control]
            if word not in (self.run_word, self.stop_word):
                return self._refuse(6, address, f"control word {word:#06x}")
            self.stopped = word == self.stop_word
            return None
        for r in regs:
            if r not in self.owner:
                return self._refuse(16, address, f"register {r} is not in the map")
        decoded = {}
        for name, (reg, kind, order, scale, offset, lo, hi) in self.channels.items():
            n = SIZES[kind]
            covered = [r in regs for r in range(reg, reg + n)]
            if not any(covered):
                continue
            if not all(covered):
                return self._refuse(16, address, f"half of {name}")
            raw = decode_words([regs[r] for r in range(reg, reg + n)], kind, order)
            if isinstance(raw, float) and not math.isfinite(raw):
                return self._refuse(16, address, f"{name}: {raw}", ExcCodes.ILLEGAL_VALUE)
            value = (Decimal(repr(raw)) - offset) / scale
            if not lo - abs(1 / scale) <= value <= hi + abs(1 / scale):
                return self._refuse(16, address, f"{name}: {value} outside [{lo}, {hi}]",
                                    ExcCodes.ILLEGAL_VALUE)
            decoded[name] = value
        self.values.update(decoded)
        self.writes += 1
        return None

    def _refuse(self, fc: int, address: int, why: str, code=ExcCodes.ILLEGAL_ADDRESS):
        self.refused.append((fc, address, why))
        return code

    async def _action(self, fc, start, address, count, registers, values):
        if fc in (6, 16) and values is not None:
            return self._write_registers(address, list(values))
        if fc in (5, 15) and values is not None:
            if self.stop_coil is None or address != self.stop_coil or len(values) != 1:
                return self._refuse(fc, address, "coil is not the stop coil")
            self.stopped = bool(values[0])
            return None
        if fc == 3 and values is None and self.status_reg is not None:
            if address == self.status_reg and self.stopped is not None:
                registers[address - start] = self.status[self.stopped]
        return None

    def device(self) -> SimDevice:
        top = max([8300] + [r + 2 for r in self.owner])
        return SimDevice(id=self.unit, action=self._action, simdata=(
            [SimData(0, count=64, values=False, datatype=DataType.BITS)],
            [SimData(0, count=16, values=False, datatype=DataType.BITS)],
            [SimData(0, count=top, values=0, datatype=DataType.REGISTERS)],
            [SimData(0, count=16, values=0, datatype=DataType.REGISTERS)]))

    async def start(self) -> None:
        self.server = ModbusTcpServer(self.device(), address=("127.0.0.1", self.port))
        await self.server.serve_forever(background=True)

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.shutdown()
            self.server = None
