# A signed envelope change over the board link (firmware/PROTOCOL.md, "Envelope push"):
#   V size                 begin a transfer of a compiled blob of ``size`` bytes (0: rollback)
#   W offset hex           up to 48 bytes of it, in order
#   U action counter mac   apply it (action 1) or restore the previous one (action 2)
# The MAC is edgegov.config.push's: HMAC-SHA256 with the device key over the domain, this
# board's device id, the action, the SHA-256 of the blob (computed here) and the counter.
# The board checks, in this order, and answers ``U result counter old new`` with the first
# result that is not 0 (codes below; words in edgegov.names.PUSH_RESULTS):
import hashlib
import struct

from edgegov.core.auth import equal, hmac_sha256
from edgegov.core.envelope import Envelope
from edgegov.core.envswap import swap_check

PUSH_DOMAIN = b"edgegov-envelope\x00"
CHUNK = 48  # blob bytes per W frame (the frame body stays under the reader's 120 bytes)

APPLIED = 0
BAD_MAC = 1  # not signed with this board's key, for this board, over this blob
STALE = 2  # counter not above the last one accepted (persisted)
UNREADABLE = 3  # the blob does not load (Envelope.from_blob), or is for another device
NOT_SAFE_STATE = 4  # ARMED or PAUSED: disarm or trip first
OUTSIDE = 5  # an output held now, or a safe value, lies outside the new ranges
NO_PREVIOUS = 6  # a rollback, but the flash keeps no previous envelope
INCOMPLETE = 7  # the transfer is not whole (V size / W chunks)
NOT_WRITTEN = 8  # the flash write failed (the old envelope stays in force)


def push_message(device_id, action, digest, counter):
    return PUSH_DOMAIN + device_id.encode() + b"\x00" + bytes([action]) + bytes(digest) + \
        struct.pack(">Q", counter)


def refusal(gov, new):
    """0, or the result code for which the governor ``gov`` must not restart on core
    Envelope ``new`` (core.envswap: the check the gateway runs too)."""
    return swap_check(gov, new)[0]


class EnvelopePush:
    """The board's side of a push: the transfer buffer, the checks, the flash write."""

    def __init__(self, store, key):
        self.store = store
        self.key = key
        self.buf = None
        self.have = 0

    def begin(self, size):
        """``V size``: a transfer of ``size`` bytes (0: none, a rollback follows); the size
        taken, or -1 when the flash slot cannot hold it."""
        if not 0 <= size <= self.store.capacity:
            return -1
        self.buf = bytearray(size) if size else None
        self.have = 0
        return size

    def chunk(self, offset, data):
        """Take ``data`` at ``offset`` when it is the next piece; the bytes held."""
        if self.buf is not None and offset == self.have and offset + len(data) <= len(self.buf):
            self.buf[offset:offset + len(data)] = data
            self.have += len(data)
        return self.have

    def apply(self, gov, action, counter, mac):
        """(result, digest, Envelope or None, blob) for ``U action counter mac``."""
        if action == 2:
            prev = self.store.previous()
            if prev is None:
                return NO_PREVIOUS, b"", None, None
            blob, digest = prev
        else:
            if self.buf is None or self.have != len(self.buf):
                return INCOMPLETE, b"", None, None
            blob = bytes(self.buf)
            digest = hashlib.sha256(blob).digest()
        msg = push_message(gov.env.device_id, action, digest, counter)
        if not equal(hmac_sha256(self.key, msg), mac):
            return BAD_MAC, digest, None, None
        if counter <= self.store.counter:
            return STALE, digest, None, None
        self.store.keep_counter(counter)  # a verified change is used up, applied or not
        self.buf = None
        try:
            env = Envelope.from_blob(blob, digest)
        except Exception:
            return UNREADABLE, digest, None, None
        why = refusal(gov, env)
        if why:
            return why, digest, None, None
        try:
            self.store.write(blob)
        except Exception:
            self.store.reload()
            return NOT_WRITTEN, digest, None, None
        return APPLIED, digest, env, blob


__all__ = ["EnvelopePush", "refusal", "push_message", "CHUNK"]
