"""Shared helpers for the governor and envelope-config tests.

Time is scripted: every helper takes or advances ``now_ms`` by hand, nothing sleeps. The
``Harness`` keeps one governor, one operator signer (counter strictly increasing) and the
command sequence number, and returns ``Decision.snapshot()`` copies so a test can keep them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import settings

REPO = Path(__file__).resolve().parent.parent
# Tests import ``emuflash`` from emulation/; the runtime is installed in the venv
# but keep the source tree first so the tests exercise this checkout.
sys.path.insert(0, str(REPO / "emulation"))
if str(REPO / "runtime") not in sys.path:
    sys.path.insert(1, str(REPO / "runtime"))

settings.register_profile("ci", derandomize=True, deadline=None)
settings.load_profile("ci")

from edgegov.config.compile import compile_file, compile_text  # noqa: E402
from edgegov.core import codes as C  # noqa: E402
from edgegov.core.auth import sign_op  # noqa: E402
from edgegov.core.envelope import Envelope  # noqa: E402
from edgegov.core.events import TICK, Command, Fault, Operator, Telemetry  # noqa: E402
from edgegov.core.governor import Governor  # noqa: E402

ENVELOPES = REPO / "boards" / "envelopes"
KEY = bytes(range(32))

# A small envelope with round numbers (resolution 1 everywhere) that exercises every rule:
# spindle: SS1, escalate with approval, ramp hold; press: STO, reject, stay hold;
# feed: clamp, signed range; blade: trip on breach. Interlocks of each action.
TEST_TOML = """\
initial_mode = "run"

[device]
id = "test-cell"

[channels.spindle]
resolution = 1
min = 0
max = 1000
rate_per_s = 1000
safe = 0
stop = "SS1"
on_breach = "escalate"
approved_max = 1500
hold = "ramp"

[channels.press]
resolution = 1
min = 0
max = 100
rate_per_s = 1000
safe = 0
stop = "STO"
on_breach = "reject"
hold = "stay"

[channels.feed]
resolution = 1
min = -500
max = 500
rate_per_s = 100000
safe = 0
stop = "STO"
on_breach = "clamp"
hold = "stay"

[channels.blade]
resolution = 1
min = 0
max = 50
rate_per_s = 100000
safe = 0
stop = "STO"
on_breach = "trip"
hold = "stay"

[inputs.estop]
type = "bool"
role = "estop"
stale_after_ms = 5000

[inputs.door_closed]
type = "bool"
stale_after_ms = 5000

[inputs.pressure]
type = "number"
resolution = 1
min = 0
max = 400
stale_after_ms = 5000

[interlocks.door_open]
when = [{ input = "door_closed", eq = false }]
limits = { spindle = { max = 0 }, press = { max = 0 } }
on_breach = "trip"

[interlocks.low_pressure]
when = [{ input = "pressure", lt = 50 }]
limits = { press = { max = 10 } }
on_breach = "clamp"

[interlocks.over_pressure]
when = [{ input = "pressure", gt = 300 }]
limits = { feed = { min = -100, max = 100 } }
on_breach = "reject"

[modes.run]
description = "production"

[modes.setup]
channels.spindle = { max = 200, rate_per_s = 500 }
channels.press = { max = 30 }

[link]
hold_after_ms = 100
trip_after_ms = 500
engage_after_ms = 50

