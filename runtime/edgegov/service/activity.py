"""What a running service says about itself: its log lines and the status fields of its
retained state document.

``Activity`` watches what the service publishes (``tap(post)`` wraps the link's ``post``):
events and state changes become one log line each, in words (``edgegov.names``), with the
device id; with ``-v`` every decision is logged too. It counts decisions per verdict (from
the governor's decision object, never by parsing), notices the broker going down and
coming back, and adds to the state document what ``edgegov status`` shows beyond the
governor's own state: uptime, verdict counters, lineage fill and last checkpoint.

Nothing here decides anything; at the default level a decision costs one list increment.
"""

from __future__ import annotations

import json
import logging
import time

from .. import names
from .log import set_device

log = logging.getLogger("edgegov.service")
REFRESH_MS = 5_000  # the retained state is re-published this often (uptime, counters, fill)

# Events logged at WARNING (something a person should look at), the rest at INFO.
_WARN = {"trip", "reset_refused", "arm_refused", "mode_refused", "pause_refused",
         "resume_refused", "op_refused", "blocking_causes", "counter_behind", "link_stale",
         "link_lost",
         "fault", "auth_refused", "approval_denied", "approval_expired", "watchdog"}
_QUIET = {"input_stale", "estop_out", "permit_expired"}  # INFO only with -v (DEBUG)


