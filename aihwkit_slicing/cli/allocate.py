"""``aihwkit-slicing allocate``: a table per layer under an average device budget.

Measures every layer's sensitivity to every candidate table, solves the knapsack
(:func:`aihwkit_slicing.experiments.sensitivity.allocate_tables`) and writes the assignment as JSON,
which ``aihwkit-slicing sweep --assignment FILE`` evaluates::

    aihwkit-slicing allocate --model minilm --budget 6 --times 86400,31536000 \\
        --out assignment.json
    aihwkit-slicing sweep --model minilm --assignment assignment.json

Kept apart from :mod:`aihwkit_slicing.cli.main`, which registers it (one parser and one
dispatch line there).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Optional

from aihwkit_slicing.cli.parsing import (
    UsageError,
    check_model,
    load_model,
    model_help,
    parse_times,
    positive_int,
)


def add_allocate_parser(commands: argparse._SubParsersAction,  # pylint: disable=protected-access
                        parser: argparse.ArgumentParser) -> None:
    """Add the ``allocate`` subcommand to ``commands`` (errors go through ``parser``)."""
    from aihwkit_slicing.integration.noise_models import NOISE_MODELS

    allocate = commands.add_parser(
        "allocate", help="choose a table per layer under an average device budget",
        description="Measure how much fidelity the network loses when each layer alone gets "
        "each candidate table (programmed and drifted under the noise model), choose one "
        "table per layer to lose the least within the budget of devices per weight (a "
        "knapsack), and write the assignment as JSON for 'aihwkit-slicing sweep "
        "--assignment'.",
    )
    allocate.error = parser.error  # type: ignore[method-assign]
    allocate.add_argument("--model", default="digits", help=model_help())
    allocate.add_argument("--budget", required=True,
                          help="devices per weight allowed, averaged over all weights, e.g. 6")
    allocate.add_argument("--times", default="86400,31536000",
                          help="comma-separated inference times in seconds to aim at "
                          "(default: 1 day and 1 year)")
    allocate.add_argument("--candidates", default=None,
                          help="comma-separated table names to choose from (see "
                          "'aihwkit-slicing tables'); "
                          "default: 1 pair of 33 levels; binary significance on 2, 3 and 4 "
                          "pairs (33, 17, 5 levels per device); equal significance on 6 and 8 "
                          "pairs (33 levels); each level encoded as errs least under the "
                          "noise model at --times")
    allocate.add_argument("--candidate-file", action="append", default=[], metavar="PATH",
                          help="a candidate table as JSON (see 'aihwkit-slicing tables NAME "
                          "--json'); repeatable")
    allocate.add_argument("--repeats", default="2",
                          help="programmings per layer and candidate (default 2)")
    allocate.add_argument("--seed", default="0", help="random seed (default 0)")
    allocate.add_argument("--noise-model", default="pcm",
                          help=f"one of {', '.join(NOISE_MODELS)} (default pcm)")
    allocate.add_argument("--no-compensation", action="store_true",
                          help="switch global drift compensation off")
    allocate.add_argument("--noise-aware", action="store_true",
                          help="choose each quantized table's clip for the error after "
                          "programming and drift at --times (recorded in the JSON: "
                          "'sweep --assignment' applies it)")
    allocate.add_argument("--out", type=Path, default=Path("assignment.json"),
                          help="the JSON file to write (default: assignment.json)")
    allocate.add_argument("--threads", default=None,
                          help="torch threads (default: torch's own setting)")
    allocate.add_argument("--no-cache", action="store_true",
                          help="tune the default candidates afresh instead of reusing the "
                          "encodings kept from an earlier run (kept in "
                          "$AIHWKIT_SLICING_CACHE, else ~/.cache/aihwkit-slicing; "
                          "AIHWKIT_SLICING_CACHE=off keeps none)")
    allocate.add_argument("--quiet", action="store_true", help="no progress bar")


def _budget(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"--budget must be a number of devices per weight, got {text!r}"
                         ) from None
    if not math.isfinite(value) or value <= 0:
        raise UsageError(f"--budget must be a number of devices per weight > 0, got {text!r}")
    return value


def _candidates(args: argparse.Namespace, times: list, seed: int) -> Optional[dict]:
    """Display name -> table spec, from --candidates and --candidate-file (None: the
    default candidates); tuned default candidates named are tuned for --noise-model at
    --times."""
    from aihwkit_slicing.design.candidates import candidate_specs, table_names
    from aihwkit_slicing.core.table_files import load_table

    if args.candidates is None and not args.candidate_file:
        return None
    names = [name.strip() for name in (args.candidates or "").split(",") if name.strip()]
    if args.candidates is not None and not names:
        raise UsageError("--candidates names no table")
    known = table_names()
    for name in names:
        if name not in known:
            raise UsageError(f"--candidates: unknown table {name!r}; known tables: "
                             f"{', '.join(known)}")
    candidates: list = list(names)
    for path in args.candidate_file:
        try:
            candidates.append(load_table(path))
        except ValueError as error:
            raise UsageError(f"--candidate-file {error}") from None
    try:
        return candidate_specs(candidates, args.noise_model, times, seed,
                               cache=not args.no_cache)
    except ValueError as error:
        raise UsageError(str(error)) from None


def run_allocate_command(args: argparse.Namespace) -> int:
    """``aihwkit-slicing allocate``: measure, allocate, write the JSON, print the report."""
    from aihwkit_slicing.design.candidates import DEFAULT_PAIRS
    from aihwkit_slicing.experiments.sensitivity import allocate_tables, measurement_for
    from aihwkit_slicing.integration.catalog import devices_per_weight, make_converter
    from aihwkit_slicing.integration.noise_models import NOISE_MODELS

    check_model(args.model)
    budget = _budget(args.budget)
    times = parse_times("--times", args.times)
    repeats = positive_int("--repeats", args.repeats, 1)
    seed = positive_int("--seed", args.seed, 0)
    if args.noise_model not in NOISE_MODELS:
        raise UsageError(f"unknown noise model {args.noise_model!r}; choose one of "
                         f"{', '.join(NOISE_MODELS)}")
    threads = positive_int("--threads", args.threads, 1)
    specs = _candidates(args, times, seed)
    cheapest = 2 * min(DEFAULT_PAIRS) if specs is None else min(
        devices_per_weight(make_converter(spec)) for spec in specs.values())
    if budget < cheapest:
        raise UsageError(f"--budget {budget:g} is below the cheapest candidate's "
                         f"{cheapest} devices per weight")
    out = args.out
    if out.is_dir() or not out.parent.is_dir():
        raise UsageError(f"--out must be a file in an existing folder, got {str(out)!r}")
    task = load_model(args.model)

    start = time.perf_counter()
    try:
        allocation = allocate_tables(
            task.model, specs, budget, noise_model=args.noise_model, times=times,
            repeats=repeats, seed=seed, compensation=not args.no_compensation,
            quiet=args.quiet, name=out.stem, threads=threads, noise_aware=args.noise_aware,
            cache=not args.no_cache, **measurement_for(task))
    except ValueError as error:
        raise UsageError(str(error)) from None
    try:
        out.write_text(json.dumps(allocation.to_dict(), indent=1) + "\n")
    except OSError as error:
        raise UsageError(f"cannot write {str(out)!r}: {error.strerror or error}") from None
    print(allocation.report())
    rule = allocation.to_assignment().scaling_rule().describe()
    print(f"\nwrote {out} ({time.perf_counter() - start:.0f} s); evaluate it with "
          f"'aihwkit-slicing sweep --model {args.model} --assignment {out}' (its tables "
          f"keep the allocation's scaling: {rule})")
    return 0
