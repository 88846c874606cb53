"""The micro:bit minimal governor decides exactly as the full core (on its subset).

Random runs (commands near and beyond the limits, too-fast steps, stale sequence numbers,
operator arm/reset/estop incl. replayed counters, faults, link silences long enough to hold
and trip) are recorded by the minimal governor into its RAM ring; the ring image is then
scanned and replayed through ``edgegov.core.replay.Replayer``, which must report every
record identical. The same code runs on the board (firmware/microbit/egg.py, egr.py).
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest
from edgegov.config.compile import compile_file, compile_text
from edgegov.core.envelope import Envelope
from edgegov.core.replay import Replayer
from edgegov.core.ring import scan_image
from edgegov.core.verify import verify

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "firmware"))
import build  # noqa: E402

ENVELOPE = REPO / "boards" / "microbit-v1" / "envelope.toml"


def run_minimal(blob, script, ring_block=4096, ring_blocks=8):
    """Run ``script`` [(now, kind, a, b, c)] through the minimal governor; (ring image, egg)."""
    gov, ring, _ = build.load_minimal(blob, ring=(ring_block, ring_blocks))
    gov.start(0)
    gov.rboot(0, 3, 1)
    for now, kind, a, b, c in script:
        if kind == "cmd":
            b = b(gov.OUT) if callable(b) else b
            gov.command(a, b, now)
            gov.rcmd(a, b, now)
        elif kind == "op":
            if gov.operator(a, c, b, now):
                gov.revt(4, a, b, now)
        elif kind == "fault":
            if gov.fault(a, b, now):
                gov.revt(5, a, b, now)
        elif kind == "session":
            if gov.session(a, now):
                gov.revt(6, a, 0, now)
        elif gov.tick(now):
            gov.revt(3, 0, 0, now)
    assert gov.LOST == 0
    gov.ring = ring
    return bytes(ring.M), gov


def random_script(env, rng, steps):
    """Mostly a live link and an armed governor, with every kind of trouble mixed in."""
    now, seq, counter = 0, 0, 0
    script = []
    for _ in range(steps):
        r = rng.random()
        dt = rng.choice((1, 5, 10) + (20,) * 20 + (50, 150, 250, 700))
        now += dt
        if r < 0.75:
            seq += 1
            sent = seq - rng.choice((0,) * 12 + (1, 3))  # now and then a stale one
            script.append((now, "cmd", sent, _proposal(env, rng, dt), 0))
        elif r < 0.86:
            counter += 1 if rng.random() < 0.93 else 0
            action = rng.choice((1, 1, 2, 2, 2, 3))
            script.append((now, "op", action, counter, rng.randint(0, 3)))
            if action == 2 and rng.random() < 0.8:
                counter += 1
                script.append((now + 1, "op", 1, counter, 0))
        elif r < 0.88:
            script.append((now, "fault", rng.randint(0, 3), rng.random() < 0.3, 0))
        elif r < 0.895:  # a planner restart (sometimes the same session again): seq from 1
            session = rng.choice((1, 2, 3, 1 << 29))
            script.append((now, "session", session, 0, 0))
            seq = 0
        else:
            script.append((now, "tick", 0, 0, 0))
    return script


def _proposal(env, rng, dt):
    """Values near the live outputs (mostly within the rate budget), some beyond."""
    lo, hi = env.mode_min[0], env.mode_max[0]

    def make(out):
        vals = []
        for i in range(env.n):
            span = hi[i] - lo[i]
            pick = rng.random()
            step = env.mode_rate[0][i] * min(dt, 1000) // 1000
            if pick < 0.93:
                v = out[i] + (rng.randint(-step, step) if pick < 0.85 else step + 2)
                v = max(lo[i], min(hi[i], v))
            elif pick < 0.98:
                v = rng.randint(lo[i] - span // 4, hi[i] + span // 4)
            else:
                v = rng.choice((lo[i], hi[i], lo[i] - 1, hi[i] + 1, 1 << 30))
            vals.append(v)
        return vals

    return make


def replay(image, compiled):
    rep = scan_image(image)
    env = Envelope.from_blob(compiled.blob, compiled.digest)
    report = Replayer({compiled.digest: env}).run(rep.records)
    return rep, report


def test_subset_envelope_compiles_and_is_accepted():
    compiled = compile_file(ENVELOPE)
    env = Envelope.from_blob(compiled.blob, compiled.digest)
    assert build.subset_problems(env) == []
    assert env.n == 4


def test_envelopes_outside_the_subset_are_refused():
    compiled = compile_file(REPO / "boards" / "envelopes" / "spindle-cell.toml")
    env = Envelope.from_blob(compiled.blob, compiled.digest)
    problems = build.subset_problems(env)
    assert any("interlocks" in p for p in problems)
    with pytest.raises(ValueError, match="subset"):
        build.microbit_config(compiled.blob, build.load_board("microbit-v1"))


def test_scripted_run_replays_identically():
    compiled = compile_file(ENVELOPE)
    arm = [(1, "op", 2, 1, 0), (2, "op", 1, 2, 0)]
    cmds = [(10 + 20 * k, "cmd", k + 1, [k % 90, 3 * k, 5 * k - 40, -2 * k], 0)
            for k in range(60)]
    silence = [(1200 + 20 * k, "tick", 0, 0, 0) for k in range(60)]
    image, gov = run_minimal(compiled.blob, arm + cmds + silence)
    assert gov.ST == 0 and gov.CAU & 8  # link lost: tripped
    rep, report = replay(image, compiled)
    assert not [p for p in rep.problems if p.code != 1]
    assert report.identical, [(d.seq, d.note) for d in report.divergences[:5]]
    assert report.compared == len(rep.records)


@pytest.mark.parametrize("seed", range(40))
def test_random_runs_replay_identically_through_the_full_core(seed):
    compiled = compile_file(ENVELOPE)
    env = Envelope.from_blob(compiled.blob, compiled.digest)
    rng = random.Random(seed)
    image, _ = run_minimal(compiled.blob, random_script(env, rng, 400))
    rep, report = replay(image, compiled)
    assert report.identical, [(d.seq, d.note, vars(d.recorded) if d.recorded else None,
                               vars(d.replayed) if d.replayed else None)
                              for d in report.divergences[:2]]
    assert report.compared == len(rep.records)
    assert verify(rep.records, rep.problems).ok


VARIANT = """
[device]
id = "v"
[channels.a]
resolution = 1
min = -50
max = 70
rate_per_s = 7
safe = 3
stop = "SS1"
on_breach = "trip"
on_rate = "trip"
hold = "ramp"
[channels.b]
resolution = 1
min = 0
max = 1000
rate_per_s = 3000
safe = 0
stop = "STO"
on_breach = "clamp"
on_rate = "reject"
hold = "stay"
[link]
hold_after_ms = 50
trip_after_ms = 90
engage_after_ms = 30
"""


@pytest.mark.parametrize("seed", range(20))
def test_other_subset_envelopes_replay_identically(seed):
    compiled = compile_text(VARIANT)
    env = Envelope.from_blob(compiled.blob, compiled.digest)
    rng = random.Random(1000 + seed)
    image, _ = run_minimal(compiled.blob, random_script(env, rng, 300))
    _, report = replay(image, compiled)
    assert report.identical, [(d.seq, d.note) for d in report.divergences[:3]]


def test_small_ring_wraps_in_the_core_format():
    compiled = compile_file(ENVELOPE)
    env = Envelope.from_blob(compiled.blob, compiled.digest)
    image, gov = run_minimal(compiled.blob, random_script(env, random.Random(5), 300),
                             ring_block=320, ring_blocks=4)
    rep = scan_image(image)
    assert gov.ring.SEQ > len(rep.records) > 20  # older sectors were overwritten
    assert [p.code for p in rep.problems if p.code not in (1, 3)] == []
    seqs = [s for s, _ in rep.records]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))


def test_minimal_governor_withholds_the_kick_while_an_internal_fault_is_latched():
    gov, _, _ = build.load_minimal(compile_file(ENVELOPE).blob)
    gov.start(0)
    gov.tick(10)
    assert gov.KICK == 1
    gov.command(1, [], 20)  # too few values: an exception inside the decision
    assert gov.CAU & 128 and gov.ST == 0
    kicks = []
    for k in range(10):
        gov.tick(30 + 10 * k)
        kicks.append(gov.KICK)
    assert kicks == [0] * 10  # the external watchdog sees the pin stop toggling
