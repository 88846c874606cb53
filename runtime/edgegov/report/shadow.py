"""Replay passes for a report: the limits in force, the replay check and the what-if.

The lineage records decisions, not the limits the governor held at the time (mode range,
approved range while a permit runs, interlock bounds while an interlock is active). A
report re-derives them the exact way: a ``Replayer`` re-runs the recorded inputs through a
fresh governor, and after every record the governor's state says which limits applied.
The same pass tells whether the replay reproduced the recording; run with another envelope
(``what_if``) it lists the decisions that would have differed and that envelope's limits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial

from .. import names
from ..core.record import RecordError
from ..core.replay import Decoder, Replayer, ReplayError
from ..host.lineage_read import _by_name as by_name
from ..host.lineage_read import _describe as describe
from . import forked


@dataclass
class LimitChange:
    """From record ``index`` on, per channel name: (min, max) in engineering units, or
    None where no governor was anchored (limits unknown)."""

    index: int
    limits: dict | None


@dataclass
class WhatIfDiff:
    index: int
    seq: int
    t_ms: int
    recorded: dict | None
    what_if: dict | None
    summary: str


@dataclass
class Track:
    """What one replay pass found."""

    changes: list[LimitChange] = field(default_factory=list)
    compared: int = 0
    skipped: int = 0
    identical: bool = False
    divergences: int = 0
    first_divergence: tuple | None = None  # (seq, note)
    anchors: list = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str = ""
    diffs: list[WhatIfDiff] = field(default_factory=list)


def scale_of(res) -> tuple[float, int]:
    """A channel resolution (text) → (factor, decimals) to turn scaled ints into units."""
    d = Decimal(str(res))
    return float(d), max(0, -d.as_tuple().exponent)


def eng(value, scale: tuple[float, int]):
    if type(value) is not int:
        return None
    v = round(value * scale[0], scale[1])
    return int(v) if scale[1] == 0 else v


def limits_in_force(gov) -> dict:
    """Per channel, the range the governor enforces now: the mode's range (the approved
    range while a permit runs), narrowed by every active interlock's bounds. Mirrors
    ``Governor._limits``, read from the governor's public state."""
    env = gov.env
    m = gov.mode
    lo, hi = [], []
    for i in range(env.n):
        permit = gov.permit_until[i] >= 0
        lo.append(env.mode_amin[m][i] if permit else env.mode_min[m][i])
        hi.append(env.mode_amax[m][i] if permit else env.mode_max[m][i])
    for k, active in enumerate(gov.il_active):
        if not active:
            continue
        for ch, il_lo, il_hi in env.il_limits[k]:
            if il_lo is not None and il_lo > lo[ch]:
                lo[ch] = il_lo
            if il_hi is not None and il_hi < hi[ch]:
                hi[ch] = il_hi
    out = {}
    for i, name in enumerate(env.ch_names):
        scale = scale_of(env.ch_res[i])
        out[name] = (eng(lo[i], scale), eng(hi[i], scale))
    return out


class _Recording(Decoder):
    """The replay's decoder, keeping what it read last, so that one decode of each record
    serves both the replay and the report's rows (``lineage decode``'s dicts)."""

    def read(self, seq, payload):
        self.last = self.error = None
        try:
            self.last = super().read(seq, payload)
        except (RecordError, ReplayError) as err:
            self.error = err
            raise
        return self.last


def replay_track(records, envelopes, key=None, what_if=None, progress=None,
                 rows=None) -> Track:
    """One replay over ``records`` (``(seq, payload)``, ring order). Never raises: a replay
    that cannot go on is reported in ``Track.error``/``notes``. ``rows(index, seq, payload,
    decoder)``, when given, is called for every record right after this same pass decoded
    it: ``row_of(decoder, seq, payload, offsets)`` is the record as ``lineage decode``
    prints it (``offsets``: seq → byte offset), ``LazyRow.of`` the same, built later."""
    return _replay(Replayer(envelopes, key=key, what_if=what_if), records, what_if, progress,
                   rows)


