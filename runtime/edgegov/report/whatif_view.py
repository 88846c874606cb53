"""The what-if summary of a report: how verdicts move and which trips appear or go away
when the dump is replayed with another envelope (``lineage report --envelope OTHER``).

The summary comes from the project's what-if replay (``run_whatif``, the same as
``lineage replay --envelope``) when that is installed; otherwise it is computed here from
the report's own what-if pass (``shadow.replay_track``), with the same keys. Either way the
page shows the same table: verdict transitions with counts, trips added, trips removed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Summary:
    identical: bool
    decisions: int
    differing: int
    transitions: list = field(default_factory=list)  # {"from", "to", "count"}
    trips_added: list = field(default_factory=list)  # {"t_ms", "wall", "channel", "cause"}
    trips_removed: list = field(default_factory=list)
    lines: list = field(default_factory=list)
    source: str = ""  # "run_whatif" or "report replay"


def _run_whatif():
    """The project's ``run_whatif`` (host side first), or None where it is not installed."""
    for module in ("edgegov.host.whatif", "edgegov.core.whatif"):
        try:
            mod = __import__(module, fromlist=["run_whatif"])
        except ImportError:
            continue
        fn = getattr(mod, "run_whatif", None)
        if fn is not None:
            return fn
    return None


def summarise(image: bytes, envelope_path: str, track, key=None, wall=None) -> Summary:
    """The what-if summary for ``envelope_path`` over the dump ``image``. ``track``: the
    report's own what-if pass, used when ``run_whatif`` is missing or fails."""
    fn = _run_whatif()
    if fn is not None:
        try:
            return _from_whatif(fn(image, _compiled(envelope_path), key=key))
        except Exception:  # noqa: BLE001 - the report's own pass still gives the summary
            pass
    return from_track(track, wall)


def _compiled(path: str):
    from pathlib import Path

    from ..config.compile import compile_file

    return compile_file(path) if str(path).endswith(".toml") else Path(path).read_bytes()


def _from_whatif(w) -> Summary:
    j = w.to_json()
    return Summary(bool(j.get("identical")), int(j.get("decisions", 0)),
                   int(j.get("differing", 0)), list(j.get("transitions", [])),
                   list(j.get("trips_added", [])), list(j.get("trips_removed", [])),
                   list(w.summary_lines()), "run_whatif")


def from_track(track, wall=None) -> Summary:
    """The summary from a ``shadow.Track`` of a what-if pass."""
    moves: Counter = Counter()
    added, removed = [], []
    for d in track.diffs:
        rec, mine = d.recorded or {}, d.what_if or {}
        a, b = rec.get("verdict"), mine.get("verdict")
        if a != b:
            moves[(a or "none", b or "none")] += 1
        had, has = "trip" in (rec.get("events") or []), "trip" in (mine.get("events") or [])
        if has and not had:
            added.append(_trip_entry(d, mine, wall))
        elif had and not has:
            removed.append(_trip_entry(d, rec, wall))
    transitions = [{"from": a, "to": b, "count": n} for (a, b), n in moves.most_common()]
    s = Summary(not track.diffs, track.compared, len(track.diffs), transitions, added, removed,
                source="report replay")
    s.lines = summary_lines(s)
    return s


def _trip_entry(d, side: dict, wall) -> dict:
    rule = side.get("rule") or ""
    channel = rule.split(".")[1] if rule.startswith("channels.") else None
    return {"t_ms": d.t_ms, "wall": wall(d) if wall else None, "channel": channel,
            "cause": side.get("reason")}


def summary_lines(s: Summary) -> list[str]:
    """The summary in words, one line each (the page's list; as ``run_whatif`` prints)."""
    if s.identical:
        return [f"no decision would differ ({s.decisions} compared)"]
    lines = [f"{s.differing} of {s.decisions} decisions would differ"]
    lines += [f"{t['from']} → {t['to']}: {t['count']}" for t in s.transitions]
    lines.append(f"trips added: {len(s.trips_added)}; trips removed: {len(s.trips_removed)}")
    return lines


__all__ = ["Summary", "summarise", "from_track", "summary_lines"]
