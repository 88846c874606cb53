"""An emulated NOR flash implementing the block-device port, with power-cut knobs.

Modelled on littlefs's ``bd/lfs_emubd``: the device keeps what a real part would keep
after the plug is pulled, and lets a test choose where and how the plug is pulled.

Knobs (constructor keywords):

``cut_after=N``
    Power is cut during mutating operation number N (progs and erases, counted from 0):
    operations 0..N-1 complete, then ``PowerCut`` is raised.
``cut_bytes=k``
    How much of operation N lands: its first ``k`` bytes (for an erase: the first ``k``
    bytes of the block become 0xFF). ``k=0``: none of it.
``fill``
    What the rest of operation N's region holds: ``"ff"`` (erased), ``"00"``, ``"random"``
    (seeded by ``seed``), or ``"stale"`` (the bytes that were there in the block's previous
    lap, i.e. before its last erase; for a torn erase, the bytes it was erasing).
``reorder=True``
    Operations issued since the last ``sync()`` survive the cut as a random (seeded) subset,
    applied in random order; operations before the last sync always survive.
``bad_blocks``
    Blocks whose erase and prog raise ``BlockDeviceError``.

The device also checks the port contract: programming a byte that is not erased raises
``NorViolation`` (a bug in the caller, never a device condition).

After a cut every operation raises ``PowerCut``; ``reboot()`` returns a fresh device over
the surviving bytes. Counters: ``reads``, ``progs``, ``erases``, ``syncs``,
``bytes_programmed``, ``ops`` (mutating operations done).

``replay_cuts`` enumerates, from one recorded run (``trace=True``), the surviving image of
a cut at every byte of every operation, without re-running the workload each time.
"""

import random

from edgegov.core.blockdev import BlockDeviceError, check_geometry

FILL_FF = "ff"
FILL_00 = "00"
FILL_RANDOM = "random"
FILL_STALE = "stale"
FILLS = (FILL_FF, FILL_00, FILL_RANDOM, FILL_STALE)

OP_PROG = "prog"
OP_ERASE = "erase"
OP_SYNC = "sync"


class PowerCut(Exception):
    """The emulated power failed; the device is dead until ``reboot()``."""


class NorViolation(Exception):
    """A caller broke the port contract (e.g. programmed a byte that was not erased)."""