def _replay(rp, records, what_if, progress, rows, failed=None) -> Track:
    """``replay_track`` with the replayer given; ``failed``, when a list, receives the index
    of every record whose replay raised past the decoder (the replay lost its anchor)."""
    if rows is not None:
        rp.decoder = _Recording(rp.decoder.envelopes)
    track = Track()
    watch = _Watch()
    for i, (seq, payload) in enumerate(records):
        n_div = len(rp.report.divergences)
        try:
            rp.step(seq, payload)
        except ReplayError as err:
            _lose(rp, track, f"seq {seq}: {err}")
        except Exception as err:  # noqa: BLE001 - a damaged dump must still give a report
            _lose(rp, track, f"seq {seq}: replay failed: {type(err).__name__}: {err}")
            if failed is not None:
                failed.append(i)
        if rows is not None:
            rows(i, seq, payload, rp.decoder)
        if watch.moved(rp.gov):
            limits = _safe_limits(rp.gov)
            if not track.changes or limits != track.changes[-1].limits:
                track.changes.append(LimitChange(i, limits))
        if what_if is not None and len(rp.report.divergences) > n_div:
            for d in rp.report.divergences[n_div:]:
                track.diffs.append(_what_if_diff(i, d, rp.decoder.env, what_if))
        if progress is not None and i % 8192 == 0:
            progress(i)
    _summarise(rp.report, track)
    return track


PARALLEL_MIN_RECORDS = 20_000  # below this, one process does both passes


def replay_with_rows(records, envelopes, key=None, progress=None, rows=None,
                     started=None) -> Track | None:
    """``replay_track(records, envelopes, key, rows=rows, ...)`` on two cores: a forked
    process replays while this one decodes the rows (the decoder alone: the rows never
    depend on the governor's decisions). The replay's ``Track`` is the same; so are the
    rows, except after a record whose replay raised past the decoder (the replay then waits
    for the next anchor, and so do the rows): then this returns ``None`` and the caller
    starts again with ``replay_track``, on fresh consumers of the rows. Where a process
    cannot be forked safely (no fork, other threads running: a fleet collector's pool, a
    daemonic process) or the dump is small, it is ``replay_track``. ``started``: the
    replay already forked by ``start_replay`` for these same records, envelopes and key
    (``None``: forked here, where it can be)."""
    if started is None:
        started = start_replay(records, envelopes, key)
    if started is None:
        return replay_track(records, envelopes, key, progress=progress, rows=rows)
    try:
        _replay(_DecodeOnly(envelopes), records, None, progress, rows)
    except BaseException:
        started.kill()
        raise
    got = started.result()
    if got is None or got[1]:
        return None  # the child died, or its replay lost an anchor the decoder did not
    return got[0]


def start_replay(records, envelopes, key=None, also=None) -> forked.Job | None:
    """The replay of ``replay_with_rows`` forked now, to run while the caller does other
    work first; ``None`` where it would not be forked (see there). The job's result is
    ``(Track, failed record indices, also())``: ``also``, a function the child calls after
    the replay (its result picklable; ``None`` when it raised). Give the job to
    ``replay_with_rows`` (or to ``stop_replay`` when it will not be used)."""
    if len(records) < PARALLEL_MIN_RECORDS:
        return None
    return forked.start(partial(_replay_child, records, envelopes, key, also))


def stop_replay(started: forked.Job | None) -> None:
    """End a replay from ``start_replay`` that will not be used."""
    if started is not None:
        started.kill()


def _replay_child(records, envelopes, key, also) -> tuple:
    failed: list[int] = []
    track = _replay(Replayer(envelopes, key=key), records, None, None, None, failed)
    extra = None
    if also is not None:
        try:
            extra = also()
        except Exception:  # noqa: BLE001 - the parent does it itself then
            extra = None
    return track, failed, extra


class _DecodeOnly(Replayer):
    """A replayer that anchors and decodes as ``Replayer`` does but runs no governor."""

    def _boot(self, seq, rec, payload):
        pass

    def _checkpoint(self, seq, rec):
        pass


