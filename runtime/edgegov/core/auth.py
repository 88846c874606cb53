"""Operator-action authentication: HMAC-SHA256 over a per-device key and a counter.

The signed message binds the device id, the action, its argument and a counter that must
strictly increase, so an action signed for one device, or one already used, is refused.
MicroPython has ``hashlib.sha256`` but no ``hmac`` module, hence the few lines of RFC 2104.
"""

import hashlib
import struct

_BLOCK = 64
OP_DOMAIN = b"edgegov-op\x00"


def hmac_sha256(key, msg):
    """RFC 2104 HMAC with SHA-256."""
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = bytes(key) + bytes(_BLOCK - len(key))
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
    inner.update(msg)
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
    outer.update(inner.digest())
    return outer.digest()


def op_message(device_id, action, arg, counter):
    """The exact bytes an operator action's MAC covers."""
    dev = device_id.encode("utf-8") if isinstance(device_id, str) else bytes(device_id)
    return OP_DOMAIN + dev + b"\x00" + struct.pack(">BqQ", action, arg, counter)


def sign_op(key, device_id, action, arg, counter):
    return hmac_sha256(key, op_message(device_id, action, arg, counter))


def equal(a, b):
    """Compare MACs without an early exit."""
    if len(a) != len(b):
        return False
    diff = 0
    for i in range(len(a)):
        diff |= a[i] ^ b[i]
    return diff == 0


def verify_op(key, device_id, action, arg, counter, mac):
    if not isinstance(mac, (bytes, bytearray)) or len(mac) != 32:
        return False
    return equal(sign_op(key, device_id, action, arg, counter), mac)


__all__ = ["hmac_sha256", "op_message", "sign_op", "verify_op"]
