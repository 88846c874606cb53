"""The block-device port: the only storage the lineage ring knows about.

Contract (every device the ring runs on honours it; ``EmulatedFlash`` in ``emulation/``
checks it):

Geometry
    ``block_size`` bytes per block, ``block_count`` blocks, both ints, fixed for the life of
    the device. A block is the erase unit and the ring's sector.

``read(block, offset, buf)``
    Fill all of ``buf`` (a writable buffer: bytearray or memoryview) with the bytes at
    ``offset`` inside ``block``. Reads see every earlier ``prog``/``erase``, durable or not.

``prog(block, offset, data)``
    Program ``len(data)`` bytes at ``offset``. NOR rules: only bytes that read 0xFF (erased)
    may be programmed; programming never crosses a block boundary. Byte granularity: any
    offset and length (a flash with a larger program unit needs an adapter that buffers).

``erase(block)``
    Set every byte of ``block`` to 0xFF.

``sync()``
    Durability and ordering barrier. Nothing is durable until ``sync()`` returns; after it
    returns, every earlier ``prog`` and ``erase`` survives a power cut. Of the operations
    issued after the last ``sync()``, a power cut may leave any subset, in any order, and the
    one in flight torn (some of its bytes written, the rest in an undefined state).

Errors
    A device that cannot erase or program a block (a worn or bad block) raises
    ``BlockDeviceError``; the ring then moves on to another block. Anything else a device
    raises is not the ring's to handle.

``RamBlockDevice`` (a bytearray; the RAM ring of small boards and a plain device for tests)
and ``MpBlockDevice`` (MicroPython's block-device protocol) implement the contract here;
``edgegov.host.filebd.FileBlockDevice`` implements it over a preallocated file.
"""

from .compat import const

ERASED = const(0xFF)

# ioctl operations of MicroPython's block-device protocol (docs: "Block devices").
_IOCTL_SYNC = const(3)
_IOCTL_BLOCK_COUNT = const(4)
_IOCTL_BLOCK_SIZE = const(5)
_IOCTL_BLOCK_ERASE = const(6)


def _probe_slice_assign():
    # The micro:bit's MicroPython 1.9.2 has no bytearray slice assignment; everything
    # newer does, and it is much faster than a byte loop (and allocation-free).
    try:
        b = bytearray(2)
        b[0:1] = b"\x01"
        return b[0] == 1
    except Exception:
        return False


_SLICE_ASSIGN = _probe_slice_assign()


def erased_buffer(n):
    """A bytearray of ``n`` bytes of 0xFF (MicroPython has no ``bytearray * int``)."""
    buf = bytearray(n)
    for i in range(n):
        buf[i] = ERASED
    return buf


class BlockDeviceError(OSError):
    """A block could not be erased or programmed (bad or worn block)."""

    def __init__(self, msg, block=-1):
        super().__init__(msg)
        self.msg = msg
        self.block = block

    def __str__(self):
        return "%s (block %d)" % (self.msg, self.block)


def check_geometry(block_size, block_count):
    """Raise ``ValueError`` unless both are positive ints."""
    if not isinstance(block_size, int) or block_size <= 0:
        raise ValueError("block_size must be a positive int")
    if not isinstance(block_count, int) or block_count <= 0:
        raise ValueError("block_count must be a positive int")


class RamBlockDevice:
    """The port over a bytearray: no persistence beyond the object, ``sync`` does nothing.

    ``image`` may be given to view existing bytes (e.g. a pulled dump); it must be exactly
    ``block_size * block_count`` long. A read-only ``bytes`` image is fine for scanning.
    It does not police the NOR rules (that is ``EmulatedFlash``'s job): it is meant to be
    small and quick, on a 16 KB board as well as in tests.
    """

    def __init__(self, block_size, block_count, image=None):
        check_geometry(block_size, block_count)
        size = block_size * block_count
        if image is None:
            image = erased_buffer(size)
        elif len(image) != size:
            raise ValueError("image is %d bytes, geometry needs %d" % (len(image), size))
        self.block_size = block_size
        self.block_count = block_count
        self.buf = image

    def _start(self, block, offset, n):
        if block < 0 or block >= self.block_count or offset < 0:
            raise ValueError("block or offset out of range")
        if offset + n > self.block_size:
            raise ValueError("access crosses the end of the block")
        return block * self.block_size + offset

    def read(self, block, offset, buf):
        """Copy ``len(buf)`` bytes at ``block``/``offset`` into ``buf``."""
        n = len(buf)
        start = self._start(block, offset, n)
        src = self.buf
        if _SLICE_ASSIGN:
            buf[0:n] = memoryview(src)[start : start + n]
            return
        for i in range(n):
            buf[i] = src[start + i]

    def prog(self, block, offset, data):
        """Write ``data`` at ``block``/``offset`` (plain copy; allocation-free)."""
        n = len(data)
        start = self._start(block, offset, n)
        dst = self.buf
        if _SLICE_ASSIGN:
            dst[start : start + n] = data
            return
        for i in range(n):
            dst[start + i] = data[i]

    def erase(self, block):
        """Fill ``block`` with 0xFF."""
        start = self._start(block, 0, self.block_size)
        dst = self.buf
        for i in range(start, start + self.block_size):
            dst[i] = ERASED

    def sync(self):
        """Nothing to do: RAM is as durable as it gets."""


class MpBlockDevice:
    """Adapter from a MicroPython block device (extended interface) to the port.

    ``dev`` implements ``readblocks(n, buf, off)``, ``writeblocks(n, buf, off)`` (which with
    an offset programs without erasing) and ``ioctl(op, arg)`` (3 sync, 4 block count,
    5 block size, 6 erase), as ``rp2.Flash``, ``esp32.Partition`` and ``pyb.Flash`` do. A
    failed writeblocks or erase (non-zero result or ``OSError``) is a ``BlockDeviceError``.

    The port assumes byte-granular programming: on a part that programs whole pages
    (rp2040: 256 bytes) or ECC words (STM32L4/H7), put a page-buffering adapter in between.
    """

    def __init__(self, dev):
        self.dev = dev
        self.block_size = dev.ioctl(_IOCTL_BLOCK_SIZE, 0)
        self.block_count = dev.ioctl(_IOCTL_BLOCK_COUNT, 0)
        check_geometry(self.block_size, self.block_count)

    def read(self, block, offset, buf):
        """Read ``len(buf)`` bytes at ``block``/``offset``."""
        self.dev.readblocks(block, buf, offset)

    def prog(self, block, offset, data):
        """Program ``data`` at ``block``/``offset`` (the block must be erased there)."""
        try:
            failed = self.dev.writeblocks(block, data, offset)
        except OSError:  # ports raise OSError(EIO) where others return -EIO
            failed = True
        if failed:
            raise BlockDeviceError("writeblocks failed", block)

    def erase(self, block):
        """Erase ``block`` through ioctl 6."""
        try:
            failed = self.dev.ioctl(_IOCTL_BLOCK_ERASE, block)
        except OSError:
            failed = True
        if failed:
            raise BlockDeviceError("erase failed", block)

    def sync(self):
        """Flush the device through ioctl 3."""
        self.dev.ioctl(_IOCTL_SYNC, 0)


__all__ = [
    "BlockDeviceError",
    "MpBlockDevice",
    "RamBlockDevice",
    "check_geometry",
    "erased_buffer",
]
