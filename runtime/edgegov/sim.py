"""A simulated spindle/press cell and a planner that sometimes proposes unsafe things.

Everything here runs on scripted time (``now_ms`` advanced by the caller) and a seeded
random generator, so a scenario is the same run after run. The plant follows the governed
outputs with a lag and reports door, e-stop, pressure and actual speed; the planner mostly
behaves, and at scripted moments asks for overspeed, too-fast ramps, out-of-range strokes,
NaN values and unknown channels, keeps the spindle turning with the door open, and goes
silent. A scripted operator resets, arms and answers approval requests.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from .core import codes
from .core.events import Command, Telemetry
from .operator import OperatorSigner

CONTROL_PERIOD_MS = 10
TELEMETRY_PERIOD_MS = 20


@dataclass
class Misbehaviour:
    """One scripted moment of the scenario: from ``at_ms`` for ``for_ms``."""

    at_ms: int
    for_ms: int
    kind: str
    note: str


# The built-in scenario (times in ms of scenario time).
SCRIPT = (
    Misbehaviour(2_000, 400, "fast_ramp", "asks for 0 → 6000 rpm at once (rate clamp)"),
    Misbehaviour(4_000, 300, "overspeed", "asks for 9200 rpm (needs approval; approved)"),
    Misbehaviour(6_000, 200, "press_over", "asks for a 150 mm stroke (beyond max: reject)"),
    Misbehaviour(6_600, 30, "nan", "sends NaN for the spindle (rejected, not liveness)"),
    Misbehaviour(6_800, 30, "unknown", "sends a 'turbo' channel (rejected)"),
    Misbehaviour(7_500, 300, "overspeed2", "asks for 9500 rpm again (denied)"),
    Misbehaviour(9_000, 200, "way_over", "asks for 12000 rpm (beyond approvable: reject)"),
    Misbehaviour(10_000, 600, "door_open", "door opens while the spindle turns (interlock trip)"),
    Misbehaviour(14_500, 1_200, "silent", "planner goes silent (hold, then link-loss trip)"),
    Misbehaviour(17_000, 800, "low_pressure", "hydraulic pressure drops (press clamped)"),
    Misbehaviour(18_500, 300, "estop", "e-stop button pressed (trip)"),
)


@dataclass
class Plant:
    """First-order lags toward the governed outputs; the door and e-stop are scripted."""

    spindle_rpm: int = 0
    press_mm10: int = 0
    door_closed: bool = True
    estop: bool = False
    pressure_bar10: int = 2_000

    def step(self, output: dict[str, int], dt_ms: int) -> None:
        self.spindle_rpm += (output.get("spindle", 0) - self.spindle_rpm) * dt_ms // 100
        self.press_mm10 += (output.get("press", 0) - self.press_mm10) * dt_ms // 50

    def telemetry(self) -> Telemetry:
        return Telemetry(
            {
                "door_closed": self.door_closed,
                "estop_button": self.estop,
                "hydraulic_pressure": self.pressure_bar10,
            }
        )


@dataclass
class Planner:
    """Proposes spindle/press/coolant setpoints; misbehaves as the script says.

    When behaving it ramps its own setpoints within the cell's rate and acceleration
    limits, so most proposals pass untouched.
    """

    rng: random.Random
    seq: int = 0
    spindle_goal: int = 3_000
    press_goal: int = 400
    spindle: int = 0
    spindle_vel: int = 0  # rpm/s
    press: int = 0
    coolant: int = 0

    def propose(self, now_ms: int, active: set[str]) -> Command | None:
        if "silent" in active:
            return None
        if now_ms % 1_500 == 0:
            self.spindle_goal = self.rng.randrange(1_000, 7_000, 100)
            self.press_goal = self.rng.randrange(0, 1_000, 10)
        self._ramp()
        values: dict[str, object] = {
            "spindle": self.spindle,
            "press": self.press,
            "coolant": self.coolant,
        }
        self._misbehave(values, active)
        self.seq += 1
        return Command(self.seq, values)

    def follow(self, outputs: dict[str, int]) -> None:
        """While the governor is not armed, start again from what the cell really does."""
        self.spindle = outputs.get("spindle", 0)
        self.spindle_vel = 0
        self.press = outputs.get("press", 0)
        self.coolant = outputs.get("coolant", 0)

    def _ramp(self) -> None:
        """Setpoints move toward the goals at 1500 rpm/s (accelerating at 5000 rpm/s²)."""
        gap = self.spindle_goal - self.spindle
        speed = min(abs(self.spindle_vel) + 50, 1_500, abs(gap) * 10)
        self.spindle_vel = speed if gap > 0 else -speed
        self.spindle += self.spindle_vel // 100
        self.press += max(-3, min(3, self.press_goal - self.press))
        coolant_goal = 60 if self.spindle > 0 else 0
        self.coolant += max(-1, min(1, coolant_goal - self.coolant))

    def _misbehave(self, values: dict, active: set[str]) -> None:
        if "fast_ramp" in active:
            values["spindle"] = 6_000
        if "overspeed" in active:
            values["spindle"] = 9_200
        if "overspeed2" in active:
            values["spindle"] = 9_500
        if "way_over" in active:
            values["spindle"] = 12_000
        if "press_over" in active:
            values["press"] = 1_500
        if "nan" in active:
            values["spindle"] = float("nan")
        if "unknown" in active:
            values["turbo"] = 1


@dataclass
class Operator:
    """Resets and re-arms after trips once the cause is gone; answers approval requests."""

    signer: OperatorSigner
    approvals_seen: int = 0
    wait_until_ms: int = 0
    queue: list = field(default_factory=list)

    def react(self, decision, now_ms: int) -> list:
        """Operator actions to send now, given the last decision."""
        for i in range(decision.n_events):
            code, arg = decision.ev_code[i], decision.ev_arg[i]
            if code == codes.E_APPROVAL_ASKED:
                self.approvals_seen += 1
                action = codes.OP_APPROVE if self.approvals_seen == 1 else codes.OP_DENY
                self.queue.append((now_ms + 200, action, arg))
        actions = []
        if decision.state == codes.ST_TRIPPED and now_ms >= self.wait_until_ms:
            actions.append(self.signer.sign(codes.OP_RESET))
            self.wait_until_ms = now_ms + 300
        elif decision.state == codes.ST_DISARMED and now_ms >= self.wait_until_ms:
            actions.append(self.signer.sign(codes.OP_ARM))
            self.wait_until_ms = now_ms + 300
        due = [q for q in self.queue if q[0] <= now_ms]
        self.queue = [q for q in self.queue if q[0] > now_ms]
        actions.extend(self.signer.sign(action, arg) for _, action, arg in due)
        return actions


def active_misbehaviours(now_ms: int, script=SCRIPT) -> set[str]:
    return {m.kind for m in script if m.at_ms <= now_ms < m.at_ms + m.for_ms}


def apply_plant_script(plant: Plant, active: set[str]) -> None:
    plant.door_closed = "door_open" not in active
    plant.estop = "estop" in active
    plant.pressure_bar10 = 300 if "low_pressure" in active else 2_000
