"""A signed envelope change on a running gateway (``edgegov/D/envelope``), applied only
when safe.

``handle`` checks, in order, and answers with the first reason to refuse:

1. the message is well-formed, signed with the device key for this device, and its counter
   is above the last one accepted (the counter is kept beside the envelope file before the
   change goes further, so a verified message is used up even if it is refused later);
2. a push's TOML is admitted again here and compiles to the signed hash; a rollback names
   the hash of the previous envelope this gateway keeps;
3. the service is not serving Modbus (the register map would change under the PLC:
   restart with the new envelope instead);
4. the governor is DISARMED or TRIPPED and its outputs lie inside the new envelope
   (``config.push.refusal``).

Then the envelope file (``--config``) is replaced atomically, the previous one kept
(``config.store``), and the governor starts again on the new envelope: TRIPPED, outputs safe,
a BOOT record with the new hash followed by the ENVELOPE record with its blob (the records
before carry the old hash), so replay and the report follow the change inside one dump. A
reset and an arm are needed before motion, as after any boot.
"""

from __future__ import annotations

import json
import logging

from ..config.push import Push, PushError, admitted, refusal, verify
from ..config.store import EnvelopeStore, compile_source
from ..core.envelope import Envelope
from ..core.governor import Governor
from .messages import Vocabulary
from .wire import Scaler, dumps

log = logging.getLogger("edgegov.envelope")


def envelope_update(runner, payload: bytes, now_ms: int, reply=None) -> dict:
    """Handle one message on the envelope topic; answer it (``reply``) and publish the
    outcome on the event topic. Returns the answer."""
    answer = EnvelopeUpdates(runner).handle(payload, now_ms)
    svc = runner.service
    svc.post(svc.topics.event, dumps({"t_ms": now_ms, "event": "envelope", **answer}), 1, False)
    if reply is not None:
        reply(answer)
    return answer


class EnvelopeUpdates:
    """The checks and the switch, over one runner (its config file, key and service)."""

    def __init__(self, runner) -> None:
        self.runner = runner
        self.store = EnvelopeStore.for_file(runner.cfg.envelope)

    def handle(self, payload: bytes, now_ms: int) -> dict:
        try:
            push = Push.from_json(json.loads(payload))
        except (PushError, ValueError) as err:
            return self._refused(None, f"malformed: {err}")
        runner = self.runner
        why = verify(runner.key, runner.env.device_id, push, self.store.read_counter())
        if why:
            return self._refused(push, why)
        self.store.write_counter(push.counter)
        source, why = self._source(push)
        if why:
            return self._refused(push, why)
        compiled, why = admitted(Push(push.device, "push", push.sha256, push.counter, push.mac,
                                      source))
        if why:
            return self._refused(push, why)
        if runner.modbus is not None:
            return self._refused(push, "not applied while Modbus is served (the register map "
                                       "would change under the PLC): restart the service with "
                                       "the new envelope")
        env = Envelope.from_blob(compiled.blob, compiled.digest)
        why = refusal(runner.service.gov, env)
        if why:
            return self._refused(push, why)
        old = runner.compiled.hash
        self.store.apply(source)
        self._switch(compiled, env, now_ms)
        log.info("envelope %s: %s -> %s", push.action, old[:16], compiled.hash[:16])
        return {"ok": True, "action": push.action, "counter": push.counter, "old": old,
                "new": compiled.hash}

    def _source(self, push: Push) -> tuple[bytes | None, str | None]:
        if push.action == "push":
            return push.source, None
        _, previous = self.store.load()
        if previous is None:
            return None, "no previous envelope to roll back to"
        if compile_source(previous, "<previous>").hash != push.sha256:
            return None, "the previous envelope here is not the one named"
        return previous, None

    def _switch(self, compiled, env, now_ms: int) -> None:
        """Start the governor again on ``env``: TRIPPED, recorded as a BOOT of its own."""
        runner = self.runner
        svc = runner.service
        svc.settle()
        svc.gov = Governor(env, runner.key, svc.gov.op_counter)
        svc.vocab = Vocabulary(env)
        svc.envelope_hash = compiled.hash
        svc.boot_count += 1
        if svc.lineage is not None:
            svc.lineage.env = env
        runner.compiled, runner.env, runner.scaler = compiled, env, Scaler(compiled)
        svc.boot(now_ms, compiled.blob)

    def _refused(self, push: Push | None, why: str) -> dict:
        log.warning("envelope change refused: %s", why)
        return {"ok": False, "action": push.action if push else None,
                "counter": push.counter if push else None, "refused": why,
                "current": self.runner.compiled.hash}


async def send_envelope(settings, topics, push: Push, timeout_s: float = 10.0) -> dict:
    """The sender's side: publish a signed change and return the device's answer, the
    ``envelope`` event with the same counter (MQTT 3.1.1 brokers too)."""
    import asyncio
    import os

    from ..adapters.mqtt import make_client

    rid = os.urandom(8).hex()
    async with make_client(settings, f"edgegov-envelope-{rid}") as client:
        await client.subscribe(topics.event, qos=1)
        await client.publish(topics.envelope, json.dumps(push.to_json()).encode(), qos=1)
        async with asyncio.timeout(timeout_s):
            async for message in client.messages:
                doc = json.loads(message.payload)
                if doc.get("event") == "envelope" and doc.get("counter") in (push.counter,
                                                                             None):
                    return doc
    raise TimeoutError("no answer")


__all__ = ["envelope_update", "EnvelopeUpdates", "send_envelope"]
