"""Ordinary mistakes end in one line saying what to do and a non-zero exit, never a
traceback: each case drives the real ``edgegov`` command line as a user would."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys

import pytest
from mosquitto_fixture import needs_mosquitto
from service_harness import DEVICE, ENVELOPE, write_key

pytestmark = pytest.mark.timeout(60)


def edgegov(*args: str, cwd=None, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    cmd = [*prefix, sys.executable, "-m", "edgegov_cli.main", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=40, cwd=cwd)


def assert_one_line_error(res: subprocess.CompletedProcess, code: int, *words: str) -> str:
    out = res.stdout + res.stderr
    assert "Traceback" not in out, out
    assert res.returncode == code, (res.returncode, out)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def key(tmp_path):
    return str(write_key(tmp_path / "device.key"))


def run_args(key: str, *extra: str) -> list[str]:
    return ["run", "--config", str(ENVELOPE), "--key", key, "--no-fsync", *extra]


@needs_mosquitto
def test_op_with_no_service_answering_says_so(broker, key):
    res = edgegov("op", "arm", "--device", "nobody-here", "--key", key, "--mqtt", broker.url,
                  "--timeout", "0.5")
    assert_one_line_error(res, 4, "no answer from device nobody-here", "edgegov run")


def test_op_with_no_broker_says_so(key):
    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    res = edgegov("op", "arm", "--device", DEVICE, "--key", key,
                  "--mqtt", f"mqtt://127.0.0.1:{port}")
    assert_one_line_error(res, 3, "cannot reach the broker", "--mqtt")


def test_run_on_a_busy_port_names_the_way_out(key, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        res = edgegov(*run_args(key, "--broker-port", str(port),
                                "--lineage", str(tmp_path / "x.lineage")))
    assert_one_line_error(res, 2, f"port {port}", "in use", "--broker-port", "--mqtt")


def test_run_with_a_url_without_scheme(key):
    res = edgegov(*run_args(key, "--mqtt", "localhost:1883"))
    assert_one_line_error(res, 2, "mqtt://", "localhost:1883")


def test_op_with_a_url_without_scheme(key):
    res = edgegov("op", "arm", "--device", DEVICE, "--key", key, "--mqtt", "127.0.0.1:1883")
    out = res.stdout + res.stderr
    assert "Traceback" not in out and res.returncode == 2, out
    assert "scheme must be mqtt:// or mqtts://" in res.stderr


def test_run_with_a_missing_key(tmp_path):
    res = edgegov(*run_args(str(tmp_path / "absent.key"), "--mqtt", "mqtt://127.0.0.1:1"))
    assert_one_line_error(res, 2, "absent.key", "cannot read key", "edgegov keygen")


def test_run_with_an_unreadable_key(tmp_path):
    key = write_key(tmp_path / "locked.key")
    key.chmod(0o000)
    if os.geteuid() == 0:  # root reads any mode: a key path that is a directory instead
        key.unlink()
        key.mkdir()
    res = edgegov(*run_args(str(key), "--mqtt", "mqtt://127.0.0.1:1"))
    out = res.stdout + res.stderr
    assert "Traceback" not in out and res.returncode == 2, out
    last = res.stderr.strip().splitlines()[-1]
    assert "locked.key" in last and ("cannot read key" in last or "is a directory" in last)


def test_run_with_a_missing_config(key, tmp_path):
    res = edgegov("run", "--config", str(tmp_path / "absent.toml"), "--key", key,
                  "--mqtt", "mqtt://127.0.0.1:1")
    out = res.stdout + res.stderr
    assert "Traceback" not in out and res.returncode == 1, out
    assert "absent.toml" in res.stderr and "cannot read" in res.stderr
    assert "edgegov envelope check" in res.stderr.splitlines()[-1]


def test_run_with_a_missing_password_file(key, tmp_path):
    res = edgegov(*run_args(key, "--mqtt", "mqtt://127.0.0.1:1", "--password-file",
                            str(tmp_path / "absent")))
    out = res.stdout + res.stderr
    assert "Traceback" not in out and res.returncode == 2, out
    assert "--password-file" in res.stderr and "cannot read" in res.stderr


def test_run_with_a_missing_ca_file(key, tmp_path):
    res = edgegov(*run_args(key, "--mqtt", "mqtts://127.0.0.1:1",
                            "--ca", str(tmp_path / "absent-ca.pem")))
    assert_one_line_error(res, 2, "absent-ca.pem", "--ca")


def _read_only_dir(tmp_path):
    """A directory the service cannot write: a read-only mount (root ignores modes), or
    mode 555 for an ordinary user. Returns (directory, command prefix)."""
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() != 0:
        ro.chmod(0o555)
        return ro, ()
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("running as root and no unshare(1): cannot make a read-only mount")
    probe = subprocess.run([unshare, "-m", "sh", "-c", f"mount -t tmpfs -o ro tmpfs {ro}"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"running as root and cannot mount read-only here: {probe.stderr.strip()}")
    return ro, (unshare, "-m", "sh", "-c", f'mount -t tmpfs -o ro tmpfs {ro} && exec "$@"',
                "sh")


def test_run_with_the_lineage_on_a_read_only_disk(key, tmp_path):
    ro, prefix = _read_only_dir(tmp_path)
    res = edgegov(*run_args(key, "--mqtt", "mqtt://127.0.0.1:1",
                            "--lineage", str(ro / "cell.lineage")), prefix=prefix)
    assert_one_line_error(res, 2, "cell.lineage", "cannot write the lineage", "--lineage")


def test_run_with_the_lineage_on_a_full_disk(key, tmp_path):
    """The ring is preallocated at start: a disk without room for it is one line."""
    full = tmp_path / "full"
    full.mkdir()
    unshare = shutil.which("unshare")
    if os.geteuid() != 0 or unshare is None:
        pytest.skip("needs root and unshare(1) to mount a small tmpfs")
    mount = f"mount -t tmpfs -o size=64k tmpfs {full}"
    if subprocess.run([unshare, "-m", "sh", "-c", mount], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    prefix = (unshare, "-m", "sh", "-c", f'{mount} && exec "$@"', "sh")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    res = edgegov(*run_args(key, "--broker-port", str(port), "--lineage-blocks", "64",
                            "--min-history-h", "0", "--lineage", str(full / "cell.lineage")),
                  prefix=prefix)
    assert_one_line_error(res, 2, "cell.lineage", "No space left on device", "--lineage")


def test_run_with_an_unreadable_config(key, tmp_path):
    config = tmp_path / "locked.toml"
    config.write_text(ENVELOPE.read_text())
    config.chmod(0o000)
    if os.geteuid() == 0:  # root reads any mode: a config path that is a directory instead
        config.unlink()
        config.mkdir()
    res = edgegov("run", "--config", str(config), "--key", key, "--mqtt", "mqtt://127.0.0.1:1")
    out = res.stdout + res.stderr
    assert "Traceback" not in out and res.returncode in (1, 2), out
    assert "locked.toml" in res.stderr.strip().splitlines()[-1] or "locked.toml" in res.stderr
