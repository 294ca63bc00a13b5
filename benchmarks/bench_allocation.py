"""Benchmark: which table for which layer, under an average device budget.

Settings of the fidelity benchmark (``bench_fidelity.py``): all linear layers analog,
weight noise only (``forward.is_perfect = True``), ``PCMLikeNoiseModel``, global drift
compensation, quantized tables scaled ``mse`` per output channel with the clip chosen
for 1 day and 1 year (noise-aware, as the fidelity benchmark's best row; the
allocation is measured that way too; ``--plain``: plain ``mse``); fidelity at 1 s,
1 day and 1 year, every row in the same run.

1. **MiniLM** (if the extra ``minilm`` is installed): mean cosine similarity of the
   bundled sentences' embeddings to floating point, ``--repeats`` programmings.
2. **Digits CNN**: accuracy on the 540 held-out images, ``--digits-repeats``
   programmings (its accuracy moves in steps of one image).

Rows (devices per weight):

* aihwkit's ``NPairConductanceConverter`` F=[1,1,1,1], per-column mapping (8);
* uniform quantized tables, one table for every layer, for 8, 6 and 4 devices: the
  allocation's own candidates of that size (binary significance, encodings tuned by
  Monte Carlo), equal significance tuned the same way, plain equal significance (pairs
  filled one after the other) and plain binary significance (the table optimizer's
  pick for MiniLM at that size, default encodings);
* our allocation (:func:`aihwkit_slicing.experiments.sensitivity.allocate_tables`, default
  candidates of 2 to 16 devices) at a budget of 6 and of 4, evaluated from the JSON it
  writes (as ``aihwkit-slicing sweep --assignment`` reads it).

The allocation is measured once per network with its own seeds (the evaluation's are
different) at 1 day and 1 year, and solved for both budgets; MiniLM is measured by
the cosine drop on the same sentences, digits by its logits' error on the training
images. Printed: the table, the best uniform table per size and time, the
differences and loss ratios against the targets, the assignment found, the predicted
(sum of layer sensitivities) against the measured loss, and run times. Writes
``allocation.csv`` and the assignments as JSON to ``--out``. ``--quick``: digits only,
one repeat (for the tests). ``--threads`` defaults to 1: on cores shared with other jobs,
two torch threads made programming tens of times slower here.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch

from aihwkit_slicing.design.allocation import Allocation, allocate
from aihwkit_slicing.design.candidates import CANDIDATES, default_candidates, tuned_table
from aihwkit_slicing.experiments.sensitivity import allocate_tables, measurement_for
from aihwkit_slicing.design.assignment import TableAssignment
from aihwkit_slicing.experiments.models.minilm import minilm_available
from aihwkit_slicing.experiments.results import SweepResult, format_time
from aihwkit_slicing.experiments.sweep import run_sweep
from aihwkit_slicing.experiments.tasks import Task, digits_task, minilm_task

TIMES = [1.0, 86400.0, 31536000.0]
TARGET_TIMES = [86400.0, 31536000.0]
BUDGETS = [6.0, 4.0]
NPAIR = "aihwkit NPair F=[1,1,1,1], per column"
#: The plain uniform rows per device count (besides the tuned candidate of that size).
PLAIN = {8: ["4x33lvl-fill", "4x5lvl-binary"], 6: ["3x33lvl-fill", "3x17lvl-binary"],
         4: ["2x33lvl-fill", "2x33lvl-binary"]}

Summary = Dict[str, Dict[float, Tuple[float, float]]]  # row -> time -> (mean, std)


def uniform_rows(candidates: List[Any], seed: int, samples: int
                 ) -> Dict[int, Dict[str, Any]]:
    """Device count -> {row label: table} of the uniform rows: the candidate of that
    size, equal significance tuned the same way, and the plain tables of :data:`PLAIN`."""
    tuned = {table.n_devices: table for table in candidates}
    equal = {devices: tuned_table(devices // 2, "pcm", TARGET_TIMES, n_samples=samples,
                                  seed=seed) for devices in PLAIN}
    return {devices: {table.name: table for table in [tuned[devices], equal[devices]] +
                      [CANDIDATES[name] for name in names]}
            for devices, names in PLAIN.items()}


def from_json(allocation: Allocation, path: Path) -> TableAssignment:
    """Write ``allocation`` as the command line does and read it back as the sweep does."""
    allocation.save(path)
    return TableAssignment.from_dict(json.loads(path.read_text()), name=allocation.name)


def summarize(result: SweepResult) -> Summary:
    summary: Summary = {}
    for row in result.summary():
        summary.setdefault(row["table"], {})[row["t_inference"]] = (row["value_mean"],
                                                                     row["value_std"])
    return summary


def run_task(task: Task, args: argparse.Namespace) -> Dict[str, Any]:
    """Measure, allocate and evaluate every row on one network; print the report."""
    repeats = 1 if args.quick else (args.digits_repeats if task.name == "digits" else
                                     args.repeats)
    started = time.perf_counter()
    samples = 100 if args.quick else 1000  # Monte Carlo cells per column and time
    candidates = default_candidates("pcm", TARGET_TIMES, seed=args.seed, n_samples=samples)
    tuned_seconds = time.perf_counter() - started

    first = allocate_tables(task.model, candidates, BUDGETS[0], "pcm", TARGET_TIMES,
                            repeats=1 if args.quick else args.allocation_repeats,
                            seed=args.seed, quiet=args.quiet, threads=args.threads,
                            name="allocation, budget 6", noise_aware=not args.plain,
                            **measurement_for(task))
    allocations = [first] + [allocate(first.sensitivities, first.candidates, budget,
                                      name=f"allocation, budget {budget:g}")
                             for budget in BUDGETS[1:]]
    measured_seconds = first.sensitivities.seconds

    uniform = uniform_rows(candidates, args.seed, samples)
    tables: Dict[str, Any] = {}
    for rows in uniform.values():
        tables.update(rows)
    for allocation in allocations:
        path = args.out / f"allocation_{task.name}_{allocation.budget:g}.json"
        tables[allocation.name] = from_json(allocation, path)
    start = time.perf_counter()
    sweep = dict(times=TIMES, repeats=repeats, seed=args.seed, threads=args.threads,
                 progress=not args.quiet)
    quantized = run_sweep(task, tables=tables, noise_aware=None if args.plain else TARGET_TIMES,
                          **sweep)
    npair = run_sweep(task, tables={NPAIR: "aihwkit-4pair-equal"}, mapping="column", **sweep)
    sweep_seconds = time.perf_counter() - start

    summary = summarize(quantized)
    summary.update(summarize(npair))
    devices = {r["table"]: r["n_devices"] for r in quantized.records + npair.records}
    reference = quantized.reference[task.metric]
    print_table(task, summary, devices, uniform, allocations, reference)
    print_assignments(task, allocations, summary, reference)
    print(f"\n{task.name}: run times: tuned candidates {tuned_seconds:.0f} s, allocation "
          f"measurement {measured_seconds:.0f} s ({len(first.layers)} layers x "
          f"{len(first.candidates)} candidates x {first.sensitivities.repeats} programmings x "
          f"{len(TARGET_TIMES)} times), evaluation sweeps {sweep_seconds:.0f} s "
          f"({len(tables) + 1} rows x {repeats} programmings x {len(TIMES)} times)",
          flush=True)
    return {"records": quantized.records + npair.records, "summary": summary}


def _cell(value: Tuple[float, float]) -> str:
    return f"{value[0]:.4f}+-{value[1]:.4f}"


def best_uniform(summary: Summary, rows: Dict[str, Any]) -> Dict[float, Tuple[str, float]]:
    """Per time, the best uniform row of one device count: (label, mean)."""
    return {t: max(((label, summary[label][t][0]) for label in rows), key=lambda x: x[1])
            for t in TIMES}


def print_table(task: Task, summary: Summary, devices: Dict[str, float],
                uniform: Dict[int, Dict[str, Any]], allocations: List[Allocation],
                reference: float) -> None:
    header = "  ".join(f"{format_time(t):>15s}" for t in TIMES)
    print(f"\n{task.name}: {task.metric} (floating point {reference:.4f}), mean +- std over "
          "programmings; quantized tables: mse per channel"
          f"{'' if allocations[0].sensitivities.noise_aware is None else ', noise-aware'}")
    print(f"{'configuration':<44s} {'devices':>7s}  {header}")
    order = [NPAIR] + [f"uniform {d}: {label}" for d, rows in uniform.items() for label in rows]
    order += [a.name for a in allocations]
    for label in order:
        key = label.split(": ", 1)[1] if label.startswith("uniform") else label
        cells = "  ".join(f"{_cell(summary[key][t]):>15s}" for t in TIMES)
        print(f"{label:<44s} {devices[key]:>7.2f}  {cells}")

    print(f"\n{task.name}: best uniform table per size and time (same run):")
    best = {d: best_uniform(summary, rows) for d, rows in uniform.items()}
    for d, per_time in best.items():
        print(f"  {d} devices: " + "; ".join(f"{format_time(t)} {label} {value:.4f}"
                                              for t, (label, value) in per_time.items()))

    print(f"\n{task.name}: targets (differences in {task.metric}; loss ratio = "
          f"(floating point - ours) / (floating point - theirs), below 1 is better):")
    by_budget = {a.budget: a for a in allocations}

    def compare(ours: str, theirs: Dict[float, Tuple[str, float]], times: List[float],
                what: str) -> None:
        for t in times:
            mine, (label, other) = summary[ours][t][0], theirs[t]
            lost = reference - other
            ratio = f"{(reference - mine) / lost:.2f}" if lost > 0 else "n/a"
            verdict = "met" if mine > other else "MISSED"
            print(f"  {ours} vs {what} at {format_time(t)}: {mine:.4f} vs {other:.4f} "
                  f"({label}): {mine - other:+.4f}, loss ratio {ratio}: {verdict}")

    npair = {t: (NPAIR, summary[NPAIR][t][0]) for t in TIMES}
    compare(by_budget[6.0].name, npair, TARGET_TIMES, "aihwkit NPair (8 devices)")
    compare(by_budget[6.0].name, best[6], TIMES, "best uniform 6 devices")
    compare(by_budget[4.0].name, best[4], TIMES, "best uniform 4 devices")
    for allocation in allocations:
        used = devices[allocation.name]
        print(f"  {allocation.name}: {used:.3f} devices per weight used "
              f"({'within' if used <= allocation.budget else 'OVER'} the budget)")


def print_assignments(task: Task, allocations: List[Allocation], summary: Summary,
                      reference: float) -> None:
    measured = allocations[0].sensitivities
    print(f"\n{task.name}: assignments found (measured: {measured.measure}, "
          f"{measured.repeats} programmings per layer and candidate, seed {measured.seed}):")
    for allocation in allocations:
        print(allocation.report(per_layer=allocation is allocations[0]))
        if measured.measure == f"{task.metric} drop":
            chosen = [measured.candidates.index(layer.table) for layer in allocation.layers]
            predicted = [float(sum(measured.values[i, k, j] for i, k in enumerate(chosen)))
                         for j in range(len(measured.times))]
            print("  predicted loss (sum of layer sensitivities) vs measured: " + "; ".join(
                f"{format_time(t)} {p:.4f} vs {reference - summary[allocation.name][t][0]:.4f}"
                for t, p in zip(measured.times, predicted)))


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("results/allocation"))
    parser.add_argument("--repeats", type=int, default=3, help="programmings per row")
    parser.add_argument("--digits-repeats", type=int, default=10,
                        help="programmings per row on the digits CNN (cheap; its accuracy "
                        "moves in steps of one image of 540)")
    parser.add_argument("--allocation-repeats", type=int, default=2,
                        help="programmings per layer and candidate in the allocation's "
                        "measurement")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: fastest on shared cores)")
    parser.add_argument("--quick", action="store_true", help="digits only, one repeat")
    parser.add_argument("--plain", action="store_true",
                        help="plain mse clipping (not noise-aware) for every quantized row")
    parser.add_argument("--no-minilm", action="store_true", help="skip MiniLM")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    tasks = [digits_task]
    if minilm_available() and not args.quick and not args.no_minilm:
        tasks.insert(0, minilm_task)
    records: List[Dict[str, Any]] = []
    for make_task in tasks:
        records += run_task(make_task(), args)["records"]
    SweepResult(records, {}, "value", "all", TIMES).write_csv(args.out / "allocation.csv")
    print(f"\nwrote {args.out} ({time.perf_counter() - started:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
