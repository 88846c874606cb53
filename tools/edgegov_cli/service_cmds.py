"""``edgegov run``, ``edgegov op``, ``edgegov lineage pull``, ``edgegov keygen``,
``edgegov bench mqtt``: the gateway service and its MQTT clients."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import sys
from pathlib import Path

import click


def _mqtt_options(f, required: bool = True):
    f = click.option("--mqtt", "mqtt_url", required=required,
                     help="Broker URL: mqtt://[user[:pass]@]host[:port] or mqtts://...")(f)
    f = click.option("--username", help="MQTT user name (or in the URL).")(f)
    f = click.option("--password-file", type=click.Path(dir_okay=False),
                     help="File holding the MQTT password.")(f)
    f = click.option("--ca", "ca_file", type=click.Path(dir_okay=False),
                     help="CA certificate for TLS (implies TLS).")(f)
    f = click.option("--cert", "cert_file", type=click.Path(dir_okay=False),
                     help="Client certificate (mutual TLS).")(f)
    f = click.option("--cert-key", "cert_key_file", type=click.Path(dir_okay=False),
                     help="Client certificate's private key.")(f)
    f = click.option("--protocol", type=click.Choice(["5", "4"]), default="5",
                     show_default=True, help="MQTT 5, or 4 for 3.1.1.")(f)
    return f


def _password(path: str | None) -> str | None:
    return Path(path).read_text().strip() if path else None


def _settings(mqtt_url, username, password_file, ca_file, cert_file, cert_key_file, protocol):
    from edgegov.adapters.mqtt import MqttUrlError, parse_url

    try:
        return parse_url(mqtt_url, username=username, password=_password(password_file),
                         ca_file=ca_file, cert_file=cert_file, key_file=cert_key_file,
                         protocol=int(protocol), tls=True if ca_file else None)
    except MqttUrlError as err:
        raise click.UsageError(str(err)) from None


def _key(path: str) -> bytes:
    from edgegov.operator import KeyFileError, load_key

    try:
        return load_key(path)
    except KeyFileError as err:
        click.echo(str(err), err=True)
        sys.exit(2)


# --------------------------------------------------------------------------- run


@click.command("run")
@click.option("--config", "config", required=True, type=click.Path(dir_okay=False),
              help="Envelope TOML of this device.")
@click.option("--key", "key_file", required=True, type=click.Path(dir_okay=False),
              help="Device key file (chmod 600; see edgegov keygen).")
@click.option("--mqtt", "mqtt_url", help="Broker URL; without it an embedded broker starts "
                                         "on 127.0.0.1:--broker-port.")
@click.option("--broker-port", default=1883, show_default=True)
@click.option("--lineage", "lineage", type=click.Path(dir_okay=False),
              help="Lineage file (default edgegov-DEVICE.lineage).")
@click.option("--lineage-blocks", default=256, show_default=True, help="Ring size in 4 KiB blocks.")
@click.option("--username")
@click.option("--password-file", type=click.Path(dir_okay=False))
@click.option("--ca", "ca_file", type=click.Path(dir_okay=False))
@click.option("--cert", "cert_file", type=click.Path(dir_okay=False))
@click.option("--cert-key", "cert_key_file", type=click.Path(dir_okay=False))
@click.option("--protocol", type=click.Choice(["5", "4"]), help="MQTT protocol (default 5; "
              "4 = 3.1.1 with the embedded broker).")
@click.option("--period-ms", default=10, show_default=True, help="Control period.")
@click.option("--prefix", default="edgegov", show_default=True, help="Topic prefix.")
@click.option("--watchdog", "watchdog_device", type=click.Path(),
              help="Watchdog device to feed (e.g. /dev/watchdog1).")
@click.option("--watchdog-timeout", type=int, help="Seconds (WDIOC_SETTIMEOUT, if supported).")
@click.option("--estop-relay", is_flag=True,
              help="Drive an MQTT relay on estop/set and read it back on estop/state.")
@click.option("--readback-ms", default=500, show_default=True)
@click.option("--no-fsync", is_flag=True, help="Skip fdatasync (tests on tmpfs).")
@click.option("--modbus-server", help="PLC-facing Modbus server: HOST:PORT (TCP) or a serial "
              "device / pyserial URL (RTU). Map: edgegov modbus map.")
@click.option("--modbus-target", help="Downstream drive: HOST:PORT or serial (outputs from "
              "register 0, e-stop coil 0).")
@click.option("--modbus-baud", default=19200, show_default=True, help="RTU baud rate.")
@click.option("-v", "--verbose", is_flag=True)
def run_cmd(config, key_file, mqtt_url, broker_port, lineage, lineage_blocks, username,
            password_file, ca_file, cert_file, cert_key_file, protocol, period_ms, prefix,
            watchdog_device, watchdog_timeout, estop_relay, readback_ms, no_fsync,
            modbus_server, modbus_target, modbus_baud, verbose):
    """Run the governor as a gateway service on MQTT (stop with SIGINT/SIGTERM)."""
    from edgegov.config.problems import EnvelopeConfigError
    from edgegov.operator import KeyFileError
    from edgegov.service.runner import ServiceConfig, run

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = ServiceConfig(
        envelope=config, key_file=key_file, lineage=lineage, mqtt_url=mqtt_url,
        broker_port=broker_port, username=username, password=_password(password_file),
        ca_file=ca_file, cert_file=cert_file, client_key_file=cert_key_file,
        protocol=int(protocol) if protocol else None, period_ms=period_ms, prefix=prefix,
        watchdog_device=watchdog_device, watchdog_timeout_s=watchdog_timeout,
        estop_relay=estop_relay, readback_ms=readback_ms, durable=not no_fsync,
        lineage_blocks=lineage_blocks)
    if modbus_server or modbus_target:
        from edgegov.service.modbus_gateway import ModbusOptions

        cfg.modbus = ModbusOptions(server=modbus_server, target=modbus_target,
                                   baudrate=modbus_baud)
    try:
        sys.exit(run(cfg))
    except EnvelopeConfigError as err:
        for problem in err.problems:
            click.echo(str(problem), err=True)
        sys.exit(1)
    except KeyFileError as err:
        click.echo(str(err), err=True)
        sys.exit(2)


# --------------------------------------------------------------------------- op

_ACTIONS = ("arm", "reset", "estop", "pause", "resume", "mode", "approve", "deny")


@click.command("op")
@click.argument("action", type=click.Choice(_ACTIONS))
@click.argument("arg", required=False, default="0")
@click.option("--device", required=True, help="Device id (the envelope's device.id).")
@click.option("--key", "key_file", required=True, type=click.Path(dir_okay=False))
@click.option("--config", type=click.Path(dir_okay=False),
              help="Envelope TOML, to name a mode instead of its index.")
@click.option("--counter", type=int, help="Counter (default: max(microseconds of wall time, "
              "the device's last accepted counter + 1 from its retained state)).")
@click.option("--prefix", default="edgegov", show_default=True)
@click.option("--timeout", default=5.0, show_default=True)
@_mqtt_options
def op_cmd(action, arg, device, key_file, config, counter, prefix, timeout, **mqtt):
    """Send a signed operator ACTION (mode NAME|INDEX, approve/deny REQUEST)."""
    from edgegov import names
    from edgegov.service.client import send_op
    from edgegov.service.topics import Topics

    settings = _settings(**mqtt)
    key = _key(key_file)
    arg_value = _op_arg(action, arg, config)
    ack = asyncio.run(send_op(settings, Topics(device, prefix), key, names.op_code(action),
                              arg_value, counter, timeout))
    if ack is None:
        click.echo(f"{action} sent (no acknowledgement without MQTT 5)")
        return
    click.echo(json.dumps(ack))
    refused = ack.get("verdict") == "REJECT"
    sys.exit(1 if refused else 0)


def _op_arg(action: str, arg: str, config: str | None) -> int:
    if arg.lstrip("-").isdigit():
        return int(arg)
    if action == "mode" and config:
        from edgegov.config.compile import compile_file

        modes = list(compile_file(config).admitted.modes)
        if arg in modes:
            return modes.index(arg)
    raise click.UsageError(f"argument {arg!r}: give an integer (or a mode name with --config)")


# --------------------------------------------------------------------------- lineage pull


@click.command("pull")
@click.option("--device", help="The device id (over MQTT).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False))
@click.option("--prefix", default="edgegov", show_default=True)
@click.option("--timeout", default=30.0, show_default=True)
@click.option("--serial", "serial_port", help="Pull from a board over its serial link "
              "instead (device or pyserial URL); same as `lineage pull-serial --port`.")
@functools.partial(_mqtt_options, required=False)
def pull_cmd(device, output, prefix, timeout, serial_port, **mqtt):
    """Pull a device's lineage image over MQTT (checked by SHA-256), or a board's ring
    over its serial link (``--serial``, each chunk CRC-checked), into OUTPUT."""
    from edgegov.service.client import PullError, pull_lineage
    from edgegov.service.topics import Topics

    if serial_port:
        if device or mqtt["mqtt_url"]:
            raise click.UsageError("--serial pulls from a board: leave out --device/--mqtt")
        from .device_cmds import pull_serial_to

        pull_serial_to(serial_port, output, min(timeout, 5.0))
        return
    if not device or not mqtt["mqtt_url"]:
        raise click.UsageError("give --device and --mqtt (or --serial PORT for a board)")
    try:
        image = asyncio.run(pull_lineage(_settings(**mqtt), Topics(device, prefix), timeout))
    except PullError as err:
        click.echo(str(err), err=True)
        sys.exit(2)
    Path(output).write_bytes(image)
    click.echo(f"{output}: {len(image)} bytes; try: edgegov lineage verify {output}")


# --------------------------------------------------------------------------- keygen


@click.command("keygen")
@click.argument("path", type=click.Path(dir_okay=False))
def keygen_cmd(path):
    """Create a new random device key file (mode 600). The key is never printed."""
    from edgegov.operator import write_key

    try:
        write_key(path)
    except FileExistsError:
        click.echo(f"{path}: exists; refusing to overwrite a key", err=True)
        sys.exit(1)
    click.echo(f"{path}: new 256-bit device key (mode 600)")


# --------------------------------------------------------------------------- bench mqtt


@click.command("mqtt")
@click.option("--seconds", default=10.0, show_default=True, help="Latency run length.")
@click.option("--rate", default=200, show_default=True, help="Proposals per second.")
@click.option("--soak", is_flag=True, help="Also soak at --soak-rate for --soak-seconds.")
@click.option("--soak-seconds", default=60.0, show_default=True)
@click.option("--soak-rate", default=1000, show_default=True)
@click.option("--mqtt", "mqtt_url", help="Use this broker instead of starting Mosquitto.")
@click.option("--echo-direct", is_flag=True,
              help="The echo writes its answer to the socket at once, as the service does.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write figures here.")
def bench_mqtt_cmd(seconds, rate, soak, soak_seconds, soak_rate, mqtt_url, echo_direct,
                   json_path):
    """Proposal → decision latency through Mosquitto vs a bare MQTT echo, same run."""
    from .bench_mqtt import run

    figures = run(seconds, rate, soak_seconds if soak else 0, soak_rate, mqtt_url, echo_direct)
    click.echo(json.dumps(figures, indent=2))
    if json_path:
        Path(json_path).write_text(json.dumps(figures, indent=2) + "\n")


def register(main, lineage_group, bench_group) -> None:
    """Add these commands to the ``edgegov`` group (called from ``main``)."""
    main.add_command(run_cmd)
    main.add_command(op_cmd)
    main.add_command(keygen_cmd)
    lineage_group.add_command(pull_cmd)
    bench_group.add_command(bench_mqtt_cmd)
