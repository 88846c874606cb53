"""``edgegov run --modbus-server`` as a process: operator actions over Modbus are refused
(``auth_failed``, exception 03) unless the envelope enables them with ``[modbus]
operator_actions = true``; then each is signed by the gateway and logged as unauthenticated."""

from __future__ import annotations

import asyncio

import pytest
from edgegov.adapters import modbus_map as mm
from edgegov.core import codes
from edgegov.host.net import free_port, wait_port
from mosquitto_fixture import needs_mosquitto
from pymodbus import ExceptionResponse
from pymodbus.client import AsyncModbusTcpClient
from service_harness import ENVELOPE, ServiceProcess

pytestmark = [needs_mosquitto, pytest.mark.timeout(90)]


async def _reset_over_modbus(port: int):
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
    await client.connect()
    try:
        rr = await client.write_registers(mm.H_OP_ACTION, [codes.OP_RESET, 0], device_id=1)
        st = await client.read_input_registers(0, count=mm.I_OUTPUTS, device_id=1)
        return rr, st.registers
    finally:
        client.close()


def _run(tmp_path, broker, envelope):
    port = free_port()
    svc = ServiceProcess(tmp_path, broker.url, "--modbus-server", f"127.0.0.1:{port}",
                         envelope=envelope).start()
    try:
        wait_port(port, 15)
        rr, regs = asyncio.run(_reset_over_modbus(port))
        assert svc.terminate() == 0
    finally:
        svc.stop()
    return rr, regs, svc.output()


def test_operator_actions_over_modbus_are_refused_by_default(tmp_path, broker):
    rr, regs, log = _run(tmp_path, broker, ENVELOPE)
    assert isinstance(rr, ExceptionResponse) and rr.exception_code == 3
    assert regs[mm.I_REASON] == codes.R_AUTH_FAILED
    assert "unauthenticated operator action" not in log


def test_the_envelope_enables_them_and_each_is_logged_as_unauthenticated(tmp_path, broker):
    text = ENVELOPE.read_text()
    enabled = tmp_path / "cell-modbus-ops.toml"
    enabled.write_text(text + "\n[modbus]\noperator_actions = true\n")
    rr, regs, log = _run(tmp_path, broker, enabled)
    assert regs[mm.I_REASON] != codes.R_AUTH_FAILED, regs
    assert "unauthenticated operator action over Modbus: action=2" in log
