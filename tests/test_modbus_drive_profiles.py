"""Drive maps for ``--modbus-target``: the shipped profiles (a generic VFD with a stop coil,
a CiA 402 style servo with a control word and a status word) against a drive simulator that
enforces its own map (``drive_sim``), and the whole path PLC → governor → drive with a
control-word stop read back from the status word."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from conftest import REPO, compile_envelope
from drive_sim import DriveSim
from edgegov.adapters import modbus_map as mm
from edgegov.adapters.drive_profile import encode_value
from edgegov.adapters.modbus_client import F_DRIVE_EXCEPTION, DriveClient
from edgegov.config.compile import compile_file
from edgegov.config.problems import EnvelopeConfigError
from edgegov.core import codes
from edgegov.host.net import free_port
from modbus_rig import ENV, Rig

pytestmark = pytest.mark.timeout(60)

DRIVES = REPO / "boards" / "drives"
PROFILES = sorted(DRIVES.glob("*.toml"))


def test_two_profiles_are_shipped_and_compile():
    assert [p.name for p in PROFILES] == ["cia402-axis.toml", "generic-vfd.toml"]
    for path in PROFILES:
        assert compile_file(path).admitted.modbus_drive is not None


def test_encoding_by_hand():
    # int32 little (CDAB): 29999 = 0x0000752F → [0x752F, 0x0000]; -1 → [0xFFFF, 0xFFFF]
    assert encode_value(Decimal(29999), "int32", "little") == [0x752F, 0x0000]
    assert encode_value(Decimal(-1), "int32", "big") == [0xFFFF, 0xFFFF]
    # float32 12.5 = 0x41480000, big: high word first
    assert encode_value(Decimal("12.5"), "float32", "big") == [0x4148, 0x0000]
    assert encode_value(Decimal(-5), "int16", "big") == [0xFFFB]
    assert encode_value(Decimal("2.5"), "uint16", "big") == [2]  # half to even


async def _drive_session(path, gateway_path=None):
    """Outputs across the range and the stop, through a DriveClient, to the simulator."""
    compiled = compile_file(gateway_path or path)
    regmap = mm.map_of(compiled)
    port = free_port()
    sim = DriveSim(path, port)
    await sim.start()
    client = DriveClient(f"127.0.0.1:{port}", regmap, timeout_ms=500,
                         profile=compiled.admitted.modbus_drive)
    client.client = client._make_client()
    seen = []
    try:
        names = [s.name for s in sorted(regmap.channels, key=lambda s: s.index)]
        slots = {s.name: s for s in regmap.channels}
        for pick in ("lo", "hi", "mid"):
            scaled = [{"lo": slots[n].lo, "hi": slots[n].hi,
                       "mid": (slots[n].lo + slots[n].hi) // 3}[pick] for n in names]
            client.set_outputs(scaled)
            await client.exchange()
            seen.append((scaled, dict(sim.values), client.faults()))
        for level in (True, False, True):
            client.set_estop(level)
            await client.exchange()
            seen.append((level, sim.stopped, client.readback))
    finally:
        client.client.close()
        await sim.stop()
    return compiled, sim, seen


@pytest.mark.parametrize("path", PROFILES, ids=[p.stem for p in PROFILES])
def test_profile_against_a_drive_that_enforces_its_map(path):
    compiled, sim, seen = asyncio.run(_drive_session(path))
    assert sim.refused == []
    adm = compiled.admitted
    names = sorted(adm.channels)
    for scaled, values, faults in seen[:3]:
        want = {n: s * adm.channels[n].resolution for n, s in zip(names, scaled, strict=True)}
        assert values == want
        assert not any(faults.values())
    for level, stopped, readback in seen[3:]:
        assert stopped is level and readback is level


def test_a_gateway_with_the_wrong_word_order_is_caught_by_the_drive(tmp_path):
    wrong = tmp_path / "wrong.toml"
    wrong.write_text((DRIVES / "cia402-axis.toml").read_text().replace(
        'word_order = "little"', 'word_order = "big"'))
    compiled, sim, seen = asyncio.run(_drive_session(DRIVES / "cia402-axis.toml", wrong))
    # the lowest velocity (-3000 rpm = -30000 = 0xFFFF8AD0) reads as 0x8AD0FFFF: refused
    assert sim.refused and "velocity" in sim.refused[0][2]
    assert seen[0][2][F_DRIVE_EXCEPTION] is True


@pytest.mark.parametrize(("old", "new", "where", "message"), [
    ("register = 8194", "register = 8193", "modbus.drive.channels.torque.register",
     "register 8193 is already speed's"),
    ('type = "int16"', 'type = "uint16"', "modbus.drive.channels.speed.type",
     "speed's range [-1500, 1500] rpm is [-1500, 1500] on the drive (× 1 + 0): does not fit "
     "uint16 [0, 65535]"),
    ("stop = { coil = 8 }", "stop = { coil = 8, register = 3 }", "modbus.drive.stop",
     "give either coil, or register with run and stop (a control word)"),
    ("[modbus.drive.channels.speed]", "[modbus.drive.channels.sped]",
     "modbus.drive.channels.sped", "unknown channel 'sped' (did you mean 'speed'?)"),
    ('type = "int16"', 'type = "int_16"', "modbus.drive.channels.speed.type",
     "must be one of int16, uint16, int32, uint32, float32 (got 'int_16'; did you mean "
     "'int16'?)"),
])
def test_a_drive_map_that_cannot_work_is_refused(old, new, where, message):
    text = (DRIVES / "generic-vfd.toml").read_text()
    assert text.count(old) == 1
    with pytest.raises(EnvelopeConfigError) as info:
        compile_envelope(text.replace(old, new), "vfd.toml")
    assert [f"{p.where}: {p.message}" for p in info.value.problems] == [f"{where}: {message}"]


CELL_DRIVE = """
[modbus.drive]
stop = { register = 20, run = 0x047F, stop = 0x047E }
status = { register = 21, mask = 0x0007, stopped = 0x0000, running = 0x0007 }