class Activity:
    """Log lines and status fields for one ``Runner``."""

    def __init__(self, runner) -> None:
        self.runner = runner
        self.verdicts = [0] * len(names.VERDICTS)
        self.started_wall = time.time()
        self.started_ms = runner.clock.now_ms()
        self._state_seen: dict = {}
        self._was_connected = False
        self._down_since = None
        self._next_refresh_ms = REFRESH_MS
        self.debug = log.isEnabledFor(logging.DEBUG)
        set_device(runner.topics.device_id)
        env = runner.env
        self.units = dict(zip(env.ch_names, env.ch_units, strict=True))

    # ------------------------------------------------------------ watching what goes out

    def tap(self, post):
        """``post`` with the service's own observations after each publication."""
        t = self.runner.topics
        event_topic, state_topic, decision_topic = t.event, t.state, t.decision
        verdicts = self.verdicts

        def tapped(topic, payload, qos=0, retain=False, properties=None):
            post(topic, payload, qos, retain, properties)
            if topic == decision_topic:
                verdicts[self.runner.service.gov.d.verdict] += 1
                if self.debug:
                    self._decision(payload)
            elif topic == event_topic:
                self._event(payload)
            elif topic == state_topic:
                self._state(payload)

        return tapped

    def _event(self, payload: bytes) -> None:
        try:
            doc = json.loads(payload)
        except ValueError:
            return
        ev = doc.get("event", "?")
        text = names.event_text(doc)
        # A repeat is the same event with the same causes/reason (durations may differ).
        extra = {"fields": doc, "repeat_key": (ev, str(doc.get("causes")), doc.get("reason"))}
        if ev == "trip":  # always, whatever the repeat limit
            log.warning("%s", text, extra={**extra, "always": True})
        elif ev == "rejected" or ev in _QUIET:
            log.debug("%s", text, extra=extra)
        else:
            level = logging.WARNING if ev in _WARN else logging.INFO
            if ev == "fault" and doc.get("fault") == "lineage":
                level = logging.ERROR
                text = "lineage cannot be written: governor tripped (fault lineage)"
            log.log(level, "%s", text, extra=extra)

    def _state(self, payload: bytes) -> None:
        try:
            doc = json.loads(payload)
        except ValueError:
            return
        watched = {k: doc.get(k) for k in ("status", "state", "mode", "link", "estop",
                                           "trip_causes")}
        before, self._state_seen = self._state_seen, watched
        changed = {k: v for k, v in watched.items() if before.get(k) != v}
        if not changed or not before and watched.get("status") != "online":
            return
        parts = [f"{k} {before.get(k)} → {v}" if before else f"{k} {v}"
                 for k, v in changed.items() if k != "trip_causes"]
        if "trip_causes" in changed:
            parts.append("trip causes " + (", ".join(watched["trip_causes"]) or "none"))
        text = "; ".join(parts)
        log.info("state: %s", text, extra={"repeat_key": text, "fields": {
            "state": watched["state"], "mode": watched["mode"], "link": watched["link"],
            "estop": watched["estop"], "trip_causes": watched["trip_causes"]}})

    def _decision(self, payload: bytes) -> None:
        doc = json.loads(payload)
        log.debug("decision #%s: %s (%s, rule %s)", doc.get("seq"), doc.get("verdict"),
                  doc.get("reason"), doc.get("rule"), extra={"always": True, "fields": {
                      "margin": doc.get("margin"), "proposed": doc.get("proposed"),
                      "output": doc.get("output")}})

    # ------------------------------------------------------------ the broker

    def connected(self) -> None:
        """Called once the service listens on a fresh connection."""
        link = self.runner.link
        url = self.runner.settings
        where = f"{url.host}:{url.port}"
        if link.connections <= 1:
            log.info("broker up: connected to %s, listening", where,
                     extra={"fields": {"broker": where}})
        else:
            down_s = (time.monotonic() - self._down_since) if self._down_since else 0.0
            log.info("broker up: reconnected to %s after %.1f s down (%d failed attempts)",
                     where, down_s, link.failures, extra={"always": True, "fields": {
                         "broker": where, "down_s": round(down_s, 1)}})
        self._was_connected = True
        self._down_since = None

    def tick(self, now_ms: int) -> None:
        """Once per period: notice the broker going away; refresh the retained state."""
        link = self.runner.link
        if self._was_connected and not link.connected:
            self._was_connected = False
            self._down_since = time.monotonic()
            log.warning("broker down: governing locally, reconnecting (outputs and link "
                        "stages go on)")
        if now_ms >= self._next_refresh_ms:
            self._next_refresh_ms = now_ms + REFRESH_MS
            self.runner.service.publish_state(force=True)

    # ------------------------------------------------------------ the state document

    def state_extra(self) -> dict:
        """Status fields of the retained state: uptime, counters, lineage."""
        svc = self.runner.service
        uptime_ms = self.runner.clock.now_ms() - self.started_ms
        doc = {"uptime_s": uptime_ms // 1000, "started": _utc_s(self.started_wall),
               "verdicts": {names.verdict(i): n for i, n in enumerate(self.verdicts)},
               "decisions": svc.decisions, "units": self.units}
        lineage = lineage_status(svc.lineage, self.runner.lineage_path)
        if lineage:
            doc["lineage"] = lineage
        return doc

    def started(self) -> None:
        r = self.runner
        log.info("started: device %s, envelope %s, lineage %s, broker %s, period %d ms",
                 r.topics.device_id, r.compiled.hash[:16], r.lineage_path,
                 r.cfg.mqtt_url or f"embedded on 127.0.0.1:{r.cfg.broker_port}",
                 r.cfg.period_ms, extra={"fields": {"envelope": r.compiled.hash,
                                                    "boot": r.service.boot_count}})

    def stopped(self) -> None:
        log.info("stopped in order: final checkpoint written, state offline",
                 extra={"fields": {"decisions": self.runner.service.decisions}})


def lineage_status(lineage, path) -> dict:
    """Fill of the lineage ring (sectors holding records, of all), frozen sectors, records
    appended this run and the last checkpoint's sequence number."""
    if lineage is None:
        return {}
    ring = lineage.ring
    flags = getattr(ring, "_flags", None)
    blocks = getattr(ring, "_bcount", 0) or 1
    used = sum(1 for f in flags if f & 1) if flags is not None else 0
    frozen = sum(1 for f in flags if f & 2) if flags is not None else 0
    return {"path": str(path), "fill_pct": used * 100 // blocks, "sectors": blocks,
            "frozen_sectors": frozen, "records": lineage.appended,
            "next_seq": getattr(ring, "next_seq", None),
            "last_checkpoint_seq": lineage.last_checkpoint_seq,
            "since_checkpoint": getattr(lineage, "_since", None)}


def _utc_s(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


__all__ = ["Activity", "lineage_status", "REFRESH_MS"]
