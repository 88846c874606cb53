"""The check before an envelope change (edgegov.core.envswap), which a gateway and a board
both run: only DISARMED or TRIPPED, the same device, outputs and safe values inside the new
ranges; a channel dropped or rescaled only at its safe value. The outputs come from a real
governor: x driven to 100 mm, then an e-stop; x stops SS1 (ramping at 250 mm/s), so right
after the trip its output is still 100."""

from __future__ import annotations

from pathlib import Path

from edgegov.config.compile import compile_text
from edgegov.config.push import refusal
from edgegov.core import codes, envswap
from edgegov.core.auth import sign_op
from edgegov.core.envelope import Envelope
from edgegov.core.events import TICK, Command, Operator
from edgegov.core.governor import Governor

REPO = Path(__file__).resolve().parent.parent
TEXT = (REPO / "boards" / "microbit-v1" / "envelope.toml").read_text()
KEY = bytes(range(32))
X = "min = -500\nmax = 500\nrate_per_s = 250\nsafe = 0\nstop = \"SS1\""


def _env(text: str) -> Envelope:
    c = compile_text(text, "e.toml")
    return Envelope.from_blob(c.blob, c.digest)


def _x_limited(lo: int, hi: int) -> Envelope:
    return _env(TEXT.replace(X, X.replace("min = -500\nmax = 500",
                                          f"min = {lo}\nmax = {hi}"), 1))


def _tripped_with_x_at_100() -> Governor:
    env = _env(TEXT)
    gov = Governor(env, KEY)
    gov.start(0)
    now = 0
    for counter, action in ((1, codes.OP_RESET), (2, codes.OP_ARM)):
        mac = sign_op(KEY, env.device_id, action, 0, counter)
        gov.handle(Operator(action, 0, counter, mac), now)
    x = env.ch_index["x"]
    for seq in range(1, 80):  # engage, then x up by 2 mm per 10 ms (200 mm/s)
        now += 10
        values = {name: 0 for name in env.ch_names}
        values["x"] = min(100, max(0, (seq - 12) * 2))
        gov.handle(Command(seq, values), now)
    assert gov.state == codes.ST_ARMED and gov.out[x] == 100, (gov.state, gov.out)
    mac = sign_op(KEY, env.device_id, codes.OP_ESTOP, 0, 3)
    gov.handle(Operator(codes.OP_ESTOP, 0, 3, mac), now)
    gov.handle(TICK, now)
    assert gov.state == codes.ST_TRIPPED and gov.out[x] == 100
    return gov


def test_an_output_outside_the_new_range_is_refused_inside_it_is_not():
    gov = _tripped_with_x_at_100()
    assert envswap.swap_check(gov, _x_limited(-200, 200)) == (envswap.OK, 0, -1)
    x = gov.env.ch_index["x"]
    narrow = _x_limited(-50, 50)
    assert envswap.swap_check(gov, narrow) == (envswap.OUTSIDE, envswap.OUT_RANGE, x)
    assert refusal(gov, narrow) == "x's output 100 lies outside the new range [-50, 50] " \
                                   "(scaled)"


def test_a_dropped_channel_must_be_at_its_safe_value():
    gov = _tripped_with_x_at_100()
    start = TEXT.index("[channels.x]")
    without_x = TEXT[:start] + TEXT[TEXT.index("[channels.y]"):]
    x = gov.env.ch_index["x"]
    assert envswap.swap_check(gov, _env(without_x)) == (envswap.OUTSIDE, envswap.OUT_DROPPED,
                                                         x)


def test_armed_and_another_device_are_refused():
    env = _env(TEXT)
    gov = Governor(env, KEY)
    gov.start(0)
    other = _env(TEXT.replace('id = "mb-01"', 'id = "mb-02"'))
    assert envswap.swap_check(gov, other)[0] == envswap.OTHER_DEVICE
    for counter, action in ((1, codes.OP_RESET), (2, codes.OP_ARM)):
        mac = sign_op(KEY, env.device_id, action, 0, counter)
        gov.handle(Operator(action, 0, counter, mac), 0)
    assert gov.state == codes.ST_ARMED
    assert envswap.swap_check(gov, env)[0] == envswap.NOT_SAFE_STATE
    assert refusal(gov, env) == "refused while ARMED: disarm (or trip) first"
