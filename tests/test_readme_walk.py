"""The README read as a new user reads it: the Layout table names what is there, the "Two
commands" say what `make test` installs, and the quoted output lines are what the commands
print. Every expectation is parsed from the README (or docs/) text, not copied here."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()


def section(title: str, text: str = README) -> str:
    """The text of the ``## title`` section (up to the next ``## ``)."""
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def edgegov(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgegov_cli.main", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


# --------------------------------------------------------------------------- Layout


def layout_paths() -> list[str]:
    rows = re.findall(r"^\| (.+?) \| .+ \|$", section("Layout"), re.M)
    paths = []
    for cell in rows[2:]:  # header, rule
        names = re.findall(r"`([^`]+)`", cell)
        base = names[0].rsplit("/", 1)[0] if "/" in names[0].rstrip("/") else ""
        for i, name in enumerate(names):
            # `runtime/edgegov/service`, `adapters`: a bare name sits beside the first one
            paths.append(name if i == 0 or "/" in name else f"{base}/{name}")
    return paths


def test_every_path_the_layout_table_names_exists():
    paths = layout_paths()
    assert len(paths) > 10
    missing = [p for p in paths if not (REPO / p.rstrip("/")).exists()]
    assert not missing, missing


def _tracked_top_level_directories() -> list[str]:
    """Top-level directories of the project's own files (what git tracks; test runs and
    builds leave others, such as build/, behind)."""
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.splitlines()
    return sorted({f.split("/", 1)[0] for f in files if "/" in f})


def test_the_layout_table_covers_every_package_and_top_level_directory():
    text = section("Layout")
    packages = [p.name for p in (REPO / "runtime/edgegov").iterdir()
                if p.is_dir() and (p / "__init__.py").exists()]
    assert "fleet" in packages
    for name in packages:
        assert f"runtime/edgegov/{name}`" in text or f"`{name}`" in text, name
    for top in _tracked_top_level_directories():
        if top.startswith(".") or top == "runtime":
            continue
        assert f"`{top}/" in text, top
    for path in ("boards/drives/", "tests/ref_decoder.py"):
        assert (REPO / path).exists() and f"`{path}`" in text, path


# --------------------------------------------------------------------------- Two commands

# Debian package -> the word the README's `make test` line uses for it.
APT_WORDS = {"mosquitto": "mosquitto", "mosquitto-clients": "mosquitto",
             "qemu-system-arm": "QEMU", "firmware-microbit-micropython": "micro:bit",
             "chromium": "Chromium", "postgresql": "PostgreSQL", "npm": "npm"}


def test_make_test_names_every_system_package_the_setup_script_installs():
    block = re.search(r"```sh\n(make demo.*?)```", section("Two commands"), re.S).group(1)
    make_test = block[block.index("make test"):]
    script = (REPO / "tools/setup-system.sh").read_text()
    listed = re.search(r"packages=\((.*?)\)\s*(?:#.*)?\n(?!\s)", script, re.S).group(1)
    packages = [w for line in re.sub(r"#.*", "", listed).split("\n") for w in line.split()]
    assert "postgresql" in packages and "chromium" in packages
    for package in packages:
        assert package in APT_WORDS, f"{package}: say in the README what it is for"
        assert APT_WORDS[package] in make_test, package
    assert "via apt" in make_test and "via npm" in make_test
    pyproject = (REPO / "pyproject.toml").read_text()
    assert "micropython-unix" in pyproject and "MicroPython unix port" in make_test
    makefile = (REPO / "Makefile").read_text()
    assert "npm install" in makefile and "plotly.js" in make_test


# --------------------------------------------------------------------------- embedded broker


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_status_watch_op_and_pull_against_the_embedded_broker(tmp_path):
    """Gateway service: `run` without --mqtt starts the embedded broker, which speaks MQTT
    3.1.1 only, so the clients need the option the README names for it; without it they
    say so in one line (exit 3)."""
    import time

    text = section("Gateway service (MQTT)")
    said = re.search(r"The embedded broker speaks MQTT 3\.1\.1 only: give (.+?)\s+`(--protocol "
                     r"\d)` against it", text, re.S)
    assert said, "the README says which option the clients need against the embedded broker"
    option = said.group(2).split()
    clients = re.findall(r"`([a-z]+(?: [a-z]+)?)`", said.group(1))
    assert {"status", "watch", "op", "lineage pull"} <= set(clients)
    edgegov("keygen", str(tmp_path / "dev.key"))
    port = _free_port()
    log = tmp_path / "run.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "edgegov_cli.main", "run", "--config",
             str(REPO / "boards/envelopes/spindle-cell.toml"), "--key", str(tmp_path / "dev.key"),
             "--broker-port", str(port), "--lineage", str(tmp_path / "cell.lineage"),
             "--lineage-blocks", "64", "--no-fsync"], stdout=out, stderr=subprocess.STDOUT)
    try:
        for _ in range(300):
            if "broker up" in log.read_text() or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert "broker up" in log.read_text(), log.read_text()
        url = f"mqtt://127.0.0.1:{port}"
        refused = edgegov("status", "--device", "cell-7", "--mqtt", url)
        assert refused.returncode == 3
        assert len(refused.stderr.splitlines()) == 1 and " ".join(option) in refused.stderr
        status = edgegov("status", "--device", "cell-7", "--mqtt", url, *option)
        assert status.returncode == 0, status.stderr
        assert re.search(r"status\s+online", status.stdout)
        op = edgegov("op", "reset", "--device", "cell-7", "--key", str(tmp_path / "dev.key"),
                     "--mqtt", url, *option)
        assert op.returncode == 0 and "sent" in op.stdout, op.stderr
        pull = edgegov("lineage", "pull", "--device", "cell-7", "--mqtt", url, *option,
                       "-o", str(tmp_path / "dump.lineage"))
        assert pull.returncode == 0, pull.stderr
        assert edgegov("lineage", "verify", str(tmp_path / "dump.lineage"), "--key",
                       str(tmp_path / "dev.key")).returncode == 0
        # `watch --json | head -1`: the reader going away ends watch quietly
        piped = subprocess.run(
            f"{sys.executable} -m edgegov_cli.main watch --device cell-7 --mqtt {url} "
            f"{' '.join(option)} --json --seconds 20 | head -1; echo rc=${{PIPESTATUS[0]}}",
            shell=True, executable="/bin/bash", capture_output=True, text=True, timeout=60,
            cwd=REPO)
        assert '"device": "cell-7"' in piped.stdout and "rc=0" in piped.stdout, piped
        assert piped.stderr == "", piped.stderr
    finally:
        proc.terminate()
        proc.wait(20)


