"""``edgegov``: the operator command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .device_cmds import deploy, emulate, hil
from .envelope_cmds import register as register_envelope_commands
from .fleet_cmds import register as register_fleet_commands
from .helptext import fill_short_help
from .lineage_cmds import lineage
from .modbus_cmds import register as register_modbus_commands
from .report_cmd import bench_report
from .service_cmds import register as register_service_commands
from .status_cmds import register as register_status_commands


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="edgegov")
def main() -> None:
    """edgegov: governance runtime for cyber-physical controllers."""


# --------------------------------------------------------------------------- lineage

main.add_command(lineage)

# --------------------------------------------------------------------------- demo


@main.command()
@click.option("--seconds", default=20, show_default=True, type=float,
              help="How long to run (wall time; scenario time with --simulated-time).")
@click.option("--seed", default=7, show_default=True, help="Planner randomness seed.")
@click.option("--out", "out_dir", default=".", show_default=True, type=click.Path(file_okay=False),
              help="Directory for the lineage (edgegov-demo.lineage) and the demo key.")
@click.option("--simulated-time", is_flag=True,
              help="Run the governor in-process on scripted time instead of the MQTT service "
                   "(deterministic, a second or two for the whole scenario).")
@click.option("--envelope", "envelope_path", type=click.Path(dir_okay=False),
              help="Envelope TOML for --simulated-time (default: the spindle-cell example).")
@click.option("--plc", is_flag=True,
              help="The planner is a PLC proposing over Modbus TCP to the service's Modbus "
                   "server (edgegov modbus map), instead of MQTT.")
def demo(seconds: float, seed: int, out_dir: str, simulated_time: bool,
         envelope_path: str | None, plc: bool) -> None:
    """The main job: the service on an embedded broker, a simulated cell and a misbehaving
    planner; ends by verifying and replaying the lineage it wrote."""
    if simulated_time and plc:
        raise click.UsageError("--plc runs the service: it does not combine with --simulated-time")
    if simulated_time:
        from .demo_view import run_demo

        sys.exit(run_demo(int(seconds), seed, envelope_path, out_dir))
    if envelope_path:
        raise click.UsageError("--envelope applies to --simulated-time")
    from edgegov.service.demo import run_service_demo

    sys.exit(run_service_demo(seconds, out_dir, seed, plc=plc))


# --------------------------------------------------------------------------- bench


@main.group()
def bench() -> None:
    """Benchmarks that print figures and ratios measured in the same run."""


def _bench_command(name: str, module: str, doc: str):
    """A ``bench NAME --decisions N --json PATH`` command running ``module.run``."""

    @bench.command(name, help=doc)
    @click.option("--decisions", default=20_000, show_default=True,
                  help="Decisions to measure.")
    @click.option("--json", "json_path", type=click.Path(dir_okay=False),
                  help="Write figures here.")
    def command(decisions: int, json_path: str | None) -> None:
        from importlib import import_module

        figures = import_module(f"edgegov_cli.{module}").run(decisions)
        if json_path:
            Path(json_path).write_text(json.dumps(figures, indent=2) + "\n")

    return command


_bench_command("core", "bench_core",
               "Decision latency vs a naive range+rate check and RTAMT, on 8 channels.")
_bench_command("lineage", "bench_lineage",
               "Record size, encode, durable append, recovery scan and replay speed vs peers.")


bench.add_command(bench_report)
register_service_commands(main, lineage, bench)
register_modbus_commands(main, bench)
register_fleet_commands(main, bench)
register_status_commands(main)
register_envelope_commands(main, bench)
main.add_command(emulate)
main.add_command(hil)
main.add_command(deploy)
fill_short_help(main)  # summaries end where their first sentence ends

if __name__ == "__main__":
    main()
