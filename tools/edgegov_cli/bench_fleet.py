"""``edgegov bench fleet``: the collector under a simulated fleet on one Mosquitto.

One broker, one simulator process (DEVICES real governor services at HZ, tripping every
TRIP_EVERY_S each, staggered), then three runs of SECONDS each on that same load:

1. the floor: a bare ``mosquitto_sub`` with the collector's subscriptions (a shared group
   of its own for events and decisions, plain for state) writing every message to a file;
2. one collector (archive in SQLite, reports on): CPU, messages, and the time from a trip
   event to its archived, verified incident; a second ``mosquitto_sub`` on the events
   alone timestamps each trip event's arrival (``%U``): the earliest anyone subscribed
   could know of the trip, so the time measured is what the collector adds;
3. two collectors in one shared-subscription group: each one's share of the messages and
   of the incidents, and the latency again.

CPU is read from ``/proc/PID/stat`` when each progress line arrives (the collector prints
one a second with its cumulative message counts), so messages and CPU cover the same span.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from edgegov.fleet.archive import Archive
from edgegov.host.net import free_port, wait_port

CLI = [sys.executable, "-m", "edgegov_cli.main"]
ARCHIVED = re.compile(r"pull (\d+) ms, total (\d+) ms")
PROGRESS = re.compile(r"\(state (\d+), event (\d+), decision (\d+)\).*archive CPU ([\d.]+) s")


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, int(p / 100 * len(s)))], 1)


class _Watched:
    """A child process whose stderr lines are read as they come; progress lines are paired
    with the process's CPU seconds at that moment."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        self.proc = subprocess.Popen(args, cwd=cwd, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.lines: list[str] = []
        # (monotonic s, cpu s, messages, cpu s spent archiving)
        self.samples: list[tuple[float, float, int, float]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            m = PROGRESS.search(line)
            if m:
                try:
                    cpu = _cpu_s(self.proc.pid)
                except OSError:
                    continue
                counts = sum(int(g) for g in m.groups()[:3])
                self.samples.append((time.monotonic(), cpu, counts, float(m.group(4))))
            self.lines.append(line.rstrip("\n"))

    def wait_line(self, needle: str, timeout_s: float) -> None:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if any(needle in ln for ln in list(self.lines)):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"no {needle!r} from {self.proc.args[2:5]}: "
                           + "\n".join(self.lines[-10:]))

    def window(self, t0: float, t1: float) -> dict:
        """Messages per second and CPU % between the first and last sample in [t0, t1]."""
        inside = [s for s in self.samples if t0 <= s[0] <= t1]
        if len(inside) < 2:
            return {"msg_per_s": None, "cpu_pct": None, "messages": 0}
        (ta, ca, na, aa), (tb, cb, nb, ab) = inside[0], inside[-1]
        span = tb - ta
        return {"msg_per_s": round((nb - na) / span, 1),
                "cpu_pct": round(100 * (cb - ca) / span, 1),
                "archive_cpu_pct": round(100 * (ab - aa) / span, 1),
                "messages_cpu_pct": round(100 * ((cb - ca) - (ab - aa)) / span, 1),
                "messages": nb - na}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _per_1000(w: dict, key: str = "cpu_pct") -> float | None:
    if not w.get("msg_per_s") or w.get(key) is None:
        return None
    return round(w[key] / (w["msg_per_s"] / 1000), 2)


def _ratio(mine: float | None, floor: dict) -> float | None:
    base = floor.get("cpu_pct_per_1000_msg_s")
    return round(mine / base, 1) if mine and base else None


