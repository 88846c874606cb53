"""``[modbus.drive]``: the downstream drive's own register map, for ``--modbus-target``.

Real drives do not take "outputs from register 0, e-stop coil 0": each has a map. The
envelope declares it, per channel and for the stop command:

    [modbus.drive]
    unit = 1                                   # the drive's Modbus unit id
    stop = { coil = 0 }                        # or a control word:
    # stop = { register = 99, run = 0x000F, stop = 0x0002 }
    status = { register = 100, mask = 0x006F, stopped = 0x0007, running = 0x0027 }

    [modbus.drive.channels.spindle]
    register = 0          # holding register of the setpoint
    type = "uint16"       # int16, uint16, int32, uint32, float32
    word_order = "big"    # 32-bit values: big = high word first (ABCD), little = CDAB
    scale = 100           # drive value = engineering value × scale + offset
    offset = 0

Host-side, like the rest of ``[modbus]``: the governor's blob and hash do not change with
the drive's map. Admission checks that each mapped channel's widest range (approved range
and safe value included) fits the register type after scaling, that no two registers
overlap, and that the stop command is one coil or one control word with two patterns.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import Field

from . import schema

WORDS = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2}
INT_RANGES = {"int16": (-(1 << 15), (1 << 15) - 1), "uint16": (0, (1 << 16) - 1),
              "int32": (-(1 << 31), (1 << 31) - 1), "uint32": (0, (1 << 32) - 1)}
FLOAT32_MAX = Decimal("3.4e38")

Register = Annotated[int, Field(ge=0, le=65535)]
Word = Annotated[int, Field(ge=0, le=0xFFFF)]


# "register" is the word drives use; pydantic warns that it shadows ABCMeta.register on
# the class (harmless: the field is an instance attribute).
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message='Field name "register"')

    class DriveChannelTable(schema._Table):
        register: Register
        type: Literal["int16", "uint16", "int32", "uint32", "float32"] = "int16"
        word_order: Literal["big", "little"] = "big"
        scale: schema.Number = Decimal(1)
        offset: schema.Number = Decimal(0)


    class DriveStopTable(schema._Table):
        coil: Register | None = None
        register: Register | None = None
        run: Word | None = None
        stop: Word | None = None


    class DriveStatusTable(schema._Table):
        register: Register
        table: Literal["holding", "input"] = "holding"
        mask: Word = 0xFFFF
        stopped: Word
        running: Word | None = None


    class DriveTable(schema._Table):
        unit: Annotated[int, Field(ge=1, le=247)] = 1
        channels: Annotated[dict[str, dict], Field(min_length=1)]
        stop: dict = {"coil": 0}
        status: dict | None = None


@dataclass(frozen=True)
class DriveChannelMap:
    """Where one channel's setpoint goes on the drive and how it is encoded."""

    name: str
    register: int
    type: str
    word_order: str
    scale: Decimal
    offset: Decimal

    @property
    def words(self) -> int:
        return WORDS[self.type]


@dataclass(frozen=True)
class DriveMap:
    """A drive's map: setpoints per channel, the stop command, the status word."""

    unit: int
    channels: tuple[DriveChannelMap, ...]
    stop_coil: int | None  # the stop as a coil (1 = stop) …
    stop_register: int | None  # … or as a control word written with one of two patterns
    run_word: int | None
    stop_word: int | None
    status_register: int | None = None  # where the drive reports stopped / running
    status_table: str = "holding"
    status_mask: int = 0xFFFF
    status_stopped: int | None = None
    status_running: int | None = None