# --------------------------------------------------------------------------- docs/modbus.md

MODBUS_DOC = (REPO / "docs/modbus.md").read_text()


def test_the_modbus_doc_commands_are_one_shell_command_each():
    """A comment inside a backslash-continued command would end it: the doc's `run`
    must parse as one command with options `run --help` knows."""
    import shlex

    block = re.search(r"```sh\n(.*?)```", MODBUS_DOC, re.S).group(1)
    joined = block.replace("\\\n", " ")
    run = next(line for line in joined.splitlines() if line.startswith("edgegov run"))
    words = shlex.split(run, comments=True)
    options = [w for w in words if w.startswith("--")]
    assert {"--modbus-server", "--modbus-target"} <= set(options)
    help_text = edgegov("run", "--help").stdout
    for option in options:
        assert option in help_text, option
    for line in joined.splitlines():
        assert line.startswith("edgegov "), line


def test_the_spindle_cell_registers_the_modbus_doc_quotes():
    """docs/modbus.md: "For the spindle cell: H3 coolant, ..." is what `edgegov modbus map`
    prints for that envelope (the MapHash example, of the pinned cell, is checked in
    test_modbus_addresses.py)."""
    shown = edgegov("modbus", "map", "boards/envelopes/spindle-cell.toml")
    assert shown.returncode == 0, shown.stderr
    placed = re.search(r"For the spindle cell: (.*?)\.\n\n", MODBUS_DOC, re.S).group(1)
    pairs = re.findall(r"([HI]\d+) (\w+)", placed)
    assert len(pairs) == 7
    for address, name in pairs:
        assert re.search(rf"^  {address}\s+{name}\s", shown.stdout, re.M), (address, name)


# --------------------------------------------------------------------------- envelope push


