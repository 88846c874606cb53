"""edgegov: a governance runtime for cyber-physical controllers."""

import sys

__version__ = "0.1.0"

if sys.implementation.name == "cpython":  # (the core also runs on MicroPython)
    from ._accel import install as _install

    _install()
