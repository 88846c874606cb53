# ruff: noqa: UP031 -- transcripts are %-formatted like the firmware's replies
"""HIL scenarios for a board running the governor firmware, each returning a transcript
(lines of text) compared with ``hil/expected/<name>.exp`` (aioble-multitest style).

A scenario gets a ``Rig``: the board (``MicrobitQemu``, ``SoftMicrobit`` or a real one
behind ``SerialStream``), the framed link (``boardlink.GovLink``) and the e-stop pin.
The e-stop line is read from the board's GPIO OUT register (QMP on QEMU), never from what
the firmware prints. Transcripts hold only what is deterministic on a loaded machine:
verdicts, reasons, states, pin levels and outputs that do not depend on how many control
periods passed between two commands (those are written as a checked predicate).

Envelope: boards/microbit-v1/envelope.toml (channels gripper, lift, x, y in that order).
"""

from __future__ import annotations

import random
import time

from boardlink import GovLink, frame

ARM, RESET, ESTOP = 1, 2, 3
WAIT_S = 20.0  # generous: a loaded CI machine may run the board slowly


class Rig:
    def __init__(self, board, estop_pin: int = 0, kick_pin: int = 16):
        self.board = board
        self.link = GovLink(board.uart)
        self.estop_pin = estop_pin
        self.kick_pin = kick_pin
        self.seq = 0
        self.counter = 0
        self.lines: list[str] = []
        self.paced = False  # cmd() notes the board time (one status request) for pacing
        self.last_cmd_ms = 0

    def say(self, text: str) -> None:
        self.lines.append(text)

    def level(self) -> int:
        """The e-stop line: from the board's GPIO (QMP, the soft board's register), or, on
        a real port without a probe (``pin_level`` None), from the governor's status."""
        if self.board.pin_level is None:
            return 0 if self.link.status()["estop"] else 1
        return self.board.pin_level(self.estop_pin)

    def pin(self) -> str:
        return "high (run)" if self.level() else "low (e-stop)"

    def wait_pin(self, level: int, timeout: float = WAIT_S) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.level() == level:
                return True
            time.sleep(0.01)
        return False

    def booted(self) -> list[str]:
        return self.link.wait("B", WAIT_S)

    def op(self, action: int, arg: int = 0) -> dict:
        self.counter += 1
        return self.link.operator(action, arg, self.counter)

    def cmd(self, values) -> dict:
        self.seq += 1
        d = self.link.command(self.seq, values)
        self.last_cmd_ms = self.link.status()["now_ms"] if self.paced else 0
        return d

    def after_board_ms(self, ms: int) -> None:
        """Wait until the board's own clock (status ``now_ms``) has advanced ``ms`` since the
        last decided command: rate limits count board time, and a fast host link (a real
        port at 115200 baud) would otherwise send the next step within one period."""
        while self.link.status()["now_ms"] - self.last_cmd_ms < ms:
            time.sleep(0.002)

    def engage(self) -> None:
        """Reset, arm, and send safe commands until the link heartbeat is up."""
        self.op(RESET)
        self.op(ARM)
        deadline = time.monotonic() + WAIT_S
        while self.cmd([0, 0, 0, 0])["verdict"] != 0:
            if time.monotonic() > deadline:
                raise AssertionError("link did not engage")

    def status_line(self) -> str:
        s = self.link.status()
        return "status state=%d link=%d estop=%d causes=%d outputs=%s" % (
            s["state"], s["link"], s["estop"], s["causes"], s["outputs"])


def _d(d: dict, outputs=True) -> str:
    text = "verdict=%d reason=%d state=%d estop=%d" % (d["verdict"], d["reason"], d["state"],
                                                     d["estop"])
    return text + (" outputs={}".format(d["outputs"]) if outputs else "")


def in_envelope(r: Rig) -> None:
    r.booted()
    r.say("boot: pin0 " + r.pin())
    r.engage()
    r.say("engaged: pin0 " + r.pin())
    r.paced = True
    r.last_cmd_ms = r.link.status()["now_ms"]
    for values in ([2, 1, 3, -3], [5, 2, 8, -8], [9, 3, 12, -12], [9, 3, 12, -12]):
        r.after_board_ms(25)  # the largest step (gripper +4 at 200/s) needs 20 ms
        r.say(f"C {values} -> {_d(r.cmd(values))}")
    r.paced = False
    r.say(r.status_line())


def out_of_envelope(r: Rig) -> None:
    r.booted()
    r.engage()
    r.say("gripper 101 (reject) -> " + _d(r.cmd([101, 0, 0, 0])))
    d = r.cmd([0, 450, 0, 0])  # lift: clamp to 400, then the rate clamps further
    r.say("lift 450 (clamp) -> {} lift in (0, 400]: {}".format(_d(d, False),
                                                          0 < d["outputs"][1] <= 400))
    d = r.cmd([0, 0, 0, 0])  # back to safe (ramped: lift follows at its rate)
    d = r.cmd([0, d["outputs"][1], 0, 600])  # y beyond its range: trip
    r.say("y 600 (trip) -> " + _d(d, False))
    r.say("tripped: pin0 after ramp-down " + ("low (e-stop)" if r.wait_pin(0) else r.pin()))
    r.say("latched: C zeros -> " + _d(r.cmd([0, 0, 0, 0])))
    r.say("latched: arm -> " + _d(r.op(ARM)))
    r.say("reset -> " + _d(r.op(RESET)))
    r.say("reset does not restart: C -> " + _d(r.cmd([1, 0, 0, 0])))
    r.say(r.status_line())


