"""Lineage dump → incident report: read, verify, replay (limits in force, what-if), decode,
render. Each stage that meets damage says so in the report instead of stopping it; only
input that cannot be a lineage at all raises ``ReportError``."""

from __future__ import annotations

import gc
from contextlib import contextmanager
from functools import partial
from pathlib import Path

from .. import __version__
from ..core.verify import verify
from ..host.walltime import format_wall, wall_span
from . import forked, model, shadow
from .collect import Collector, channels_of, rule_channels, wall_clock_of
from .inputs import InputTrack, input_units, unit_of_blob
from .narrative import Narrator
from .page import Facts, records_payload, render
from .plotlyjs import plotly_js
from .reading import Loaded, ReportError, load
from .shadow import (
    replay_track,
    replay_with_rows,
    start_replay,
    stop_replay,
)
from .whatif_view import summarise


def _quiet(stage: str, done: int, total: int | None) -> None:
    pass


def write_report(dump_path, html_path, envelope_path=None, *, key: bytes | None = None,
                 block_size: int | None = None, progress=None) -> Path:
    """Write the incident report of the lineage dump ``dump_path`` to ``html_path`` and
    return its path. ``envelope_path`` (TOML or compiled blob): another envelope for a
    what-if overlay, or the recorded one when the dump lost it. ``key``: the device key, to
    check checkpoint MACs and operator signatures. ``progress(stage, done, total)`` is
    called as the stages go (``total`` None where unknown). Raises ``ReportError`` when the
    dump cannot be read at all or the output cannot be written."""
    html = build_report(dump_path, envelope_path, key=key, block_size=block_size,
                        progress=progress)
    out = Path(html_path)
    tell = progress or _quiet
    tell("writing", 0, None)
    try:
        out.write_text(html, encoding="utf-8")
    except OSError as err:
        raise ReportError(f"{out}: cannot write: {err.strerror}") from None
    return out


def build_report(dump_path, envelope_path=None, *, key: bytes | None = None,
                 block_size: int | None = None, progress=None) -> str:
    """The report's HTML as a string (see ``write_report``)."""
    with _fewer_collections():
        return _build(dump_path, envelope_path, key, block_size, progress)


@contextmanager
def _fewer_collections():
    """The build allocates a few objects per record and keeps most of them to the end:
    the cyclic collector, run at its usual pace, would walk them again and again."""
    saved = gc.get_threshold()
    gc.set_threshold(max(saved[0], 50_000), *saved[1:])
    try:
        yield
    finally:
        gc.set_threshold(*saved)


def _build(dump_path, envelope_path, key, block_size, progress) -> str:
    tell = progress or _quiet
    tell("reading", 0, None)
    loaded = load(dump_path, envelope_path, block_size)
    # The replay (limits in force, replay check) on a second core where it can, from now
    # on, while this process verifies and decodes; else within ``replay_with_rows``.
    # The verify goes with it (it needs nothing decoded here).
    started = start_replay(loaded.dump.records, loaded.envelopes, key,
                           also=partial(_verified, loaded.dump, key))
    try:
        return _build_loaded(loaded, key, started, tell)
    except BaseException:
        stop_replay(started)
        raise


