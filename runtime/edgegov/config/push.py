"""A signed envelope change for a deployed device, and the checks before it is applied.

A push carries the envelope's TOML source, its compiled SHA-256, the device id and a counter
that must strictly increase, under an HMAC-SHA256 with the device key (the operator
actions' scheme, another domain). The gateway compiles and admits the source again (and so
keeps its host-side settings): a push signed for another device, replayed, refused by
admission, or whose source does not compile to the signed hash is refused. A rollback
carries no source: it names the hash of the previous envelope the device keeps, under the
same MAC.

The device applies it only when safe (``refusal``): DISARMED or TRIPPED, never while ARMED
or PAUSED; the new envelope must be admitted again (a gateway compiles nothing it is sent:
the blob must load, and be for this device); and the outputs the device holds now must lie
inside the new envelope's ranges (a channel the new envelope drops must be at its safe
value), so applying it never puts the device in breach.
"""

from __future__ import annotations

import base64
import struct
from dataclasses import dataclass

from ..core.auth import equal, hmac_sha256

PUSH_DOMAIN = b"edgegov-envelope\x00"
ACTIONS = {"push": 1, "rollback": 2}


class PushError(ValueError):
    """A push message that is not well-formed (one line for the person who sent it)."""


def push_message(device_id: str, action: str, digest: bytes, counter: int) -> bytes:
    """The exact bytes a push or rollback's MAC covers."""
    return (PUSH_DOMAIN + device_id.encode() + b"\x00"
            + struct.pack(">B32sQ", ACTIONS[action], digest, counter))


@dataclass(frozen=True)
class Push:
    """One envelope change on the wire (``to_json`` / ``from_json``: the MQTT payload)."""

    device: str
    action: str  # "push" or "rollback"
    sha256: str  # hex: the compiled hash of the source, or of the previous (rollback)
    counter: int
    mac: bytes
    source: bytes | None = None  # the envelope TOML (a push)

    def to_json(self) -> dict:
        doc = {"device": self.device, "action": self.action, "sha256": self.sha256,
               "counter": self.counter, "mac": self.mac.hex()}
        if self.source is not None:
            doc["toml"] = base64.b64encode(self.source).decode()
        return doc

    @classmethod
    def from_json(cls, doc: object) -> Push:
        if not isinstance(doc, dict):
            raise PushError("a push must be a JSON object")
        try:
            action = doc["action"]
            if action not in ACTIONS:
                raise PushError(f"action must be push or rollback (got {action!r})")
            counter = doc["counter"]
            if isinstance(counter, bool) or not isinstance(counter, int) \
                    or not 0 <= counter < 1 << 64:
                raise PushError("counter must be a whole number in 0..2^64-1")
            digest = bytes.fromhex(doc["sha256"])
            mac = bytes.fromhex(doc["mac"])
            source = base64.b64decode(doc["toml"], validate=True) if "toml" in doc else None
            device = doc["device"]
        except KeyError as err:
            raise PushError(f"missing field {err.args[0]!r}") from None
        except (TypeError, ValueError) as err:
            if isinstance(err, PushError):
                raise
            raise PushError(f"malformed field: {err}") from None
        if len(digest) != 32 or len(mac) != 32 or not isinstance(device, str):
            raise PushError("sha256 and mac must be 32 bytes in hex, device a string")
        if (action == "push") != (source is not None):
            raise PushError("a push carries the envelope (toml), a rollback does not")
        return cls(device, action, digest.hex(), counter, mac, source)


def sign(key: bytes, device_id: str, action: str, digest: bytes, counter: int,
         source: bytes | None = None) -> Push:
    mac = hmac_sha256(key, push_message(device_id, action, digest, counter))
    return Push(device_id, action, digest.hex(), counter, mac, source)


def sign_push(key: bytes, device_id: str, source: bytes, counter: int) -> Push:
    """Sign envelope TOML ``source`` for ``device_id`` (it is compiled here for its hash)."""
    from .store import compile_source

    compiled = compile_source(source, "<envelope>")
    return sign(key, device_id, "push", compiled.digest, counter, source)


def sign_rollback(key: bytes, device_id: str, previous_digest: bytes, counter: int) -> Push:
    return sign(key, device_id, "rollback", previous_digest, counter)


def verify(key: bytes, device_id: str, push: Push, last_counter: int) -> str | None:
    """Why the device must refuse ``push`` (None: it is authentic and fresh)."""
    if push.device != device_id:
        return f"signed for device {push.device!r}, this is {device_id!r}"
    if push.counter <= last_counter:
        return f"replayed or stale counter {push.counter} (last {last_counter})"
    digest = bytes.fromhex(push.sha256)
    if not equal(hmac_sha256(key, push_message(device_id, push.action, digest, push.counter)),
                 push.mac):
        return "bad MAC"
    return None


def admitted(push: Push):
    """(compiled, None), or (None, why) when the pushed source is refused by admission or
    does not compile to the hash that was signed."""
    from .problems import EnvelopeConfigError
    from .store import compile_source

    try:
        compiled = compile_source(push.source or b"", "<pushed envelope>")
    except EnvelopeConfigError as err:
        n = len(err.problems)
        return None, f"refused by admission ({n} problem{'s' if n > 1 else ''}): " \
                     f"{err.problems[0].where}: {err.problems[0].message}"
    if compiled.hash != push.sha256:
        return None, "the envelope does not compile to the signed sha256"
    return compiled, None


def refusal(gov, new_env) -> str | None:
    """Why ``new_env`` (a core ``Envelope``) must not replace ``gov``'s now (None: it may).
    Only DISARMED or TRIPPED, the same device, and every output it holds inside the new
    envelope's initial-mode range (safe value where the new envelope drops the channel);
    the check is ``core.envswap``'s, which a board runs too."""
    from ..core import codes, envswap

    result, why, c = envswap.swap_check(gov, new_env)
    if result == envswap.OK:
        return None
    if result == envswap.NOT_SAFE_STATE:
        state = {codes.ST_ARMED: "ARMED", codes.ST_PAUSED: "PAUSED"}.get(gov.state, gov.state)
        return f"refused while {state}: disarm (or trip) first"
    old = gov.env
    if result == envswap.OTHER_DEVICE:
        return f"the envelope is for device {new_env.device_id!r}, this is {old.device_id!r}"
    if why == envswap.SAFE_RANGE:
        return f"{new_env.ch_names[c]}'s safe value lies outside its new range"
    name, out = old.ch_names[c], gov.out[c]
    if why == envswap.OUT_DROPPED:
        return f"{name} is dropped but its output {out} is not at its safe value"
    if why == envswap.OUT_RESCALED:
        return f"{name} changes resolution while its output is not at its safe value"
    n, mode = new_env.ch_index[name], new_env.initial_mode
    lo, hi = new_env.mode_min[mode][n], new_env.mode_max[mode][n]
    return f"{name}'s output {out} lies outside the new range [{lo}, {hi}] (scaled)"


__all__ = ["Push", "PushError", "sign_push", "sign_rollback", "verify", "admitted", "refusal",
           "push_message"]