def _floor(work: Path, port: int, seconds: float) -> dict:
    """A bare mosquitto_sub with the collector's subscriptions, writing to a file."""
    out = work / "floor.txt"
    with open(out, "w") as f:
        proc = subprocess.Popen(
            ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-V", "mqttv5",
             "-q", "1", "-t", "$share/floor/edgegov/+/event", "-t",
             "$share/floor/edgegov/+/decision", "-t", "edgegov/+/state", "-F", "%U %t %p"],
            stdout=f, stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        n0, c0, t0 = _lines(out), _cpu_s(proc.pid), time.monotonic()
        time.sleep(seconds)
        n1, c1, t1 = _lines(out), _cpu_s(proc.pid), time.monotonic()
        proc.terminate()
        proc.wait(5)
    w = {"msg_per_s": round((n1 - n0) / (t1 - t0), 1),
         "cpu_pct": round(100 * (c1 - c0) / (t1 - t0), 1), "messages": n1 - n0}
    w["cpu_pct_per_1000_msg_s"] = _per_1000(w)
    return w


def _lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


def _trip_arrivals(path: Path) -> dict[tuple[str, int], int]:
    """(device, t_ms) → wall ms when a ``trip`` event reached the bare subscriber."""
    seen = {}
    for line in path.read_text(errors="replace").splitlines():
        try:
            stamp, topic, payload = line.split(" ", 2)
            doc = json.loads(payload)
        except ValueError:
            continue
        if doc.get("event") == "trip":
            seen.setdefault((topic.split("/")[1], doc["t_ms"]), int(float(stamp) * 1000))
    return seen


def _collectors(work: Path, port: int, names: list[str], seconds: float, tag: str) -> dict:
    archive = work / f"{tag}.sqlite"
    events = work / f"{tag}-events.txt"
    with open(events, "w") as f:
        sub = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-V",
                                "mqttv5", "-q", "1", "-t", "edgegov/+/event", "-F",
                                "%U %t %p"], stdout=f, stderr=subprocess.DEVNULL)
        procs = [_Watched(CLI + ["fleet", "collect", "--mqtt", f"mqtt://127.0.0.1:{port}",
                                 "--keys", str(work / "sim" / "keys"), "--archive",
                                 str(archive), "--group", f"bench-{tag}", "--name", name,
                                 "--progress-s", "1", "--workers", "2"], work)
                 for name in names]
        try:
            for p in procs:
                p.wait_line("workers", 60)
            t_start = time.monotonic()
            time.sleep(seconds)
            t_end = time.monotonic()
            for p in procs:
                p.stop()
        finally:
            for p in procs:
                p.stop()
            sub.terminate()
            sub.wait(5)
    with Archive.open(str(archive)) as a:
        incidents = a.incidents()
        jobs = a.job_counts()
    return _figures(procs, names, incidents, jobs, _trip_arrivals(events), t_start + 2, t_end)


def _figures(procs, names, incidents, jobs, arrivals, t0, t1) -> dict:
    per = {}
    for name, p in zip(names, procs, strict=True):
        w = p.window(t0, t1)
        w["cpu_pct_per_1000_msg_s"] = _per_1000(w)
        w["messages_cpu_pct_per_1000_msg_s"] = _per_1000(w, "messages_cpu_pct")
        w["incidents"] = sum(1 for r in incidents if r["collector"].startswith(name + "/"))
        per[name] = w
    # Live trips: those whose trip event the bare subscriber saw during this run (older
    # incidents a first pull found in a dump are archived too, but not timed). The clock
    # is this machine's for both ends: the subscriber's %U stamp and the archive time.
    live = [r for r in incidents if (r["device"], r["trip_t_ms"]) in arrivals]
    lat = [r["archived_wall_ms"] - arrivals[(r["device"], r["trip_t_ms"])] for r in live]
    # Where the time goes, from each archived line: the pull (the device answering) and
    # the whole job (pull + verify + replay + report + commit); the rest of the latency is
    # the wait in the queue.
    jobs_ms = [tuple(map(int, m.groups())) for p in procs for ln in p.lines
               if (m := ARCHIVED.search(ln))]
    pulls, totals = [j[0] for j in jobs_ms], [j[1] for j in jobs_ms]
    total = sum(w["messages"] for w in per.values()) or 1
    for w in per.values():
        w["share_of_messages"] = round(w["messages"] / total, 3)
    return {"collectors": per, "incidents": len(incidents), "live_trips": len(live),
            "jobs": jobs,
            "verified": sum(1 for r in incidents if r["verify_ok"] and r["replay_ok"]),
            "trip_event_to_archived_ms": {"p50": _pct(lat, 50), "p99": _pct(lat, 99),
                                          "max": _pct(lat, 100), "n": len(lat)},
            "pull_ms": {"p50": _pct(pulls, 50), "p99": _pct(pulls, 99)},
            "job_ms": {"p50": _pct(totals, 50), "p99": _pct(totals, 99), "n": len(totals)}}