def admit_drive(c, data, scope) -> DriveMap | None:
    """Validate ``[modbus.drive]`` against the admitted channels (``admission._Scope``)."""
    from .admission import _ref, _tables

    loc = ("modbus", "drive")
    before = c.count()
    table = c.model(DriveTable, data, loc)
    if table is None:
        return None
    channels = []
    for name, ch_data in _tables(c, table.channels, loc + ("channels",)).items():
        cloc = loc + ("channels", name)
        if not _ref(c, "channel", name, scope.channel_names, cloc):
            continue
        ch = c.model(DriveChannelTable, ch_data, cloc)
        if ch is not None and None not in (ch.register, ch.type, ch.scale, ch.offset):
            channels.append(DriveChannelMap(name, ch.register, ch.type, ch.word_order or "big",
                                            ch.scale, ch.offset))
            _fits(c, channels[-1], scope.channels.get(name), cloc)
    stop = _stop(c, table.stop, loc + ("stop",))
    status = None if table.status is None else c.model(DriveStatusTable, table.status,
                                                       loc + ("status",))
    if status is not None and None not in (status.stopped, status.mask) \
            and status.stopped & ~status.mask:
        c.add(loc + ("status", "stopped"), f"has bits outside the mask {status.mask:#06x}")
    if status is not None and status.running is not None and status.mask is not None \
            and status.running & ~status.mask:
        c.add(loc + ("status", "running"), f"has bits outside the mask {status.mask:#06x}")
    _overlaps(c, channels, stop, loc)
    if c.count() != before or stop is None:
        return None
    st = status or DriveStatusTable.model_construct(register=None, table="holding", mask=0xFFFF,
                                                     stopped=None, running=None)
    return DriveMap(table.unit, tuple(channels), stop.coil, stop.register, stop.run, stop.stop,
                    st.register, st.table, st.mask, st.stopped, st.running)


def _fits(c, ch: DriveChannelMap, scaled, loc: tuple) -> None:
    """The channel's widest range, scaled for the drive, must fit the register type."""
    if ch.scale == 0:
        c.add(loc + ("scale",), "must not be 0")
        return
    if scaled is None:
        return  # the channel has problems of its own
    lo = min(scaled.min, scaled.approved_min, scaled.safe) * scaled.resolution
    hi = max(scaled.max, scaled.approved_max, scaled.safe) * scaled.resolution
    ends = sorted((lo * ch.scale + ch.offset, hi * ch.scale + ch.offset))
    if ch.type == "float32":
        if max(abs(e) for e in ends) > FLOAT32_MAX:
            c.add(loc + ("scale",), "the scaled range does not fit a float32")
        return
    tmin, tmax = INT_RANGES[ch.type]
    if ends[0] < tmin or ends[1] > tmax:
        unit = f" {scaled.unit}" if scaled.unit else ""
        c.add(loc + ("type",), f"{ch.name}'s range [{_t(lo)}, {_t(hi)}]{unit} is "
                               f"[{_t(ends[0])}, {_t(ends[1])}] on the drive (× {_t(ch.scale)} "
                               f"+ {_t(ch.offset)}): does not fit {ch.type} [{tmin}, {tmax}]")


def _t(value: Decimal) -> str:
    text = format(Decimal(value).normalize(), "f")
    return "0" if text == "-0" else text


def _stop(c, data, loc: tuple):
    stop = c.model(DriveStopTable, data, loc)
    if stop is None:
        return None
    word = (stop.register, stop.run, stop.stop)
    if stop.coil is not None and any(v is not None for v in word):
        c.add(loc, "give either coil, or register with run and stop (a control word)")
        return None
    if stop.coil is None:
        if None in word:
            missing = [k for k, v in zip(("register", "run", "stop"), word, strict=True)
                       if v is None and k not in data]
            if missing:  # else a bad value was reported already
                c.add(loc, "give either coil, or register with run and stop (a control word)")
            return None
        if stop.run == stop.stop:
            c.add(loc + ("stop",), f"must differ from run ({stop.run:#06x})")
            return None
    return stop


def _overlaps(c, channels: list[DriveChannelMap], stop, loc: tuple) -> None:
    owner: dict[int, str] = {}
    if stop is not None and stop.register is not None:
        owner[stop.register] = "the control word"
    for ch in sorted(channels, key=lambda ch: (ch.register, ch.name)):
        for r in range(ch.register, ch.register + ch.words):
            if r in owner:
                c.add(loc + ("channels", ch.name, "register"),
                      f"register {r} is already {owner[r]}'s")
                break
            owner[r] = ch.name


__all__ = ["DriveMap", "DriveChannelMap", "admit_drive", "WORDS", "INT_RANGES"]
