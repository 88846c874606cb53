"""Run the HIL scenarios against a board and compare each with its transcript.

Used by ``edgegov hil``: the QEMU micro:bit with the frozen-governor hex by default, or a
real board on a serial port (``--port``) that runs the governor already (``edgegov
deploy``). On a real port the e-stop line is taken from the board's status replies unless
the rig wires it to a probe, a reset is a serial BREAK (the micro:bit's interface chip
resets the target on one), and the watchdog scenario, which must stop the CPU, runs only
on the emulated board.
"""

from __future__ import annotations

import difflib
import time
from dataclasses import dataclass, field
from pathlib import Path

import scenarios
from boardlink import SerialStream

EXPECTED = Path(__file__).resolve().parent / "expected"


@dataclass
class Result:
    name: str
    status: str  # "pass", "fail" or "skip"
    seconds: float = 0.0
    diff: list[str] = field(default_factory=list)
    why: str = ""


class SerialBoard:
    """A real board on a serial port, with the harness API the scenarios use. It has no
    GPIO probe: ``pin_level`` is None, so ``scenarios.Rig`` reads the e-stop line from
    the governor's status replies."""

    pin_level = None
    can_hang = False

    def __init__(self, port: str, baudrate: int = 115200) -> None:
        from qemu_microbit import Uart

        self.stream = SerialStream(port, baudrate)
        self.uart = Uart(self.stream)

    def system_reset(self) -> None:
        self.stream.port.send_break(0.25)
        time.sleep(0.5)

    def hang(self) -> None:
        raise NotImplementedError("a real board's CPU cannot be stopped from here")

    def close(self) -> None:
        self.stream.close()


def compare(name: str, lines: list[str]) -> list[str]:
    """The unified diff of a transcript against ``expected/<name>.exp`` (empty: equal)."""
    want = (EXPECTED / f"{name}.exp").read_text().splitlines()
    return list(difflib.unified_diff(want, lines, f"expected/{name}.exp", "board", lineterm=""))


def run(board, names: list[str], reset=None, supervisor=None, progress=None,
        compiled=None) -> list[Result]:
    """Each scenario from a fresh board (``reset()`` before each, when given); the
    ``watchdog`` scenario needs ``supervisor()`` → a started kick supervisor, and
    ``lineage_replay`` the board's ``compiled`` envelope (it has no transcript: the ring
    pulled over the link must verify and replay bit-exactly through the full core)."""
    results = []
    for name in names:
        if progress:
            progress(name)
        t0 = time.monotonic()
        if name == "watchdog" and (supervisor is None or not getattr(board, "can_hang", True)):
            results.append(Result(name, "skip", why="needs a board whose CPU can be stopped "
                                  "(the emulated one) and a kick supervisor"))
            continue
        if reset is not None:
            reset()
        rig = scenarios.Rig(board)
        try:
            if name == "watchdog":
                with supervisor() as sup:
                    scenarios.watchdog(rig, sup)
            elif name == "lineage_replay":
                scenarios.lineage_session(rig)
                n, ok, rep = scenarios.replay_pulled(rig.link.pull_lineage(), compiled)
                good = ok and rep.identical and rep.compared == n and n > 0
                why = f"{n} records, verify {'ok' if ok else 'FAILED'}, replay " + (
                    "identical" if rep.identical else f"{len(rep.divergences)} divergences")
                results.append(Result(name, "pass" if good else "fail",
                                      time.monotonic() - t0, [] if good else [why], why))
                continue
            else:
                scenarios.SCENARIOS[name](rig)
        except Exception as err:  # noqa: BLE001 - a scenario that breaks is a failure, reported
            results.append(Result(name, "fail", time.monotonic() - t0, rig.lines,
                                  f"{type(err).__name__}: {err}"))
            continue
        diff = compare(name, rig.lines)
        results.append(Result(name, "fail" if diff else "pass", time.monotonic() - t0, diff))
    return results


ALL = [*sorted(scenarios.SCENARIOS), "watchdog", "lineage_replay"]

__all__ = ["ALL", "Result", "SerialBoard", "compare", "run"]
