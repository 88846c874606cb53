"""The service's log: stdlib ``logging`` to stderr, one line per record, off the hot path.

``setup_logging(fmt, verbose, device)`` installs, on the ``edgegov`` logger:

- a ``QueueHandler``: the loop only enqueues a record; a ``QueueListener`` thread formats
  and writes it (a slow terminal or journald never delays a decision);
- ``text`` lines (``2026-01-01T12:00:00.123Z INFO cell-7 trip: ...``) or ``json`` lines
  (``{"ts", "level", "logger", "device", "msg", ...fields}``) for log shippers; journald
  adds its own timestamps but keeps ours, which carry milliseconds;
- a repeat limit: the same message template from the same logger (and the same
  ``repeat_key``, when a record has one) is written at most once per ``REPEAT_WINDOW_S``;
  the next one after the window says how many were held back.
  Records logged with ``extra={"always": True}`` (trips, and the per-decision lines of
  ``-v``) are never held back.

Exceptions are written as one line (``type: message``) unless ``verbose``, where the
traceback follows, so the journal stays readable and nothing is lost when debugging.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import queue
import sys
import time

REPEAT_WINDOW_S = 60.0
LOGGER = "edgegov"


class DeviceFilter(logging.Filter):
    """Stamps every record with the device id (one device per service process)."""

    def __init__(self, device: str) -> None:
        super().__init__()
        self.device = device

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "device", None):
            record.device = self.device
        return True


class RepeatFilter(logging.Filter):
    """Lets the first of a kind through, holds back repeats for ``window_s``, then lets
    the next one through with the number held back (``record.repeats``)."""

    def __init__(self, window_s: float = REPEAT_WINDOW_S, clock=time.monotonic) -> None:
        super().__init__()
        self.window_s = window_s
        self.clock = clock
        self.seen: dict[tuple, list] = {}  # key -> [window start, held back]

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "always", False):
            return True
        key = (record.name, record.levelno, str(record.msg), getattr(record, "repeat_key", None))
        now = self.clock()
        entry = self.seen.get(key)
        if entry is None or now - entry[0] >= self.window_s:
            record.repeats = entry[1] if entry is not None else 0
            self.seen[key] = [now, 0]
            if len(self.seen) > 1024:  # bounded: forget the oldest kinds
                self.seen.pop(next(iter(self.seen)))
            return True
        entry[1] += 1
        return False


def _utc(ts: float) -> str:
    ms = int(ts * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{ms:03d}Z"


def _exc_line(record: logging.LogRecord) -> str:
    if not record.exc_info or record.exc_info[1] is None:
        return ""
    err = record.exc_info[1]
    return f"{type(err).__name__}: {err}"


def _held(record: logging.LogRecord) -> str:
    n = getattr(record, "repeats", 0)
    return f" ({n} more like it held back in the last {REPEAT_WINDOW_S:g} s)" if n else ""


class TextFormatter(logging.Formatter):
    """``TIME LEVEL DEVICE message key=value ...``."""

    def __init__(self, verbose: bool = False) -> None:
        super().__init__()
        self.verbose = verbose

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None) or {}
        extra = "".join(f" {k}={_text(v)}" for k, v in fields.items())
        line = (f"{_utc(record.created)} {record.levelname} {getattr(record, 'device', '-')} "
                f"{record.getMessage()}{extra}{_held(record)}")
        exc = _exc_line(record)
        if exc:
            line += f": {exc}"
            if self.verbose:
                line += "\n" + self.formatException(record.exc_info)
        return line


def _text(value) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value) or "-"
    if isinstance(value, dict):
        return ",".join(f"{k}:{v}" for k, v in value.items()) or "-"
    text = str(value)
    return f'"{text}"' if " " in text else text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts level logger device msg`` and the record's fields."""

    def __init__(self, verbose: bool = False) -> None:
        super().__init__()
        self.verbose = verbose

    def format(self, record: logging.LogRecord) -> str:
        doc = {"ts": _utc(record.created), "level": record.levelname, "logger": record.name,
               "device": getattr(record, "device", None), "msg": record.getMessage()}
        doc.update(getattr(record, "fields", None) or {})
        if getattr(record, "repeats", 0):
            doc["held_back"] = record.repeats
        exc = _exc_line(record)
        if exc:
            doc["error"] = exc
            if self.verbose:
                doc["traceback"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str, ensure_ascii=False)


class _Logging:
    """What ``setup_logging`` installed, so it can be taken down (tests, the demo)."""

    def __init__(self, listener, handler, logger) -> None:
        self.listener = listener
        self.handler = handler
        self.logger = logger

    def close(self) -> None:
        self.listener.stop()
        self.logger.removeHandler(self.handler)


def setup_logging(fmt: str = "text", verbose: bool = False, device: str = "-",
                  stream=None) -> _Logging:
    """Log ``edgegov.*`` to ``stream`` (stderr) at INFO (DEBUG with ``verbose``)."""
    out = logging.StreamHandler(stream or sys.stderr)
    out.setFormatter(JsonFormatter(verbose) if fmt == "json" else TextFormatter(verbose))
    q: queue.SimpleQueue = queue.SimpleQueue()
    handler = logging.handlers.QueueHandler(q)
    handler.addFilter(DeviceFilter(device))
    handler.addFilter(RepeatFilter())
    handler.prepare = lambda record: record  # keep fields/exc_info; formatted in the thread
    logger = logging.getLogger(LOGGER)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False
    listener = logging.handlers.QueueListener(q, out)
    listener.start()
    return _Logging(listener, handler, logger)


def set_device(device: str) -> None:
    """Name the device on every record from now on (known once the envelope is loaded)."""
    for handler in logging.getLogger(LOGGER).handlers:
        for f in handler.filters:
            if isinstance(f, DeviceFilter):
                f.device = device


__all__ = ["setup_logging", "set_device", "RepeatFilter", "DeviceFilter", "TextFormatter",
           "JsonFormatter", "REPEAT_WINDOW_S"]