def row_of(decoder, seq: int, payload: bytes, offsets) -> dict:
    """The record ``decoder`` (the replay's) read last, as ``lineage decode`` prints it."""
    base = {"seq": seq, "offset": offsets.get(seq, -1) if offsets else -1}
    if decoder.last is None:
        return {**base, "kind": "error", "error": str(decoder.error), "bytes": payload.hex()}
    return {**base, **describe(decoder, *decoder.last)}


class LazyRow:
    """``row_of`` of a decoded record, built only when asked for (``row()``): most records
    of a long dump are counted and thinned away without ever being shown."""

    __slots__ = ("seq", "offset", "env", "last")

    def __init__(self, seq: int, offset: int, env, last):
        self.seq = seq
        self.offset = offset
        self.env = env  # the decoder's envelope when it read the record
        self.last = last  # (kind, rec, outcome)

    @classmethod
    def of(cls, decoder, seq: int, offsets) -> LazyRow:
        """The record ``decoder`` read last (it decoded: ``decoder.last`` is set)."""
        return cls(seq, offsets.get(seq, -1) if offsets else -1, decoder.env, decoder.last)

    def row(self) -> dict:
        return {"seq": self.seq, "offset": self.offset, **describe(self, *self.last)}

    def outputs(self) -> dict:
        """``row()["output"]`` of a decision or event record (channel → value shown)."""
        return by_name(self.env, self.last[2].output)


def resolve(row):
    """A row or a ``LazyRow`` → the row."""
    return row.row() if type(row) is LazyRow else row


class _Watch:
    """Has the state that decides the limits in force (which governor, its mode, permits,
    active interlocks) moved since the last call? Cheap enough for every record."""

    def __init__(self):
        self.gov = self.mode = self.permits = self.interlocks = None

    def moved(self, gov) -> bool:
        if gov is None:
            same = self.gov is None
        else:
            same = (gov is self.gov and gov.mode == self.mode
                    and gov.permit_until == self.permits and gov.il_active == self.interlocks)
        if same:
            return False
        self.gov = gov
        if gov is not None:
            self.mode = gov.mode
            self.permits = list(gov.permit_until)
            self.interlocks = list(gov.il_active)
        return True


def _safe_limits(gov):
    if gov is None:
        return None
    try:
        return limits_in_force(gov)
    except (IndexError, TypeError):  # a restored state that does not fit its envelope
        return None


def _lose(rp, track: Track, note: str) -> None:
    if len(track.notes) < 50:
        track.notes.append(note)
    rp.gov = None
    rp.decoder.anchored = False


def _summarise(report, track: Track) -> None:
    track.compared = report.compared
    track.skipped = report.skipped
    track.identical = report.identical
    track.divergences = len(report.divergences)
    track.anchors = list(report.anchors)
    track.notes = list(report.notes[:50]) + track.notes
    if report.divergences:
        d = report.divergences[0]
        track.first_divergence = (d.seq, d.note or "decision differs")


def _side(o, env) -> dict | None:
    if o is None or not hasattr(o, "verdict"):
        return None
    rule = env.rules[o.rule] if env is not None and 0 <= o.rule < len(env.rules) else None
    out = {}
    if env is not None:
        for i, name in enumerate(env.ch_names):
            if i < len(o.output):
                out[name] = eng(o.output[i], scale_of(env.ch_res[i]))
    return {"verdict": names.verdict(o.verdict), "reason": names.reason(o.reason),
            "rule": rule, "margin": o.margin, "output": out,
            "events": [names.event(c) for c, _ in o.events]}


def _what_if_diff(index, d, env_old, env_new) -> WhatIfDiff:
    rec, mine = _side(d.recorded, env_old), _side(d.replayed, env_new)
    if rec is None or mine is None:
        summary = d.note or "record differs"
    else:
        parts = [f"{k} {rec[k]} → {mine[k]}" for k in ("verdict", "rule", "reason", "output")
                 if rec[k] != mine[k]]
        summary = "; ".join(parts) or d.note or "differs"
    return WhatIfDiff(index, d.seq, d.t, rec, mine, summary)


__all__ = ["replay_track", "replay_with_rows", "start_replay", "stop_replay", "row_of",
           "LazyRow", "resolve",
           "limits_in_force", "Track", "LimitChange",
           "WhatIfDiff",
           "scale_of", "eng"]
