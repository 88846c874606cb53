"""Build hook for the optional compiled parts; everything else is in pyproject.toml.

- ``edgegov._recenc`` (C) speeds up the two hot lineage records and the ring walk on
  CPython.
- The incident report's decode pass (``edgegov._accel.MODULES``) is compiled with Cython
  from its unchanged Python source; the hash of each source compiled is recorded beside
  them (``edgegov/_accel.json``) so that an edited source is never shadowed by an old copy.

Both are optional: without a C compiler the install still succeeds (and, built without
isolation where Cython is not installed, without the compiled decode pass), and the pure
Python, which is the reference (and what runs on MicroPython), is what runs.
"""

import ast
import hashlib
import json
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).parent
PACKAGE = HERE / "runtime" / "edgegov"


def accelerated() -> list[str]:
    """``MODULES`` of runtime/edgegov/_accel.py, read without importing the package."""
    tree = ast.parse((PACKAGE / "_accel.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "MODULES"
                                                for t in node.targets):
            return list(ast.literal_eval(node.value))
    raise SystemExit("runtime/edgegov/_accel.py has no MODULES")


def source(module: str) -> Path:
    return PACKAGE.joinpath(*module.split(".")[1:]).with_suffix(".py")


def compiled() -> list:
    try:
        from Cython.Build import cythonize
    except ImportError:
        return []
    exts = cythonize([Extension(m, [str(source(m).relative_to(HERE))]) for m in accelerated()],
                     build_dir="build/cython", quiet=True,
                     compiler_directives={"language_level": 3, "binding": True})
    for ext in exts:
        ext.optional = True
    return exts


class BuildExt(build_ext):
    """``build_ext`` that records, beside the compiled decode pass, the hash of the source
    each module was compiled from (``_accel.json``; only modules built in this run: one
    that failed to compile keeps no record, so its old copy, if any, is not used)."""

    def run(self):
        self.built: set[str] = set()
        super().run()
        modules = accelerated()
        record = {m: hashlib.sha256(source(m).read_bytes()).hexdigest()
                  for m in modules if m in self.built}
        package = Path(self.get_ext_fullpath("edgegov._recenc")).parent
        package.mkdir(parents=True, exist_ok=True)
        (package / "_accel.json").write_text(json.dumps(record, indent=1) + "\n",
                                             encoding="utf-8")

    def build_extension(self, ext):
        super().build_extension(ext)  # (an optional one that fails raises, caught above)
        self.built.add(ext.name)


setup(
    ext_modules=[
        Extension("edgegov._recenc", ["runtime/edgegov/_recenc.c"], optional=True),
        *compiled(),
    ],
    cmdclass={"build_ext": BuildExt},
)
