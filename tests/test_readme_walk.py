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


def test_the_layout_table_covers_every_package_and_top_level_directory():
    text = section("Layout")
    packages = [p.name for p in (REPO / "runtime/edgegov").iterdir()
                if p.is_dir() and (p / "__init__.py").exists()]
    assert "fleet" in packages
    for name in packages:
        assert f"runtime/edgegov/{name}`" in text or f"`{name}`" in text, name
    for top in sorted(p.name for p in REPO.iterdir() if p.is_dir()):
        if top.startswith(".") or top in ("build", "runtime") or top.endswith("egg-info"):
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
