"""``edgegov run``, ``edgegov op``, ``edgegov lineage pull``, ``edgegov keygen``,
``edgegov bench mqtt``: the gateway service and its MQTT clients."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import ssl
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
    if not path:
        return None
    try:
        return Path(path).read_text().strip()
    except (OSError, UnicodeDecodeError) as err:
        reason = getattr(err, "strerror", None) or "not text"
        raise click.UsageError(f"--password-file {path}: cannot read ({reason})") from None


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
@click.option("--broker-port", default=1883, show_default=True,
              help="Port of the embedded broker (without --mqtt), on 127.0.0.1.")
@click.option("--lineage", "lineage", type=click.Path(dir_okay=False),
              help="Lineage file (default edgegov-DEVICE.lineage).")
@click.option("--lineage-blocks", type=int, default=None,
              help="Ring size in 4 KiB blocks (default: an existing file's size, else "
                   "boards/linux-gateway/board.toml's 4096 = 16 MiB).")
@click.option("--min-history-h", type=float, default=8.0, show_default=True,
              help="Warn at start when the ring holds fewer hours of history (0: never).")
@click.option("--expected-rate", type=float, default=None,
              help="Records/s for that estimate (default: from the envelope's link and "
                   "input staleness; see README, Gateway service).")
@click.option("--username", help="MQTT user name (or in the URL).")
@click.option("--password-file", type=click.Path(dir_okay=False),
              help="File holding the MQTT password (keep it mode 600).")
@click.option("--ca", "ca_file", type=click.Path(dir_okay=False),
              help="CA certificate (PEM) to check the broker's TLS certificate; implies TLS.")
@click.option("--cert", "cert_file", type=click.Path(dir_okay=False),
              help="Client certificate (PEM) for mutual TLS.")
@click.option("--cert-key", "cert_key_file", type=click.Path(dir_okay=False),
              help="Private key (PEM) of --cert.")
@click.option("--protocol", type=click.Choice(["5", "4"]), help="MQTT protocol (default 5; "
              "4 = 3.1.1 with the embedded broker).")
@click.option("--period-ms", default=10, show_default=True,
              help="Control period in ms: ticks, lineage commit, watchdog feed.")
@click.option("--prefix", default="edgegov", show_default=True, help="Topic prefix.")
@click.option("--watchdog", "watchdog_device", type=click.Path(),
              help="Watchdog device to feed (e.g. /dev/watchdog1).")
@click.option("--watchdog-timeout", type=int, help="Seconds (WDIOC_SETTIMEOUT, if supported).")
@click.option("--estop-relay", is_flag=True,
              help="Drive an MQTT relay on estop/set and read it back on estop/state.")
@click.option("--readback-ms", default=500, show_default=True,
              help="Milliseconds the e-stop relay has to confirm a level (--estop-relay); "
                   "later is fault 1 (a trip).")
@click.option("--no-fsync", is_flag=True, help="Skip fdatasync (tests on tmpfs).")
@click.option("--modbus-server", help="PLC-facing Modbus server: HOST:PORT (TCP) or a serial "
              "device / pyserial URL (RTU). Map: edgegov modbus map.")
@click.option("--modbus-target", help="Downstream drive: HOST:PORT or serial (the envelope's "
              "[modbus.drive] map; without one, outputs from register 0, e-stop coil 0).")
@click.option("--modbus-baud", default=19200, show_default=True, help="RTU baud rate.")
@click.option("-v", "--verbose", is_flag=True,
              help="Log every decision too (DEBUG), and tracebacks of internal errors.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Log lines on stderr: text, or one JSON object per line "
              "for log shippers.")
def run_cmd(config, key_file, mqtt_url, broker_port, lineage, lineage_blocks, min_history_h,
            expected_rate, username,
            password_file, ca_file, cert_file, cert_key_file, protocol, period_ms, prefix,
            watchdog_device, watchdog_timeout, estop_relay, readback_ms, no_fsync,
            modbus_server, modbus_target, modbus_baud, verbose, log_format):
    """Run the governor as a gateway service on MQTT; stop it with SIGINT or SIGTERM.

    Logs one line per state change, trip, reset, arm, mode, approval, link stage and
    broker up/down on stderr (journald picks it up). Exit codes: 0 stopped in order,
    1 envelope refused, 2 cannot start (key, URL, port, TLS file, lineage path: the line
    says which), 3 another instance holds the lineage file or the device."""
    from edgegov.config.problems import EnvelopeConfigError
    from edgegov.host.lock import DeviceInUse, LineageInUse
    from edgegov.operator import KeyFileError
    from edgegov.service.log import setup_logging
    from edgegov.service.runner import ServiceConfig, run
    from edgegov.service.startup import StartupError, describe, preflight

    setup_logging(log_format, verbose)
    cfg = ServiceConfig(
        envelope=config, key_file=key_file, lineage=lineage, mqtt_url=mqtt_url,
        broker_port=broker_port, username=username, password=_password(password_file),
        ca_file=ca_file, cert_file=cert_file, client_key_file=cert_key_file,
        protocol=int(protocol) if protocol else None, period_ms=period_ms, prefix=prefix,
        watchdog_device=watchdog_device, watchdog_timeout_s=watchdog_timeout,
        estop_relay=estop_relay, readback_ms=readback_ms, durable=not no_fsync,
        lineage_blocks=lineage_blocks, min_history_h=min_history_h, expected_rate=expected_rate)
    if modbus_server or modbus_target:
        from edgegov.service.modbus_gateway import ModbusOptions

        cfg.modbus = ModbusOptions(server=modbus_server, target=modbus_target,
                                   baudrate=modbus_baud)
    try:
        preflight(cfg)
        sys.exit(run(cfg))
    except EnvelopeConfigError as err:
        for problem in err.problems:
            click.echo(str(problem), err=True)
        click.echo(f"edgegov run: {config}: envelope refused; fix it (edgegov envelope "
                   "check FILE lists the problems)", err=True)
        sys.exit(1)
    except (StartupError, KeyFileError, OSError) as err:
        click.echo(f"edgegov run: {describe(err, cfg.lineage)}", err=True)
        sys.exit(2)
    except (LineageInUse, DeviceInUse) as err:
        click.echo(f"edgegov run: {err}", err=True)
        sys.exit(3)


# --------------------------------------------------------------------------- op

_ACTIONS = ("arm", "reset", "estop", "pause", "resume", "mode", "approve", "deny")


@click.command("op")
@click.argument("action", type=click.Choice(_ACTIONS))
@click.argument("arg", required=False, default="0")
@click.option("--device", required=True, help="Device id (the envelope's device.id).")
@click.option("--key", "key_file", required=True, type=click.Path(dir_okay=False),
              help="The device's key file (mode 600), to sign the action.")
@click.option("--config", type=click.Path(dir_okay=False),
              help="Envelope TOML, to name a mode instead of its index.")
@click.option("--counter", type=int, help="Counter (default: max(microseconds of wall time, "
              "the device's last accepted counter + 1 from its retained state)).")
@click.option("--prefix", default="edgegov", show_default=True, help="Topic prefix.")
@click.option("--timeout", default=5.0, show_default=True,
              help="Seconds to wait for the service's answer.")
@click.option("--json", "as_json", is_flag=True, help="Print the service's reply as JSON.")
@_mqtt_options
def op_cmd(action, arg, device, key_file, config, counter, prefix, timeout, as_json, **mqtt):
    """Send a signed operator ACTION and print the service's answer in words.

    ARG: the mode for `mode` (its index, or its name with --config), the request id for
    `approve`/`deny` (the `request` of the approval_asked event), else 0.

    Exit codes: 0 accepted, 1 refused by the governor (the answer says why), 2 usage,
    key or TLS file problem, 3 broker unreachable, 4 no answer from the service in
    --timeout (is `edgegov run` running for --device on this broker?). With MQTT 3.1.1
    (--protocol 4) there is no answer: exit 0 once sent."""
    from edgegov import names
    from edgegov.service.client import send_op
    from edgegov.service.topics import Topics

    settings = _settings(**mqtt)
    key = _key(key_file)
    arg_value = _op_arg(action, arg, config)
    with _answer_or_exit(mqtt["mqtt_url"], device, timeout):
        ack = asyncio.run(send_op(settings, Topics(device, prefix), key,
                                  names.op_code(action), arg_value, counter, timeout))
    if ack is None:
        click.echo(f"{action} sent (no acknowledgement without MQTT 5)")
        return
    click.echo(json.dumps(ack) if as_json else _ack_text(action, ack))
    refused = ack.get("verdict") == "REJECT"
    sys.exit(EXIT_REFUSED if refused else EXIT_ACCEPTED)


def _ack_text(action: str, ack: dict) -> str:
    """``reset refused: cause_present (blocked by: interlock); state TRIPPED, mode run``: the
    refusal event itself, which says what the first words say, is left out."""
    from edgegov import names

    refused = ack.get("verdict") == "REJECT"
    what = f"{action} refused: {ack.get('reason')}" if refused else f"{action} accepted"
    events = "; ".join(names.event_text(e) for e in ack.get("events") or []
                       if e.get("event") != f"{action}_refused")
    return (what + (f" ({events})" if events else "")
            + f"; state {ack.get('state')}, mode {ack.get('mode')}")


# Exit codes of ``op`` (and of ``status``): documented in their help and in the README.
EXIT_ACCEPTED, EXIT_REFUSED, EXIT_USAGE, EXIT_NO_BROKER, EXIT_NO_ANSWER = 0, 1, 2, 3, 4


@contextlib.contextmanager
def _answer_or_exit(url: str, device: str, timeout_s: float, no_answer: str | None = None):
    """Broker unreachable → exit 3; nobody answering in time → exit 4 (``no_answer``, or
    a line saying to check the service); one line each."""
    from aiomqtt import MqttError

    try:
        yield
    except MqttError as err:
        rc = getattr(getattr(err, "rc", None), "value", getattr(err, "rc", None))
        hint = ("; the broker speaks MQTT 3.1.1 only (as `edgegov run`'s embedded broker "
                "does): add --protocol 4") if rc in (1, 132) else (
                "; check --mqtt and that the broker runs")
        click.echo(f"cannot reach the broker at {url} ({err}){hint}", err=True)
        sys.exit(EXIT_NO_BROKER)
    except BrokenPipeError:  # `edgegov watch ... | head`: the reader has gone, not an error
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    except TimeoutError:
        click.echo(no_answer or f"no answer from device {device} within {timeout_s:g} s: is "
                   f"`edgegov run` running for it on this broker (edgegov status --device "
                   f"{device})?", err=True)
        sys.exit(EXIT_NO_ANSWER)
    except (OSError, ssl.SSLError) as err:  # TLS files (the client loads them on connect)
        name = getattr(err, "filename", None) or "TLS"
        click.echo(f"{name}: cannot load ({getattr(err, 'strerror', None) or err}); check "
                   "--ca/--cert/--cert-key", err=True)
        sys.exit(EXIT_USAGE)


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
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="File to write the lineage image to.")
@click.option("--prefix", default="edgegov", show_default=True, help="Topic prefix.")
@click.option("--timeout", default=30.0, show_default=True,
              help="Seconds to wait for the whole image.")
@click.option("--serial", "serial_port", help="Pull from a board over its serial link "
              "instead (device or pyserial URL); same as `lineage pull-serial --port`.")
@functools.partial(_mqtt_options, required=False)
def pull_cmd(device, output, prefix, timeout, serial_port, **mqtt):
    """Pull a device's lineage sealed: the device first closes its hash chain with a
    checkpoint, then sends the image (checked by SHA-256 over MQTT, chunk CRCs over
    ``--serial``) and a signed head attestation, written beside OUTPUT as OUTPUT.att.json
    (``lineage verify OUTPUT --key K`` checks it)."""
    from edgegov.host import attest
    from edgegov.service.client import PullError, pull_sealed
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
        pulled = asyncio.run(pull_sealed(_settings(**mqtt), Topics(device, prefix), timeout))
    except PullError as err:
        click.echo(str(err), err=True)
        sys.exit(2)
    Path(output).write_bytes(pulled.image)
    att_path = attest.path_for(output)
    attest.write(att_path, pulled.attestation)
    click.echo(f"{output}: {len(pulled.image)} bytes, sealed at seq "
               f"{pulled.attestation['head_seq']}; head attestation -> {att_path}; try: "
               f"edgegov lineage verify {output} --key KEY")


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
@click.option("--soak-seconds", default=60.0, show_default=True, help="Soak length in seconds.")
@click.option("--soak-rate", default=1000, show_default=True,
              help="Soak proposals per second.")
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


# --------------------------------------------------------------------------- service install


@click.group("service")
def service_group() -> None:
    """Install the governor as a systemd service on a Linux gateway."""


@service_group.command("install")
@click.option("--device", required=True, help="Device id: the envelope's device.id; the "
              "service runs as the systemd instance edgegov@DEVICE.")
@click.option("--config", "config", required=True, type=click.Path(dir_okay=False),
              help="Envelope TOML of this device (copied to /etc/edgegov/DEVICE/envelope.toml).")
@click.option("--key", "key_file", type=click.Path(dir_okay=False),
              help="Device key file to install (default: keep the installed one, or make a "
                   "new one).")
@click.option("--root", default="/", show_default=True, type=click.Path(file_okay=False),
              help="Install under this directory instead of / (to stage an image); then the "
                   "user and ownership are left to the commands it prints.")
@click.option("--mqtt", "mqtt_url", help="Broker URL the service connects to (default: an "
              "embedded broker on 127.0.0.1:1883).")
@click.option("--username", help="MQTT user name of the service.")
@click.option("--password-file", type=click.Path(dir_okay=False),
              help="File holding the MQTT password (copied, mode 600).")
@click.option("--ca", "ca_file", type=click.Path(dir_okay=False),
              help="CA certificate (PEM) of the broker (copied; implies TLS).")
@click.option("--cert", "cert_file", type=click.Path(dir_okay=False),
              help="Client certificate (PEM) for mutual TLS (copied).")
@click.option("--cert-key", "cert_key_file", type=click.Path(dir_okay=False),
              help="Private key (PEM) of --cert (copied, mode 600).")
@click.option("--prefix", help="Topic prefix (default edgegov).")
@click.option("--run-args", "extra_args", default="", help="More `edgegov run` options for "
              "run.env, e.g. \"--modbus-server 0.0.0.0:502\" (default: none).")
@click.option("--exec", "exec_path", help="Absolute path of the edgegov command in the unit "
              "(default: the one running this).")
def service_install_cmd(device, config, key_file, root, mqtt_url, username, password_file,
                        ca_file, cert_file, cert_key_file, prefix, extra_args, exec_path):
    """Write the systemd unit, /etc/edgegov/DEVICE and the device key, with their modes.

    Then `systemctl enable --now edgegov@DEVICE`. Exit codes: 0 installed, 2 cannot
    install (the line says why)."""
    from edgegov.service.install import InstallError, install, verify_unit

    try:
        out = install(device, config, root=root, key=key_file, mqtt_url=mqtt_url,
                      username=username, password_file=password_file, ca_file=ca_file,
                      cert_file=cert_file, cert_key_file=cert_key_file, prefix=prefix,
                      extra_args=extra_args, exec_path=exec_path)
    except InstallError as err:
        click.echo(f"edgegov service install: {err}", err=True)
        sys.exit(2)
    click.echo(f"unit: {out.unit}")
    for path in out.files:
        click.echo(f"  {oct(path.stat().st_mode & 0o777)[2:]}  {path}")
    if out.kept_key:
        click.echo("  (kept the installed device key)")
    clean, report = verify_unit(out.unit, device)
    click.echo("systemd-analyze verify: " + ("clean" if clean else report))
    click.echo("next:" if out.owned else "next, as root:")
    for step in out.next_steps:
        click.echo(f"  {step}")


def register(main, lineage_group, bench_group) -> None:
    """Add these commands to the ``edgegov`` group (called from ``main``)."""
    main.add_command(service_group)
    main.add_command(run_cmd)
    main.add_command(op_cmd)
    main.add_command(keygen_cmd)
    lineage_group.add_command(pull_cmd)
    bench_group.add_command(bench_mqtt_cmd)
