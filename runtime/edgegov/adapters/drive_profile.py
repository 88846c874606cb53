"""A drive's register map at work: governed outputs → the drive's setpoint registers, the
e-stop level → its stop coil or control word, its status word → the stop level it reports.

Pure (no socket): ``DriveClient`` calls it on the path of every drive write. The map comes
from the envelope's ``[modbus.drive]`` (``config.drive.DriveMap``); values leave the
governor as scaled integers and reach the drive as ``engineering × scale + offset`` in the
register's type. Integers round half to even and saturate at the type's range (admission
already refused a range that does not fit, so saturation never happens to a governed value).
"""

from __future__ import annotations

import struct
from decimal import ROUND_HALF_EVEN, Decimal

from ..config.drive import INT_RANGES, DriveMap


class DriveCodec:
    """Encodes one envelope's outputs for one drive map."""

    def __init__(self, drive: DriveMap, ch_names, ch_res) -> None:
        self.drive = drive
        index = {name: i for i, name in enumerate(ch_names)}
        # (channel index, factor = resolution × scale, offset, type, word order, register,
        # integer factor and offset when both are whole: the common case, without Decimal)
        self._channels = []
        for c in sorted(drive.channels, key=lambda c: c.register):
            factor = Decimal(str(ch_res[index[c.name]])) * c.scale
            whole = c.type != "float32" and factor == factor.to_integral_value() \
                and c.offset == c.offset.to_integral_value()
            self._channels.append((index[c.name], factor, c.offset, c.type, c.word_order,
                                   c.register, (int(factor), int(c.offset)) if whole else None))
        self._runs = _runs([(c[5], _words(c[3])) for c in self._channels])

    def writes(self, outputs) -> list[tuple[int, list[int]]]:
        """(first register, words) per FC16 request: contiguous setpoints go together."""
        regs: dict[int, int] = {}
        for index, factor, offset, kind, order, register, whole in self._channels:
            if whole is not None:
                words = encode_int(outputs[index] * whole[0] + whole[1], kind, order)
            else:
                words = encode_value(outputs[index] * factor + offset, kind, order)
            for k, word in enumerate(words):
                regs[register + k] = word
        return [(first, [regs[r] for r in range(first, first + n)]) for first, n in self._runs]

    def stop_pattern(self, level: bool) -> int:
        return self.drive.stop_word if level else self.drive.run_word

    def stopped(self, word: int, level: bool) -> bool:
        """The stop level the drive reports: from its status word when the map has one, else
        from the control word read back. A word that is neither pattern disagrees with
        whatever was commanded (a fault once it lasts)."""
        d = self.drive
        if d.status_register is None:
            if word == d.stop_word:
                return True
            return False if word == d.run_word else not level
        masked = word & d.status_mask
        if masked == d.status_stopped:
            return True
        if d.status_running is None or masked == d.status_running:
            return False
        return not level


def drive_json(drive: DriveMap) -> dict:
    """The drive map as ``edgegov modbus map --json`` prints it."""
    return {
        "unit": drive.unit,
        "channels": [{"name": c.name, "register": c.register, "type": c.type,
                      "word_order": c.word_order, "scale": str(c.scale),
                      "offset": str(c.offset)}
                     for c in sorted(drive.channels, key=lambda c: c.register)],
        "stop": ({"coil": drive.stop_coil} if drive.stop_coil is not None else
                 {"register": drive.stop_register, "run": drive.run_word,
                  "stop": drive.stop_word}),
        "status": None if drive.status_register is None else {
            "register": drive.status_register, "table": drive.status_table,
            "mask": drive.status_mask, "stopped": drive.status_stopped,
            "running": drive.status_running},
    }


def render_drive(drive: DriveMap) -> list[str]:
    """The drive map for people (``edgegov modbus map``)."""
    lines = [f"downstream drive (--modbus-target), unit {drive.unit}:"]
    for c in sorted(drive.channels, key=lambda c: c.register):
        span = f"{c.register}" + (f"-{c.register + 1}" if c.words == 2 else "")
        order = f", {c.word_order} word order" if c.words == 2 else ""
        lines.append(f"  register {span:<11} {c.name:<14} {c.type}{order}, "
                     f"value × {_t(c.scale)} + {_t(c.offset)}")
    if drive.stop_coil is not None:
        lines.append(f"  coil {drive.stop_coil:<15} stop (1 = stop)")
    else:
        lines.append(f"  register {drive.stop_register:<11} control word: run "
                     f"{drive.run_word:#06x}, stop {drive.stop_word:#06x}")
    if drive.status_register is not None:
        running = "" if drive.status_running is None else \
            f", running {drive.status_running:#06x}"
        lines.append(f"  register {drive.status_register:<11} status word ({drive.status_table}"
                     f"): mask {drive.status_mask:#06x}, stopped {drive.status_stopped:#06x}"
                     f"{running}")
    return lines


def _t(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return "0" if text == "-0" else text


def encode_value(value: Decimal, kind: str, order: str) -> list[int]:
    """One drive value → its 16-bit words (``big``: high word first)."""
    if kind == "float32":
        hi, lo = struct.unpack(">HH", struct.pack(">f", float(value)))
        return [lo, hi] if order == "little" else [hi, lo]
    return encode_int(int(value.to_integral_value(ROUND_HALF_EVEN)), kind, order)


def encode_int(n: int, kind: str, order: str) -> list[int]:
    """A whole drive value → its words, saturated at the type's range."""
    lo, hi = INT_RANGES[kind]
    n = lo if n < lo else hi if n > hi else n
    if kind.endswith("16"):
        return [n & 0xFFFF]
    n &= 0xFFFFFFFF
    return [n & 0xFFFF, n >> 16] if order == "little" else [n >> 16, n & 0xFFFF]


def _words(kind: str) -> int:
    return 1 if kind.endswith("16") else 2


def _runs(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted (register, words) spans → contiguous (first, count) runs."""
    runs: list[list[int]] = []
    for first, n in spans:
        if runs and runs[-1][0] + runs[-1][1] == first:
            runs[-1][1] += n
        else:
            runs.append([first, n])
    return [(a, n) for a, n in runs]


__all__ = ["DriveCodec", "encode_value", "drive_json", "render_drive"]