[modbus.drive.channels.spindle]
register = 30
type = "float32"
word_order = "little"

[modbus.drive.channels.press]
register = 32
type = "uint16"
scale = 100          # 0.01 mm

[modbus.drive.channels.coolant]
register = 40
type = "int32"
offset = 1000
"""


def test_plc_to_drive_through_the_governor_with_a_control_word(tmp_path):
    cell = (REPO / "boards" / "envelopes" / "spindle-cell.toml").read_text() + CELL_DRIVE
    path = tmp_path / "cell-drive.toml"
    path.write_text(cell)
    compiled = compile_envelope(cell)
    sims = []

    def factory(port):
        sims.append(DriveSim(path, port))
        return sims[-1]

    async def main():
        async with Rig(tmp_path, "tcp", compiled=compiled, drive_factory=factory) as rig:
            sim, gov = sims[0], rig.gov
            await rig.until(lambda: sim.stopped is True, what="boot stop on the drive")
            await rig.armed_and_live()
            await rig.until(lambda: sim.stopped is False, what="run pattern after arm")
            rr, _ = await rig.plc.decide(coolant=7, press=55)  # 7 %, 5.5 mm
            assert not rr.isError()
            await rig.until(lambda: sim.values.get("coolant") == 7, what="coolant")
            await rig.until(lambda: sim.values.get("press") == Decimal("5.5"), what="press")
            assert sim.values["spindle"] == gov.out[ENV.ch_index["spindle"]]
            assert not (await rig.plc.estop()).isError()
            await rig.until(lambda: sim.stopped is True, timeout_s=5, what="stop pattern")
            await rig.until(lambda: rig.gw.drive.readback is True, what="status readback")
            assert gov.state == codes.ST_TRIPPED and not gov.faults
            assert sim.refused == []

    asyncio.run(main())


def test_modbus_map_prints_the_drive_map():
    import json

    from click.testing import CliRunner
    from edgegov_cli.main import main

    result = CliRunner().invoke(main, ["modbus", "map", str(DRIVES / "generic-vfd.toml")])
    assert result.exit_code == 0, result.output
    assert "  register 8193        speed          int16, value × 1 + 0" in result.output
    assert "  register 8194        torque         uint16, value × 100 + 0" in result.output
    assert "  coil 8               stop (1 = stop)" in result.output
    doc = json.loads(CliRunner().invoke(main, ["modbus", "map", "--json",
                                               str(DRIVES / "cia402-axis.toml")]).output)
    assert doc["drive"]["stop"] == {"register": 0, "run": 0x000F, "stop": 0x0002}
    assert doc["drive"]["channels"][0] == {"name": "velocity", "register": 2, "type": "int32",
                                           "word_order": "little", "scale": "10",
                                           "offset": "0"}