def _build_loaded(loaded: Loaded, key, started, tell) -> str:
    dump = loaded.dump
    facts = _facts(loaded, key)
    total = len(dump.records)
    if loaded.what_if is not None:
        facts.what_if = replay_track(dump.records, loaded.envelopes, key, loaded.what_if,
                                     progress=lambda i: tell("what-if", i, total))
    channels = channels_of(loaded.envelopes)
    wall = wall_clock_of(dump.records)
    units = input_units(dump.records)
    for blob in (loaded.envelope_blob, loaded.what_if_blob):  # units are for people only
        units = {**unit_of_blob(blob), **units} if blob else units
    failed: list[str] = []

    def consumers():
        inputs = InputTrack(loaded.envelopes, units)
        narrator = Narrator(loaded.envelopes, units)
        collector = _collector(loaded, channels, facts, wall, (inputs, narrator))
        failed.clear()

        def feed(index: int, seq: int, payload: bytes, decoder) -> None:
            if failed:
                return
            try:
                collector.feed_decoded(index, seq, payload, decoder)
            except Exception as err:  # noqa: BLE001 - report what was decoded and why
                failed.append(f"decoding stopped after record {index} of {total}: "
                              f"{type(err).__name__}: {err}")

        return inputs, narrator, collector, feed

    # The replay (limits in force, replay check) and the rows every count and plot is made
    # of: on two cores where it can (the rows decoded here, the replay in a second
    # process), else one pass that decodes each record once for both.
    inputs, narrator, collector, feed = consumers()
    shown = lambda i: tell("replaying and decoding", i, total)  # noqa: E731
    facts.replay = replay_with_rows(dump.records, loaded.envelopes, key, progress=shown,
                                    rows=feed, started=started)
    if facts.replay is None:  # the replay lost an anchor the decoder alone did not
        inputs, narrator, collector, feed = consumers()
        facts.replay = replay_track(dump.records, loaded.envelopes, key, progress=shown,
                                    rows=feed)
    facts.findings.extend(failed)
    got = started.result() if started is not None else None
    verified = got[2] if got is not None and got[2] is not None else _verified(dump, key)
    facts.verify, facts.verify_error = verified[0], verified[1] or ""
    col = collector.finish()
    # The records shown on click, packed on the second core while this one builds the rest.
    texts = [it.text for it in col.rows]
    packing = (forked.start(partial(records_payload, texts))
               if total >= shadow.PARALLEL_MIN_RECORDS else None)
    try:
        modes = next(iter(loaded.envelopes.values())).modes if loaded.envelopes else []
        stories = narrator.finish(col.t_last)
        data = model.build(col, channels, facts.replay, facts.what_if, collector.xs, modes,
                           loaded.what_if, inputs.finish(), stories)
        if facts.what_if is not None:
            facts.whatif_summary = summarise(loaded.image, loaded.what_if_source,
                                             facts.what_if, key, _wall_text(wall, collector))
        tell("rendering", 0, None)
        # (the rest of the page is made while the records are still being packed)
        return render(facts, col, data, plotly_js(), stories,
                      records=lambda: (packing.result() if packing is not None else None)
                      or records_payload(texts))
    except BaseException:
        if packing is not None:
            packing.kill()
        raise


def _wall_text(wall, collector):
    """diff → its wall time as text, when the dump has wall time."""
    if wall is None:
        return None
    xs = collector.xs

    def at(d):
        x = xs[d.index] if d.index < len(xs) else float("nan")
        return None if x != x else format_wall(round(x * 1000))

    return at


def _facts(loaded: Loaded, key) -> Facts:
    dump = loaded.dump
    envs = [(d.hex(), env, "recorded") for d, env in loaded.envelopes.items()]
    if loaded.what_if is not None:
        envs.append((loaded.what_if.digest.hex(), loaded.what_if,
                     f"what-if: {loaded.what_if_source}"))
    facts = Facts(dump.path, loaded.file_size, dump.block_size,
                  loaded.file_size // dump.block_size if dump.block_size else 0,
                  len(dump.records), dump.torn_tail, __version__, envs,
                  list(loaded.findings), keyed=key is not None,
                  what_if_source=loaded.what_if_source, wall_span=wall_span(dump.records))
    return facts


def _verified(dump, key) -> tuple:
    """(``verify`` of the dump, None), or (None, why it failed)."""
    try:
        return verify(dump.records, dump.problems, key, dump.offsets, dump.genesis_seq), None
    except Exception as err:  # noqa: BLE001 - a damaged dump must still give a report
        return None, f"verify failed: {type(err).__name__}: {err}"


def _collector(loaded: Loaded, channels, facts: Facts, wall, watchers) -> Collector:
    names_ = [c[0] for c in channels]
    seqs = {d.seq for d in facts.what_if.diffs} if facts.what_if is not None else ()
    return Collector(len(loaded.dump.records), names_,
                     rule_channels(loaded.envelopes, names_), seqs, wall=wall,
                     watchers=watchers, offsets=loaded.dump.offsets)


__all__ = ["write_report", "build_report", "ReportError"]
