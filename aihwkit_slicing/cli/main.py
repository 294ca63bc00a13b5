"""The ``aihwkit-slicing`` command.

* ``aihwkit-slicing sweep``: a drift sweep (defaults: the bundled digits network,
  the default tables with MSE clipping per channel, PCM noise, 1 s to 10 years);
  prints the summary and writes ``results.csv`` (appended as units finish),
  ``sweep.json`` and ``<metric>_vs_time.png`` to ``--out``; ``--resume`` continues an
  interrupted sweep, ``--workers``/``--scheduler`` run it on Dask.
* ``aihwkit-slicing tables``: lists every table name the commands accept; ``tables
  NAME`` shows one, ``tables FILE.json`` checks a table file and shows it (see
  :mod:`aihwkit_slicing.cli.tables`).
* ``aihwkit-slicing allocate``: a table per layer under an average device budget,
  written as JSON for ``sweep --assignment`` (see :mod:`aihwkit_slicing.cli.allocate`).
* ``aihwkit-slicing frontier``: every slicing family at every device count, in one
  sweep (see :mod:`aihwkit_slicing.cli.frontier`).
* ``aihwkit-slicing layers``: the layers a sweep makes analog, by the names
  ``--layer-tables`` and assignments match (see :mod:`aihwkit_slicing.cli.layers`).
* ``aihwkit-slicing plot``: redraws a results folder's figure for any metric (see
  :mod:`aihwkit_slicing.cli.plot`).

``--model`` takes a bundled task (``digits``, ``minilm``) or a function of the user's
returning a ``Task``: ``package.module:factory`` or ``path/to/file.py:factory``.

Bad input gets one line on stderr and exit status 2; no traceback. Ctrl-C stops a
sweep with one line saying what was kept (exit status 130).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Optional, Sequence

from aihwkit_slicing.cli.parsing import (
    UsageError,
    check_model,
    load_model,
    model_help,
    parse_times,
    positive_int,
)

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    from aihwkit_slicing.cli.allocate import add_allocate_parser
    from aihwkit_slicing.cli.frontier import add_frontier_parser
    from aihwkit_slicing.cli.layers import add_layers_parser
    from aihwkit_slicing.cli.plot import add_plot_parser
    from aihwkit_slicing.cli.tables import add_tables_parser
    from aihwkit_slicing.integration.noise_models import NOISE_MODELS
    from aihwkit_slicing.integration.rpu_configs import MAPPINGS, PERIPHERALS
    from aihwkit_slicing.core.scaling import SCALE_RULES

    parser = _Parser(prog="aihwkit-slicing", description="Quantized weight slicing for aihwkit.")
    commands = parser.add_subparsers(dest="command",
                                     metavar="{sweep,tables,allocate,layers,plot,frontier}")
    commands.required = True

    sweep = commands.add_parser(
        "sweep", help="program and drift a pretrained network with several tables",
        description="Program and drift a pretrained network with several programming tables "
        "and write results.csv (one record per line, appended as units finish), sweep.json "
        "and a plot of the metric against time.",
    )
    sweep.error = parser.error  # type: ignore[method-assign]
    what = sweep.add_argument_group("what to sweep")
    what.add_argument("--model", default="digits", help=model_help())
    what.add_argument("--tables", default=None,
                      help="comma-separated table names (see 'aihwkit-slicing tables'); "
                      "default: the default sweep, unless tables come from files")
    what.add_argument("--table-file", action="append", default=[], metavar="PATH",
                      help="a table as JSON (see 'aihwkit-slicing tables NAME --json'); "
                      "repeatable")
    what.add_argument("--layer-tables", action="append", default=[], metavar="RULES",
                      help="per-layer tables as 'PATTERN=TABLE,...', first match wins, e.g. "
                      "'attention=seed,*=4x4lvl-base'; repeatable")
    what.add_argument("--assignment", action="append", default=[], metavar="PATH",
                      help="a per-layer assignment as JSON (e.g. from 'aihwkit-slicing "
                      "allocate'); one row named after the file; repeatable")
    what.add_argument("--times", default=None,
                      help="comma-separated inference times in seconds (default: 1 s, 1 h, "
                      "1 day, 1 month, 1 year, 10 years, or what the noise model knows)")
    what.add_argument("--repeats", default="3", help="programmings per table (default 3)")
    what.add_argument("--seed", default="0", help="random seed (default 0)")
    what.add_argument("--noise-model", default="pcm",
                      help=f"one of {', '.join(NOISE_MODELS)} (default pcm; measured: each "
                      "table's own device model, the \"device\" key of its JSON)")
    what.add_argument("--no-compensation", action="store_true",
                      help="switch global drift compensation off")
    what.add_argument("--peripherals", default="ideal", choices=PERIPHERALS,
                      help="ideal (weights only, default) or realistic (aihwkit's ADC/DAC)")
    what.add_argument("--mapping", default="column", choices=MAPPINGS,
                      help="aihwkit weight mapping: per output column (default: every "
                      "column's largest weight on the full range) or per tensor")
    scaling = sweep.add_argument_group(
        "how quantized tables map weights onto levels",
        "an --assignment that records its own rule (as 'allocate' writes) keeps it")
    scaling.add_argument("--scale", default="mse", choices=SCALE_RULES,
                         help="clip rule (default mse; aihwkit's convention is max)")
    channel = scaling.add_mutually_exclusive_group()
    channel.add_argument("--per-channel", dest="per_channel", action="store_true",
                         default=True, help="one scale per output channel (default)")
    channel.add_argument("--per-tensor", dest="per_channel", action="store_false",
                         help="one scale per weight tensor")
    scaling.add_argument("--percentile", default="99.9",
                         help="for --scale percentile: the percentile of |w| on the outermost "
                         "level (default 99.9)")
    scaling.add_argument("--noise-aware", default=None, metavar="TIMES",
                         help="clip and assign levels knowing each level's device error at "
                         "these times (seconds, comma-separated; needs --scale mse)")
    where = sweep.add_argument_group("where it runs")
    where.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    where.add_argument("--threads", default=None,
                       help="torch threads per process (default: cores / local workers)")
    workers = where.add_mutually_exclusive_group()
    workers.add_argument("--workers", default=None,
                         help="run on a local Dask cluster of this many processes")
    workers.add_argument("--scheduler", default=None, metavar="ADDRESS",
                         help="run on an existing Dask cluster (tcp://HOST:PORT)")
    output = sweep.add_argument_group("output")
    output.add_argument("--out", type=Path, default=Path("results"),
                        help="output folder (default: results/)")
    output.add_argument("--resume", action="store_true",
                        help="skip the units already in --out (same settings only)")
    output.add_argument("--quiet", action="store_true", help="no progress bar")
    output.add_argument("--baseline", default=None, metavar="TABLE",
                        help="also print every table's paired difference to this one "
                        "(same repeats, common random numbers) with its 95%% t-interval")

    add_tables_parser(commands, parser)
    add_allocate_parser(commands, parser)
    add_layers_parser(commands, parser)
    add_plot_parser(commands, parser)
    add_frontier_parser(commands, parser)
    return parser


def _writable_folder(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".aihwkit-slicing-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise UsageError(f"cannot write to output folder {str(path)!r}: "
                         f"{error.strerror or error}") from None
    return path


def _sweep_tables(args: argparse.Namespace) -> dict:
    """Display name -> table spec, from --tables, --table-file, --layer-tables and
    --assignment (each name once)."""
    import json

    from aihwkit_slicing.design.assignment import TableAssignment
    from aihwkit_slicing.design.candidates import named_spec
    from aihwkit_slicing.digital.spec import DigitalSlicing
    from aihwkit_slicing.integration.catalog import DEFAULT_SWEEP
    from aihwkit_slicing.core.table_files import load_table

    tables: dict = {}

    def add(name: str, spec: object, source: str) -> None:
        if name in tables:
            raise UsageError(f"{source} names the table {name!r} twice (or like another "
                             "table); give each table its own name")
        tables[name] = spec

    others = args.table_file or args.layer_tables or args.assignment
    names = DEFAULT_SWEEP if args.tables is None and not others else [
        t.strip() for t in (args.tables or "").split(",") if t.strip()]
    if args.tables is not None and not names:
        raise UsageError("--tables names no table")

    def spec_of(name: str, option: str) -> object:
        """A known name as it is; a tuned default candidate tuned for the noise model."""
        try:
            return named_spec(name, args.noise_model)
        except ValueError as error:
            raise UsageError(f"{option}: {error}") from None

    for name in names:
        if name.startswith("digital-"):  # digitally summed slicing, e.g. digital-2-equal
            try:
                add(name, DigitalSlicing.from_name(name), "--tables")
            except ValueError as error:
                raise UsageError(f"--tables: {error}") from None
            continue
        add(name, spec_of(name, "--tables"), "--tables")
    for path in args.table_file:
        try:
            table = load_table(path)
        except ValueError as error:
            raise UsageError(str(error)) from None
        add(table.name, table, f"--table-file {path}")
    for text in args.layer_tables:
        rules = []
        for item in text.split(","):
            pattern, sep, table = item.partition("=")
            if not sep or not pattern.strip() or not table.strip():
                raise UsageError(f"--layer-tables takes 'PATTERN=TABLE,...', got {item!r}")
            rules.append((pattern.strip(), spec_of(table.strip(), "--layer-tables")))
        add(text, TableAssignment(rules, name=text), "--layer-tables")
    for path in args.assignment:
        try:
            data = json.loads(Path(path).read_text())
            assignment = TableAssignment.from_dict(data, name=Path(path).stem)
        except OSError as error:
            raise UsageError(f"{path}: cannot read it ({error.strerror or error})") from None
        except json.JSONDecodeError as error:
            raise UsageError(f"{path}: not JSON ({error.msg} at line {error.lineno})") from None
        except (ValueError, TypeError) as error:
            raise UsageError(f"{path}: {error}") from None
        add(Path(path).stem, assignment, f"--assignment {path}")
    return tables


def run_sweep_command(args: argparse.Namespace) -> int:
    from aihwkit_slicing.integration.noise_models import NOISE_MODELS
    from aihwkit_slicing.experiments.plotting import plot_sweep
    from aihwkit_slicing.experiments.sweep import SweepInterrupted, run_sweep

    check_model(args.model)
    if args.noise_model not in NOISE_MODELS:
        raise UsageError(f"unknown noise model {args.noise_model!r}; choose one of "
                         f"{', '.join(NOISE_MODELS)}")
    tables = _sweep_tables(args)
    if args.baseline is not None and args.baseline not in tables:
        raise UsageError(f"--baseline {args.baseline!r} is not a swept table (tables: "
                         f"{', '.join(tables)})")
    times = None if args.times is None else parse_times("--times", args.times)
    noise_aware = None if args.noise_aware is None else parse_times("--noise-aware",
                                                                args.noise_aware)
    repeats = positive_int("--repeats", args.repeats, 1)
    seed = positive_int("--seed", args.seed, 0)
    threads = positive_int("--threads", args.threads, 1)
    workers = positive_int("--workers", args.workers, 1)
    try:
        percentile = float(args.percentile)
    except ValueError:
        raise UsageError(f"--percentile must be a number, got {args.percentile!r}") from None
    if noise_aware and args.scale != "mse":
        raise UsageError(f"--noise-aware needs --scale mse, got --scale {args.scale}")
    _check_device(args.device)
    out = _writable_folder(args.out)
    client = None
    if args.scheduler is not None:
        from aihwkit_slicing.experiments.distributed import connect

        try:
            client = connect(args.scheduler)
        except (ConnectionError, ValueError) as error:
            raise UsageError(str(error)) from None
    task = load_model(args.model)

    start = time.perf_counter()
    try:
        result = run_sweep(
            task, tables=tables, noise_models=[args.noise_model], times=times,
            repeats=repeats, seed=seed, compensation=not args.no_compensation,
            peripherals=args.peripherals, mapping=args.mapping, scale=args.scale,
            per_channel=args.per_channel, percentile=percentile, noise_aware=noise_aware,
            device=args.device, threads=threads, out=out, resume=args.resume,
            client=client, workers=workers, progress=not args.quiet,
        )
    except SweepInterrupted as stop:
        print(f"aihwkit-slicing: {stop}", file=sys.stderr)
        return 130
    except ValueError as error:
        raise UsageError(str(error)) from None
    finally:
        if client is not None:
            client.close()
    elapsed = time.perf_counter() - start
    png_path = out / f"{result.metric}_vs_time.png"
    plot_sweep(result, png_path)
    print(result.format_summary())
    if args.baseline is not None:
        from aihwkit_slicing.experiments.paired import format_paired, paired_differences

        print()
        print(format_paired(paired_differences(result, args.baseline), result.times))
    print(f"\nwrote {out / 'results.csv'}, {out / 'sweep.json'} and {png_path} "
          f"({elapsed:.0f} s)")
    return 0


def _check_device(text: str) -> None:
    import torch

    try:
        device = torch.device(text)
    except RuntimeError:
        raise UsageError(f"--device must be cpu, cuda or cuda:N, got {text!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {text}: no CUDA device is available here")
    if device.type not in ("cpu", "cuda"):
        raise UsageError(f"--device must be cpu, cuda or cuda:N, got {text!r}")


def _one_line_warning(message: Any, category: Any, filename: str, lineno: int,
                      line: Optional[str] = None) -> str:
    """Warnings on the command line: one line, no source location."""
    return f"aihwkit-slicing: warning: {message}\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``aihwkit-slicing`` console script."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    warnings.formatwarning = _one_line_warning
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        if args.command == "sweep":
            return run_sweep_command(args)
        if args.command == "allocate":
            from aihwkit_slicing.cli.allocate import run_allocate_command

            return run_allocate_command(args)
        if args.command == "frontier":
            from aihwkit_slicing.cli.frontier import run_frontier_command

            return run_frontier_command(args)
        if args.command == "layers":
            from aihwkit_slicing.cli.layers import run_layers_command

            return run_layers_command(args)
        if args.command == "plot":
            from aihwkit_slicing.cli.plot import run_plot_command

            return run_plot_command(args)
        from aihwkit_slicing.cli.tables import run_tables_command

        return run_tables_command(args)
    except UsageError as error:
        print(f"aihwkit-slicing: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("aihwkit-slicing: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (``aihwkit-slicing tables --json | head``): stop quietly,
        # and keep Python from complaining while it flushes stdout at exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
