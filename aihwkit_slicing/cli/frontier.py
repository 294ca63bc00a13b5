"""``aihwkit-slicing frontier``: every slicing family at every device count, in one sweep.

Writes ``frontier.csv`` (the tidy frontier: family, devices per weight, time, mean and
confidence interval, paired difference to the baseline), ``frontier.png`` and the
sweep's own ``results.csv`` / ``sweep.json`` (``--resume`` continues it) to ``--out``
(see :mod:`aihwkit_slicing.experiments.frontier`).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Dict, List, Sequence

from aihwkit_slicing.cli.parsing import (
    UsageError,
    check_model,
    load_model,
    parse_times,
    positive_int,
)

#: What ``--quick`` runs: the digits CNN, 2 and 4 devices, 1 day, 2 repeats, plain tables.
QUICK = {"model": "digits", "devices": "2,4", "times": "86400", "repeats": "2",
         "baseline": "npair-equal@4"}


def add_frontier_parser(commands: argparse._SubParsersAction,  # pylint: disable=protected-access
                        parser: argparse.ArgumentParser) -> None:
    """Add the ``frontier`` subcommand to ``commands`` (errors go through ``parser``)."""
    from aihwkit_slicing.experiments.frontier import DEFAULT_BASELINE, FAMILIES

    frontier = commands.add_parser(
        "frontier", help="every slicing family at every device count, in one sweep",
        description="For each device count, sweep one configuration of every family "
        "(continuous and quantized analog summation, digital summation, an allocation) "
        "with the same random numbers in each repeat, and write the frontier of "
        "fidelity against devices per weight as CSV and a plot. Families: "
        + "; ".join(f"{name}: {text}" for name, text in FAMILIES.items()) + ".")
    frontier.error = parser.error  # type: ignore[method-assign]
    frontier.add_argument("--model", default="minilm",
                          help="the task (default minilm; --quick: digits)")
    frontier.add_argument("--devices", default="2,4,6,8,16",
                          help="comma-separated devices per weight, even (default "
                          "2,4,6,8,16)")
    frontier.add_argument("--families", default=None,
                          help=f"comma-separated families (default all: "
                          f"{','.join(FAMILIES)})")
    frontier.add_argument("--times", default="86400,31536000",
                          help="comma-separated inference times in seconds (default 1 day "
                          "and 1 year)")
    frontier.add_argument("--repeats", default="3", help="programmings per configuration "
                          "(default 3)")
    frontier.add_argument("--allocation-repeats", default="1",
                          help="programmings per layer and candidate when the allocation "
                          "measures each layer's sensitivity (default 1: on MiniLM each "
                          "costs 37 layers x 6 candidates network evaluations)")
    frontier.add_argument("--seed", default="0", help="random seed (default 0)")
    frontier.add_argument("--baseline", default=DEFAULT_BASELINE,
                          help=f"configuration paired differences are taken to (default "
                          f"{DEFAULT_BASELINE})")
    frontier.add_argument("--plain", action="store_true",
                          help="plain quantized tables and candidates, no encoding tuning")
    frontier.add_argument("--quick", action="store_true",
                          help="a small, fast frontier: " + ", ".join(
                              f"--{k} {v}" for k, v in QUICK.items()) + ", --plain")
    frontier.add_argument("--threads", default=None, help="torch threads per process")
    frontier.add_argument("--workers", default=None,
                          help="run on a local Dask cluster of this many processes")
    frontier.add_argument("--out", type=Path, default=Path("frontier"),
                          help="output folder (default: frontier/)")
    frontier.add_argument("--resume", action="store_true",
                          help="skip the configurations already in --out")
    frontier.add_argument("--quiet", action="store_true", help="no progress bar")


def _devices(text: str) -> List[int]:
    values = []
    for item in text.split(","):
        try:
            value = int(item.strip())
        except ValueError:
            raise UsageError(f"--devices takes even integers, got {item.strip()!r}") from None
        if value < 2 or value % 2:
            raise UsageError(f"--devices takes even integers >= 2 (pairs x 2), got {value}")
        values.append(value)
    return values


def run_frontier_command(args: argparse.Namespace) -> int:
    from aihwkit_slicing.experiments.plotting import setting_caption
    from aihwkit_slicing.experiments.frontier import (
        FAMILIES,
        frontier_rows,
        plot_frontier,
        run_frontier,
        write_rows,
    )

    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
        args.plain = True
    check_model(args.model)
    devices = _devices(args.devices)
    families = None if args.families is None else [
        f.strip() for f in args.families.split(",") if f.strip()]
    for family in families or []:
        if family not in FAMILIES:
            raise UsageError(f"unknown family {family!r}; families: {', '.join(FAMILIES)}")
    times = parse_times("--times", args.times)
    repeats = positive_int("--repeats", args.repeats, 1)
    allocation_repeats = positive_int("--allocation-repeats", args.allocation_repeats, 1)
    seed = positive_int("--seed", args.seed, 0)
    threads = positive_int("--threads", args.threads, 1)
    workers = positive_int("--workers", args.workers, 1)
    family, _, count = args.baseline.rpartition("@")
    if family not in (families or FAMILIES) or not count.isdigit() or int(count) not in devices:
        raise UsageError(f"--baseline must be a swept configuration family@devices, got "
                         f"{args.baseline!r} (families: {', '.join(families or FAMILIES)}; "
                         f"devices: {', '.join(map(str, devices))})")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    task = load_model(args.model)
    start = time.perf_counter()
    try:
        result = run_frontier(task, devices, families, times, repeats, seed,
                              tuned=not args.plain, allocation_repeats=allocation_repeats,
                              out=out, resume=args.resume,
                              threads=threads, workers=workers, progress=not args.quiet)
    except ValueError as error:
        raise UsageError(str(error)) from None
    configurations = {r["table"] for r in result.records}
    if args.baseline not in configurations:
        raise UsageError(f"--baseline {args.baseline} was not swept; choose one of "
                         f"{', '.join(sorted(configurations))}")
    rows = frontier_rows(result, args.baseline)
    write_rows(rows, out / "frontier.csv")
    plot_frontier(rows, out / "frontier.png",
                  title=f"{task.name}: {result.metric} against devices per weight, "
                  f"paired to {args.baseline}", caption=setting_caption(result))
    print(format_frontier(rows, times))
    print(f"\nwrote {out / 'frontier.csv'}, {out / 'frontier.png'} and the sweep's "
          f"results.csv ({time.perf_counter() - start:.0f} s)")
    return 0


def format_frontier(rows: Sequence, times: Sequence[float]) -> str:
    """Per time, a text table: families by device count, mean [CI] and the paired
    difference to the baseline."""
    from aihwkit_slicing.experiments.results import format_time

    lines = []
    for t in times:
        at = [row for row in rows if row.t_inference == t]
        if not at:
            continue
        first = at[0]
        lines.append(f"{first.metric} at {format_time(t)}: mean [{first.confidence:.0%} "
                     f"CI]; paired difference to {first.baseline}")
        cells: Dict[str, Dict[int, str]] = {}
        counts = sorted({row.devices for row in at})
        for row in at:
            text = f"{row.mean:.4f}"
            if not math.isnan(row.low):
                text += f" [{row.low:.4f}, {row.high:.4f}]"
            if not math.isnan(row.diff):
                text += f" {row.diff:+.4f}"
            if row.family == "allocation":
                text += f" ({row.n_devices:.2f} dev)"
            cells.setdefault(row.family, {})[row.devices] = text
        width = max(len(f) for f in cells) + 1
        column = max(len(text) for by in cells.values() for text in by.values()) + 1
        lines.append(f"{'family':<{width}s}" + "".join(
            f"{str(d) + ' dev':>{column}s}" for d in counts))
        for family, by in cells.items():
            lines.append(f"{family:<{width}s}" + "".join(
                f"{by.get(d, '-'):>{column}s}" for d in counts))
        lines.append("")
    return "\n".join(lines).rstrip()
