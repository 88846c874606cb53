"""``edgegov service install``: the governor as a systemd service on a Linux gateway.

Writes, under ``root`` (``/`` on the gateway itself; another directory to stage an image):

    etc/systemd/system/edgegov@.service   the unit (0644), shipped in edgegov/service/systemd
    etc/edgegov/                           0750, root:edgegov (ConfigurationDirectory)
    etc/edgegov/DEVICE/                    0750, root:edgegov
        envelope.toml                      0640, root:edgegov   the device's envelope
        device.key                         0600, edgegov        kept when it exists
        run.env                            0640, root:edgegov   EDGEGOV_ARGS: broker options
        mqtt.password, ca.pem, client.*    0600 / 0644          when given
    var/lib/edgegov/                       0750, edgegov        lineage (StateDirectory)

On the gateway itself (``root`` is ``/``, run as root) it also creates the system user
``edgegov`` when missing and hands the files above to it; elsewhere it says what to run.
Every problem is an ``InstallError`` with one line saying what to do.
"""

from __future__ import annotations

import os
import pwd
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

UNIT_NAME = "edgegov@.service"
USER = "edgegov"
_DEVICE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class InstallError(Exception):
    """The install cannot go on; the message says why and what to do."""


@dataclass
class Installed:
    """What ``install`` wrote and what is left to do."""

    root: Path
    device: str
    unit: Path
    files: list[Path] = field(default_factory=list)
    kept_key: bool = False
    owned: bool = False  # files handed to the service user
    next_steps: list[str] = field(default_factory=list)


def unit_template() -> str:
    """The shipped unit, with ``@EXEC@`` where the ``edgegov`` command goes."""
    return resources.files("edgegov.service").joinpath("systemd", UNIT_NAME).read_text()


def render_unit(exec_path: str) -> str:
    if not os.path.isabs(exec_path):
        raise InstallError(f"--exec {exec_path}: give the absolute path of the edgegov command")
    return unit_template().replace("@EXEC@", exec_path)


def default_exec() -> str:
    """The ``edgegov`` command of this installation (next to this Python)."""
    beside = Path(sys.executable).with_name("edgegov")
    if beside.exists():
        return str(beside)
    return shutil.which("edgegov") or "/usr/local/bin/edgegov"


def run_args(mqtt_url: str | None, device_dir: str, *, username: str | None = None,
             has_password: bool = False, has_ca: bool = False, has_cert: bool = False,
             prefix: str | None = None, extra: str = "") -> str:
    """The ``EDGEGOV_ARGS`` line: broker options for ``edgegov run`` (paths as installed)."""
    args = []
    if mqtt_url:
        args += ["--mqtt", mqtt_url]
    if username:
        args += ["--username", username]
    if has_password:
        args += ["--password-file", f"{device_dir}/mqtt.password"]
    if has_ca:
        args += ["--ca", f"{device_dir}/ca.pem"]
    if has_cert:
        args += ["--cert", f"{device_dir}/client.crt", "--cert-key", f"{device_dir}/client.key"]
    if prefix:
        args += ["--prefix", prefix]
    line = " ".join(shlex.quote(a) for a in args)
    return f"{line} {extra}".strip()


def _check_device(device: str, config: Path) -> None:
    from ..config.compile import compile_file
    from ..config.problems import EnvelopeConfigError

    if not _DEVICE_RE.match(device):
        raise InstallError(f"--device {device!r}: use letters, digits, '_', '.' and '-' "
                           "(it names the systemd instance edgegov@DEVICE)")
    try:
        admitted = compile_file(config).admitted
    except EnvelopeConfigError as err:
        first = err.problems[0] if err.problems else "refused"
        raise InstallError(f"{config}: envelope refused ({first}); check it with "
                           f"edgegov envelope check {config}") from None
    if admitted.device_id != device:
        raise InstallError(f"--device {device} but {config} is for device "
                           f"{admitted.device_id}: give the envelope of this device")


def _write(path: Path, data: bytes | str, mode: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    return path


def _copy(src: str | None, dst: Path, mode: int, what: str) -> Path | None:
    if not src:
        return None
    try:
        data = Path(src).read_bytes()
    except OSError as err:
        raise InstallError(f"{what} {src}: cannot read ({err.strerror})") from None
    return _write(dst, data, mode)


def _dir(path: Path, mode: int) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, mode)
    return path