class EmulatedFlash:
    """The block-device port over RAM, with fault injection (see the module docstring)."""

    def __init__(
        self,
        block_size,
        block_count,
        *,
        cut_after=None,
        cut_bytes=0,
        fill=FILL_FF,
        reorder=False,
        seed=0,
        bad_blocks=(),
        image=None,
        prev_lap=None,
        trace=False,
    ):
        check_geometry(block_size, block_count)
        if fill not in FILLS:
            raise ValueError(f"fill must be one of {FILLS!r}")
        self.block_size = block_size
        self.block_count = block_count
        size = block_size * block_count
        if image is not None and len(image) != size:
            raise ValueError(f"image is {len(image)} bytes, geometry needs {size}")
        self.mem = bytearray(image) if image is not None else bytearray(b"\xff" * size)
        self.durable = bytearray(self.mem)
        # What each block held before its last erase: the "stale" fill.
        self.prev = list(prev_lap) if prev_lap else [b"\xff" * block_size] * block_count
        self.pending = []  # mutating operations since the last sync
        self.trace = [] if trace else None
        self.cut_after = cut_after
        self.cut_bytes = cut_bytes
        self.fill = fill
        self.reorder = reorder
        self.rng = random.Random(seed)
        self.bad_blocks = frozenset(bad_blocks)
        self.dead = False
        self.survivor = None
        self.cut_op = None  # the operation in flight when power was cut
        self.reads = self.progs = self.erases = self.syncs = 0
        self.bytes_programmed = 0
        self.ops = 0

    # -------------------------------------------------------------- the port

    def read(self, block, offset, buf):
        """Copy ``len(buf)`` bytes at ``block``/``offset`` into ``buf``."""
        self._alive()
        start = self._span(block, offset, len(buf))
        buf[:] = self.mem[start : start + len(buf)]
        self.reads += 1

    def prog(self, block, offset, data):
        """Program ``data``; only erased bytes may be programmed."""
        self._alive()
        data = bytes(data)
        start = self._span(block, offset, len(data))
        if block in self.bad_blocks:
            raise BlockDeviceError("prog failed", block)
        for i, byte in enumerate(self.mem[start : start + len(data)]):
            if byte != 0xFF:
                raise NorViolation(
                    f"prog over non-erased byte at block {block} offset {offset + i}"
                )
        self._mutate((OP_PROG, block, offset, data))
        self.progs += 1
        self.bytes_programmed += len(data)

    def erase(self, block):
        """Set ``block`` to 0xFF."""
        self._alive()
        self._span(block, 0, self.block_size)
        if block in self.bad_blocks:
            raise BlockDeviceError("erase failed", block)
        self._mutate((OP_ERASE, block, 0, None))
        self.erases += 1

    def sync(self):
        """Everything so far becomes durable."""
        self._alive()
        self.durable[:] = self.mem
        self.pending = []
        self.syncs += 1
        if self.trace is not None:
            self.trace.append((OP_SYNC, 0, 0, None))

    # -------------------------------------------------------------- power

    def reboot(self, **knobs):
        """A fresh device over what survived (after a cut), or over everything written
        (a clean reboot). ``knobs`` are constructor keywords for the new device."""
        image = self.survivor if self.dead else self.mem
        return EmulatedFlash(
            self.block_size, self.block_count, image=image, prev_lap=self.prev, **knobs
        )

    def survivor_image(self, op, nbytes, fill, reorder=False, rng=None):
        """The bytes left if power fails during ``op`` with ``nbytes`` of it landed."""
        rng = rng or self.rng
        if reorder:
            image = bytearray(self.durable)
            landed = [p for p in self.pending if rng.random() < 0.5]
            rng.shuffle(landed)
            for p in landed:
                self._apply(image, p)
        else:
            image = bytearray(self.mem)
        self._tear(image, op, nbytes, fill, rng)
        return image

    # -------------------------------------------------------------- internals

    def _alive(self):
        if self.dead:
            raise PowerCut("device is powered off")

    def _span(self, block, offset, n):
        if not 0 <= block < self.block_count or offset < 0 or offset + n > self.block_size:
            raise ValueError(f"block {block} offset {offset} length {n} out of range")
        return block * self.block_size + offset

    def _mutate(self, op):
        if self.cut_after is not None and self.ops == self.cut_after:
            self.survivor = self.survivor_image(op, self.cut_bytes, self.fill, self.reorder)
            self.cut_op = op
            self.dead = True
            raise PowerCut(f"power cut during operation {self.ops}")
        if op[0] == OP_ERASE:
            self.prev[op[1]] = bytes(self._block_bytes(self.mem, op[1]))
        self._apply(self.mem, op)
        self.pending.append(op)
        if self.trace is not None:
            self.trace.append(op)
        self.ops += 1

    def _block_bytes(self, image, block):
        start = block * self.block_size
        return image[start : start + self.block_size]

    def _apply(self, image, op):
        kind, block, offset, data = op
        start = block * self.block_size + offset
        if kind == OP_ERASE:
            image[start : start + self.block_size] = b"\xff" * self.block_size
        else:
            image[start : start + len(data)] = data

    def _tear(self, image, op, nbytes, fill, rng):
        kind, block, offset, data = op
        length = self.block_size if kind == OP_ERASE else len(data)
        landed = b"\xff" * length if kind == OP_ERASE else data
        start = block * self.block_size + offset
        nbytes = max(0, min(nbytes, length))
        image[start : start + nbytes] = landed[:nbytes]
        rest = length - nbytes
        image[start + nbytes : start + length] = self._fill_bytes(
            image, block, offset + nbytes, rest, kind, fill, rng
        )

    def _fill_bytes(self, image, block, offset, n, kind, fill, rng):
        if fill == FILL_FF:
            return b"\xff" * n
        if fill == FILL_00:
            return b"\x00" * n
        if fill == FILL_RANDOM:
            return bytes(rng.getrandbits(8) for _ in range(n))
        if kind == OP_ERASE:  # stale: what the erase was erasing
            start = block * self.block_size + offset
            return bytes(image[start : start + n])
        return self.prev[block][offset : offset + n]


def cut_points(op, block_size, erase_cuts):
    """The ``nbytes`` values to cut ``op`` at: every byte of a prog; ``erase_cuts`` of an
    erase (a torn erase looks alike at most offsets, and each costs a full recovery)."""
    if op[0] == OP_PROG:
        return range(len(op[3]))
    return [k for k in erase_cuts if k < block_size]


def replay_cuts(
    trace, block_size, block_count, fills=FILLS, erase_cuts=(0, 1, 64), reorder=False, seed=0
):
    """Yield ``(op_index, nbytes, fill, image, prev_lap)`` for a cut at every cut point of
    every mutating operation in ``trace`` (from a device made with ``trace=True``).

    ``image`` is what survives; boot ``EmulatedFlash(..., image=image, prev_lap=prev_lap)``
    on it. ``op_index`` counts mutating operations, as ``cut_after`` does, so any case can
    be re-run live with ``cut_after=op_index, cut_bytes=nbytes, fill=fill``.
    """
    dev = EmulatedFlash(block_size, block_count, seed=seed)
    rng = random.Random(seed)
    index = 0
    for op in trace:
        if op[0] == OP_SYNC:
            dev.sync()
            continue
        for nbytes in cut_points(op, block_size, erase_cuts):
            for fill in fills:
                image = dev.survivor_image(op, nbytes, fill, reorder, rng)
                yield index, nbytes, fill, image, list(dev.prev)
        dev._mutate(op)
        index += 1


__all__ = [
    "EmulatedFlash",
    "FILLS",
    "FILL_00",
    "FILL_FF",
    "FILL_RANDOM",
    "FILL_STALE",
    "NorViolation",
    "PowerCut",
    "cut_points",
    "replay_cuts",
]
