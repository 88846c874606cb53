"""One writer per lineage, one live instance per device: two real ``edgegov run`` processes
against a real Mosquitto. The second is refused with one line naming who holds what; the
first keeps governing and its lineage verifies."""

from __future__ import annotations

import asyncio
import os

import pytest
from edgegov.core.replay import Replayer
from edgegov.core.verify import verify
from edgegov.host.lineage_store import read_dump
from edgegov.host.lock import LineageInUse, LineageLock, holder
from mosquitto_fixture import needs_mosquitto
from service_harness import KEY, Peer, ServiceProcess

pytestmark = [needs_mosquitto, pytest.mark.timeout(120)]


def test_lock_refuses_a_second_holder_and_names_the_pid(tmp_path):
    path = tmp_path / "x.lineage"
    with LineageLock(path):
        assert holder(path) == os.getpid()
        with pytest.raises(LineageInUse) as err:
            LineageLock(path).acquire()
        assert err.value.pid == os.getpid()
        assert f"PID {os.getpid()}" in str(err.value)
    assert holder(path) is None  # released: the next writer gets it
    LineageLock(path).acquire().release()


def _second(tmp_path, url, lineage, name):
    work = tmp_path / name
    work.mkdir()
    second = ServiceProcess(work, url, lineage=str(lineage))
    second.start()
    rc = second.proc.wait(30)
    return rc, second.output()


def test_second_run_refused_first_keeps_running(broker, tmp_path):
    first = ServiceProcess(tmp_path, broker.url).start()
    try:
        async def scenario():
            async with Peer(broker.port, "t-writers") as peer:
                await peer.online()
                # the same lineage file: refused at once, naming the first one's PID
                rc, out = await asyncio.to_thread(_second, tmp_path, broker.url,
                                                  first.lineage, "same-file")
                assert rc == 3, out
                lines = out.strip().splitlines()
                assert len(lines) == 1, out
                assert f"PID {first.proc.pid}" in lines[0] and "Traceback" not in out
                # the same device on another file: refused once its retained online state
                # has outlived a dead connection's will (never fights for the client id)
                rc, out = await asyncio.to_thread(_second, tmp_path, broker.url,
                                                  tmp_path / "other.lineage", "other-file")
                assert rc == 3, out
                assert "another edgegov run is online" in out and "Traceback" not in out
                assert not (tmp_path / "other.lineage").exists()  # nothing written
                # the first one never went offline and still decides
                assert all(m["status"] == "online" for m in peer.got["state"])
                seq = await peer.command({"spindle": 5})
                await peer.wait_for("decision", lambda m: m["seq"] == seq)

        asyncio.run(scenario())
        assert first.proc.poll() is None, first.output()
        assert first.terminate() == 0
    finally:
        first.stop()
    dump = read_dump(first.lineage)
    rep = verify(dump.records, dump.problems, KEY, dump.offsets, 0)
    assert rep.ok, [str(f) for f in rep.findings]
    assert Replayer(dump.envelopes()).run(dump.records).identical