def install(device: str, config: str, *, root: str = "/", key: str | None = None,
            mqtt_url: str | None = None, username: str | None = None,
            password_file: str | None = None, ca_file: str | None = None,
            cert_file: str | None = None, cert_key_file: str | None = None,
            prefix: str | None = None, extra_args: str = "",
            exec_path: str | None = None) -> Installed:
    """Write the unit, the config layout and the key; see the module docstring."""
    root_dir = Path(root)
    config_path = Path(config)
    _check_device(device, config_path)
    unit_text = render_unit(exec_path or default_exec())
    etc = root_dir / "etc" / "edgegov"
    dev = etc / device
    device_dir = f"/etc/edgegov/{device}"  # as the service sees it
    try:
        out = _lay_out(root_dir, etc, dev, device, config_path, unit_text, key, password_file,
                       ca_file, cert_file, cert_key_file)
        env = run_args(mqtt_url, device_dir, username=username,
                       has_password=bool(password_file), has_ca=bool(ca_file),
                       has_cert=bool(cert_file), prefix=prefix, extra=extra_args)
        out.files.append(_write(dev / "run.env", "# Options of `edgegov run` for this device "
                                "(see edgegov run --help)\n"
                                f"EDGEGOV_ARGS={env}\n", 0o640))
    except PermissionError as err:
        raise InstallError(f"{err.filename}: permission denied; run as root (sudo) or give "
                           "--root DIR to stage the files") from None
    _finish(out, root_dir)
    return out


def _lay_out(root_dir, etc, dev, device, config_path, unit_text, key, password_file, ca_file,
             cert_file, cert_key_file) -> Installed:
    from ..operator import write_key

    unit = _write(root_dir / "etc" / "systemd" / "system" / UNIT_NAME, unit_text, 0o644)
    out = Installed(root_dir, device, unit)
    _dir(etc, 0o750)
    _dir(dev, 0o750)
    _dir(root_dir / "var" / "lib" / "edgegov", 0o750)
    out.files.append(_copy(str(config_path), dev / "envelope.toml", 0o640, "--config"))
    key_path = dev / "device.key"
    if key:
        out.files.append(_copy(key, key_path, 0o600, "--key"))
    elif key_path.exists():
        out.kept_key = True
    else:
        write_key(key_path)
    out.files.append(key_path)
    for src, name, mode, what in ((password_file, "mqtt.password", 0o600, "--password-file"),
                                  (ca_file, "ca.pem", 0o644, "--ca"),
                                  (cert_file, "client.crt", 0o644, "--cert"),
                                  (cert_key_file, "client.key", 0o600, "--cert-key")):
        written = _copy(src, dev / name, mode, what)
        if written is not None:
            out.files.append(written)
    return out


def _finish(out: Installed, root_dir: Path) -> None:
    """On the gateway as root: the service user and ownership; else the commands to run."""
    unit = f"edgegov@{out.device}"
    on_host = root_dir.resolve() == Path("/") and os.geteuid() == 0
    if on_host:
        _ensure_user()
        _hand_over(out, root_dir)
        out.owned = True
    else:
        d = f"/etc/edgegov/{out.device}"
        out.next_steps += [
            f"useradd --system --home-dir /var/lib/edgegov --shell /usr/sbin/nologin {USER}",
            f"chown root:{USER} /etc/edgegov {d} {d}/envelope.toml {d}/run.env",
            f"chown {USER}:{USER} {d}/device.key /var/lib/edgegov"
            + "".join(f" {d}/{p.name}" for p in out.files
                      if p.name in ("mqtt.password", "client.key")),
        ]
    out.next_steps += ["systemctl daemon-reload", f"systemctl enable --now {unit}",
                       f"journalctl -u {unit} -f      # its log",
                       f"edgegov status --device {out.device} --mqtt URL"]


def _ensure_user() -> None:
    try:
        pwd.getpwnam(USER)
        return
    except KeyError:
        pass
    cmd = ["useradd", "--system", "--home-dir", "/var/lib/edgegov", "--shell",
           "/usr/sbin/nologin", USER]
    try:
        subprocess.run(cmd, check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as err:
        detail = getattr(err, "stderr", "") or err
        raise InstallError(f"cannot create the user {USER} ({str(detail).strip()}); create "
                           f"it with: {' '.join(cmd)}") from None


def _hand_over(out: Installed, root_dir: Path) -> None:
    user = pwd.getpwnam(USER)
    etc = root_dir / "etc" / "edgegov"
    for path in (etc, etc / out.device, *out.files):
        if path.name in ("device.key", "mqtt.password", "client.key"):
            os.chown(path, user.pw_uid, user.pw_gid)
        else:
            os.chown(path, 0, user.pw_gid)
    state = root_dir / "var" / "lib" / "edgegov"
    os.chown(state, user.pw_uid, user.pw_gid)


def verify_unit(unit_path: Path, device: str) -> tuple[bool, str]:
    """``systemd-analyze verify`` on the instance ``edgegov@DEVICE``: (clean, its output).
    Clean means exit 0 and no warning at all."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        return True, "systemd-analyze not found: unit not verified"
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(unit_path, Path(tmp) / UNIT_NAME)
        res = subprocess.run([tool, "verify", str(Path(tmp) / f"edgegov@{device}.service")],
                             capture_output=True, text=True, timeout=60)
    output = (res.stdout + res.stderr).strip()
    return res.returncode == 0 and not output, output


__all__ = ["install", "Installed", "InstallError", "render_unit", "unit_template",
           "verify_unit", "run_args", "default_exec", "UNIT_NAME", "USER"]
