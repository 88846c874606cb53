"""The few names that differ between CPython and MicroPython, in one place."""

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


__all__ = ["const"]
