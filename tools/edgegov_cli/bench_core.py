"""``edgegov bench core``: decision latency against a naive check and RTAMT, same run.

The stream: an eight-axis cell (``boards/envelopes/arm-8axis.toml``: 8 channels, 2
interlocks, link liveness) following smooth trajectories at 100 Hz, with about 5 % of
commands asking for a too-fast step (clamped) and 2 % carrying a NaN (rejected), plus
telemetry every fifth period. Three monitors see the same proposals:

* the governor (``Governor.handle``, full semantics);
* a naive pure-Python range + rate check, written the way one first would;
* RTAMT's discrete-time online monitor on the equivalent STL specification, derived from
  the same compiled envelope (``rtamt_spec``: per-mode ranges and rates via ``prev``, both
  interlocks with input staleness, both link stages via ``once``).

Governor and naive runs alternate in blocks so machine noise hits both alike; the garbage
collector is paused inside each timed block for all three.
"""

from __future__ import annotations

import gc
import random
import time
from pathlib import Path

from edgegov.config.compile import compile_file
from edgegov.core import codes
from edgegov.core.envelope import Envelope
from edgegov.core.events import Command, Telemetry
from edgegov.core.governor import Governor
from edgegov.operator import OperatorSigner

ENVELOPE = Path(__file__).resolve().parents[2] / "boards" / "envelopes" / "arm-8axis.toml"
PERIOD_MS = 10
KEY = bytes(32)
BLOCKS = 10


