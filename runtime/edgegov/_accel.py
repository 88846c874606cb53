"""Compiled copies of the incident report's decode pass, used only while they match their
source.

The modules in ``MODULES`` are pure Python, and the source is the reference. Where the
install could compile them (``pip install`` runs Cython on them; see setup.py), each has a
compiled copy beside it (``collect.cpython-311-x86_64-linux-gnu.so`` beside
``collect.py``), which CPython's import would pick over the source. The finder installed
here picks it only when the source's SHA-256 is the one recorded when it was compiled
(``_accel.json``, written by setup.py). So a source edited since the install is imported as
source until the next install, never shadowed by an old copy. ``EDGEGOV_PURE=1`` in the
environment imports every one as source.

None of these modules decides anything on a device: the governor, the ring writer and the
services always run as source.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import os
import sys

# The report's decode pass, in the order a report imports them.
MODULES = (
    "edgegov.core.replay",
    "edgegov.host.walltime",
    "edgegov.host.lineage_read",
    "edgegov.report.decimate",
    "edgegov.report.shadow",
    "edgegov.report.narrative",
    "edgegov.report.inputs",
    "edgegov.report.collect",
    "edgegov.report.pack",
    "edgegov.report.model",
)
RECORD = "_accel.json"  # beside this file: module → SHA-256 of the source compiled
PURE_ENV = "EDGEGOV_PURE"

_HERE = os.path.dirname(os.path.abspath(__file__))
_recorded: dict | None = None


def source_of(module: str) -> str:
    """The path of ``module``'s source (a name in ``MODULES``)."""
    parts = module.split(".")[1:]
    return os.path.join(_HERE, *parts) + ".py"


def digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def recorded() -> dict:
    """module → the SHA-256 of the source its compiled copy was made from ({} if none)."""
    global _recorded
    if _recorded is None:
        try:
            with open(os.path.join(_HERE, RECORD), encoding="utf-8") as f:
                got = json.load(f)
            _recorded = got if isinstance(got, dict) else {}
        except (OSError, ValueError):
            _recorded = {}
    return _recorded


def fresh(module: str) -> bool:
    """Does ``module``'s compiled copy match its source (and is it wanted)?"""
    if os.environ.get(PURE_ENV, "") not in ("", "0"):
        return False
    want = recorded().get(module)
    try:
        return want is not None and digest(source_of(module)) == want
    except OSError:
        return False


class _Finder:
    """Finds the modules in ``MODULES``: the compiled copy when ``fresh``, else the source."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name not in MODULES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or not isinstance(spec.loader, importlib.machinery.ExtensionFileLoader):
            return spec
        if fresh(name):
            return spec
        return importlib.util.spec_from_file_location(name, source_of(name))


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())


def status() -> dict:
    """module → "compiled" or "source", as imported now (importing them)."""
    out = {}
    for name in MODULES:
        mod = importlib.import_module(name)
        loader = getattr(getattr(mod, "__spec__", None), "loader", None)
        out[name] = ("compiled" if isinstance(loader, importlib.machinery.ExtensionFileLoader)
                     else "source")
    return out


def summary() -> str:
    """One line for people: how many of the decode pass's modules run compiled."""
    got = status()
    n = sum(v == "compiled" for v in got.values())
    if n == len(got):
        return f"decode pass compiled ({n} modules)"
    why = (f"{PURE_ENV} is set" if os.environ.get(PURE_ENV, "") not in ("", "0")
           else "run `make install` to compile them" if not recorded()
           else "sources changed since the install: run `make install`")
    return f"decode pass: {n} of {len(got)} modules compiled ({why})"
