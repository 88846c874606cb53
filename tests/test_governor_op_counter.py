"""Operator counters against a real service on a real Mosquitto (README "Operator actions").

The retained state publishes the last accepted operator counter (``op_counter``). A replayed
or stale counter is refused as ``replayed`` with a ``counter_behind`` event saying by how
much it is behind the last accepted one, and ``edgegov op`` without ``--counter`` signs with
max(its clock's microseconds, the last accepted counter + 1), so a station whose clock is
behind is not locked out.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest
from edgegov.adapters.mqtt import parse_url
from edgegov.core import codes
from edgegov.service.client import default_counter, last_op_counter, send_op
from edgegov.service.topics import Topics
from mosquitto_fixture import needs_mosquitto
from service_harness import DEVICE, KEY, Peer, ServiceProcess

pytestmark = [needs_mosquitto, pytest.mark.timeout(90)]
EDGEGOV = [sys.executable, "-m", "edgegov_cli.main"]


@pytest.fixture
def service(tmp_path, broker):
    svc = ServiceProcess(tmp_path, broker.url).start()
    yield svc
    svc.stop()


def test_counter_ahead_of_the_clock_then_edgegov_op_follows_the_retained_state(
        tmp_path, broker, service):
    settings = parse_url(broker.url)
    topics = Topics(DEVICE)
    ahead = default_counter() + 10**12  # another station whose clock runs far ahead

    async def scenario():
        async with Peer(broker.port, "watch") as watcher:
            await watcher.online()
        ok = await send_op(settings, topics, KEY, codes.OP_ESTOP, counter=ahead)
        assert ok["verdict"] == "TRIP"
        stale = await send_op(settings, topics, KEY, codes.OP_ESTOP, counter=ahead - 5)
        assert stale["reason"] == "replayed"
        # each event keeps its code beside the words (docs/mqtt.md, Events)
        assert {"event": "counter_behind", "code": codes.E_COUNTER_BEHIND, "arg": 5,
                "behind": 5} in stale["events"]
        assert {"event": "auth_refused", "code": codes.E_AUTH_REFUSED, "arg": codes.R_REPLAYED,
                "reason": "replayed"} in stale["events"]
        for _ in range(50):  # the retained state follows the accepted counter
            if await last_op_counter(settings, topics) == ahead:
                break
            await asyncio.sleep(0.1)
        assert await last_op_counter(settings, topics) == ahead

    asyncio.run(scenario())
    # a station with the ordinary clock: edgegov op reads the retained state first
    proc = subprocess.run([*EDGEGOV, "op", "estop", "--device", DEVICE, "--key",
                           str(service.key_file), "--mqtt", broker.url, "--json"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ack = json.loads(proc.stdout.strip().splitlines()[-1])
    assert ack["reason"] != "replayed" and ack["state"] == "TRIPPED"
    assert asyncio.run(last_op_counter(settings, topics)) == ahead + 1


def test_no_retained_state_falls_back_to_the_clock(broker):
    settings = parse_url(broker.url)
    got = asyncio.run(last_op_counter(settings, Topics("nobody-here"), timeout_s=0.5))
    assert got is None