def test_the_files_an_applied_push_leaves_beside_the_config(tmp_path):
    """Envelopes, push: "the previous one is kept beside it, `cell.toml` as `cell.prev.toml`;
    the last accepted counter in `cell.toml.counter`"."""
    from edgegov.config.store import EnvelopeStore

    said = re.search(r"kept\s+beside it, `(\S+)` as `(\S+)`; the last accepted counter in\s+"
                     r"`(\S+)`", README)
    config, previous, counter = said.groups()
    store = EnvelopeStore.for_file(tmp_path / config)
    assert (store.current, store.previous) == (config, previous)
    store.write_counter(7)
    assert (tmp_path / counter).exists() and store.read_counter() == 7


# --------------------------------------------------------------------------- docs/mqtt.md


def test_the_decision_example_has_the_fields_a_decision_message_has():
    """docs/mqtt.md, Commands: the `decision` JSON example lists the message's fields in
    the order the service publishes them (`note` only on payloads the host refused)."""
    import json

    from edgegov.config.compile import compile_file
    from edgegov.core import Command
    from edgegov.core.envelope import Envelope
    from edgegov.core.governor import Governor
    from edgegov.service.loop import GovernorService
    from edgegov.service.topics import Topics
    from edgegov.service.wire import Inbound

    doc = (REPO / "docs/mqtt.md").read_text()
    example = json.loads(re.search(r"```json\n(\{\"seq\".*?)```", doc, re.S).group(1))
    compiled = compile_file(REPO / "boards/envelopes/spindle-cell.toml")
    env = Envelope.from_blob(compiled.blob, compiled.digest)
    posted = []
    svc = GovernorService(Governor(env, b"k" * 32), Topics(env.device_id),
                          lambda *a: posted.append(a))
    svc.boot(0, compiled.blob)
    svc.submit(Inbound(Command(1, {"spindle": 100})), 10)
    decision = next(json.loads(p[1]) for p in posted if p[0].endswith("/decision"))
    assert list(example) == list(decision)
    assert set(example["output"]) == set(decision["output"])


# --------------------------------------------------------------------------- options


def shown_commands(text: str) -> list[str]:
    """Each `edgegov ...` command of the text's ```sh blocks (continuation lines joined,
    comments dropped) and of its inline code."""
    out = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            line = re.sub(r"^sudo \S*?/?(?=edgegov )", "", line)
            if line.startswith("edgegov "):
                out.append(line)
    out += [" ".join(c.split()) for c in re.findall(r"`(edgegov [^`]+)`", text)]
    return out


def test_every_option_a_shown_command_uses_is_in_its_help():
    helps: dict[tuple, str] = {}
    texts = [README, (REPO / "docs/modbus.md").read_text(), (REPO / "docs/mqtt.md").read_text()]
    commands = [c for t in texts for c in shown_commands(t)]
    assert len(commands) > 30
    for command in commands:
        words = command.split()[1:]
        path = []
        for w in words:
            if not re.fullmatch(r"[a-z]+", w):
                break
            path.append(w)
        while path:  # `edgegov op reset`: the command is `op`, `reset` its argument
            key = tuple(path)
            if key not in helps:
                proc = edgegov(*path, "--help")
                helps[key] = proc.stdout if proc.returncode == 0 else ""
            if helps[key]:
                break
            path.pop()
        assert path, command
        for option in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*|-[a-z])\b", command):
            assert re.search(rf"(?<![\w-]){re.escape(option)}\b", helps[tuple(path)]), (
                command, option)