def _sims(work: Path, port: int, devices: int, hz: int, trip_every_s: float,
          processes: int) -> list[_Watched]:
    """The simulated fleet in ``processes`` processes (devices split evenly by number)."""
    sims, start = [], 0
    for i in range(processes):
        n = devices // processes + (1 if i < devices % processes else 0)
        sims.append(_Watched(CLI + [
            "fleet", "sim", "--mqtt", f"mqtt://127.0.0.1:{port}", "--devices", str(n),
            "--start-index", str(start), "--hz", str(hz), "--workdir", str(work / "sim"),
            "--trip-every-s", str(trip_every_s), "--first-trip-s", "3", "--recover-s", "1"],
            work))
        start += n
    for s in sims:
        s.wait_line("online and armed", 180)
    return sims


def run(devices: int, hz: int, seconds: float, trip_every_s: float,
        sim_processes: int = 2) -> dict:
    work = Path(tempfile.mkdtemp(prefix="edgegov-bench-fleet-"))
    port = free_port()
    conf = work / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                    "user root\nmax_queued_messages 100000\nset_tcp_nodelay true\n")
    mosq = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    broker = subprocess.Popen([mosq, "-c", str(conf)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    sims: list[_Watched] = []
    try:
        wait_port(port)
        say = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
        say(f"bench fleet: {devices} devices at {hz} Hz, trips every {trip_every_s} s each")
        sims = _sims(work, port, devices, hz, trip_every_s, sim_processes)
        sim_cpu0, t_sim0 = sum(_cpu_s(s.proc.pid) for s in sims), time.monotonic()
        time.sleep(2)
        say("bench fleet: floor (bare mosquitto_sub)")
        floor = _floor(work, port, seconds)
        say("bench fleet: one collector")
        one = _collectors(work, port, ["one"], seconds, "one")
        say("bench fleet: two collectors sharing the load")
        two = _collectors(work, port, ["a", "b"], seconds, "two")
        sim_cpu = 100 * (sum(_cpu_s(s.proc.pid) for s in sims) - sim_cpu0) / (
            time.monotonic() - t_sim0)
        c1 = one["collectors"]["one"]
        return {
            "devices": devices, "hz": hz, "seconds": seconds, "trip_every_s": trip_every_s,
            "offered_decisions_per_s": devices * hz,
            "delivered_msg_per_s": floor["msg_per_s"],
            "sim_processes": sim_processes, "sim_cpu_pct": round(sim_cpu, 1),
            "cpus": os.cpu_count(), "load_average_1min": round(os.getloadavg()[0], 2),
            "floor_mosquitto_sub": floor,
            "one_collector": one,
            "two_collectors": two,
            "collector_vs_floor_cpu_ratio": _ratio(c1["cpu_pct_per_1000_msg_s"], floor),
            "collector_messages_vs_floor_cpu_ratio": _ratio(
                c1["messages_cpu_pct_per_1000_msg_s"], floor),
        }
    finally:
        for s in sims:
            s.stop()
        broker.terminate()
        broker.wait(5)
        shutil.rmtree(work, ignore_errors=True)