[approval]
timeout_ms = 1000
grant_ms = 2000
"""

HEALTHY = {"estop": False, "door_closed": True, "pressure": 200}


def compile_envelope(text: str, source: str = "<test>"):
    return compile_text(text, source)


def load_envelope(compiled) -> Envelope:
    return Envelope.from_blob(compiled.blob, compiled.digest)


class OpSigner:
    """Signs operator actions for one device with a strictly increasing counter."""

    def __init__(self, key: bytes, device_id: str, counter: int = 0):
        self.key = key
        self.device_id = device_id
        self.counter = counter

    def __call__(self, action: int, arg: int = 0) -> Operator:
        self.counter += 1
        mac = sign_op(self.key, self.device_id, action, arg, self.counter)
        return Operator(action, arg, self.counter, mac)

    def forged(self, action: int, arg: int = 0) -> Operator:
        """Fresh counter, but the MAC is made with a different key."""
        self.counter += 1
        mac = sign_op(b"not-the-key" * 3, self.device_id, action, arg, self.counter)
        return Operator(action, arg, self.counter, mac)

    def replay(self, op: Operator) -> Operator:
        return Operator(op.action, op.arg, op.counter, op.mac)


class Harness:
    """One governor driven by scripted time. Every call returns a decision snapshot."""

    def __init__(self, compiled, key: bytes = KEY, start_ms: int = 0):
        self.compiled = compiled
        self.env = load_envelope(compiled)
        self.gov = Governor(self.env, key)
        self.ops = OpSigner(key, self.env.device_id)
        self.now = start_ms
        self.seq = 0
        self.last = self.gov.start(start_ms).snapshot()

    # -- driving
    def handle(self, event, dt: int = 0) -> dict:
        self.now += dt
        self.last = self.gov.handle(event, self.now).snapshot()
        return self.last

    def tick(self, dt: int = 10) -> dict:
        return self.handle(TICK, dt)

    def ticks(self, n: int, dt: int = 10) -> list[dict]:
        return [self.tick(dt) for _ in range(n)]

    def cmd(self, dt: int = 10, seq: int | None = None, **values) -> dict:
        if seq is None:
            self.seq += 1
            seq = self.seq
        return self.handle(Command(seq, dict(values)), dt)

    def tel(self, dt: int = 0, **values) -> dict:
        return self.handle(Telemetry(dict(values)), dt)

    def healthy(self, dt: int = 0) -> dict:
        return self.handle(Telemetry(dict(HEALTHY)), dt)

    def op(self, action: int, arg: int = 0, dt: int = 0) -> dict:
        return self.handle(self.ops(action, arg), dt)

    def fault(self, code: int, active: bool = True, dt: int = 0) -> dict:
        return self.handle(Fault(code, active), dt)

    # -- reading
    def ch(self, name: str) -> int:
        return self.env.ch_index[name]

    def out(self, name: str) -> int:
        return self.gov.out[self.ch(name)]

    def rule(self, d: dict) -> str:
        return self.env.rules[d["rule"]]

    def safe_values(self) -> dict:
        return {n: self.env.ch_safe[i] for i, n in enumerate(self.env.ch_names)}

    # -- bringing up
    def reset_and_arm(self) -> None:
        if set(HEALTHY) <= set(self.env.in_names):
            self.healthy()
        d = self.op(C.OP_RESET)
        assert d["state"] == C.ST_DISARMED, d
        d = self.op(C.OP_ARM)
        assert d["state"] == C.ST_ARMED, d

    def engage(self, period: int = 10, **values) -> dict:
        """Send valid commands every ``period`` ms until the link engages."""
        values = values or self.safe_values()
        for _ in range(1000):
            d = self.cmd(dt=period, **values)
            if self.gov.link == C.LINK_OK:
                return d
        raise AssertionError("link never engaged")

    def arm_live(self, **values) -> dict:
        """TRIPPED at boot → reset → arm → link engaged with commands at safe values."""
        self.reset_and_arm()
        return self.engage(**values)


@pytest.fixture
def compiled_test():
    return compile_envelope(TEST_TOML)


@pytest.fixture
def h(compiled_test):
    return Harness(compiled_test)


@pytest.fixture
def live(compiled_test):
    """A harness already ARMED with an engaged link, outputs at safe."""
    hh = Harness(compiled_test)
    hh.arm_live()
    return hh


@pytest.fixture
def spindle_cell():
    return compile_file(ENVELOPES / "spindle-cell.toml")


__all__ = [
    "C", "Command", "Fault", "HEALTHY", "Harness", "KEY", "OpSigner", "Operator", "REPO",
    "TEST_TOML", "Telemetry", "compile_envelope", "load_envelope", "ENVELOPES",
]


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    """A plain Mosquitto for the test module (a module that needs another kind of broker,
    e.g. with TLS and an ACL, defines its own ``broker``)."""
    from mosquitto_fixture import plain_broker

    b = plain_broker(tmp_path_factory.mktemp("mosquitto"))
    yield b
    b.stop()


def damaged_copy(path: Path, out: Path, records: tuple[int, ...]) -> Path:
    """A copy of the lineage ``path`` at ``out`` in which the frames of the records at
    these ring positions no longer check (one payload bit flipped in each)."""
    from edgegov.host.lineage_store import read_dump

    dump = read_dump(path)
    image = bytearray(path.read_bytes())
    for k in records:
        image[dump.offsets[dump.records[k][0]] + 8] ^= 0x10
    out.write_bytes(bytes(image))
    return out
