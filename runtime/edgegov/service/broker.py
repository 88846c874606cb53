"""The embedded broker (amqtt, MQTT 3.1.1) the service starts when no ``--mqtt`` is given.

Loopback only and anonymous: it exists so ``edgegov run`` and ``edgegov demo`` work out of
the box. Production uses a real broker (Mosquitto) with TLS and ACLs via ``--mqtt``.
"""

from __future__ import annotations

import logging


async def start_embedded_broker(port: int, host: str = "127.0.0.1"):
    """Start an amqtt broker on ``host:port`` in the running loop; ``await b.shutdown()``."""
    from amqtt.broker import Broker

    for name in ("amqtt", "transitions"):
        logging.getLogger(name).setLevel(logging.ERROR)
    config = {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
        "plugins": {
            "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
        },
    }
    broker = Broker(config)
    await broker.start()
    return broker


__all__ = ["start_embedded_broker"]
