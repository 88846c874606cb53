"""``edgegov emulate``, ``edgegov deploy`` and ``edgegov lineage pull-serial``: boards.

- ``emulate --board microbit-v1``: boots QEMU's ``microbit`` machine with MicroPython
  (Debian's hex or ``--hex``), deploys the governor and the compiled envelope through the
  raw REPL, prints the UART and QMP endpoints and runs until Ctrl-C.
- ``deploy --board NAME --port PORT --envelope FILE``: mpremote for full-core boards;
  chunked raw-REPL writes for the micro:bit (its filesystem has no ``stat``); every file
  is read back and compared by SHA-256. ``PORT`` is a serial device or any pyserial URL
  (``socket://127.0.0.1:4444`` reaches an emulated board's UART).
- ``hil [--scenario NAME] [--port PORT]``: the HIL scenarios (hil/scenarios.py) against
  the emulated micro:bit with the frozen-governor hex, or a real board on ``PORT``, each
  compared with its transcript in hil/expected/.
- ``lineage pull-serial --port PORT -o FILE``: the board's lineage ring image over its
  CRC-framed link (firmware/PROTOCOL.md ``L``), written as a dump ``edgegov lineage
  verify|replay`` read.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import click

from .lineage_cmds import lineage

REPO = Path(__file__).resolve().parent.parent.parent
for _sub in ("firmware", "emulation", "hil"):
    if str(REPO / _sub) not in sys.path:
        sys.path.insert(0, str(REPO / _sub))

__all__ = ["emulate", "deploy", "hil", "pull_serial", "board_files"]


def board_files(board_name: str, envelope: str | None, key: bytes = b"",
                frozen: bool = False) -> tuple:
    """(Board, {name on board: bytes}) for ``board_name`` and the envelope to compile."""
    import build
    from edgegov.config.compile import compile_file

    board = build.load_board(board_name)
    compiled = compile_file(envelope or board.envelope)
    if board.tier == "minimal":
        return board, build.microbit_files(compiled.blob, board, frozen)
    if board.tier == "full":
        return board, build.full_core_files(compiled.blob, board, key)
    raise click.UsageError(f"board {board_name!r} is a {board.tier} target: run `edgegov run`")


def _report(landed) -> bool:
    ok = True
    for x in landed:
        click.echo(f"{'ok ' if x.ok else 'BAD'} {x.name:<28} {x.size:>6} B  sha256 {x.sha256[:16]}")
        ok &= x.ok
    return ok


def _open_uart(port: str, tries: int = 4):
    """The board's UART with a REPL prompt on it. A TCP UART (QEMU ``server=on``) may take
    a moment to accept a new client after the previous one left: reconnect and retry."""
    from boardlink import SerialStream
    from qemu_microbit import EmulationError, Uart

    for attempt in range(tries):
        try:
            uart = Uart(SerialStream(port))
        except Exception:  # noqa: BLE001 - pyserial raises several kinds for a refused URL
            if attempt == tries - 1:
                raise
            time.sleep(0.5)
            continue
        try:
            uart.interrupt(timeout=5.0)
            return uart
        except EmulationError:
            uart.sock.close()
            if attempt == tries - 1:
                raise
            time.sleep(0.5)
    raise AssertionError("unreachable")


@click.command("deploy")
@click.option("--board", "board_name", required=True, help="boards/<NAME>/board.toml")
@click.option("--port", required=True, help="Serial device or pyserial URL (socket://h:p).")
@click.option("--envelope", type=click.Path(exists=True, dir_okay=False),
              help="Envelope TOML (default: the board's example envelope).")
@click.option("--key", "key_path", type=click.Path(exists=True, dir_okay=False),
              help="Device key for operator MACs (full-core boards).")
@click.option("--no-main", is_flag=True,
              help="Do not install main.py (the board stays at its REPL).")
@click.option("--frozen", is_flag=True,
              help="micro:bit running the hex with the governor frozen in flash (make "
                   "microbit-hex): copy only the envelope config and main.py.")
def deploy(board_name: str, port: str, envelope: str | None, key_path: str | None,
           no_main: bool, frozen: bool) -> None:
    """Copy the firmware and the compiled envelope to a board and verify what landed."""
    import deploy as fw_deploy

    key = Path(key_path).read_bytes() if key_path else b""
    board, files = board_files(board_name, envelope, key, frozen)
    if no_main:
        files.pop("main.py", None)
    if board.tier == "minimal":
        uart = _open_uart(port)
        try:
            landed = fw_deploy.deploy_raw_repl(uart, files)
        finally:
            uart.sock.close()
    else:
        with tempfile.TemporaryDirectory() as tmp:
            landed = fw_deploy.deploy_mpremote(port, files, Path(tmp))
    if not _report(landed):
        click.echo("deploy: read-back differs; the board was not left with a main.py", err=True)
        sys.exit(1)
    click.echo(f"deployed {len(landed)} files to {board.name} on {port}")


def _report_boot(uart, timeout: float = 15.0) -> None:
    """Say whether the governor booted (its ``B heap_free ring_bytes`` frame) or not."""
    from boardlink import GovLink, LinkError

    try:
        fields = GovLink(uart).wait("B", timeout)
        click.echo(f"governor up: heap free {fields[1]} B, lineage ring {fields[2]} B")
    except LinkError:
        tail = bytes(uart.log[-300:]).decode(errors="replace").strip()
        click.echo("governor did not boot (on the stock hex the governor does not fit the "
                   "heap: use the frozen hex, `make microbit-hex`; firmware/microbit/README.md)"
                   "; the board is at its REPL with the e-stop line low. Last output: "
                   f"{tail[-200:]}", err=True)


@click.command("emulate")
@click.option("--board", "board_name", default="microbit-v1", show_default=True,
              help="Board to emulate (boards/NAME/board.toml).")
@click.option("--hex", "hex_path", type=click.Path(exists=True, dir_okay=False),
              help="MicroPython hex (default: the frozen-governor hex of `make microbit-hex` "
                   "if built, else Debian's firmware-microbit-micropython).")
@click.option("--frozen/--no-frozen", default=None,
              help="Whether the hex has the governor frozen in flash (then only the config "
                   "and main.py are deployed). Default: yes for the frozen-governor hex.")
@click.option("--icount", type=int, default=None,
              help="-icount shift=N,sleep=on: virtual time from the instruction count.")
@click.option("--envelope", type=click.Path(exists=True, dir_okay=False),
              help="Envelope TOML to deploy (default: the board's example envelope).")
@click.option("--no-deploy", is_flag=True, help="Boot the bare firmware (REPL only).")
def emulate(board_name: str, hex_path: str | None, frozen: bool | None, icount: int | None,
            envelope: str | None, no_deploy: bool) -> None:
    """Boot an emulated board, deploy the governor, print endpoints, run until Ctrl-C."""
    import build
    import deploy as fw_deploy
    from qemu_microbit import DEFAULT_HEX, EmulationError, MicrobitQemu

    if board_name != "microbit-v1":
        raise click.UsageError("only microbit-v1 is emulated in QEMU here; STM32F4 Discovery "
                               "runs under Renode (emulation/renode/)")
    if hex_path is None:
        hex_path = str(build.FROZEN_HEX) if build.FROZEN_HEX.exists() else DEFAULT_HEX
        if hex_path == DEFAULT_HEX and not no_deploy:
            click.echo("emulate: no frozen-governor hex (build it: make microbit-hex); "
                       "booting the stock hex, where the governor does not fit", err=True)
    if frozen is None:
        frozen = Path(hex_path).resolve() == build.FROZEN_HEX.resolve()
    click.echo(f"hex: {hex_path}" + (" (governor frozen in flash)" if frozen else ""))
    try:
        mb = MicrobitQemu(hex_path, icount_shift=icount, icount_sleep=True).start()
    except EmulationError as err:
        click.echo(f"emulate: {err}", err=True)
        sys.exit(2)
    try:
        mb.uart.interrupt()
        if not no_deploy:
            _, files = board_files(board_name, envelope, frozen=frozen)
            if not _report(fw_deploy.deploy_raw_repl(mb.uart, files)):
                click.echo("emulate: deploy read-back differs", err=True)
                sys.exit(1)
            fw_deploy.reboot_raw_repl(mb.uart)
            _report_boot(mb.uart)
        # hand the UART over to the user: close our connection (wait=off: they can connect)
        mb.uart.sock.close()
        mb.uart = None
        click.echo(f"UART  socket://127.0.0.1:{mb.port}")
        click.echo(f"QMP   {mb.qmp_path}")
        click.echo(f"e-stop: GPIO OUT {0x50000504:#x} bit 3 (pin0); Ctrl-C stops the board")
        while mb.proc.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        mb.close()


@click.command("hil")
@click.option("--scenario", "names", multiple=True,
              help="Run only this scenario (repeatable): in_envelope, out_of_envelope, "
                   "link_loss, board_reset, garbage, watchdog, lineage_replay. Default: all.")
@click.option("--port", help="A real board running the governor (edgegov deploy) on this "
              "serial device or pyserial URL; default: the emulated micro:bit.")
@click.option("--baud", default=115200, show_default=True, help="Line rate with --port.")
@click.option("--hex", "hex_path", type=click.Path(exists=True, dir_okay=False),
              help="Frozen-governor hex for the emulated board (default: make microbit-hex).")
@click.option("--envelope", type=click.Path(exists=True, dir_okay=False),
              help="The envelope the board runs, for lineage_replay with --port (default: "
                   "boards/microbit-v1's, which the scenarios are written for).")
def hil(names: tuple[str, ...], port: str | None, baud: int, hex_path: str | None,
        envelope: str | None) -> None:
    """Run the HIL scenarios against a board and compare each with its transcript."""
    import hilrun

    unknown = [n for n in names if n not in hilrun.ALL]
    if unknown:
        raise click.UsageError(f"unknown scenario(s) {', '.join(unknown)}; "
                               f"one of {', '.join(hilrun.ALL)}")
    names = list(names) or hilrun.ALL
    t0 = time.monotonic()

    def progress(name: str) -> None:
        click.echo(f"  {name} ...", err=True)

    if port:
        import build
        from edgegov.config.compile import compile_file

        compiled = compile_file(envelope or build.load_board("microbit-v1").envelope)
        board = hilrun.SerialBoard(port, baud)
        click.echo(f"board on {port}: e-stop line from its status replies, reset by BREAK")
        try:
            results = hilrun.run(board, names, reset=board.system_reset, progress=progress,
                                 compiled=compiled)
        finally:
            board.close()
    else:
        results = _hil_emulated(names, hex_path, progress)
    failed = 0
    for r in results:
        click.echo(f"{r.status.upper():5} {r.name:16} {r.seconds:6.1f} s  {r.why}".rstrip())
        if r.status == "fail":
            failed += 1
            for line in r.diff[:40]:
                click.echo(f"      {line}")
    passed = sum(r.status == "pass" for r in results)
    click.echo(f"{passed} passed, {failed} failed ({time.monotonic() - t0:.1f} s)")
    sys.exit(1 if failed else 0)


def _hil_emulated(names: list[str], hex_path: str | None, progress) -> list:
    import build
    import deploy as fw_deploy
    import hilrun
    from edgegov.config.compile import compile_file
    from qemu_microbit import EmulationError, MicrobitQemu
    from watchdog import KickSupervisor

    hex_file = Path(hex_path) if hex_path else build.FROZEN_HEX
    if not hex_file.exists():
        click.echo(f"hil: {hex_file} is missing: build it with `make microbit-hex`", err=True)
        sys.exit(2)
    board = build.load_board("microbit-v1")
    compiled = compile_file(board.envelope)
    files = build.microbit_files(compiled.blob, board, frozen=True)
    click.echo(f"emulated micro:bit (QEMU, -icount shift=4) with {hex_file}")
    try:
        mb = MicrobitQemu(hex_file, icount_shift=4, icount_sleep=True, baud=9600).start()
    except EmulationError as err:
        click.echo(f"hil: {err}", err=True)
        sys.exit(2)
    try:
        mb.uart.interrupt()
        if not _report(fw_deploy.deploy_raw_repl(mb.uart, files)):
            click.echo("hil: deploy read-back differs", err=True)
            sys.exit(1)
        kick = board.get("pins", "watchdog_kick")
        return hilrun.run(mb, names, reset=mb.system_reset, progress=progress,
                          supervisor=lambda: KickSupervisor(mb, kick, timeout_s=1.0),
                          compiled=compiled)
    finally:
        mb.close()


@lineage.command("pull-serial")
@click.option("--port", required=True, help="Serial device or pyserial URL (socket://h:p).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="File to write the ring image to.")
@click.option("--timeout", default=5.0, show_default=True, help="Seconds per reply.")
def pull_serial(port: str, output: str, timeout: float) -> None:
    """Pull a running board's lineage ring over its CRC-framed serial link."""
    pull_serial_to(port, output, timeout)


