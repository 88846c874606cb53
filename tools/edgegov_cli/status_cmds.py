"""``edgegov status`` and ``edgegov watch``: a running device's state, from its topics.

``status`` reads the retained state document of one device (what the service last said
about itself, or its will: offline) and prints it in words and units. ``watch`` follows
the state and event topics of one device or of every device under a prefix and keeps a
live table (``--json``: one JSON object per line, for scripts).
"""

from __future__ import annotations

import asyncio
import calendar
import json
import sys
import time

import click

from .service_cmds import _answer_or_exit, _mqtt_options, _settings

EXIT_OFFLINE = 1  # status: the device's will (or its orderly stop) says offline


# --------------------------------------------------------------------------- reading


async def read_state(settings, topic: str, timeout_s: float) -> dict:
    """The retained state document on ``topic`` (TimeoutError when there is none)."""
    from edgegov.adapters.mqtt import make_client

    async with make_client(settings, f"edgegov-status-{time.time_ns() % 10**9}") as client:
        await client.subscribe(topic, qos=1)
        async with asyncio.timeout(timeout_s):
            async for message in client.messages:
                return json.loads(message.payload)
    raise TimeoutError


def _age(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h {minutes} min"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


def _uptime_s(doc: dict) -> int | None:
    """Now minus the service's start (wall clock), else the uptime it last published."""
    started = doc.get("started")
    if started and doc.get("status") == "online":
        try:
            t0 = calendar.timegm(time.strptime(started, "%Y-%m-%dT%H:%M:%SZ"))
            return max(0, int(time.time() - t0))
        except ValueError:
            pass
    return doc.get("uptime_s")


def status_lines(doc: dict) -> list[tuple[str, str]]:
    """(label, value) rows of ``edgegov status`` for a state document."""
    from edgegov import names

    rows = [("device", str(doc.get("device", "?")))]
    status = doc.get("status", "?")
    if status != "online":
        why = doc.get("reason")
        rows.append(("status", f"OFFLINE ({why})" if why else "OFFLINE"))
        if "state" not in doc:
            return rows  # the will carries no state: nothing more is known
    else:
        rows.append(("status", "online"))
    causes = doc.get("trip_causes") or []
    rows += [
        ("state", str(doc.get("state"))),
        ("mode", str(doc.get("mode"))),
        ("trip causes", ", ".join(causes) if causes else "none"),
        ("link", str(doc.get("link"))),
        ("e-stop output", "ASSERTED" if doc.get("estop") else "released"),
        ("outputs", names.outputs_text(doc.get("outputs") or {}, doc.get("units"))),
    ]
    verdicts = doc.get("verdicts")
    if verdicts:
        rows.append(("verdicts", " ".join(f"{k}={v}" for k, v in verdicts.items())
                     + f" ({doc.get('decisions', sum(verdicts.values()))} commands)"))
    rows.append(("envelope", str(doc.get("envelope"))))
    uptime = _uptime_s(doc)
    if uptime is not None:
        rows.append(("uptime", f"{_age(uptime)} (since {doc.get('started')}, boot "
                               f"{doc.get('boot')})"))
    lineage = doc.get("lineage")
    if lineage:
        rows.append(("lineage", f"{lineage.get('path')}: {lineage.get('fill_pct')} % of "
                                f"{lineage.get('sectors')} sectors, "
                                f"{lineage.get('frozen_sectors')} frozen, next seq "
                                f"{lineage.get('next_seq')}"))
        rows.append(("last checkpoint", f"seq {lineage.get('last_checkpoint_seq')} "
                                        f"({lineage.get('since_checkpoint')} records ago)"))
    return rows


# --------------------------------------------------------------------------- status


@click.command("status")
@click.option("--device", required=True, help="Device id (the envelope's device.id).")
@click.option("--prefix", default="edgegov", show_default=True, help="Topic prefix.")
@click.option("--timeout", default=3.0, show_default=True,
              help="Seconds to wait for the retained state.")
@click.option("--json", "as_json", is_flag=True, help="Print the state document as JSON.")
@_mqtt_options
def status_cmd(device, prefix, timeout, as_json, **mqtt):
    """Show one device's state, from its retained state topic.

    State, mode, trip causes, link stage, outputs in units, verdict counters, envelope
    hash, uptime, lineage fill and last checkpoint; online, or offline (its will, or an
    orderly stop).

    Exit codes: 0 online, 1 offline, 2 usage, 3 broker unreachable, 4 no state published
    for this device (never ran on this broker, or another --prefix)."""
    from edgegov.service.topics import Topics

    settings = _settings(**mqtt)
    topic = Topics(device, prefix).state
    none = (f"no state for device {device} on {mqtt['mqtt_url']} (topic {topic}): it never "
            "ran on this broker, or it uses another --prefix")
    with _answer_or_exit(mqtt["mqtt_url"], device, timeout, none):
        doc = asyncio.run(read_state(settings, topic, timeout))
    if as_json:
        click.echo(json.dumps(doc))
    else:
        width = max(len(label) for label, _ in status_lines(doc))
        for label, value in status_lines(doc):
            click.echo(f"{label:>{width}}  {value}")
    sys.exit(0 if doc.get("status") == "online" else EXIT_OFFLINE)


# --------------------------------------------------------------------------- watch


class Board:
    """The latest state and events of each device seen, for the live table."""

    def __init__(self) -> None:
        self.devices: dict[str, dict] = {}

    def take(self, topic: str, doc: dict) -> str | None:
        """File one message; returns its device id (None for topics not watched)."""
        from edgegov import names

        parts = topic.split("/")
        if len(parts) < 3 or parts[-1] not in ("state", "event"):
            return None
        device, kind = parts[-2], parts[-1]
        row = self.devices.setdefault(device, {"state": {}, "events": 0, "last": "",
                                               "trips": 0, "seen": time.monotonic()})
        row["seen"] = time.monotonic()
        if kind == "state":
            row["state"] = doc
        else:
            row["events"] += 1
            row["trips"] += doc.get("event") == "trip"
            row["last"] = names.event_text(doc)
        return device

    def table(self, title: str):
        from edgegov import names
        from rich.table import Table

        table = Table(title=title)
        for col in ("device", "status", "state", "mode", "link", "trip causes", "outputs",
                    "commands", "trips", "last event"):
            table.add_column(col)
        for device, row in sorted(self.devices.items()):
            doc = row["state"]
            status = doc.get("status", "?")
            table.add_row(
                device, status if status == "online" else f"[red]{status}[/red]",
                str(doc.get("state", "-")), str(doc.get("mode", "-")),
                str(doc.get("link", "-")), ", ".join(doc.get("trip_causes") or []) or "-",
                names.outputs_text(doc.get("outputs") or {}, doc.get("units")),
                str(doc.get("decisions", "-")), str(row["trips"]), row["last"])
        return table


@click.command("watch")
@click.option("--device", help="Watch this device only.")
@click.option("--prefix", default="edgegov", show_default=True,
              help="Topic prefix; without --device, every device under it is watched.")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per line ({\"device\", \"kind\", \"doc\"}) instead of "
                   "the live table.")
@click.option("--seconds", type=float, default=None,
              help="Stop after this many seconds (default: until Ctrl-C).")
@_mqtt_options
def watch_cmd(device, prefix, as_json, seconds, **mqtt):
    """Follow one device, or every device under a prefix, in a live table.

    The table updates from the devices' state and event topics (--json: one line per
    message). Exit codes: 0 stopped (Ctrl-C or --seconds), 2 usage, 3 broker
    unreachable."""
    settings = _settings(**mqtt)
    who = device or "+"
    topics = [f"{prefix}/{who}/state", f"{prefix}/{who}/event"]
    with _answer_or_exit(mqtt["mqtt_url"], device or prefix, seconds or 0):
        try:
            asyncio.run(_watch(settings, topics, as_json, seconds,
                               f"edgegov watch {prefix}/{who} on {mqtt['mqtt_url']}"))
        except KeyboardInterrupt:
            pass


async def _watch(settings, topics: list[str], as_json: bool, seconds: float | None,
                 title: str) -> None:
    from edgegov.adapters.mqtt import make_client

    board = Board()
    async with make_client(settings, f"edgegov-watch-{time.time_ns() % 10**9}") as client:
        await client.subscribe([(t, 0) for t in topics])
        if as_json:
            await _follow(client, board, seconds, _print_json)
            return
        from rich.live import Live

        with Live(board.table(title), refresh_per_second=4) as live:
            await _follow(client, board, seconds,
                          lambda device, kind, doc: live.update(board.table(title)))


def _print_json(device: str, kind: str, doc: dict) -> None:
    click.echo(json.dumps({"device": device, "kind": kind, "doc": doc}))


async def _follow(client, board: Board, seconds: float | None, shown) -> None:
    try:
        async with asyncio.timeout(seconds):
            async for message in client.messages:
                topic = str(message.topic)
                try:
                    doc = json.loads(message.payload)
                except ValueError:
                    continue
                device = board.take(topic, doc) if isinstance(doc, dict) else None
                if device is not None:
                    shown(device, topic.rsplit("/", 1)[-1], doc)
    except TimeoutError:
        pass


def register(main) -> None:
    """Add ``status`` and ``watch`` to the ``edgegov`` group (called from ``main``)."""
    main.add_command(status_cmd)
    main.add_command(watch_cmd)


__all__ = ["register", "status_lines", "read_state", "Board"]
