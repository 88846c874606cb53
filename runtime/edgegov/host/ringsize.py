"""How big a gateway's lineage ring is, and how much history it holds.

The default geometry is the ``[lineage]`` table of ``boards/linux-gateway/board.toml``
(4096 blocks of 4096 bytes: 16 MiB); an existing lineage file keeps its own size.

History held = ring bytes / (records per second × bytes per record). Without a measured
rate (``--expected-rate``), the rate is estimated from the envelope as what a live cell
must send at the least, with the margin a careful sender keeps:

- commands: two per ``link.hold_after_ms`` (a planner sending only once per hold window
  is held by one lost message); 10/s when the envelope has no link section;
- telemetry: two per ``stale_after_ms`` of the most demanding input (all inputs in one
  message); none without inputs;
- bytes per record: 20 + 3 per value carried (the channels of a command, the inputs of a
  telemetry message): frame (10), kind, time step, sequence, verdict, rule and margin,
  and about 3 bytes for each scaled value. Checkpoints (every 256 records) and sector
  headers add under 2 %, left out.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

BOARD_TOML = Path(__file__).resolve().parents[3] / "boards" / "linux-gateway" / "board.toml"
FALLBACK = (4096, 4096)  # the board file's values, for an install without boards/
MIN_HISTORY_H = 8.0  # one shift: the default of ``edgegov run --min-history-h``


def gateway_geometry(board_toml: Path = BOARD_TOML) -> tuple[int, int]:
    """(block_size, block_count) of the gateway board's lineage ring."""
    try:
        table = tomllib.loads(board_toml.read_text())["lineage"]
        return int(table["block_size"]), int(table["block_count"])
    except (OSError, KeyError, ValueError, TypeError, tomllib.TOMLDecodeError):
        return FALLBACK


def ring_blocks(path: str | Path, block_size: int, requested: int | None) -> int:
    """Blocks of the ring: as asked, else an existing file's, else the board's default."""
    if requested is not None:
        return requested
    p = Path(path)
    if p.exists() and p.stat().st_size and p.stat().st_size % block_size == 0:
        return p.stat().st_size // block_size
    return gateway_geometry()[1]


@dataclass
class Rate:
    """Expected lineage traffic: records per second and bytes per record (mean)."""

    records_per_s: float
    bytes_per_record: float

    @property
    def bytes_per_s(self) -> float:
        return self.records_per_s * self.bytes_per_record


def expected_rate(admitted) -> Rate:
    """The estimate of the module docstring, from an admitted envelope."""
    n_ch = len(admitted.channels)
    cmd_rate = 2000 / admitted.link[0] if admitted.link else 10.0
    stale = [i.stale_after_ms for i in admitted.inputs.values()]
    tel_rate = 2000 / min(stale) if stale else 0.0
    total = cmd_rate + tel_rate
    mean = (cmd_rate * (20 + 3 * n_ch) + tel_rate * (20 + 3 * len(stale))) / total
    return Rate(total, mean)


def history_h(ring_bytes: int, rate: Rate) -> float:
    return ring_bytes / rate.bytes_per_s / 3600


def history_warning(block_size: int, block_count: int, rate: Rate, min_h: float,
                    measured: bool = False) -> str | None:
    """One line when the ring holds less than ``min_h`` hours of history, else None."""
    ring = block_size * block_count
    held = history_h(ring, rate)
    if held >= min_h:
        return None
    need = int(-(-min_h * 3600 * rate.bytes_per_s // block_size))
    source = "the given" if measured else "the envelope's expected"
    return (f"lineage ring of {ring / 2**20:.1f} MiB holds about {held:.1f} h of history at "
            f"{source} {rate.records_per_s:.1f} records/s x {rate.bytes_per_record:.0f} B, "
            f"less than --min-history-h {min_h:g}: give --lineage-blocks {need} or more")


def start_warning(admitted, block_size: int, block_count: int, min_h: float,
                  records_per_s: float | None = None) -> str | None:
    """``edgegov run``'s start-up check: the envelope's estimate, or a given rate (records/s,
    with the envelope's bytes per record)."""
    rate = expected_rate(admitted)
    if records_per_s:
        rate = Rate(records_per_s, rate.bytes_per_record)
    return history_warning(block_size, block_count, rate, min_h, bool(records_per_s))


def plan(path: str | Path, admitted, requested: int | None, min_h: float,
         records_per_s: float | None, warn) -> tuple[int, int]:
    """(block_size, block_count) for ``edgegov run``'s lineage file; ``warn(line)`` is
    called once when that ring holds less than ``min_h`` hours of history."""
    block_size = gateway_geometry()[0]
    blocks = ring_blocks(path, block_size, requested)
    line = start_warning(admitted, block_size, blocks, min_h, records_per_s)
    if line:
        warn(line)
    return block_size, blocks


__all__ = ["plan", "start_warning", "gateway_geometry", "ring_blocks", "expected_rate", "history_h",
           "history_warning", "Rate", "MIN_HISTORY_H", "BOARD_TOML"]
