"""Stable Modbus addresses: pinned channels keep their registers when the envelope changes,
unpinned ones keep today's layout, and the map says which envelope and layout it serves
(I900 map version, I901-904 envelope hash, I905-908 map hash) so a PLC can refuse to run
against a map it was not written for. Real pymodbus clients against the real gateway (in
process, and the `edgegov run` service)."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
from conftest import ENVELOPES, compile_envelope
from edgegov.adapters import modbus_map as mm
from edgegov.config.problems import EnvelopeConfigError
from edgegov.core import codes
from edgegov.host.net import free_port, wait_port
from modbus_rig import ENV, Rig
from mosquitto_fixture import needs_mosquitto
from pymodbus import ExceptionResponse
from pymodbus.client import AsyncModbusTcpClient
from service_harness import ServiceProcess

pytestmark = pytest.mark.timeout(90)

CELL = (ENVELOPES / "spindle-cell.toml").read_text()
PINS = "\n[modbus.addresses]\nspindle = 40\npress = 42\n"
CHUCK = ('[channels.chuck]\nunit = "bar"\nresolution = 1\nmin = 0\nmax = 10\nrate_per_s = 5\n'
         "safe = 0\n\n[channels.coolant]")


def where(text: str) -> dict[str, str]:
    return {s.name: s.where() for s in mm.map_of(compile_envelope(text)).channels}


def test_unpinned_layout_is_todays():
    # docs/modbus.md: H3 coolant, H4 press, H5 spindle; I18 coolant, I19 press, I20 spindle
    assert where(CELL) == {"coolant": "H3/I18", "press": "H4/I19", "spindle": "H5/I20"}


def test_pinned_channels_do_not_move_when_a_channel_is_added():
    before = where(CELL + PINS)
    after = where(CELL.replace("[channels.coolant]", CHUCK) + PINS)
    assert before == {"coolant": "H3/I18", "press": "H42/I42", "spindle": "H40/I40"}
    # chuck sorts before coolant: the unpinned coolant moves, the pinned ones stay
    assert after == {"chuck": "H3/I18", "coolant": "H4/I19", "press": "H42/I42",
                     "spindle": "H40/I40"}


def test_the_pins_are_host_side_but_in_the_map_hash():
    plain, pinned = compile_envelope(CELL), compile_envelope(CELL + PINS)
    assert plain.blob == pinned.blob  # the governor decides the same with any layout
    mp, mq = mm.map_of(plain), mm.map_of(pinned)
    assert mp.map_digest != mq.map_digest
    moved = mm.map_of(compile_envelope(CELL + PINS.replace("42", "44")))
    assert moved.map_digest != mq.map_digest
    # the identity block, by hand: version 1, then 8 bytes of each hash, high byte first
    h = hashlib.sha256(pinned.blob).hexdigest()
    assert mq.ident_words()[:5] == [1] + [int(h[i:i + 4], 16) for i in range(0, 16, 4)]
    m = mq.map_digest.hex()
    assert mq.ident_words()[5:] == [int(m[i:i + 4], 16) for i in range(0, 16, 4)]


def problems(text: str) -> list[str]:
    with pytest.raises(EnvelopeConfigError) as info:
        compile_envelope(text, "cell.toml")
    return [f"{p.where}: {p.message}" for p in info.value.problems]


def test_pins_that_do_not_fit_are_refused_with_the_reason():
    assert problems(CELL + "\n[modbus.addresses]\nspindle = 40\npress = 40\n") == [
        "modbus.addresses.spindle: spindle at H40/I40 overlaps press at H40/I40"]
    assert problems(CELL + "\n[modbus.addresses]\nspindle = 31\n") == [
        "modbus.addresses.spindle: must lie in 32..899 (spindle takes 1 register; got 31)"]
    assert problems(CELL + "\n[modbus.addresses]\nspindle = 900\n") == [
        "modbus.addresses.spindle: must lie in 32..899 (spindle takes 1 register; got 900)"]
    assert problems(CELL + "\n[modbus.addresses]\nspindel = 40\n") == [
        "modbus.addresses.spindel: unknown channel 'spindel' (did you mean 'spindle'?)"]
    assert problems(CELL + "\n[modbus.addresses]\nspindle = \"40\"\n") == [
        "modbus.addresses.spindle: must be a whole number (got '40')"]
    assert compile_envelope(CELL + "\n[modbus.addresses]\nspindle = 899\n")


def test_a_pin_may_not_overlap_an_unpinned_channel():
    # c1..c8 unpinned, int32: outputs I18-33, c8 at I32-33; a pin at 32 lands on it
    chans = "".join(f"\n[channels.c{i}]\nresolution = 1\nmin = 0\nmax = 100000\n"
                    f"rate_per_s = 1\nsafe = 0\n" for i in range(9))
    text = '[device]\nid = "wide"\n' + chans + "\n[modbus.addresses]\nc0 = 32\n"
    assert problems(text) == [
        "modbus.addresses.c0: c0 at H32-33/I32-33 overlaps c8 at H17-18/I32-33 "
        "(unpinned: pin it as well, or move this one)"]


async def _pinned_session(rig: Rig) -> None:
    plc, drive, gov = rig.plc, rig.drive, rig.gov
    m = rig.map
    await rig.armed_and_live()
    client = plc.client
    ident = await client.read_input_registers(mm.I_IDENT, count=mm.IDENT_COUNT, device_id=1)
    assert ident.registers == m.ident_words()
    # a proposal through the pinned registers reaches the right channel
    rr, st = await plc.decide(coolant=2, press=3)
    assert not rr.isError(), rr
    await rig.until(lambda: (drive.outputs() or {}).get("press") == 3, what="press on drive")
    regs = (await client.read_input_registers(40, count=3, device_id=1)).registers
    assert mm.decode(regs[2:3], 1) == gov.out[ENV.ch_index["press"]] == 3
    assert mm.decode(regs[0:1], 1) == gov.out[ENV.ch_index["spindle"]]
    # beyond the press range (130 mm, scaled 1300) at H42: refused, the rule names press
    rr, st = await plc.decide(press=1300)
    assert isinstance(rr, ExceptionResponse) and rr.exception_code == 3
    assert ENV.rules[st["rule"]] == "channels.press.max"
    # a register between pinned channels belongs to no one: illegal address
    rr = await client.write_registers(41, [5], device_id=1)
    assert isinstance(rr, ExceptionResponse) and rr.exception_code == 2
    assert gov.state == codes.ST_ARMED


def test_pinned_map_through_the_gateway(tmp_path):
    async def main():
        async with Rig(tmp_path, "tcp", compiled=compile_envelope(CELL + PINS)) as rig:
            await _pinned_session(rig)

    asyncio.run(main())


async def _read_identity(port: int):
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
    await client.connect()
    try:
        ident = await client.read_input_registers(mm.I_IDENT, count=mm.IDENT_COUNT,
                                                  device_id=1)
        hole = await client.write_registers(41, [5], device_id=1)
        return ident.registers, hole
    finally:
        client.close()


@needs_mosquitto
def test_the_service_serves_the_identity_block_a_plc_checks(tmp_path, broker):
    envelope = tmp_path / "cell-pinned.toml"
    envelope.write_text(CELL + PINS)
    compiled = compile_envelope(CELL + PINS)
    port = free_port()
    svc = ServiceProcess(tmp_path, broker.url, "--modbus-server", f"127.0.0.1:{port}",
                         envelope=envelope).start()
    try:
        wait_port(port, 15)
        ident, hole = asyncio.run(_read_identity(port))
        assert svc.terminate() == 0
    finally:
        svc.stop()
    assert ident[0] == mm.MAP_VERSION == 1
    assert ident[1:5] == [int(compiled.hash[i:i + 4], 16) for i in range(0, 16, 4)]
    assert ident[5:9] == mm.map_of(compiled).ident_words()[5:9]
    assert isinstance(hole, ExceptionResponse) and hole.exception_code == 2


def test_the_plc_example_in_the_docs_checks_the_documented_map():
    """docs/modbus.md pins spindle = 40, press = 42 on the spindle cell and hard-codes that
    map's hash in its structured-text example: the words must be the map's."""
    import re

    from conftest import REPO

    doc = (REPO / "docs" / "modbus.md").read_text()
    words = re.search(r"MapHash : ARRAY\[0\.\.3\] OF WORD := \[(.*?)\]", doc).group(1)
    documented = [int(w.strip().removeprefix("16#"), 16) for w in words.split(",")]
    assert "spindle = 40" in doc and "press = 42" in doc
    expected = mm.map_of(compile_envelope(CELL + PINS)).ident_words()[5:9]
    assert documented == expected, f"update docs/modbus.md: MapHash = {expected}"
