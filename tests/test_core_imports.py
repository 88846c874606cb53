"""The core stays sans-I/O and MicroPython-compatible: a short list of allowed imports.

Walks every ``.py`` under ``runtime/edgegov/core`` with ``ast``: only ``struct``,
``binascii``, ``hashlib``, ``gc``, ``sys``, ``micropython``, ``typing`` and the core itself
(relative or ``edgegov.core``) may be imported; never a clock, the OS, sockets or randomness.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parent.parent / "runtime" / "edgegov" / "core"
ALLOWED = {"struct", "binascii", "hashlib", "gc", "sys", "micropython", "typing"}
FORBIDDEN = {"time", "os", "socket", "random", "datetime", "asyncio", "threading", "select"}
MODULES = sorted(CORE.rglob("*.py"))


def imports(path: Path) -> list[tuple[int, str, int]]:
    """(line, module, relative level) for every import statement in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.lineno, node.module or "", node.level))
        elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "__import__":
            arg = node.args[0] if node.args else None
            name = arg.value if isinstance(arg, ast.Constant) else "<dynamic>"
            found.append((node.lineno, str(name), 0))
    return found


def allowed(module: str, level: int) -> bool:
    if level > 0:
        return True  # relative: inside the core package
    if module == "edgegov.core" or module.startswith("edgegov.core."):
        return True
    return module.split(".")[0] in ALLOWED


def test_core_has_modules():
    names = {p.name for p in MODULES}
    assert {"governor.py", "envelope.py", "cbor.py", "auth.py"} <= names


@pytest.mark.parametrize("path", MODULES, ids=[p.name for p in MODULES])
def test_core_module_imports_only_the_allowed_list(path):
    bad = [(line, mod) for line, mod, level in imports(path) if not allowed(mod, level)]
    assert not bad, f"{path.name} imports outside the allowed list: {bad}"


@pytest.mark.parametrize("path", MODULES, ids=[p.name for p in MODULES])
def test_core_module_never_imports_clock_os_socket_or_random(path):
    bad = [
        (line, mod) for line, mod, level in imports(path)
        if level == 0 and mod.split(".")[0] in FORBIDDEN
    ]
    assert not bad, f"{path.name}: {bad}"


def test_checker_catches_a_forbidden_import(tmp_path):
    """The walk is not vacuous: it sees plain, from-, nested and __import__ imports."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import struct\nfrom . import cbor\n"
        "def f():\n    import time\n    from os import path\n    __import__('socket')\n"
    )
    bad = [mod for _, mod, level in imports(sample) if not allowed(mod, level)]
    assert bad == ["time", "os", "socket"]
