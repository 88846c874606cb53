"""The core stays sans-I/O and MicroPython-compatible: a short list of allowed imports.

Walks every ``.py`` under ``runtime/edgegov/core`` with ``ast``: only ``struct``,
``binascii``, ``hashlib``, ``gc``, ``sys``, ``micropython``, ``typing`` and the core itself
(relative or ``edgegov.core``) may be imported; never a clock, the OS, sockets or randomness.
The one import from outside the core is the optional C accelerator ``edgegov._recenc``
(``from .._recenc import ...`` in ``record.py``), and only inside a ``try`` that handles
``ImportError``, so the core runs the same without it (MicroPython, no compiler).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parent.parent / "runtime" / "edgegov" / "core"
ALLOWED = {"struct", "binascii", "hashlib", "gc", "sys", "micropython", "typing"}
FORBIDDEN = {"time", "os", "socket", "random", "datetime", "asyncio", "threading", "select"}
OPTIONAL = "_recenc"  # from .._recenc (edgegov._recenc), guarded by ``except ImportError``
MODULES = sorted(CORE.rglob("*.py"))


def imports(path: Path) -> list[tuple[int, str, int]]:
    """(line, module, relative level) for every import statement in ``path``."""
    return [(line, mod, level) for line, mod, level, _ in _walk(path)]


def _guarded(tree: ast.AST) -> set[int]:
    """ids of the import nodes inside a ``try`` body whose handlers catch ImportError."""
    ids = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Try):
            continue
        caught = set()
        for handler in node.handlers:
            kinds = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
            caught |= {getattr(k, "id", None) for k in kinds}
        if "ImportError" in caught:
            ids |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return ids


def _walk(path: Path) -> list[tuple[int, str, int, bool]]:
    """(line, module, relative level, guarded by except ImportError) for every import."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    guarded = _guarded(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, 0, id(node) in guarded)
                      for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.lineno, node.module or "", node.level, id(node) in guarded))
        elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "__import__":
            arg = node.args[0] if node.args else None
            name = arg.value if isinstance(arg, ast.Constant) else "<dynamic>"
            found.append((node.lineno, str(name), 0, id(node) in guarded))
    return found


def allowed(module: str, level: int, guarded: bool = False) -> bool:
    if level == 1:
        return True  # relative: inside the core package
    if level == 2:  # the package above the core: only the optional accelerator
        return module == OPTIONAL and guarded
    if level > 2:
        return False
    if module == "edgegov.core" or module.startswith("edgegov.core."):
        return True
    return module.split(".")[0] in ALLOWED


def test_core_has_modules():
    names = {p.name for p in MODULES}
    assert {"governor.py", "envelope.py", "cbor.py", "auth.py"} <= names


@pytest.mark.parametrize("path", MODULES, ids=[p.name for p in MODULES])
def test_core_module_imports_only_the_allowed_list(path):
    bad = [(line, "." * level + mod) for line, mod, level, guarded in _walk(path)
           if not allowed(mod, level, guarded)]
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


def test_checker_allows_only_the_guarded_accelerator_from_outside_the_core(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "try:\n    from .._recenc import decision\nexcept ImportError:\n    decision = None\n"
        "from .._recenc import event\n"
        "try:\n    from ..service import x\nexcept ImportError:\n    pass\n"
        "try:\n    from .._recenc import y\nexcept ValueError:\n    pass\n"
        "from ... import z\nfrom .cbor import dumps\n"
    )
    verdicts = [(line, level, mod, allowed(mod, level, guarded))
                for line, mod, level, guarded in _walk(sample)]
    assert sorted(verdicts) == [
        (2, 2, "_recenc", True),
        (5, 2, "_recenc", False),  # not guarded
        (7, 2, "service", False),  # outside the core, guarded or not
        (11, 2, "_recenc", False),  # guarded by the wrong exception
        (14, 3, "", False),
        (15, 1, "cbor", True),
    ]


def test_the_accelerator_import_is_the_only_one_from_outside_the_core():
    outside = {(path.name, mod) for path in MODULES for _, mod, level, _ in _walk(path)
               if level > 1}
    assert outside == {("record.py", OPTIONAL)}