def pull_serial_to(port: str, output: str, timeout: float) -> None:
    """``lineage pull-serial`` and ``lineage pull --serial``: the host's wall time (``T``),
    a seal (``P``) where the firmware has one, then the ring image into OUTPUT and the head
    attestation beside it (OUTPUT.att.json)."""
    from boardlink import GovLink, LinkError, SerialStream
    from edgegov.host import attest
    from edgegov.host.wallsource import system_wall_ms
    from edgegov.service.client import default_counter
    from qemu_microbit import Uart

    uart = Uart(SerialStream(port))
    try:
        link = GovLink(uart)
        link.set_time(system_wall_ms(), timeout)
        counter = default_counter()
        att = link.seal(counter, timeout)
        image = link.pull_lineage(timeout)
    except LinkError as err:
        click.echo(f"pull-serial: {err}", err=True)
        sys.exit(2)
    finally:
        uart.sock.close()
    Path(output).write_bytes(image)
    if att is None or att["counter"] != counter:
        click.echo(f"{len(image)} bytes -> {output} (not sealed: this board's firmware has no "
                   "sealed pull, so records after its last checkpoint are CRC only); try: "
                   f"edgegov lineage verify {output}")
        return
    attest.write(attest.path_for(output), att)
    click.echo(f"{len(image)} bytes -> {output}, sealed at seq {att['head_seq']}; head "
               f"attestation -> {attest.path_for(output)}; try: edgegov lineage verify "
               f"{output} --key KEY")
