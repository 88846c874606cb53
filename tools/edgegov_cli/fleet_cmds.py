"""``edgegov fleet collect|sim|pull|ls|show|incidents`` and ``edgegov bench fleet``."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import click

from .service_cmds import _mqtt_options, _settings

EXIT_ERROR = 2


@click.group()
def fleet() -> None:
    """Many devices through one broker: collect and archive their incidents, list them."""


_archive_opt = click.option(
    "--archive", required=True,
    help="SQLite file (created by collect) or postgresql://user@host/db URL.")
_store_opt = click.option(
    "--store", type=click.Path(file_okay=False),
    help="Directory of dumps and reports (default: ARCHIVE.store beside a SQLite file; "
         "required with PostgreSQL).")


def _fail(message: str) -> None:
    click.echo(message, err=True)
    sys.exit(EXIT_ERROR)


def _open(archive: str, store: str | None):
    """An existing archive (queries never create one)."""
    from edgegov.fleet.archive import Archive, ArchiveError, is_postgres_url

    if not is_postgres_url(archive) and not Path(archive).is_file():
        _fail(f"{archive}: no such archive (edgegov fleet collect creates it)")
    try:
        a = Archive.open(archive, store or ("." if is_postgres_url(archive) else None),
                         migrate=False)
    except ArchiveError as err:
        _fail(str(err))
    if a.schema_version() == 0:
        _fail(f"{archive}: not an edgegov fleet archive (no schema)")
    return a


async def _until_signal(coro_fn, seconds: float | None):
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if seconds:
        loop.call_later(seconds, stop.set)
    return await coro_fn(stop)


# --------------------------------------------------------------------------- collect


@fleet.command("collect")
@click.option("--prefix", default="edgegov", show_default=True, help="Topic prefix.")
@click.option("--keys", "keys_dir", required=True, type=click.Path(),
              help="Key store: a directory of DEVICE.key files (each chmod 600).")
@_archive_opt
@_store_opt
@click.option("--group", default="edgegov-collectors", show_default=True,
              help="Shared-subscription group: collectors in one group split the fleet.")
@click.option("--workers", default=2, show_default=True, help="Jobs worked on at once.")
@click.option("--lease-s", default=30.0, show_default=True,
              help="A claimed job returns to the queue this long after its collector died.")
@click.option("--pull-timeout-s", default=30.0, show_default=True,
              help="Seconds to wait for one device's lineage pull before the job is retried.")
@click.option("--name", help="This collector's name in the archive (default HOST-PID).")
@click.option("--no-decisions", is_flag=True, help="Do not count decisions per device.")
@click.option("--no-report", is_flag=True, help="Archive without the HTML report.")
@click.option("--progress-s", default=5.0, show_default=True, help="Seconds between progress "
              "lines.")
@click.option("--seconds", type=float, help="Stop after this long (default: until SIGTERM).")
@_mqtt_options
def collect_cmd(prefix, keys_dir, archive, store, group, workers, lease_s, pull_timeout_s,
                name, no_decisions, no_report, progress_s, seconds, **mqtt):
    """Archive every trip of every device under PREFIX: pull, verify with the device's key,
    replay, report; exactly once across the collectors of GROUP."""
    from edgegov.fleet.archive import ArchiveError
    from edgegov.fleet.collector import Collector, CollectorOptions
    from edgegov.service.topics import valid_device_id

    keys = Path(keys_dir)
    if not keys.is_dir():
        _fail(f"{keys_dir}: key store is not a directory (one DEVICE.key file per device)")
    if not valid_device_id(group) or group.startswith("$"):
        raise click.UsageError(f"--group {group!r}: no / + # allowed")
    if workers < 1 or lease_s <= 0:
        raise click.UsageError("--workers must be >= 1 and --lease-s > 0")
    settings = _settings(**mqtt)
    if settings.protocol != 5:
        raise click.UsageError("shared subscriptions need MQTT 5: leave out --protocol 4")
    opts = CollectorOptions(settings=settings, archive=archive, keys_dir=keys, prefix=prefix,
                            group=group, store=store, workers=workers,
                            lease_ms=int(lease_s * 1000), pull_timeout_s=pull_timeout_s,
                            decisions=not no_decisions, report=not no_report,
                            progress_s=progress_s)
    if name:
        opts.name = name
    collector = Collector(opts, say=lambda line: click.echo(line, err=True))
    try:
        sys.exit(asyncio.run(_until_signal(collector.run, seconds)))
    except ArchiveError as err:
        _fail(str(err))


# --------------------------------------------------------------------------- sim


@fleet.command("sim")
@click.option("--devices", default=10, show_default=True, help="Simulated devices.")
@click.option("--hz", default=50, show_default=True, help="Proposals per second per device "
              "(also the control rate).")
@click.option("--workdir", required=True, type=click.Path(file_okay=False),
              help="Envelopes, lineage files and (default) the key store go here.")
@click.option("--keys", "keys_dir", type=click.Path(file_okay=False),
              help="Key store to write DEVICE.key files into (default WORKDIR/keys).")
@click.option("--prefix", default="edgegov", show_default=True, help="Topic prefix.")
@click.option("--trip-every-s", default=0.0, show_default=True,
              help="Each device trips this often (0: never).")
@click.option("--first-trip-s", default=2.0, show_default=True,
              help="Seconds from start to the first scheduled trip.")
@click.option("--trips", default=0, show_default=True, help="Trips per device (0: no limit).")
@click.option("--burst", is_flag=True, help="All devices trip at the same moment.")
@click.option("--recover-s", default=1.0, show_default=True,
              help="Reset and re-arm this long after each trip.")
@click.option("--pull-delay-ms", default=0, show_default=True,
              help="Answer lineage pulls this much later (a slow link).")
@click.option("--start-index", default=0, show_default=True, help="First device number.")
@click.option("--seconds", type=float, help="Stop after this long (default: until SIGTERM).")
@click.option("--summary", type=click.Path(dir_okay=False),
              help="Write the trips caused (device, wall ms) here as JSON at the end.")
@_mqtt_options
def sim_cmd(devices, hz, workdir, keys_dir, prefix, trip_every_s, first_trip_s, trips, burst,
            recover_s, pull_delay_ms, start_index, seconds, summary, **mqtt):
    """Simulate DEVICES governed devices on one asyncio loop (the real governor and service
    loop each), talking MQTT to the broker and tripping on a schedule."""
    from edgegov.fleet.sim import FleetSim, SimOptions

    if devices < 1 or hz < 1:
        raise click.UsageError("--devices and --hz must be >= 1")
    settings = _settings(**mqtt)
    opts = SimOptions(url=mqtt["mqtt_url"], workdir=Path(workdir), devices=devices, hz=hz,
                      prefix=prefix, keys_dir=Path(keys_dir) if keys_dir else None,
                      trip_every_s=trip_every_s, first_trip_s=first_trip_s, trips=trips,
                      burst=burst, recover_s=recover_s, pull_delay_ms=pull_delay_ms,
                      start_index=start_index)
    del settings  # validated; the services build their own from the URL
    sim = FleetSim(opts)

    async def go(stop):
        started = asyncio.Event()
        task = asyncio.create_task(sim.run(stop, started))
        await asyncio.wait({task, asyncio.create_task(started.wait())},
                           return_when=asyncio.FIRST_COMPLETED)
        if started.is_set():
            click.echo(f"sim: {devices} devices online and armed, {hz} Hz", err=True)
        return await task

    stats = asyncio.run(_until_signal(go, seconds))
    click.echo(f"sim: stopped; {stats.commands} proposals sent, {len(stats.trips)} trips caused",
               err=True)
    if summary:
        Path(summary).write_text(json.dumps(stats.to_json(), indent=1) + "\n")


# --------------------------------------------------------------------------- pull on request


@fleet.command("pull")
@click.argument("device")
@_archive_opt
@_store_opt
def pull_request_cmd(device, archive, store):
    """Queue a pull of DEVICE for the collectors (its dump is archived with any incident
    it holds that the archive lacks)."""
    from edgegov.fleet.collector import wall_ms
    from edgegov.service.topics import valid_device_id

    if not valid_device_id(device):
        raise click.UsageError(f"{device!r}: not a device id")
    a = _open(archive, store)
    now = wall_ms()
    a.enqueue(f"request:{device}:{now}", device, "request", now)
    click.echo(f"pull of {device} queued (job request:{device}:{now})")


# --------------------------------------------------------------------------- ls / show / incidents


def _when(ms) -> str:
    from edgegov.host.walltime import format_wall

    return format_wall(ms) if ms else "-"


def _device_line(d: dict) -> str:
    trip = (f"{_when(d['last_trip_wall_ms'])} {d['last_trip_cause']}"
            if d["last_trip_wall_ms"] else "-")
    return (f"{d['device']:<14} {d['status']:<8} {d['state'] or '-':<9} {d['link'] or '-':<5} "
            f"{(d['envelope'] or '-')[:12]:<12} {d['firmware'] or '-':<8} "
            f"{d['boot'] if d['boot'] is not None else '-':>4} {d['decisions']:>9} {trip}")


@fleet.command("ls")
@_archive_opt
@_store_opt
@click.option("--json", "as_json", is_flag=True, help="One JSON document for scripts.")
def ls_cmd(archive, store, as_json):
    """The devices seen: online, state, envelope hash, firmware, boot, last trip."""
    devices = _open(archive, store).devices()
    if as_json:
        click.echo(json.dumps({"devices": devices}, indent=1))
        return
    click.echo(f"{'device':<14} {'status':<8} {'state':<9} {'link':<5} {'envelope':<12} "
               f"{'firmware':<8} {'boot':>4} {'decisions':>9} last trip")
    for d in devices:
        click.echo(_device_line(d))
    online = sum(1 for d in devices if d["status"] == "online")
    click.echo(f"{len(devices)} devices, {online} online")


@fleet.command("show")
@click.argument("device")
@_archive_opt
@_store_opt
@click.option("--json", "as_json", is_flag=True, help="One JSON document for scripts.")
def show_cmd(device, archive, store, as_json):
    """One device: its last state, counters, incidents and pending work."""
    a = _open(archive, store)
    d = a.device(device)
    if d is None:
        _fail(f"{device}: not seen by any collector of this archive")
    incidents, jobs = a.incidents(device), a.jobs(device)
    if as_json:
        click.echo(json.dumps({"device": d, "incidents": incidents, "jobs": jobs}, indent=1))
        return
    click.echo(f"{device}: {d['status']}, {d['state'] or '?'}, link {d['link'] or '?'}, "
               f"mode {d['mode'] or '?'}, e-stop {'asserted' if d['estop'] else 'released'}, "
               f"boot {d['boot']}, last seen {_when(d['seen_wall_ms'])}")
    click.echo(f"  envelope {d['envelope'] or '?'}; firmware {d['firmware'] or '?'}")
    click.echo(f"  trip causes now: {', '.join(d['trip_causes']) or 'none'}")
    click.echo(f"  decisions {d['decisions']} (CLAMP {d['clamps']}, REJECT {d['rejects']})")
    for inc in incidents:
        click.echo("  " + _incident_line(inc))
    open_jobs = [j for j in jobs if j["state"] in ("pending", "running", "failed")]
    for j in open_jobs:
        click.echo(f"  job {j['id']}: {j['state']} (attempt {j['attempts']})"
                   + (f": {j['error']}" if j["error"] else ""))


def _incident_line(inc: dict) -> str:
    code = f" ({inc['cause_code']})" if inc["cause_code"] is not None else ""
    verify = "verify ok" if inc["verify_ok"] else "verify FAILED"
    if inc["verify_ok"] and not inc["macs_checked"]:
        verify += " (MACs NOT checked)"
    if inc.get("attested") is None:
        verify += ", head not attested"
    replay = "replay identical" if inc["replay_ok"] else "replay NOT identical"
    report = inc["report_path"] or f"no report ({inc['report_error'] or 'not built'})"
    return (f"{_when(inc['trip_wall_ms'])} {inc['device']} boot {inc['boot']} "
            f"t={inc['trip_t_ms']} ms: {inc['cause']}{code}"
            + (f", {inc['retrips']} more trips" if inc["retrips"] else "")
            + f"; {verify}; {replay}; {report}")


@fleet.command("incidents")
@_archive_opt
@_store_opt
@click.option("--device", help="Only this device.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document for scripts.")
def incidents_cmd(archive, store, device, as_json):
    """The archived incidents with their verify and replay results and report paths."""
    a = _open(archive, store)
    incidents = a.incidents(device)
    if as_json:
        click.echo(json.dumps({"incidents": incidents, "jobs": a.job_counts()}, indent=1))
        return
    for inc in incidents:
        click.echo(_incident_line(inc))
    jobs = a.job_counts()
    click.echo(f"{len(incidents)} incidents; jobs pending {jobs['pending']}, running "
               f"{jobs['running']}, failed {jobs['failed']}")


# --------------------------------------------------------------------------- bench fleet


@click.command("fleet")
@click.option("--devices", default=100, show_default=True, help="Simulated devices.")
@click.option("--hz", default=50, show_default=True,
              help="Proposals per second per device.")
@click.option("--seconds", default=20.0, show_default=True, help="Length of each measured run.")
@click.option("--trip-every-s", default=30.0, show_default=True,
              help="Each device trips this often during the latency run.")
@click.option("--sim-processes", default=2, show_default=True,
              help="Simulator processes the devices are split across.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write figures here.")
def bench_fleet_cmd(devices, hz, seconds, trip_every_s, sim_processes, json_path):
    """Collector CPU per 1000 msg/s and trip → archived incident latency (p50/p99) with
    DEVICES simulated devices on one Mosquitto, against bare mosquitto_sub; two collectors
    sharing the load."""
    from .bench_fleet import run

    figures = run(devices, hz, seconds, trip_every_s, sim_processes)
    click.echo(json.dumps(figures, indent=2))
    if json_path:
        Path(json_path).write_text(json.dumps(figures, indent=2) + "\n")


def register(main, bench_group) -> None:
    """Add ``fleet`` and ``bench fleet`` to the ``edgegov`` group (called from ``main``)."""
    main.add_command(fleet)
    bench_group.add_command(bench_fleet_cmd)
