"""Task-stopping helpers for the asyncio side (service, adapters, demos, tests).

On Python 3.11, ``asyncio.wait_for`` loses a cancellation that arrives in the same loop
iteration as the awaited result (fixed in 3.12; the MQTT and Modbus clients both await
through it). The cancel request is still counted on the task, so a loop that must stop
when cancelled checks ``stop_requested()`` instead of relying on ``CancelledError`` alone,
and whoever stops a task waits a bounded time for it.
"""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger("edgegov.aio")


def stop_requested() -> bool:
    """True once the current task has been asked to cancel (even if the error was lost)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def cancel_and_wait(task: asyncio.Task | None, timeout_s: float = 2.0) -> bool:
    """Cancel ``task`` and wait up to ``timeout_s`` for it to end; True if it ended.
    Never raises the task's own exception (it is logged if it was not a cancel)."""
    if task is None:
        return True
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=timeout_s)
    if not done:
        log.warning("task %s did not stop within %s s", task.get_name(), timeout_s)
        return False
    if not task.cancelled() and task.exception() is not None:
        log.debug("task %s ended with %r", task.get_name(), task.exception())
    return True


__all__ = ["cancel_and_wait", "stop_requested"]
