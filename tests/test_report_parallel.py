"""The report's replay on two cores gives the same page as one pass on one core.

``build_report`` replays in a forked process while it decodes the rows itself
(``shadow.replay_with_rows``); with ``PARALLEL_MIN_RECORDS`` above the dump's size it does
both in one pass. The pages must be identical, for a healthy dump, a damaged one, one with
two boots and wall time, and one whose replay raises part-way (the replay then loses its
anchor until the next checkpoint, which the decoder alone cannot know: the report starts
again in one pass).
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest
from conftest import damaged_copy
from edgegov.core.events import Command
from edgegov.core.replay import ReplayGovernor
from edgegov.demo import default_envelope, run_scenario
from edgegov.host.lineage_read import decode_dump
from edgegov.host.lineage_store import read_dump
from edgegov.report import build_report, shadow
from edgegov.report.sample import generate

REAL_ACTIVE_COUNT = threading.active_count


def page(path: Path) -> str:
    """The report of ``path`` without the moment it was written."""
    return re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ by edgegov", "(now) by edgegov",
                  build_report(path))


def both(path: Path, monkeypatch) -> tuple[str, str, list[str]]:
    """(page in one pass, page on two cores, which way the two-core build went)."""
    monkeypatch.setattr(shadow, "PARALLEL_MIN_RECORDS", 10**9)
    serial = page(path)
    ways = forking(monkeypatch)
    parallel = page(path)
    return serial, parallel, ways


def forking(monkeypatch) -> list[str]:
    """Make the next builds take the two-core way (pytest may run threads of its own);
    returns the list of ways they went: "parallel" (rows decoded here while a forked child
    replayed) or "again in one pass"."""
    monkeypatch.setattr(shadow, "PARALLEL_MIN_RECORDS", 0)
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    ways: list[str] = []
    real = shadow.replay_with_rows

    class Seen(shadow._DecodeOnly):
        def __init__(self, *args, **kwargs):
            ways.append("parallel")
            super().__init__(*args, **kwargs)

    def watched(*args, **kwargs):
        track = real(*args, **kwargs)
        if track is None:
            ways.append("again in one pass")
        return track

    monkeypatch.setattr(shadow, "_DecodeOnly", Seen)
    monkeypatch.setattr("edgegov.report.build.replay_with_rows", watched)
    return ways


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("demo") / "cell.lineage"
    run_scenario(default_envelope(), 20, 7, None, lineage_path=path)
    return path


def test_the_demo_report_is_the_same_on_two_cores(demo, monkeypatch):
    serial, parallel, ways = both(demo, monkeypatch)
    assert ways == ["parallel"]
    assert "replay" in serial and parallel == serial


def test_a_damaged_dump_gives_the_same_report(demo, tmp_path, monkeypatch):
    path = damaged_copy(demo, tmp_path / "damaged.lineage", (700, 1500))
    serial, parallel, ways = both(path, monkeypatch)
    assert ways == ["parallel"]
    assert parallel == serial


def test_two_boots_with_wall_time_give_the_same_report(tmp_path, monkeypatch):
    path = tmp_path / "two.lineage"
    generate(path, default_envelope(), 6000, boots=2, block_count=128,
             wall_ms=1_796_000_000_000)
    serial, parallel, ways = both(path, monkeypatch)
    assert ways == ["parallel"]
    assert parallel == serial


def test_a_replay_that_raises_is_done_again_in_one_pass(demo, monkeypatch):
    dump = read_dump(demo)
    commands = [r for r in decode_dump(dump) if r["kind"] == "decision"]
    doomed = commands[500]["cmd_seq"]  # its replay raises, in every replay of the dump
    real = ReplayGovernor.handle

    def handle(self, event, now_ms):
        if isinstance(event, Command) and event.seq == doomed:
            raise RuntimeError("a governor that cannot go on")
        return real(self, event, now_ms)

    monkeypatch.setattr(ReplayGovernor, "handle", handle)
    monkeypatch.setattr(shadow, "PARALLEL_MIN_RECORDS", 10**9)
    serial = page(demo)
    ways = forking(monkeypatch)
    parallel = page(demo)
    assert ways == ["parallel", "again in one pass"]
    assert "a governor that cannot go on" in serial
    assert parallel == serial


def test_the_report_reads_a_dump_as_read_dump_does(demo, tmp_path):
    """One scan of the image (``reading.dump_of``) gives ``read_dump``'s ``Dump``."""
    from edgegov.report.reading import dump_of

    dump = read_dump(demo)
    image = bytearray(demo.read_bytes())
    image[dump.offsets[dump.records[900][0]] + 8] ^= 0x10  # a record that no longer checks
    image[-5000:] = b"\xff" * 5000
    damaged = tmp_path / "damaged.lineage"
    damaged.write_bytes(bytes(image))
    for path in (demo, damaged):
        want = read_dump(path)
        got = dump_of(path.read_bytes(), want.block_size, str(path))
        problems = [[(type(p).__name__, str(p), vars(p)) for p in d.problems]
                    for d in (got, want)]
        assert problems[0] == problems[1]
        got.problems = want.problems
        assert got == want
    assert read_dump(damaged).problems  # the damage was seen


def test_with_other_threads_running_it_is_one_pass(demo, monkeypatch):
    """A fleet collector builds reports in a thread pool: no fork there."""
    ways = forking(monkeypatch)
    monkeypatch.setattr(threading, "active_count", REAL_ACTIVE_COUNT)
    pages: list[str] = []
    worker = threading.Thread(target=lambda: pages.append(page(demo)))
    worker.start()
    worker.join()
    assert ways == [] and len(pages) == 1 and "replay" in pages[0]
    monkeypatch.setattr(threading, "active_count", lambda: 1)  # alone: it forks
    assert page(demo) == pages[0]
    assert ways == ["parallel"]
