"""The gateway service: the governor on an asyncio loop, MQTT, watchdog and e-stop path.

``GovernorService`` (``loop``) is the loop without the network, driven by ``now_ms``;
``Runner`` (``runner``) wires it to the clock shim, MQTT and the backends; ``wire`` decodes
and encodes the JSON payloads documented in ``docs/mqtt.md``.
"""

from .clock import MonotonicClock, ScriptedClock
from .loop import GovernorService
from .topics import Topics

__all__ = ["GovernorService", "MonotonicClock", "ScriptedClock", "Topics"]
