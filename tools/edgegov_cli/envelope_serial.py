"""``edgegov envelope push|rollback --serial PORT``: a signed envelope change to a full-core
board over its CRC-framed link (firmware/PROTOCOL.md, Envelope push).

The same what-if gate and MAC as over MQTT: the board's lineage is pulled over the link
(sealed, as ``edgegov lineage pull --serial``) and replayed under the new envelope; then
the compiled blob goes over in ``W`` chunks and ``U`` asks the board to apply it. The board
checks the MAC (over its own device id and the SHA-256 of what it received), the counter,
that the blob loads and is for it, that it is DISARMED or TRIPPED and that its outputs lie
inside the new ranges, writes it to its flash slots, and restarts TRIPPED on it.
"""

from __future__ import annotations

import sys
import tempfile

import click

from . import device_cmds  # noqa: F401 - puts firmware/, emulation/, hil/ on sys.path


def _open(port: str):
    from boardlink import GovLink, SerialStream
    from qemu_microbit import Uart

    try:
        uart = Uart(SerialStream(port))
    except Exception as err:  # noqa: BLE001 - pyserial raises several kinds for a bad port
        click.echo(f"{port}: cannot open the serial port: {err}", err=True)
        sys.exit(2)
    return uart, GovLink(uart)


def pulled_lineage(link, timeout: float) -> str:
    """Seal and pull the board's ring over ``link``; the path of a temporary dump."""
    from edgegov.host.wallsource import system_wall_ms
    from edgegov.service.client import default_counter

    link.set_time(system_wall_ms(), timeout)
    link.seal(default_counter(), timeout)
    image = link.pull_lineage(timeout)
    with tempfile.NamedTemporaryFile(suffix=".lineage", delete=False) as f:
        f.write(image)
    return f.name


def send(port: str, action: str, compiled, key: bytes, counter: int, timeout: float,
         gate=None, pull: bool = True) -> int:
    """Pull (``pull``; for ``gate``: a function of the dump path or None, True to go on),
    then sign and send. Exit code: 0 applied, 1 refused (the gate or the board), 2 error."""
    from boardlink import LinkError
    from edgegov import names
    from edgegov.config.push import sign

    device = compiled.admitted.device_id
    blob = compiled.blob if action == "push" else b""
    uart, link = _open(port)
    try:
        code = link.begin_envelope(len(blob), timeout)  # before the pull: can it take one?
        if code is not None:
            click.echo(f"{port}: {action} refused: " + (
                f"{names.LINK_ERRORS.get(code, 'error')} (E {code})" if code > 0 else
                f"the board's flash slot cannot hold {len(blob)} bytes"), err=True)
            return 1
        if gate is not None and not gate(pulled_lineage(link, timeout) if pull else None):
            return 1
        push = sign(key, device, action, compiled.digest, counter)
        answer = link.push_envelope(1 if action == "push" else 2, counter, push.mac, blob,
                                    timeout)
    except LinkError as err:
        click.echo(f"{port}: {action} over the serial link: {err}", err=True)
        return 2
    finally:
        uart.sock.close()
    if "error" in answer:
        code = answer["error"]
        click.echo(f"{port}: {action} refused: "
                   f"{names.LINK_ERRORS.get(code, 'error')} (E {code})", err=True)
        return 1
    if answer["result"] != 0:
        click.echo(f"{device}: {action} refused by the board: "
                   f"{names.push_result(answer['result'])}", err=True)
        return 1
    click.echo(f"{device}: {action} applied: {answer['old'][:16]} → {answer['new'][:16]} "
               "(the board restarted TRIPPED on it: reset and arm)")
    return 0


__all__ = ["send", "pulled_lineage"]

