"""``edgegov bench push``: an envelope push end to end, on the demo's lineage.

1. The demo scenario (simulated time) writes a lineage file (1 MiB ring).
2. What-if: that lineage replayed under the pushed envelope (press range tightened), timed
   against the span of time it covers (× real time).
3. Signed transfer + apply + answer: a real ``edgegov run`` service (``Runner``, embedded
   broker on loopback) takes pushes, alternating two envelopes; each is timed from signing
   to the device's answer (the governor restarts TRIPPED on the new envelope, recorded).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "boards" / "envelopes" / "spindle-cell.toml"


def run(seconds: int = 240, pushes: int = 10) -> dict:
    from edgegov.config.compile import compile_file, compile_text

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        old_text = EXAMPLE.read_text()
        new_text = old_text.replace("max = 120.0", "max = 100.0", 1)
        lineage = tmp / "demo.lineage"
        t0 = time.perf_counter()
        from edgegov.demo import run_scenario

        result = run_scenario(compile_file(EXAMPLE), seconds=seconds, lineage_path=lineage)
        gen_s = time.perf_counter() - t0
        span_s = _span_s(lineage)
        figures = {"dump_bytes": lineage.stat().st_size, "used_bytes": _used(lineage),
                   "records": result.lineage_records, "span_s": span_s,
                   "generate_s": round(gen_s, 2)}
        figures |= _whatif(lineage, compile_text(new_text, "new.toml"), span_s)
        figures |= asyncio.run(_pushes(tmp, old_text, new_text, pushes))
    figures["push_total_ms"] = round(figures["whatif_s"] * 1000 + figures["apply_p50_ms"], 1)
    click_echo(json.dumps(figures, indent=2))
    return figures


def click_echo(text: str) -> None:
    import click

    click.echo(text)


def _span_s(lineage: Path) -> float:
    """The time the records in the dump cover (after any wrap-around)."""
    from edgegov.host.lineage_read import decode_dump
    from edgegov.host.lineage_store import read_dump

    dump = read_dump(lineage)
    times = [row["t_ms"] for row in decode_dump(dump, dump.envelopes()) if "t_ms" in row]
    return (max(times) - min(times)) / 1000


def _used(lineage: Path) -> int:
    from edgegov.host.lineage_store import read_dump

    dump = read_dump(lineage)
    return sum(len(payload) for _, payload in dump.records)


def _whatif(lineage: Path, compiled, span_s: float) -> dict:
    from .envelope_cmds import _whatif as whatif

    t0 = time.perf_counter()
    lines, identical = whatif(str(lineage), compiled)
    wall = time.perf_counter() - t0
    return {"whatif_s": round(wall, 3), "whatif_x_realtime": round(span_s / wall, 1),
            "whatif_identical": identical, "whatif_summary": lines[:3]}


async def _pushes(tmp: Path, old_text: str, new_text: str, n: int) -> dict:
    from edgegov.config.push import sign_push
    from edgegov.host.net import free_port
    from edgegov.service.envelope_updates import send_envelope
    from edgegov.service.runner import Runner, ServiceConfig

    config = tmp / "cell.toml"
    config.write_text(old_text)
    key_file = tmp / "device.key"
    key = bytes(range(32))
    key_file.write_text(key.hex() + "\n")
    key_file.chmod(0o600)
    port = free_port()
    runner = Runner(ServiceConfig(envelope=str(config), key_file=str(key_file),
                                  lineage=str(tmp / "svc.lineage"), broker_port=port,
                                  durable=False, lineage_blocks=64, systemd=False))
    stop, started = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(runner.serve(stop, started))
    await started.wait()
    await asyncio.sleep(0.5)  # the service's own MQTT connection and subscriptions
    settings = runner.settings
    times, refused = [], 0
    try:
        for i in range(n):
            text = (new_text if i % 2 == 0 else old_text).encode()
            t0 = time.perf_counter()
            push = sign_push(key, runner.env.device_id, text, 1000 + i)
            answer = await send_envelope(settings, runner.topics, push, 10.0)
            times.append((time.perf_counter() - t0) * 1000)
            refused += not answer.get("ok")
    finally:
        stop.set()
        await task
    return {"pushes": n, "refused": refused, "apply_p50_ms": round(statistics.median(times), 1),
            "apply_max_ms": round(max(times), 1)}


__all__ = ["run"]
