"""The ``aihwkit-slicing`` command.

* ``aihwkit-slicing sweep``: a drift sweep (defaults: the bundled digits network,
  the default tables, PCM noise, 1 s to 10 years); prints the summary and writes
  ``results.csv`` and ``accuracy_vs_time.png`` (``<metric>_vs_time.png``) to ``--out``.
* ``aihwkit-slicing tables``: lists the built-in tables; ``aihwkit-slicing tables NAME``
  shows one (devices, significances, levels and their encodings).

Bad input gets one line on stderr and exit status 2; no traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


class UsageError(Exception):
    """Bad input from the command line; printed as one line."""


def build_parser() -> argparse.ArgumentParser:
    from aihwkit_slicing.noise_models import DEFAULT_TIMES, NOISE_MODELS
    from aihwkit_slicing.rpu_configs import MAPPINGS, PERIPHERALS
    from aihwkit_slicing.scaling import SCALE_RULES

    parser = _Parser(prog="aihwkit-slicing", description="Quantized weight slicing for aihwkit.")
    commands = parser.add_subparsers(dest="command", metavar="{sweep,tables}")
    commands.required = True

    sweep = commands.add_parser(
        "sweep", help="program and drift a pretrained network with several tables",
        description="Program and drift a pretrained network with several programming tables "
        "and write results.csv and a plot of the metric against time.",
    )
    sweep.error = parser.error  # type: ignore[method-assign]
    sweep.add_argument("--out", type=Path, default=Path("results"),
                       help="output folder (default: results/)")
    sweep.add_argument("--model", default="digits",
                       help="digits (bundled CNN, default) or minilm (needs extra 'minilm')")
    sweep.add_argument("--tables", default=None,
                       help="comma-separated table names (see 'aihwkit-slicing tables'); "
                       "default: the default sweep")
    sweep.add_argument("--times", default=",".join(f"{t:g}" for t in DEFAULT_TIMES),
                       help="comma-separated inference times in seconds "
                       "(default: 1 s, 1 h, 1 day, 1 month, 1 year, 10 years)")
    sweep.add_argument("--repeats", default="3", help="programmings per table (default 3)")
    sweep.add_argument("--seed", default="0", help="random seed (default 0)")
    sweep.add_argument("--noise-model", default="pcm",
                       help=f"one of {', '.join(NOISE_MODELS)} (default pcm)")
    sweep.add_argument("--no-compensation", action="store_true",
                       help="switch global drift compensation off")
    sweep.add_argument("--peripherals", default="ideal", choices=PERIPHERALS,
                       help="ideal (weights only, default) or realistic (aihwkit's ADC/DAC)")
    sweep.add_argument("--mapping", default="tensor", choices=MAPPINGS,
                       help="aihwkit weight mapping: per tensor (default) or per column")
    sweep.add_argument("--scale", default="max", choices=SCALE_RULES,
                       help="how our converters map weights onto levels (default max)")
    sweep.add_argument("--per-channel", action="store_true",
                       help="one scale per output channel for our converters")
    sweep.add_argument("--quiet", action="store_true", help="no progress bar")

    tables = commands.add_parser("tables", help="list the built-in tables, or show one")
    tables.error = parser.error  # type: ignore[method-assign]
    tables.add_argument("name", nargs="?", help="a table to show in full")
    return parser


def _positive_int(name: str, text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"{name} must be an integer, got {text!r}") from None
    if value < minimum:
        raise UsageError(f"{name} must be >= {minimum}, got {value}")
    return value


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


def run_sweep_command(args: argparse.Namespace) -> int:
    from aihwkit_slicing.catalog import DEFAULT_SWEEP, known_names
    from aihwkit_slicing.noise_models import NOISE_MODELS
    from aihwkit_slicing.plotting import plot_metric_vs_time
    from aihwkit_slicing.sweep import iter_times, run_sweep
    from aihwkit_slicing.tasks import TASKS, load_task

    if args.model not in TASKS:
        raise UsageError(f"unknown model {args.model!r}; choose one of {', '.join(TASKS)}")
    tables = DEFAULT_SWEEP if args.tables is None else [
        t.strip() for t in args.tables.split(",") if t.strip()
    ]
    if not tables:
        raise UsageError("--tables names no table")
    unknown = [t for t in tables if t not in known_names()]
    if unknown:
        raise UsageError(f"unknown table {unknown[0]!r}; known tables: {', '.join(known_names())}")
    try:
        times = list(iter_times(args.times))
    except ValueError as error:
        raise UsageError(str(error)) from None
    repeats = _positive_int("--repeats", args.repeats, 1)
    seed = _positive_int("--seed", args.seed, 0)
    if args.noise_model not in NOISE_MODELS:
        raise UsageError(f"unknown noise model {args.noise_model!r}; choose one of "
                         f"{', '.join(NOISE_MODELS)}")
    out = _writable_folder(args.out)
    try:
        task = load_task(args.model)
    except ImportError as error:
        raise UsageError(str(error)) from None

    start = time.perf_counter()
    try:
        result = run_sweep(
            task, tables=tables, noise_models=[args.noise_model], times=times,
            repeats=repeats, seed=seed, compensation=not args.no_compensation,
            peripherals=args.peripherals, mapping=args.mapping, scale=args.scale,
            per_channel=args.per_channel, progress=not args.quiet,
        )
    except ValueError as error:
        raise UsageError(str(error)) from None
    elapsed = time.perf_counter() - start
    csv_path = result.write_csv(out / "results.csv")
    png_path = out / f"{result.metric}_vs_time.png"
    plot_metric_vs_time(result, png_path)
    print(result.format_summary())
    print(f"\nwrote {csv_path} and {png_path} ({elapsed:.0f} s)")
    return 0


def run_tables_command(args: argparse.Namespace) -> int:
    from aihwkit_slicing.catalog import BASELINES, TABLES

    if args.name is None:
        print(f"{'name':<16s} {'pairs':>5s} {'devices':>7s} {'levels':>6s}  significances")
        for name, table in TABLES.items():
            print(f"{name:<16s} {table.n_pairs:>5d} {table.n_devices:>7d} "
                  f"{table.n_levels:>6d}  [{', '.join(f'{f:g}' for f in table.f_lst)}]")
        print("\naihwkit baselines (continuous): " + ", ".join(BASELINES))
        return 0
    if args.name in BASELINES:
        print(f"{args.name}: {BASELINES[args.name]()} (aihwkit's continuous converter)")
        return 0
    if args.name not in TABLES:
        raise UsageError(f"unknown table {args.name!r}; known tables: "
                         f"{', '.join(list(TABLES) + list(BASELINES))}")
    print(TABLES[args.name].describe())
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``aihwkit-slicing`` console script."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        if args.command == "sweep":
            return run_sweep_command(args)
        return run_tables_command(args)
    except UsageError as error:
        print(f"aihwkit-slicing: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("aihwkit-slicing: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
