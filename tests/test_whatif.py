"""What-if, as the README's Lineage section describes it: run on the demo's lineage with the
README's own commands, the summary's parts, the JSON, --boots, exit codes and errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from edgegov.config.compile import compile_file, compile_text
from edgegov.core import codes
from edgegov.core.envelope import Envelope
from edgegov.core.events import Command, Telemetry
from edgegov.core.governor import Governor
from edgegov.demo import EXAMPLE
from edgegov.host.lineage_store import open_lineage
from edgegov.host.walltime import format_wall
from edgegov.host.whatif import WhatIfError, run_whatif
from edgegov.operator import OperatorSigner

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()
EDGEGOV = [sys.executable, "-m", "edgegov_cli.main"]
KEY = bytes(range(32))


def readme_example() -> list[str]:
    """The README's what-if example: its shell commands, one string each."""
    start = README.index("For example, take the demo's lineage")
    block = re.search(r"```sh\n(.*?)```", README[start:], re.S).group(1)
    return [re.sub(r"\s+#.*$", "", c).strip() for c in block.replace("\\\n", " ").splitlines()
            if c.strip()]


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    """The README's commands, run as a user would, in a fresh directory."""
    work = tmp_path_factory.mktemp("whatif")
    (work / "boards").symlink_to(REPO / "boards")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    results = [subprocess.run(cmd, shell=True, cwd=work, env=env, capture_output=True,
                              text=True, timeout=300) for cmd in readme_example()]
    return work, results


def test_the_readme_example_runs_as_written(example):
    work, results = example
    assert [r.returncode for r in results] == [0, 0, 1], [r.stderr for r in results]
    assert (work / "strict.toml").exists() and (work / "demo" / "edgegov-demo.lineage").exists()


def test_the_strict_envelope_adds_the_overspeed_trip_and_removes_the_door_trip(example):
    _, results = example
    out = results[-1].stdout
    # 4.000 s: the planner's scripted overspeed request (edgegov.sim: Misbehaviour(4_000));
    # 10.000 s: the door opens (Misbehaviour(10_000)) while the governor is still tripped.
    added = out[out.index("trips added: 1"):out.index("trips removed")]
    assert "t=4.000 s" in added and "above max (channels.spindle.max)" in added
    removed = out[out.index("trips removed: 1"):out.index("first difference")]
    assert "t=10.000 s" in removed and "interlock (interlocks.door_open)" in removed
    verdicts = next(line for line in out.splitlines() if line.strip().startswith("verdicts:"))
    assert verdicts.split(":", 1)[1].strip().startswith("CLAMP→TRIP ×")


def test_the_summary_comes_before_the_records_and_the_list_is_limited(example):
    _, results = example
    lines = results[-1].stdout.splitlines()
    order = [next(i for i, line in enumerate(lines) if key in line) for key in (
        "what-if:", "verdicts:", "trips added", "trips removed", "first difference",
        "records with another verdict or output")]
    assert order == sorted(order)
    shown = [line for line in lines[order[-1] + 1:] if line.startswith("    t=")]
    assert len(shown) == 10  # --show's default
    total = int(re.search(r"records with another verdict or output: (\d+)",
                          results[-1].stdout).group(1))
    assert f"... {total - 10} more" in lines[-1]


def test_the_first_difference_per_channel_is_in_engineering_units(example):
    _, results = example
    out = results[-1].stdout
    spindle = next(line for line in out.splitlines() if line.strip().startswith("spindle: t="))
    assert re.search(r"recorded \d+ rpm, what-if \d+ rpm", spindle), spindle
    press = next(line for line in out.splitlines() if line.strip().startswith("press: t="))
    assert " mm, what-if " in press


def test_the_envelope_the_demo_ran_gives_exit_0(example):
    work, _ = example
    proc = subprocess.run(EDGEGOV + ["lineage", "replay", "demo/edgegov-demo.lineage",
                                     "--envelope", str(EXAMPLE)], cwd=work,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"what-if: 0 of \d+ decisions differ", proc.stdout)


