"""Real Mosquitto brokers for the service tests: plain, and password + ACL + TLS.

Each broker is a ``mosquitto`` process on a free loopback port with a config generated in
the test's temporary directory; the TLS variant gets a CA and a server certificate made
with the ``openssl`` command line. ``stop()``/``start()`` restart it on the same port
(fault injection: broker down mid-run).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from edgegov.host.net import free_port, wait_port

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
needs_mosquitto = pytest.mark.skipif(
    not Path(MOSQUITTO).exists(), reason="mosquitto not installed (tools/setup-system.sh)")




class Mosquitto:
    """One broker process; ``url`` is what ``edgegov run --mqtt`` takes."""

    def __init__(self, workdir: Path, config_lines: list[str], port: int, scheme="mqtt"):
        self.workdir = workdir
        self.port = port
        self.scheme = scheme
        self.conf = workdir / f"mosquitto-{port}.conf"
        self.conf.write_text("\n".join(config_lines) + "\n")
        self.log = workdir / f"mosquitto-{port}.log"
        self.proc: subprocess.Popen | None = None
        self.ca_file: str | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def start(self) -> Mosquitto:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=log,
                                         stderr=subprocess.STDOUT)
        wait_port(self.port)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def _base(port: int) -> list[str]:
    return [f"listener {port} 127.0.0.1", "persistence false", "user root", "set_tcp_nodelay true",
            "log_dest stderr", "log_type error", "log_type warning"]


def plain_broker(workdir: Path) -> Mosquitto:
    port = free_port()
    return Mosquitto(workdir, _base(port) + ["allow_anonymous true"], port).start()


def make_ca(workdir: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 (CN and subjectAltName)."""
    ca_key, ca_crt = workdir / "ca.key", workdir / "ca.crt"
    srv_key, srv_csr = workdir / "server.key", workdir / "server.csr"
    srv_crt = workdir / "server.crt"
    ext = workdir / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")

    def ssl(*args):
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)

    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
        "/CN=edgegov-test-ca", "-keyout", ca_key, "-out", ca_crt)
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", srv_key,
        "-out", srv_csr)
    ssl("x509", "-req", "-in", srv_csr, "-CA", ca_crt, "-CAkey", ca_key, "-CAcreateserial",
        "-days", "2", "-extfile", ext, "-out", srv_crt)
    return ca_crt, srv_crt, srv_key


USERS = {"gov": "gov-secret", "planner": "planner-secret", "intruder": "intruder-secret",
         "operator": "operator-secret"}


def secured_broker(workdir: Path, device: str) -> Mosquitto:
    """TLS listener, no anonymous access, passwords, and an ACL per role."""
    ca_crt, srv_crt, srv_key = make_ca(workdir)
    pw = workdir / "passwd"
    pw.write_text("")
    for user, password in USERS.items():
        subprocess.run(["mosquitto_passwd", "-b", str(pw), user, password], check=True,
                       capture_output=True)
    base = f"edgegov/{device}"
    acl = workdir / "acl"
    acl.write_text(
        f"user gov\ntopic readwrite edgegov/#\n\n"
        f"user planner\ntopic write {base}/cmd\ntopic read {base}/decision\n"
        f"topic read {base}/state\n\n"
        f"user operator\ntopic write {base}/op\ntopic readwrite {base}/reply/#\n"
        f"topic read {base}/event\n\n"
        f"user intruder\ntopic read {base}/#\n"
    )
    port = free_port()
    lines = _base(port) + [
        "allow_anonymous false", f"password_file {pw}", f"acl_file {acl}",
        f"cafile {ca_crt}", f"certfile {srv_crt}", f"keyfile {srv_key}",
        "require_certificate false",
    ]
    broker = Mosquitto(workdir, lines, port, scheme="mqtts")
    broker.ca_file = str(ca_crt)
    return broker.start()
