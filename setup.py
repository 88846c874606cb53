"""Build hook for the one optional C extension; everything else is in pyproject.toml.

``edgegov._recenc`` speeds up the two hot lineage records on CPython. It is optional: without
a C compiler the install still succeeds and ``edgegov.core.record`` keeps to its pure-Python
encoder, which is the reference (and what runs on MicroPython).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("edgegov._recenc", ["runtime/edgegov/_recenc.c"], optional=True),
    ],
)
