"""edgegov core: sans-I/O, deterministic, MicroPython-compatible.

Import only ``struct``, ``binascii``, ``hashlib``, guarded ``micropython``/``typing`` and
itself, plus the optional C accelerator ``edgegov._recenc`` in ``record`` (guarded by
``except ImportError``; a test walks the imports). Everything the governor decides is
integer arithmetic on scaled values with ``now_ms`` passed in.
"""

from .decision import Decision
from .envelope import Envelope, EnvelopeError
from .events import TICK, Command, Fault, Operator, Session, Telemetry, Tick
from .governor import Governor

__all__ = [
    "Decision",
    "Envelope",
    "EnvelopeError",
    "Governor",
    "Command",
    "Telemetry",
    "Tick",
    "TICK",
    "Operator",
    "Fault",
    "Session",
]
