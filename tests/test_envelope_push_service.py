"""`edgegov envelope push` / `rollback` against a real `edgegov run` over Mosquitto: the
what-if gate on the device's pulled lineage, the signed transfer, the apply (only when
DISARMED or TRIPPED; the service boots TRIPPED), the answer, the config file replaced with
the previous kept, a replayed push refused, and a lineage that replays identically across
the envelope changes (one BOOT per envelope)."""

from __future__ import annotations

import asyncio
import time

import pytest
from click.testing import CliRunner
from conftest import compile_envelope
from edgegov.core.record import K_BOOT, K_CHECKPOINT, decode
from edgegov.host.lineage_store import read_dump
from edgegov_cli.main import main
from mosquitto_fixture import needs_mosquitto
from service_harness import ENVELOPE, Peer, ServiceProcess

pytestmark = [needs_mosquitto, pytest.mark.timeout(120)]

OLD = ENVELOPE.read_text()
NEW = OLD.replace("max = 120.0", "max = 100.0", 1)  # press tightened


def cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


async def _online(port: int) -> None:
    async with Peer(port, "push-test-peer") as peer:
        await peer.online(15)


def test_push_rollback_and_replay_through_the_service(tmp_path, broker):
    config = tmp_path / "cell.toml"
    config.write_text(OLD)
    new_file = tmp_path / "cell-new.toml"
    new_file.write_text(NEW)
    old_file = tmp_path / "cell-old.toml"
    old_file.write_text(OLD)
    svc = ServiceProcess(tmp_path, broker.url, envelope=config).start()
    mqtt = ["--mqtt", broker.url, "--key", str(svc.key_file), "--protocol", "4"]
    try:
        asyncio.run(_online(broker.port))
        t0 = time.perf_counter()
        pushed = cli("envelope", "push", str(new_file), *mqtt, "--counter", "10")
        push_s = time.perf_counter() - t0
        replayed = cli("envelope", "push", str(new_file), *mqtt, "--counter", "10")
        back = cli("envelope", "rollback", "--to", str(old_file), *mqtt, "--counter", "11")
        assert svc.terminate() == 0
    finally:
        svc.stop()
    print(f"push end to end (pull + what-if + signed transfer + apply + answer): "
          f"{push_s * 1000:.0f} ms")
    new_hash, old_hash = compile_envelope(NEW).hash, compile_envelope(OLD).hash
    assert pushed.exit_code == 0, pushed.output
    assert "what-if: 0 of" in pushed.output
    assert f"push applied: {old_hash[:16]} → {new_hash[:16]}" in pushed.output
    assert replayed.exit_code == 1
    assert "replayed or stale counter 10 (last 10)" in replayed.output
    assert back.exit_code == 0, back.output
    assert f"rollback applied: {new_hash[:16]} → {old_hash[:16]}" in back.output
    assert config.read_text() == OLD
    assert (tmp_path / "cell.prev.toml").read_text() == NEW
    # one BOOT per envelope in force, in order; the whole dump replays exactly
    dump = read_dump(svc.lineage)
    boots = [bytes(decode(p)[5]).hex() for _, p in dump.records if decode(p)[0] == K_BOOT]
    assert boots[-3:] == [old_hash, new_hash, old_hash]
    # docs/lineage-format.md, Envelope changes: CHECKPOINT (old) right before BOOT (-1, new)
    recs = [decode(p) for _, p in dump.records]
    changes = [(bytes(recs[i - 1][7]).hex(), bytes(r[5]).hex()) for i, r in enumerate(recs)
               if r[0] == K_BOOT and r[3] == -1 and recs[i - 1][0] == K_CHECKPOINT]
    assert changes == [(old_hash, new_hash), (new_hash, old_hash)]
    result = cli("lineage", "replay", str(svc.lineage))
    assert result.exit_code == 0, result.output
    assert "replay identical" in result.output


def test_a_push_that_would_change_decisions_needs_accept_diff(tmp_path):
    """The gate on a recorded history (the demo's): a tighter press range changes decisions."""
    from edgegov.config.compile import compile_file
    from edgegov.demo import run_scenario

    lineage = tmp_path / "demo.lineage"
    run_scenario(compile_file(ENVELOPE), seconds=20, lineage_path=lineage)
    tight = tmp_path / "tight.toml"
    tight.write_text(OLD.replace("max = 120.0", "max = 20.0", 1).replace(
        "channels.press = { max = 30.0, rate_per_s = 10.0 }",
        "channels.press = { max = 20.0, rate_per_s = 10.0 }"))
    gated = cli("envelope", "push", str(tight), "--lineage", str(lineage), "--mqtt",
                "mqtt://127.0.0.1:1", "--key", str(_key(tmp_path)))
    assert gated.exit_code == 1
    assert "would differ" in gated.output and "not pushed" in gated.output