def make_stream(env: Envelope, count: int, seed: int = 1) -> list[dict]:
    """Proposals (name → scaled int, or NaN) along smooth, mostly safe trajectories."""
    rng = random.Random(seed)
    n = env.n
    pos = [0] * n
    goal = [0] * n
    stream = []
    for k in range(count):
        values = {}
        for i in range(n):
            lo, hi = env.mode_min[0][i], env.mode_max[0][i]
            step = env.mode_rate[0][i] * PERIOD_MS // 1000 * 45 // 100  # 45 % of the rate
            if pos[i] == goal[i] or k % 400 == 0:
                goal[i] = rng.randint(lo // 2, hi // 2)
            pos[i] += max(-step, min(step, goal[i] - pos[i]))
            values[env.ch_names[i]] = pos[i]
        roll = rng.random()
        if roll < 0.05:
            i = rng.randrange(n)
            values[env.ch_names[i]] = pos[i] + env.mode_rate[0][i]  # a one-second jump
        elif roll < 0.07:
            values[env.ch_names[rng.randrange(n)]] = float("nan")
        stream.append(values)
    return stream


def _armed_governor(env: Envelope, first: dict, lineage=None, blob=b""):
    """Boot, reset, arm and engage the link; returns (governor, now_ms, last seq).
    With a ``lineage`` every step is recorded from the BOOT record on."""
    gov = Governor(env, KEY)
    signer = OperatorSigner(KEY, env.device_id)
    now = 0
    if lineage is None:
        gov.start(now)
    else:
        lineage.boot(gov, now, envelope_blob=blob)
    seq = 0
    events = [_telemetry(), signer.sign(codes.OP_RESET), signer.sign(codes.OP_ARM)]
    while events or gov.link != codes.LINK_OK:
        if events:
            event = events.pop(0)
        else:
            now += PERIOD_MS
            seq += 1
            event = Command(seq, dict.fromkeys(first, 0))
        d = gov.handle(event, now)
        if lineage is not None:
            lineage.record(event, now, d, gov)
    return gov, now, seq


def _telemetry() -> Telemetry:
    return Telemetry({"curtain_clear": True, "door_closed": True, "payload_kg": 100})


def time_governor(env: Envelope, stream: list[dict], gov: Governor, now: int, seq: int):
    tel = _telemetry()
    cmd = Command(seq, None)
    handle = gov.handle
    clock = time.perf_counter_ns
    samples = []
    for k, values in enumerate(stream):
        now += PERIOD_MS
        if k % 5 == 0:
            handle(tel, now)
        cmd.seq += 1
        cmd.values = values
        t0 = clock()
        handle(cmd, now)
        samples.append(clock() - t0)
    if gov.state != codes.ST_ARMED:
        raise RuntimeError("bench stream tripped the governor; the figures would be meaningless")
    return samples, now, cmd.seq


class NaiveCheck:
    """Range then rate, per channel, in floats of engineering-free scaled units."""

    def __init__(self, env: Envelope):
        self.limits = {
            env.ch_names[i]: (env.mode_min[0][i], env.mode_max[0][i], env.mode_rate[0][i])
            for i in range(env.n)
        }
        self.last = dict.fromkeys(self.limits, 0)
        self.last_ms = 0

    def check(self, values: dict, now_ms: int) -> dict:
        dt_s = (now_ms - self.last_ms) / 1000.0
        out = {}
        for name, value in values.items():
            lo, hi, rate = self.limits[name]
            value = min(max(value, lo), hi)
            prev = self.last[name]
            step = rate * dt_s
            if value > prev + step:
                value = prev + step
            elif value < prev - step:
                value = prev - step
            out[name] = value
        self.last.update(out)
        self.last_ms = now_ms
        return out


def time_naive(naive: NaiveCheck, stream: list[dict], now: int):
    clock = time.perf_counter_ns
    check = naive.check
    samples = []
    for values in stream:
        now += PERIOD_MS
        t0 = clock()
        check(values, now)
        samples.append(clock() - t0)
    return samples, now


_OPS = ("==", "!=", "<", "<=", ">", ">=")


def rtamt_spec(env: Envelope):
    """The envelope as one past-time STL formula, derived from the compiled tables: per mode
    each channel's range and step (rate per period), every interlock (a stale input counts
    as its condition holding), and both link stages as ``once`` windows over valid
    commands."""
    import rtamt

    spec = rtamt.StlDiscreteTimeSpecification()
    parts = []
    for var in ("mode", "valid", "out"):
        spec.declare_var(var, "float")
    for i, name in enumerate(env.ch_names):
        spec.declare_var(name, "float")
        for m in range(len(env.modes)):
            lo, hi = env.mode_min[m][i], env.mode_max[m][i]
            step = env.mode_rate[m][i] * PERIOD_MS // 1000
            parts.append(f"((mode == {m}) -> (({name} >= {lo}) and ({name} <= {hi}) and "
                         f"(abs({name} - prev {name}) <= {step})))")
    for name in env.in_names:
        spec.declare_var(name, "float")
        spec.declare_var(f"{name}_seen", "float")
    for k in range(env.n_interlocks):
        conds = []
        for inp, op, value in env.il_conds[k]:
            name = env.in_names[inp]
            stale_ticks = env.in_stale[inp] // PERIOD_MS
            conds.append(f"(({name} {_OPS[op]} {value}) or not (once[0:{stale_ticks}] "
                         f"({name}_seen >= 0.5)))")
        bounds = []
        for ch, lo, hi in env.il_limits[k]:
            name = env.ch_names[ch]
            if lo is not None:
                bounds.append(f"({name} >= {lo})")
            if hi is not None:
                bounds.append(f"({name} <= {hi})")
        parts.append(f"(({' and '.join(conds)}) -> ({' and '.join(bounds)}))")
    hold, trip = env.hold_after_ms // PERIOD_MS, env.trip_after_ms // PERIOD_MS
    parts.append(f"(once[0:{hold}] (valid >= 0.5))")
    parts.append(f"(once[0:{trip}] (valid >= 0.5))")
    spec.spec = "out = " + " and ".join(parts)
    spec.parse()
    spec.pastify()
    return spec


def time_rtamt(env: Envelope, stream: list[dict]) -> list[int]:
    spec = rtamt_spec(env)
    tel = _telemetry().values
    extra = [("mode", 0.0), ("valid", 1.0)]
    for name in env.in_names:
        extra += [(name, float(tel[name])), (f"{name}_seen", 1.0)]
    clock = time.perf_counter_ns
    samples = []
    for k, values in enumerate(stream):
        sample = [(name, float(v)) for name, v in values.items()] + extra
        t0 = clock()
        spec.update(k, sample)
        samples.append(clock() - t0)
    return samples


def _pct(samples: list[int], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000.0


def run(decisions: int = 20_000, echo=print) -> dict:
    env = Envelope.from_blob(compile_file(ENVELOPE).blob)
    stream = make_stream(env, decisions)
    gov, now, seq = _armed_governor(env, stream[0])
    naive = NaiveCheck(env)
    naive_now = 0
    gov_samples, naive_samples = [], []
    block = max(1, decisions // BLOCKS)
    for start in range(0, decisions, block):
        part = stream[start : start + block]
        gc.disable()
        try:
            s, now, seq = time_governor(env, part, gov, now, seq)
            gov_samples += s
            s, naive_now = time_naive(naive, part, naive_now)
            naive_samples += s
        finally:
            gc.enable()
    rt_count = min(2_000, decisions)
    gc.disable()
    try:
        rt_samples = time_rtamt(env, stream[:rt_count])
    finally:
        gc.enable()
    figures = {
        "decisions": decisions,
        "p50_us": _pct(gov_samples, 0.50),
        "p99_us": _pct(gov_samples, 0.99),
        "p999_us": _pct(gov_samples, 0.999),
        "naive_p50_us": _pct(naive_samples, 0.50),
        "naive_p99_us": _pct(naive_samples, 0.99),
        "rtamt_us": _pct(rt_samples, 0.50),
        "rtamt_updates": rt_count,
    }
    figures["ratio_vs_naive_p50"] = round(figures["p50_us"] / figures["naive_p50_us"], 3)
    figures["ratio_vs_naive_p99"] = round(figures["p99_us"] / figures["naive_p99_us"], 3)
    figures["ratio_vs_rtamt"] = round(figures["rtamt_us"] / figures["p50_us"], 1)
    _print(figures, echo)
    return figures


def _print(f: dict, echo) -> None:
    echo(f"edgegov bench core: {f['decisions']} decisions, 8 channels, 2 interlocks")
    echo(f"  governor  p50 {f['p50_us']:8.2f} us  p99 {f['p99_us']:8.2f} us  "
         f"p99.9 {f['p999_us']:8.2f} us")
    echo(f"  naive     p50 {f['naive_p50_us']:8.2f} us  p99 {f['naive_p99_us']:8.2f} us")
    echo(f"  rtamt     p50 {f['rtamt_us']:8.2f} us  ({f['rtamt_updates']} updates)")
    echo(f"  governor/naive p50 {f['ratio_vs_naive_p50']:.2f}x (goal <= 1.5)  "
         f"p99 {f['ratio_vs_naive_p99']:.2f}x (goal <= 2)")
    echo(f"  rtamt/governor {f['ratio_vs_rtamt']:.1f}x faster (goal >= 60)")
