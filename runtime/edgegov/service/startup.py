"""Checks ``edgegov run`` makes before it starts, so an ordinary mistake is one line.

Each check raises ``StartupError`` with what is wrong and what to do about it: a broker URL
that is not ``mqtt://``/``mqtts://``, a busy port for the embedded broker, a lineage file
that cannot be written there. The envelope and the key are checked where they are loaded
(``EnvelopeConfigError``, ``KeyFileError``); ``describe`` words those and any other error
met while starting.
"""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path


class StartupError(Exception):
    """The service cannot start; the message says why and what to do."""


def check_url(url: str | None) -> None:
    """A broker URL must name its scheme: ``mqtt://host[:port]`` or ``mqtts://host[:port]``."""
    if url is None:
        return
    from ..adapters.mqtt import MqttUrlError, parse_url

    try:
        parse_url(url)
    except MqttUrlError as err:
        raise StartupError(f"--mqtt {err}; e.g. mqtt://127.0.0.1:1883 or "
                           "mqtts://broker.example:8883") from None


def check_port_free(host: str, port: int) -> None:
    """The embedded broker needs ``host:port`` for itself."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((host, port))
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            raise StartupError(
                f"port {port} on {host} is in use (another broker or service?): give "
                f"--broker-port N for the embedded broker, or --mqtt mqtt://{host}:{port} "
                "to use the broker that runs there") from None
        raise StartupError(f"cannot listen on {host}:{port}: {err.strerror}") from None
    finally:
        sock.close()


def check_lineage_writable(path: str | Path) -> None:
    """The lineage file must be creatable and writable (read-only disks fail here, before
    the governor starts, rather than as a fault on the first record)."""
    path = Path(path)
    existed = path.exists()
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
    except OSError as err:
        raise StartupError(
            f"{path}: cannot write the lineage file ({err.strerror}); give --lineage PATH "
            "on a writable disk (on a gateway: /var/lib/edgegov/DEVICE.lineage)") from None
    if not existed:
        path.unlink(missing_ok=True)


def describe(err: BaseException, lineage: str | None = None) -> str:
    """One line for an error met while starting, saying what to do (an error without a
    file name while the lineage file is made is the lineage file's)."""
    if isinstance(err, StartupError):
        return str(err)
    from ..operator import KeyFileError

    if isinstance(err, KeyFileError):
        return f"{err}; make one with: edgegov keygen PATH (mode 600)"
    if isinstance(err, OSError):
        if err.filename:
            return f"{err.filename}: {err.strerror or err}"
        where = lineage or "the lineage file"
        return (f"{where}: cannot be written ({err.strerror or err}); give --lineage PATH on "
                "a disk with room (--lineage-blocks N × 4 KiB)")
    return f"{type(err).__name__}: {err}"




def check_tls(ca_file: str | None, cert_file: str | None, key_file: str | None) -> None:
    """TLS files must load now, not fail on every reconnect."""
    import ssl

    if not (ca_file or cert_file):
        return
    try:
        ctx = ssl.create_default_context(cafile=ca_file)
        if cert_file:
            ctx.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as err:
        name = getattr(err, "filename", None) or ca_file or cert_file
        reason = getattr(err, "strerror", None) or getattr(err, "reason", None) or err
        raise StartupError(f"{name}: cannot load for TLS ({reason}); check --ca/--cert/"
                           "--cert-key (PEM files)") from None


def preflight(cfg) -> None:
    """Every check that needs no envelope, for a ``ServiceConfig``."""
    check_url(cfg.mqtt_url)
    if cfg.mqtt_url is None:
        check_port_free("127.0.0.1", cfg.broker_port)
    check_tls(cfg.ca_file, cfg.cert_file, cfg.client_key_file)
    if cfg.lineage:
        check_lineage_writable(cfg.lineage)


__all__ = ["StartupError", "check_url", "check_port_free", "check_lineage_writable",
           "check_tls", "describe", "preflight"]