def link_loss(r: Rig) -> int:
    """Returns nothing useful on a real board; the harness measures latency from the
    pulled lineage and the pin's falling edge (see ``estop_latency_ms``)."""
    r.booted()
    r.engage()
    for _ in range(3):
        r.cmd([0, 0, 0, 0])
    r.say("armed, link up: pin0 " + r.pin())
    r.say("silence: pin0 " + ("low (e-stop)" if r.wait_pin(0) else r.pin()))
    r.say(r.status_line())
    r.say("after the trip: C -> " + _d(r.cmd([0, 0, 0, 0])))


def board_reset(r: Rig) -> None:
    r.booted()
    r.engage()
    r.say("armed: pin0 " + r.pin())
    r.board.system_reset()
    r.say("reset line: pin0 " + r.pin())
    r.booted()
    r.say("booted: pin0 " + r.pin())
    r.counter = r.seq = 0  # the board forgot both (RAM)
    r.say(r.status_line())


def watchdog(r: Rig, supervisor) -> None:
    r.booted()
    r.engage()
    r.say("armed: pin0 " + r.pin())
    deadline = time.monotonic() + WAIT_S
    while supervisor.toggles < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    r.say("supervisor sees the loop kick: %s" % (supervisor.toggles >= 3))
    r.board.hang()  # the loop stops: no kicks, no periods
    deadline = time.monotonic() + WAIT_S
    while supervisor.resets == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    r.say("supervisor resets: %d" % supervisor.resets)
    r.booted()
    r.say("back: pin0 " + r.pin())
    r.counter = r.seq = 0
    r.say(r.status_line())


def garbage(r: Rig, seed: int = 7, bursts: int = 30) -> None:
    r.booted()
    r.engage()
    before = r.cmd([3, 1, 4, 1])
    rng = random.Random(seed)
    replies_before = len(r.link.seen)
    for _ in range(bursts):
        junk = bytes(rng.randrange(256) for _ in range(rng.randint(1, 60)))
        if rng.random() < 0.3:  # a frame with a wrong CRC, or one cut short
            junk += frame("C %d 9 9 9 9" % (r.seq + 1))[:-3] + b"00\n"
        r.board.uart.write(junk)
        d = r.cmd([3, 1, 4, 1])  # keeps the link alive; must decide as before
        if d["outputs"] != before["outputs"] or d["verdict"] != 0:
            r.say(f"garbage changed a decision: {_d(d)}")
    stray = [x for x in r.link.seen[replies_before:] if x[0] not in "D"]
    r.say("replies other than D: %d" % len(stray))
    s = r.link.status()
    same, counted = s["outputs"] == before["outputs"], s["bad_frames"] > 0
    r.say(f"outputs unchanged: {same}; bad frames counted: {counted}")
    r.say("state=%d estop pin %s" % (s["state"], r.pin()))


def lineage_session(r: Rig) -> None:
    """A short session with every kind of decision, left for the caller to pull."""
    r.booted()
    r.engage()
    for values in ([2, 1, 3, -3], [101, 2, 4, -4], [4, 3, 5, -5], [4, 450, 5, -5]):
        r.cmd(values)
    r.op(ESTOP)
    r.cmd([0, 0, 0, 0])
    r.say("session done: pin0 " + r.pin())


SCENARIOS = {
    "in_envelope": in_envelope,
    "out_of_envelope": out_of_envelope,
    "link_loss": link_loss,
    "board_reset": board_reset,
    "garbage": garbage,
}

__all__ = ["Rig", "SCENARIOS", "watchdog", "lineage_session", "ARM", "RESET", "ESTOP"]


def replay_pulled(image: bytes, compiled) -> tuple[int, bool, object]:
    """A ring image pulled from a board, checked on the gateway: (records, CRC/chain
    verification ok, replay report through the full core with ``compiled``'s envelope)."""
    from edgegov.core.envelope import Envelope
    from edgegov.core.replay import Replayer
    from edgegov.core.ring import scan_image
    from edgegov.core.verify import verify

    scan = scan_image(image)
    env = Envelope.from_blob(compiled.blob, compiled.digest)
    report = Replayer({compiled.digest: env}).run(scan.records)
    return len(scan.records), verify(scan.records, scan.problems).ok, report


def record_times(image: bytes) -> list[tuple[int, list]]:
    """(now_ms, record) for every record in a pulled ring image (no wrap expected)."""
    from edgegov.core.record import decode
    from edgegov.core.ring import scan_image

    out, t = [], 0
    for _, payload in scan_image(image).records:
        rec = decode(payload)
        t = rec[1] if rec[0] == 1 else t + rec[1]
        out.append((t, rec))
    return out


def link_deadline_ms(image: bytes, trip_after_ms: int) -> int:
    """The link-loss deadline: the last command decided before the link-lost event
    (event code 17) plus ``trip_after_ms``, in the board's now_ms."""
    last_cmd = None
    for t, rec in record_times(image):
        if rec[0] == 2:
            last_cmd = t
        if rec[0] == 3 and len(rec) == 8 and any(e[0] == 17 for e in rec[7]):
            break
    if last_cmd is None:
        raise ValueError("no command before the link-lost event")
    return last_cmd + trip_after_ms
