"""Install on a gateway: ``edgegov service install`` writes the unit, the config layout and
the key with the right modes; the unit passes ``systemd-analyze verify``; the service starts
as the unit's ExecStart says and talks sd_notify as Type=notify/WatchdogSec expect; and a
gateway install pulls no development packages."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import stat
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from edgegov.operator import load_key
from edgegov.service.install import UNIT_NAME, render_unit, unit_template
from mosquitto_fixture import needs_mosquitto
from service_harness import DEVICE, ENVELOPE

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(90)


def edgegov(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgegov_cli.main", *args],
                          capture_output=True, text=True, timeout=60)


def install(root: Path, *extra: str) -> subprocess.CompletedProcess:
    res = edgegov("service", "install", "--device", DEVICE, "--config", str(ENVELOPE),
                  "--root", str(root), *extra)
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stdout + res.stderr
    return res


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_install_writes_unit_layout_and_key_with_their_modes(tmp_path):
    out = install(tmp_path, "--mqtt", "mqtts://broker.example:8883", "--username", "gov")
    unit = tmp_path / "etc/systemd/system" / UNIT_NAME
    dev = tmp_path / "etc/edgegov" / DEVICE
    assert mode(unit) == 0o644
    assert mode(tmp_path / "etc/edgegov") == 0o750 and mode(dev) == 0o750
    assert mode(dev / "envelope.toml") == 0o640
    assert mode(dev / "run.env") == 0o640
    assert mode(dev / "device.key") == 0o600
    assert mode(tmp_path / "var/lib/edgegov") == 0o750
    assert len(load_key(dev / "device.key")) == 32  # a fresh 256-bit key the service accepts
    assert (dev / "envelope.toml").read_bytes() == ENVELOPE.read_bytes()
    assert "EDGEGOV_ARGS=--mqtt mqtts://broker.example:8883 --username gov\n" in \
        (dev / "run.env").read_text()
    assert "systemd-analyze verify: clean" in out.stdout or "not found" in out.stdout
    assert f"systemctl enable --now edgegov@{DEVICE}" in out.stdout


def test_install_again_keeps_the_key(tmp_path):
    install(tmp_path)
    key = (tmp_path / "etc/edgegov" / DEVICE / "device.key").read_bytes()
    out = install(tmp_path)
    assert "kept the installed device key" in out.stdout
    assert (tmp_path / "etc/edgegov" / DEVICE / "device.key").read_bytes() == key


def test_install_refuses_an_envelope_of_another_device(tmp_path):
    res = edgegov("service", "install", "--device", "press-9", "--config", str(ENVELOPE),
                  "--root", str(tmp_path))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip() == (f"edgegov service install: --device press-9 but {ENVELOPE} "
                                  "is for device cell-7: give the envelope of this device")


def test_the_unit_has_what_a_gateway_service_needs():
    text = unit_template()
    for line in ("Type=notify", "WatchdogSec=2s", "Restart=on-failure", "User=edgegov",
                 "StateDirectory=edgegov", "ConfigurationDirectory=edgegov",
                 "ProtectSystem=strict", "ProtectHome=yes", "NoNewPrivileges=yes",
                 "PrivateTmp=yes", "CapabilityBoundingSet=", "EnvironmentFile="):
        assert re.search(rf"^{re.escape(line)}", text, re.M), line
    assert (REPO / "packaging/systemd" / UNIT_NAME).resolve().read_text() == text


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze not installed (apt-get install systemd)")
def test_systemd_analyze_verify_passes_on_the_generated_unit(tmp_path):
    install(tmp_path)
    units = tmp_path / "units"
    units.mkdir()
    shutil.copy(tmp_path / "etc/systemd/system" / UNIT_NAME, units / UNIT_NAME)
    res = subprocess.run(["systemd-analyze", "verify", str(units / f"edgegov@{DEVICE}.service")],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and not (res.stdout + res.stderr).strip(), res.stderr
    # and the check itself catches a broken unit (a typo in a directive)
    (units / UNIT_NAME).write_text((units / UNIT_NAME).read_text().replace(
        "Type=notify", "Type=notifyy"))
    bad = subprocess.run(["systemd-analyze", "verify", str(units / f"edgegov@{DEVICE}.service")],
                         capture_output=True, text=True, timeout=60)
    assert "notifyy" in bad.stderr


def _exec_start(root: Path) -> list[str]:
    """The unit's ExecStart for this device, as systemd would expand it, with the
    installed paths under ``root``."""
    unit = (root / "etc/systemd/system" / UNIT_NAME).read_text()
    line = next(x for x in unit.splitlines() if x.startswith("ExecStart="))[len("ExecStart="):]
    env = dict(re.findall(r"^(\w+)=(.*)$", (root / "etc/edgegov" / DEVICE / "run.env")
                          .read_text(), re.M))
    words = []
    for word in shlex.split(line.replace("%i", DEVICE)):
        if word == "$EDGEGOV_ARGS":
            words += shlex.split(env.get("EDGEGOV_ARGS", ""))
        else:
            words.append(word.replace("/etc/edgegov/", f"{root}/etc/edgegov/")
                         .replace("/var/lib/edgegov/", f"{root}/var/lib/edgegov/"))
    return words


@needs_mosquitto
def test_the_installed_service_starts_as_its_unit_says_and_feeds_the_watchdog(tmp_path,
                                                                             broker):
    """What systemd does for Type=notify + WatchdogSec=2s, done by hand: a notify socket
    and WATCHDOG_USEC; the service must say READY=1 and then WATCHDOG=1 regularly."""
    install(tmp_path, "--mqtt", broker.url)
    sock_path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    sock.settimeout(10)
    cmd = _exec_start(tmp_path) + ["--no-fsync"]
    assert cmd[0] == str(Path(sys.executable).with_name("edgegov"))
    proc = subprocess.Popen(cmd, env={**os.environ, "NOTIFY_SOCKET": sock_path,
                                      "WATCHDOG_USEC": "2000000"},
                            stderr=subprocess.PIPE, text=True)
    try:
        got = []
        end = time.monotonic() + 15
        while got.count("WATCHDOG=1") < 3 and time.monotonic() < end:
            got += sock.recv(4096).decode().split("\n")
        assert got.index("READY=1") < got.index("WATCHDOG=1"), got
        assert got.count("WATCHDOG=1") >= 3
        status = edgegov("status", "--device", DEVICE, "--mqtt", broker.url)
        assert status.returncode == 0 and f"{tmp_path}/var/lib/edgegov/{DEVICE}.lineage" in \
            status.stdout, status.stdout + status.stderr
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=15)
    sock.settimeout(0.5)
    try:
        while "STOPPING=1" not in got:
            got += sock.recv(4096).decode().split("\n")
    except TimeoutError:
        pass
    sock.close()
    assert proc.returncode == 0, err
    assert "STOPPING=1" in got  # the orderly stop (SIGTERM, as systemctl stop sends)
    assert "stopped in order" in err


def _why_systemd_cannot_run() -> str | None:
    """None when a systemd user manager can run units here; else exactly why not."""
    comm = Path("/proc/1/comm").read_text().strip() if Path("/proc/1/comm").exists() else "?"
    if not Path("/run/systemd/system").is_dir():
        return (f"systemd is not running here: PID 1 is {comm!r} and /run/systemd/system "
                "does not exist, so no unit can be started")
    if shutil.which("systemd-run") is None:
        return "systemd-run is not installed"
    probe = subprocess.run(["systemd-run", "--user", "--wait", "--quiet", "true"],
                           capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        return f"systemd-run --user cannot start units: {probe.stderr.strip()}"
    return None


@needs_mosquitto
def test_the_unit_runs_under_systemd(tmp_path, broker):
    why = _why_systemd_cannot_run()
    if why:
        pytest.skip(why)
    install(tmp_path, "--mqtt", broker.url)
    unit = f"edgegov-test-{os.getpid()}"
    cmd = _exec_start(tmp_path) + ["--no-fsync"]
    run = subprocess.run(["systemd-run", "--user", "--unit", unit, "-p", "Type=notify",
                          "-p", "WatchdogSec=2s", "-p", "Restart=on-failure", *cmd],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    try:
        end = time.monotonic() + 20
        state = ""
        while time.monotonic() < end and state != "active":
            state = subprocess.run(["systemctl", "--user", "is-active", unit],
                                   capture_output=True, text=True).stdout.strip()
            time.sleep(0.5)
        assert state == "active"
        assert edgegov("status", "--device", DEVICE, "--mqtt", broker.url).returncode == 0
    finally:
        subprocess.run(["systemctl", "--user", "stop", unit], capture_output=True)


def test_a_gateway_install_pulls_no_development_packages():
    """`pip install edgegov` (no extras) is what a gateway gets: the test tools, linters,
    emulators and browsers stay in the dev extra."""
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    base = {re.split(r"[<>=\[; ]", d, maxsplit=1)[0].lower() for d in meta["dependencies"]}
    dev_only = {re.split(r"[<>=\[; ]", d, maxsplit=1)[0].lower()
                for d in meta["optional-dependencies"]["dev"]} - {"pyserial"}
    assert not base & dev_only, base & dev_only
    assert not base & {"pytest", "hypothesis", "ruff", "playwright", "rtamt", "mpremote"}


def test_the_unit_ships_inside_the_package():
    assert "@EXEC@" in unit_template()
    assert "ExecStart=/opt/edgegov/bin/edgegov run" in render_unit("/opt/edgegov/bin/edgegov")
