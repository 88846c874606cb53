"""The report's decode pass takes the records that say nothing (an ALLOW decision or
telemetry with no event) from their decoded values, without building their rows
(``Collector.feed_decoded``). Everything it collects must be what feeding every record's
row (``Collector.feed``) collects: plotted items, counts, times, segments, the inputs lane
and the incident narratives, for a healthy dump, a damaged one, one with two boots and wall
time, and with the ALLOW records thinned or not.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from conftest import damaged_copy
from edgegov.demo import default_envelope, run_scenario
from edgegov.host.lineage_store import read_dump
from edgegov.report import shadow
from edgegov.report.collect import Collector, channels_of, rule_channels, wall_clock_of
from edgegov.report.decimate import Decimator
from edgegov.report.inputs import InputTrack, input_units
from edgegov.report.narrative import Narrator
from edgegov.report.sample import generate


def collect(path: Path, by_rows: bool, thin: bool):
    dump = read_dump(path)
    envelopes = dump.envelopes()
    channels = [c[0] for c in channels_of(envelopes)]
    units = input_units(dump.records)
    inputs, narrator = InputTrack(envelopes, units), Narrator(envelopes, units)
    total = len(dump.records)
    dec = Decimator(total, buckets=40, keep_all_below=0) if thin else Decimator(total)
    col = Collector(total, channels, rule_channels(envelopes, channels), decimator=dec,
                    wall=wall_clock_of(dump.records), watchers=(inputs, narrator),
                    offsets=dump.offsets)

    def rows(index, seq, payload, decoder):
        if by_rows:
            col.feed(index, shadow.row_of(decoder, seq, payload, dump.offsets))
        else:
            col.feed_decoded(index, seq, payload, decoder)

    shadow._replay(shadow._DecodeOnly(envelopes), dump.records, None, None, rows)
    out = col.finish()
    xs = [None if x != x else x for x in col.xs]  # (NaN: not placed)
    return out, xs, inputs.finish(), narrator.finish(out.t_last)


@pytest.fixture(scope="module")
def lineages(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("fastpath")
    demo = d / "cell.lineage"
    run_scenario(default_envelope(), 20, 7, None, lineage_path=demo)
    damaged = damaged_copy(demo, d / "damaged.lineage", (700, 1500, 2600))  # holes
    two = d / "two.lineage"
    generate(two, default_envelope(), 40_000, boots=2, block_count=256,
             wall_ms=1_796_000_000_000)
    return [demo, damaged, two]


@pytest.mark.parametrize("thin", [False, True])
@pytest.mark.parametrize("which", [0, 1, 2])
def test_the_quiet_records_collect_what_their_rows_collect(lineages, which, thin):
    path = lineages[which]
    want = collect(path, by_rows=True, thin=thin)
    got = collect(path, by_rows=False, thin=thin)
    w_col, g_col = want[0], got[0]
    for f in dataclasses.fields(w_col):
        assert getattr(g_col, f.name) == getattr(w_col, f.name), f.name
    assert got[1:] == want[1:]
    # the comparison is not empty: there were quiet records, plotted ones among them,
    # incidents with their lead-up and inputs with changes
    allow = [it for it in w_col.rows if it.verdict == 0 and not it.events]
    assert allow and w_col.counts[("decision", "ALLOW")] > len(allow) * (2 if thin else 0)
    assert any(story["lead"] for story in want[3])
    assert any(len(k["x"]) > 2 for k in want[2])