def test_json_is_in_engineering_units_with_the_scaled_integers(example, tmp_path):
    work, _ = example
    out = tmp_path / "w.json"
    proc = subprocess.run(EDGEGOV + ["lineage", "replay", "demo/edgegov-demo.lineage",
                                     "--envelope", "strict.toml", "--json", str(out)],
                          cwd=work, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    doc = json.loads(out.read_text())
    assert {"identical", "decisions", "differing", "transitions", "trips_added",
            "trips_removed", "first_difference", "groups", "records"} <= set(doc)
    assert doc["identical"] is False and doc["differing"] == len(doc["records"]) > 0
    assert [t["t_ms"] for t in doc["trips_added"]] == [4000]
    assert doc["trips_added"][0]["channel"] == "spindle"
    assert doc["trips_added"][0]["cause"] == "above max (channels.spindle.max)"
    assert [(t["t_ms"], t["channel"]) for t in doc["trips_removed"]] == [(10000, None)]
    assert sum(t["count"] for t in doc["transitions"]) == sum(
        1 for r in doc["records"] if r["kind"] == "verdict")
    press = doc["first_difference"]["press"]
    assert press["unit"] == "mm"
    assert press["recorded"] == pytest.approx(press["recorded_scaled"] * 0.1)
    assert press["whatif"] == pytest.approx(press["whatif_scaled"] * 0.1)
    rec = doc["records"][0]
    assert rec["recorded"]["output"]["press"] == pytest.approx(
        rec["recorded"]["output_scaled"]["press"] * 0.1)
    assert rec["whatif"]["verdict"] in ("ALLOW", "CLAMP", "REJECT", "ESCALATE", "HOLD", "TRIP")


def test_help_states_the_exit_codes():
    proc = subprocess.run(EDGEGOV + ["lineage", "replay", "--help"], capture_output=True,
                          text=True)
    text = " ".join(proc.stdout.split())
    assert "0 every record reproduced" in text and "1 a record differs" in text
    assert "2 error" in text and "--boots" in text


@pytest.mark.parametrize("args, message", [
    (["--boots", "2"], "boot 2 is not in the dump"),
    (["--boots", "one"], "--boots takes"),
])
def test_bad_boots_are_a_one_line_error_with_exit_2(example, args, message):
    work, _ = example
    proc = subprocess.run(EDGEGOV + ["lineage", "replay", "demo/edgegov-demo.lineage",
                                     "--envelope", "strict.toml", *args], cwd=work,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and message in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_a_bad_envelope_or_dump_is_exit_2(example, tmp_path):
    work, _ = example
    bad = tmp_path / "bad.toml"
    bad.write_text("[channels.x]\nmin = 5\nmax = 1\n")
    proc = subprocess.run(EDGEGOV + ["lineage", "replay", "demo/edgegov-demo.lineage",
                                     "--envelope", str(bad)], cwd=work, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and "not a valid envelope" in proc.stderr
    junk = tmp_path / "junk.lineage"
    junk.write_bytes(b"junk" * 2000)
    proc = subprocess.run(EDGEGOV + ["lineage", "replay", str(junk), "--envelope",
                                     str(EXAMPLE)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "not a readable lineage" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_progress_is_a_line_per_ten_percent_when_not_a_terminal(example):
    work, _ = example
    proc = subprocess.run(EDGEGOV + ["lineage", "replay", "demo/edgegov-demo.lineage",
                                     "--envelope", "strict.toml", "--progress"], cwd=work,
                          capture_output=True, text=True, timeout=120)
    lines = [line for line in proc.stderr.splitlines() if line.startswith("what-if: ")]
    assert [int(re.search(r"(\d+)%", line).group(1)) for line in lines][-1] == 100
    assert len(lines) <= 11
    quiet = subprocess.run(EDGEGOV + ["lineage", "replay", "demo/edgegov-demo.lineage",
                                      "--envelope", "strict.toml"], cwd=work,
                           capture_output=True, text=True, timeout=120)
    assert "%" not in quiet.stderr  # a small dump: no progress unless asked


# ---------------------------------------------------------------- two boots, two envelopes

def _two_boot_lineage(path: Path):
    """Boot 1 runs the example envelope; boot 2 (same file, after a restart) a copy whose
    spindle maximum is 5000 rpm. Both see the same commands, up to 7000 rpm. Wall time is
    recorded at each boot."""
    old = compile_file(EXAMPLE)
    new = compile_text(EXAMPLE.read_text().replace("max = 8000", "max = 5000", 1), "new.toml")
    walls = (1_767_000_000_000, 1_767_000_600_000)
    for compiled, wall in zip((old, new), walls, strict=True):
        env = Envelope.from_blob(compiled.blob, compiled.digest)
        gov = Governor(env, KEY)
        lineage = open_lineage(path, env, KEY, durable=False, block_count=64)
        signer = OperatorSigner(KEY, env.device_id)
        now = 0
        lineage.boot(gov, now, wall_ms=wall, envelope_blob=compiled.blob)
        plant = Telemetry({"door_closed": True, "estop_button": False,
                           "hydraulic_pressure": 2000})
        events = [plant, signer.sign(codes.OP_RESET), signer.sign(codes.OP_ARM)]
        target = 0
        for seq in range(1, 400):
            target = min(7000, target + 20)
            events.append(Command(seq, {"spindle": target}))
            if seq % 10 == 0:
                events.append(plant)
        for event in events:
            now += 10
            d = gov.handle(event, now)
            lineage.record(event, now, d, gov)
        lineage.checkpoint(gov, now)
        lineage.device.close()
    return old, new, walls


def test_what_if_applies_to_every_boot_even_the_one_that_ran_that_envelope(tmp_path):
    path = tmp_path / "two.lineage"
    old, new, walls = _two_boot_lineage(path)
    image = path.read_bytes()
    # The old envelope on both boots: boot 1 is unchanged, boot 2 would not have clamped.
    both = run_whatif(image, old)
    assert both.boots_in_dump == [1, 2] and both.exit_code == 1
    assert {r["boot"] for r in both.to_json()["records"]} == {2}
    assert run_whatif(image, old, boots="1").exit_code == 0
    second = run_whatif(image, old, boots="2").to_json()
    assert second["records"] == both.to_json()["records"] and second["boots"] == [2]
    assert second["decisions"] * 2 == both.decisions  # the two boots saw the same inputs
    # The new envelope on boot 1 asks an operator where the old one allowed; wall time too.
    first = run_whatif(image, new, boots=[1])
    spindle = first.to_json()["first_difference"]["spindle"]
    assert spindle["boot"] == 1 and spindle["recorded_scaled"] > 5000
    assert spindle["whatif"] <= 5000 < spindle["recorded"] and spindle["unit"] == "rpm"
    assert spindle["wall"] == format_wall(walls[0] + spindle["t_ms"])
    assert ("ALLOW", "ESCALATE") in [(a, b) for a, b, _ in first.transitions()]
    with pytest.raises(WhatIfError, match="boot 3 is not in the dump"):
        run_whatif(image, new, boots="1,3")


def test_margins_are_not_compared(tmp_path):
    """A spindle maximum of 7900 rpm instead of 8000 over commands up to 7000 rpm: the same
    verdicts and outputs, other margins only: no decision differs."""
    path = tmp_path / "two.lineage"
    _two_boot_lineage(path)
    nearer = compile_text(EXAMPLE.read_text().replace("max = 8000", "max = 7900", 1), "n.toml")
    result = run_whatif(path.read_bytes(), nearer, boots="1")
    assert result.identical and result.exit_code == 0 and result.decisions > 400
    assert result.margin_only > 50  # the ALLOWs nearer the maximum than the minimum
    assert "differ only in margin" in "\n".join(result.summary_lines())


def test_noise_is_grouped_counted_and_kept_out_of_the_record_list(example):
    work, _ = example
    tight = compile_text(EXAMPLE.read_text().replace("max = 8000", "max = 3000", 1), "t.toml")
    result = run_whatif((work / "demo" / "edgegov-demo.lineage").read_bytes(), tight)
    doc = result.to_json()
    noise = [r for r in doc["records"] if r["kind"] not in ("verdict", "output")]
    assert noise, "this envelope changes some rules and reasons without changing outputs"
    for r in noise:
        assert r["recorded"]["verdict"] == r["whatif"]["verdict"]
        assert r["recorded"]["output"] == r["whatif"]["output"]
    assert sum(g["count"] for g in doc["groups"]) == len(noise)
    lines = result.summary_lines()
    grouped = next(i for i, line in enumerate(lines) if "same verdict and outputs" in line)
    assert grouped > next(i for i, line in enumerate(lines) if "first difference" in line)
    listed = "\n".join(result.record_lines(show=10_000))
    assert all(f"seq {r['seq']}:" not in listed for r in noise)


def test_a_wrapped_ring_has_a_boot_0_before_its_first_surviving_boot():
    from test_lineage_replay import random_run

    compiled = compile_file(EXAMPLE)
    env = Envelope.from_blob(compiled.blob, compiled.digest)
    ring, _, _ = random_run(7, 6000, env, compiled.blob, block_size=1024, blocks=24,
                            checkpoint_every=32, freeze_after=None)
    image = ring.image()
    same = run_whatif(image, compiled, boots="0")
    assert same.boots_in_dump == [0] and same.exit_code == 0 and same.decisions > 200
    assert run_whatif(image, compiled).decisions == same.decisions
    with pytest.raises(WhatIfError, match="boot 1 is not in the dump"):
        run_whatif(image, compiled, boots="1")


def test_a_dump_without_the_envelope_it_ran_is_a_clear_error(tmp_path):
    from test_lineage_replay import random_run

    compiled = compile_file(EXAMPLE)
    env = Envelope.from_blob(compiled.blob, compiled.digest)
    # 1 KiB sectors cannot hold the ENVELOPE record: the dump does not carry it.
    ring, _, _ = random_run(3, 300, env, compiled.blob, block_size=1024, blocks=24)
    other = compile_text(EXAMPLE.read_text().replace("max = 8000", "max = 5000", 1), "o.toml")
    with pytest.raises(WhatIfError, match="needs the envelope the device ran"):
        run_whatif(ring.image(), other)
    assert run_whatif(ring.image(), compiled).identical  # the one it ran: readable
    path = tmp_path / "small.lineage"
    path.write_bytes(ring.image())
    bad = tmp_path / "other.toml"
    bad.write_text(EXAMPLE.read_text().replace("max = 8000", "max = 5000", 1))
    proc = subprocess.run(EDGEGOV + ["lineage", "replay", str(path), "--envelope", str(bad)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "needs the envelope the device ran" in proc.stderr


@pytest.mark.parametrize("cut", [1, 4096 * 255])
def test_a_cut_image_is_a_one_line_error_with_exit_2(example, tmp_path, cut):
    work, _ = example
    image = (work / "demo" / "edgegov-demo.lineage").read_bytes()
    path = tmp_path / "cut.lineage"
    path.write_bytes(image[:-cut])
    proc = subprocess.run(EDGEGOV + ["lineage", "replay", str(path), "--envelope",
                                     str(EXAMPLE)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "not a readable lineage" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_the_envelope_may_be_given_compiled_as_a_blob_or_a_path(example, tmp_path):
    work, _ = example
    image = (work / "demo" / "edgegov-demo.lineage").read_bytes()
    compiled = compile_file(work / "strict.toml")
    blob = tmp_path / "strict.blob"
    blob.write_bytes(compiled.blob)
    want = run_whatif(image, compiled).to_json()
    for given in (compiled.blob, str(work / "strict.toml"), blob,
                  Envelope.from_blob(compiled.blob, compiled.digest)):
        assert run_whatif(image, given).to_json() == want
