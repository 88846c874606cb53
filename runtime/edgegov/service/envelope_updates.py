"""A signed envelope change on a running gateway (``edgegov/D/envelope``), applied only
when safe.

``handle`` checks, in order, and answers with the first reason to refuse:

1. the message is well-formed, signed with the device key for this device, and its counter
   is above the last one accepted (the counter is kept beside the envelope file before the
   change goes further, so a verified message is used up even if it is refused later);
2. a push's TOML is admitted again here and compiles to the signed hash; a rollback names
   the hash of the previous envelope this gateway keeps;
3. the governor is DISARMED or TRIPPED and its outputs lie inside the new envelope
   (``config.push.refusal``).

With Modbus served, the PLC server and the drive client are stopped first and started
again on the new envelope's register map (checked again once they are stopped), so the PLC
sees the new map hash in I905-908 when it reconnects.

Then the envelope file (``--config``) is replaced atomically, the previous one kept
(``config.store``), and the governor starts again on the new envelope: a CHECKPOINT with the
old hash, then TRIPPED, outputs safe, a BOOT record with the new hash and reset reason -1
(``RESET_ENVELOPE``) followed by the ENVELOPE record with its blob, so replay and the report
follow the change inside one dump (docs/lineage-format.md, Envelope changes). A
reset and an arm are needed before motion, as after any boot.
"""

from __future__ import annotations

import asyncio
import json
import logging

from ..config.push import Push, PushError, admitted, refusal, verify
from ..config.store import EnvelopeStore, compile_source
from ..core import codes
from ..core.envelope import Envelope
from ..core.governor import Governor
from .messages import Vocabulary
from .wire import Scaler, dumps

log = logging.getLogger("edgegov.envelope")


def envelope_update(runner, payload: bytes, now_ms: int, reply=None) -> dict | None:
    """Handle one message on the envelope topic; answer it (``reply``) and publish the
    outcome on the event topic. Returns the answer, or None when it follows from a task
    (a gateway serving Modbus swaps its register map first)."""
    outcome = EnvelopeUpdates(runner).handle(payload, now_ms)
    if isinstance(outcome, dict):
        return _answer(runner, outcome, now_ms, reply)

    async def finish():
        try:
            answer = await outcome
        except Exception as err:  # noqa: BLE001 - answered, logged; the service goes on
            log.exception("envelope change failed")
            runner.service.healthy = False
            answer = {"ok": False, "refused": f"failed while applying: {err}",
                      "current": runner.compiled.hash}
        finally:
            runner.envelope_busy = False
        _answer(runner, answer, runner.clock.now_ms(), reply)

    runner.envelope_busy = True
    runner.envelope_task = asyncio.get_running_loop().create_task(finish())
    return None


def _moves(old_map, new_map) -> list[str]:
    """``name: H4/I19 → H5/I20`` for each channel kept whose registers moved."""
    was = {slot.name: slot.where() for slot in old_map.channels}
    return [f"{slot.name}: {was[slot.name]} → {slot.where()}" for slot in new_map.channels
            if slot.name in was and was[slot.name] != slot.where()]


def _answer(runner, answer: dict, now_ms: int, reply) -> dict:
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

    def handle(self, payload: bytes, now_ms: int):
        """The answer (a dict), or a coroutine giving it when Modbus must be swapped."""
        try:
            push = Push.from_json(json.loads(payload))
        except (PushError, ValueError) as err:
            return self._refused(None, f"malformed: {err}")
        runner = self.runner
        why = verify(runner.key, runner.env.device_id, push, self.store.read_counter())
        if why:
            return self._refused(push, why)
        self.store.write_counter(push.counter)
        if getattr(runner, "envelope_busy", False):
            return self._refused(push, "another envelope change is being applied")
        source, why = self._source(push)
        if why:
            return self._refused(push, why)
        compiled, why = admitted(Push(push.device, "push", push.sha256, push.counter, push.mac,
                                      source))
        if why:
            return self._refused(push, why)
        env = Envelope.from_blob(compiled.blob, compiled.digest)
        why = refusal(runner.service.gov, env)
        if why:
            return self._refused(push, why)
        if runner.modbus is not None:
            return self._with_modbus(push, source, compiled, env)
        return self._apply(push, source, compiled, env, now_ms)

    def _apply(self, push: Push, source: bytes, compiled, env, now_ms: int,
               before_boot=None) -> dict:
        old = self.runner.compiled.hash
        self.store.apply(source)
        self._switch(compiled, env, now_ms, before_boot)
        log.info("envelope %s: %s -> %s", push.action, old[:16], compiled.hash[:16])
        return {"ok": True, "action": push.action, "counter": push.counter, "old": old,
                "new": compiled.hash}

    async def _with_modbus(self, push: Push, source: bytes, compiled, env) -> dict:
        """Stop the PLC server and the drive client, apply, start them on the new map. The
        governor keeps deciding meanwhile (DISARMED or TRIPPED); the PLC reconnects and
        reads the new map hash (I905-908)."""
        from .modbus_gateway import ModbusGateway

        runner = self.runner
        old_gw, runner.modbus = runner.modbus, None  # the ticker skips Modbus meanwhile
        await old_gw.stop()
        why = refusal(runner.service.gov, env)  # armed while the server stopped?
        compiled_now = compiled
        if why:
            compiled_now = runner.compiled
        opts = old_gw.opts
        opts.compiled = compiled_now
        opts.operator = compiled_now.admitted.modbus_operator
        made = []

        def gateway() -> None:  # on the governor in force: the map follows its envelope
            made.append(ModbusGateway(runner.service, runner.clock, runner.key, opts))
            made[0].attach()

        if why:
            gateway()
            answer = self._refused(push, why)
        else:
            answer = self._apply(push, source, compiled, env, runner.clock.now_ms(), gateway)
        gw = made[0]
        if why and gw.drive is not None:  # the same envelope on: the new drive client
            svc = runner.service  # takes over what the old one was told and saw
            gw.drive.set_outputs(list(svc.gov.out))
            svc.estop.drive(bool(svc._estop_level), runner.clock.now_ms())
            gw._reported = dict(old_gw._reported)
        await gw.start()
        runner.modbus = gw
        if answer["ok"]:
            answer["modbus_moves"] = _moves(old_gw.map, gw.map)
            answer["modbus_map"] = gw.map.map_digest.hex()
        return answer

    def _source(self, push: Push) -> tuple[bytes | None, str | None]:
        if push.action == "push":
            return push.source, None
        _, previous = self.store.load()
        if previous is None:
            return None, "no previous envelope to roll back to"
        if compile_source(previous, "<previous>").hash != push.sha256:
            return None, "the previous envelope here is not the one named"
        return previous, None

    def _switch(self, compiled, env, now_ms: int, before_boot=None) -> None:
        """Start the governor again on ``env``: TRIPPED, recorded as a BOOT of its own
        (``before_boot`` attaches what must see the boot's safe outputs: the drive)."""
        runner = self.runner
        svc = runner.service
        svc.settle()
        if svc.lineage is not None:  # the old envelope's digest closes what it governed
            svc.lineage.checkpoint(svc.gov, max(now_ms, svc.gov.last_now))
        svc.gov = Governor(env, runner.key, svc.gov.op_counter)
        svc.vocab = Vocabulary(env)
        svc.envelope_hash = compiled.hash
        svc.boot_count += 1
        if svc.lineage is not None:
            svc.lineage.use(env)
        runner.compiled, runner.env, runner.scaler = compiled, env, Scaler(compiled)
        if before_boot is not None:
            before_boot()
        svc.boot(now_ms, compiled.blob, codes.RESET_ENVELOPE)

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