def _key(tmp_path):
    from service_harness import write_key

    return write_key(tmp_path / "device.key")


def test_refused_while_armed_and_the_file_is_untouched(tmp_path, broker):
    from edgegov.adapters.mqtt import parse_url
    from edgegov.core import codes
    from edgegov.host.aio import cancel_and_wait
    from edgegov.service.client import send_op
    from edgegov.service.topics import Topics
    from service_harness import DEVICE, KEY, plant_loop

    config = tmp_path / "cell.toml"
    config.write_text(OLD)
    new_file = tmp_path / "cell-new.toml"
    new_file.write_text(NEW)
    svc = ServiceProcess(tmp_path, broker.url, envelope=config).start()
    mqtt = ["--mqtt", broker.url, "--key", str(svc.key_file), "--protocol", "4"]

    async def armed_then_push():
        async with Peer(broker.port, "push-armed-peer") as peer:
            await peer.online(15)
            plant = asyncio.create_task(plant_loop(peer))
            await asyncio.sleep(0.2)
            for action in (codes.OP_RESET, codes.OP_ARM):
                await send_op(parse_url(broker.url), Topics(DEVICE), KEY, action, 0, None, 5)
            result = await asyncio.to_thread(cli, "envelope", "push", str(new_file), *mqtt)
            await cancel_and_wait(plant, 3)
            return result

    try:
        result = asyncio.run(armed_then_push())
        assert svc.terminate() == 0
    finally:
        svc.stop()
    assert result.exit_code == 1, result.output
    assert "push refused: refused while ARMED: disarm (or trip) first" in result.output
    assert config.read_text() == OLD and not (tmp_path / "cell.prev.toml").exists()


def test_bench_push_prints_its_figures(capsys):
    from edgegov_cli.bench_push import run

    figures = run(seconds=3, pushes=2)
    assert figures["refused"] == 0 and figures["pushes"] == 2
    assert figures["span_s"] == 3.0 and figures["whatif_x_realtime"] > 0
    assert '"apply_p50_ms"' in capsys.readouterr().out


def test_a_push_to_a_gateway_serving_modbus_swaps_the_register_map(tmp_path, broker):
    """The PLC server restarts on the new map: the identity block shows the new hashes."""
    from edgegov.adapters import modbus_map as mm
    from edgegov.host.net import free_port, wait_port
    from pymodbus.client import AsyncModbusTcpClient

    config = tmp_path / "cell.toml"
    config.write_text(OLD)
    pinned = tmp_path / "cell-pinned.toml"
    pinned.write_text(NEW + "\n[modbus.addresses]\nspindle = 40\npress = 42\n")
    port = free_port()
    svc = ServiceProcess(tmp_path, broker.url, "--modbus-server", f"127.0.0.1:{port}",
                         envelope=config).start()
    mqtt = ["--mqtt", broker.url, "--key", str(svc.key_file), "--protocol", "4"]

    async def identity():
        wait_port(port, 15)
        client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
        await client.connect()
        try:
            rr = await client.read_input_registers(mm.I_IDENT, count=mm.IDENT_COUNT,
                                                   device_id=1)
            return rr.registers
        finally:
            client.close()

    try:
        before = asyncio.run(identity())
        pushed = cli("envelope", "push", str(pinned), *mqtt)
        after = asyncio.run(identity())
        assert svc.terminate() == 0
    finally:
        svc.stop()
    assert pushed.exit_code == 0, pushed.output
    old_map = mm.map_of(compile_envelope(OLD)).ident_words()
    new_map = mm.map_of(compile_envelope(pinned.read_text())).ident_words()
    assert before == old_map and after == new_map and old_map != new_map
    # spindle H5/I20 → H40/I40 and press H4/I19 → H42/I42; coolant stays at H3/I18
    assert "WARNING: Modbus registers moved: press: H4/I19 → H42/I42" in pushed.output
    assert "WARNING: Modbus registers moved: spindle: H5/I20 → H40/I40" in pushed.output
    assert "coolant:" not in pushed.output
