"""Work done in a forked process while this one goes on: a report uses two cores.

``start(fn)`` forks where that is safe (a ``fork`` start method, no other thread running:
a fleet collector's pool, say; not inside a daemonic process) and runs ``fn()`` in the
child; ``Job.result()`` waits for its (picklable) result. Where it cannot fork, or the
child raised or died, the caller does the work itself: the result is the same either way.
"""

from __future__ import annotations

import gc


class Job:
    """``fn()`` running in a forked process."""

    def __init__(self, proc, pipe):
        self.proc = proc
        self.pipe = pipe
        self._done = False
        self._result = None

    def result(self):
        """``fn()``'s result, or ``None`` when the child raised or died."""
        if not self._done:
            self._done = True
            try:
                got = self.pipe.recv()
            except (EOFError, OSError):
                got = None
            self.close()
            self._result = got[1] if got is not None and got[0] == "ok" else None
        return self._result

    def close(self) -> None:
        self.pipe.close()
        self.proc.join()

    def kill(self) -> None:
        """End a job whose result will not be used."""
        self._done = True
        self.pipe.close()
        self.proc.kill()
        self.proc.join()


def start(fn) -> Job | None:
    """``fn()`` in a forked process, or ``None`` where this process should not fork."""
    import multiprocessing
    import threading

    try:
        ctx = multiprocessing.get_context("fork")
    except ValueError:
        return None
    if threading.active_count() > 1 or multiprocessing.current_process().daemon:
        return None
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(send, fn), daemon=True)
    try:
        proc.start()
    except OSError:
        receive.close()
        send.close()
        return None
    send.close()
    return Job(proc, receive)


def _child(send, fn) -> None:
    # A short-lived child that allocates few cycles: the cyclic collector would only walk
    # the parent's objects again, copying every page it touches (copy on write).
    gc.disable()
    try:
        try:
            got = ("ok", fn())
        except Exception:  # noqa: BLE001 - the parent does it itself then
            got = ("failed", None)
        send.send(got)
    except BaseException:  # noqa: BLE001 - (a result that does not pickle, a closed pipe)
        pass
    finally:
        send.close()


__all__ = ["Job", "start"]