def test_every_option_the_prose_names_exists_on_some_command():
    """`--lineage-blocks N`, `--min-history-h`, `--progress-s` …: options the README and
    docs name outside a full command line still exist (on some `edgegov` command)."""
    import click
    from edgegov_cli.main import main

    known = set()

    def walk(command: click.Command) -> None:
        for param in command.params:
            known.update(o for o in (*param.opts, *param.secondary_opts) if o.startswith("--"))
        for sub in getattr(command, "commands", {}).values():
            walk(sub)

    walk(main)
    texts = [README, (REPO / "docs/modbus.md").read_text(), (REPO / "docs/mqtt.md").read_text()]
    named = {o for t in texts for code in re.findall(r"`([^`\n]+)`", t)
             for o in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", code)}
    assert len(named) > 40
    assert sorted(named - known) == []


def test_the_governor_snippet_runs_and_boots_tripped(monkeypatch):
    """The README's Python example, as written (given a key, a time and a seq): the
    governor boots TRIPPED with its outputs safe, so the command is refused."""
    from edgegov.core import codes

    code = re.search(r"```python\n(.*?)```", section("The governor"), re.S).group(1)
    monkeypatch.chdir(REPO)
    scope = {"device_key": b"k" * 32, "now_ms": 0, "seq": 1}
    exec(compile(code, "README.md", "exec"), scope)
    gov, d = scope["gov"], scope["d"]
    assert "boots TRIPPED" in code and gov.state == codes.ST_TRIPPED
    assert d.verdict == codes.TRIP and d.output == [0, 0, 0] and d.estop


def test_the_hil_scenarios_the_readme_names_are_the_ones_edgegov_hil_runs():
    for sub in ("firmware", "emulation", "hil"):
        if str(REPO / sub) not in sys.path:
            sys.path.insert(0, str(REPO / sub))
    import hilrun

    text = README[README.index("**HIL scenarios"):]
    text = text[:text.index("They run on the QEMU")]
    named = re.findall(r"`([a-z_]+)`", text[text.index("`--scenario` names"):])
    assert sorted(named) == sorted(hilrun.ALL)
    with_transcript = {p.stem for p in (REPO / "hil/expected").glob("*.exp")}
    assert with_transcript == set(hilrun.ALL) - {"lineage_replay"}


def test_the_envelope_table_names_every_key_admission_accepts():
    """Envelopes: the table of TOML tables and keys lists every key the schema takes."""
    from edgegov.config import schema

    text = section("Envelopes")
    rows = dict(re.findall(r"^\| `\[([a-z]+)(?:\.NAME)?\]` \| (.+) \|$", text, re.M))
    models = {"device": schema.Device, "channels": schema.Channel, "inputs": schema.Input,
              "interlocks": schema.Interlock, "modes": schema.Mode, "link": schema.Link,
              "approval": schema.Approval, "modbus": schema.Modbus}
    assert set(rows) == set(models)
    for table, model in models.items():
        for key in model.model_fields:
            assert re.search(rf"`(\[{table}\.)?{key}\b", rows[table]), (table, key)
    for key in schema.Top.model_fields:  # top-level keys: a table, or named in a row
        assert key in rows or f"`{key}`" in text, key


def test_diff_warns_when_a_pin_moves_a_channel_and_the_session_register(tmp_path):
    """Envelopes, diff: "A channel whose Modbus registers move gets a `WARNING` line, and so
    does the session register when it moves." Pinning the spindle (H5, session H6 in the
    doc's placement) at 40 moves both: the session follows the last proposal, H41."""
    assert "and so does the session register when it moves" in " ".join(README.split())
    old = REPO / "boards/envelopes/spindle-cell.toml"
    new = tmp_path / "pinned.toml"
    new.write_text(old.read_text() + "\n[modbus.addresses]\nspindle = 40\n")
    proc = edgegov("envelope", "diff", str(old), str(new))
    assert proc.returncode == 1, proc.stderr
    warnings = [line for line in proc.stdout.splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 2
    assert "registers of spindle move (H5/I20 → H40/I40)" in warnings[0]
    assert "session register moves (H6 → H41)" in warnings[1]


def _codes(text: str, bold: bool) -> list[int]:
    pattern = r"\*\*(\d)\*\*" if bold else r"(?:: |, )(\d) (?=[a-z(])"
    return [int(n) for n in re.findall(pattern, text)]


def test_exit_codes_the_readme_lists_are_the_ones_the_help_lists():
    """The same exit codes in the README and in `--help` (a list written twice drifts)."""
    flat = " ".join(README.split())
    where = {("op",): "`edgegov op ACTION` sends", ("status",): "`status` prints the device's",
             ("lineage", "verify"): "- `verify` checks every CRC",
             ("lineage", "replay"): "- `replay` feeds the recorded"}
    for command, anchor in where.items():
        listed = flat[flat.index("**0**", flat.index(anchor)):]  # the paragraph's list
        listed = listed[:listed.index(". ") + 1]
        readme_codes = _codes(listed, bold=True)
        help_text = " ".join(edgegov(*command, "--help").stdout.split())
        shown = help_text[help_text.index("Exit codes"):]
        shown = shown[:shown.index(". ") + 1]
        assert readme_codes and readme_codes == _codes(shown, bold=False), (command, listed,
                                                                            shown)
