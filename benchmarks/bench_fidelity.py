"""Benchmark: how well quantized sliced tables hold up on real networks.

1. **MiniLM** (if the extra ``minilm`` is installed): all 37 linear layers analog,
   weight noise only (``forward.is_perfect=True``), ``PCMLikeNoiseModel``,
   ``GlobalDriftCompensation``; mean cosine similarity of the bundled sentences'
   embeddings to floating point at 1 s, 1 day and 1 year, ``--repeats`` programmings.
   Rows: aihwkit's continuous converters per tensor and per column (aihwkit's
   ``weight_scaling_columnwise`` mapping), the seed table with ``max`` and with ``mse``
   per channel, a 4-pair table, and the best table of the optimizer (saved as JSON
   with its noise-aware encodings, swept with noise-aware clipping). Every row is an
   ordinary ``run_sweep`` call; the benchmark prints the ``aihwkit-slicing sweep``
   command that reproduces it.
2. **Digits**: the same rows on the bundled digits CNN, as accuracy.
3. **Optimizer vs aihwkit's weight programming optimizer (WPO)** on the same weights,
   noise model and times: objective (TNMSE, the WPO loss) and wall time. Both results
   are also measured by the same simulation (:func:`simulated_tnmse`).

Writes ``fidelity.csv``, ``fidelity_minilm.png`` / ``fidelity_digits.png``,
``optimized-<table>.json`` and ``optimizer_vs_wpo.json`` to ``--out``. ``--quick`` runs a
small version (digits only, one repeat, a tiny WPO budget) for the tests.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch

from aihwkit.inference.converter.conductance import NPairConductanceConverter

from aihwkit_slicing.experiments.plotting import plot_metric_vs_time
from aihwkit_slicing.experiments.results import SweepResult
from aihwkit_slicing.experiments.sweep import run_sweep
from aihwkit_slicing.experiments.tasks import digits_task, minilm_task
from aihwkit_slicing.experiments.models.minilm import minilm_available
from aihwkit_slicing.design.optimizer import optimize_table, simulated_tnmse, weight_matrices
from aihwkit_slicing.core.table_files import save_table

TIMES = [1.0, 86400.0, 31536000.0]
TARGET_TIMES = [86400.0, 31536000.0]


def rows_for(task_weights: Any, quick: bool, seed: int, out: Path
             ) -> Tuple[Dict[str, Dict[str, Any]], Any, Path]:
    """The compared settings: name -> run_sweep keyword arguments (and the CLI options
    that reproduce each row), the optimizer's result and the file of its table."""
    optimized = optimize_table(task_weights, n_pairs=4, device_levels=9 if quick else 33,
                               times=TARGET_TIMES, n_samples=300 if quick else 1000,
                               simulate=False, seed=seed)
    table_file = out / f"optimized-{optimized.table.name}.json"
    save_table(optimized.table, table_file)
    per_tensor = dict(mapping="tensor", scale="max", per_channel=False)
    per_channel = dict(mapping="column", scale="mse", per_channel=True)
    noise_aware = ",".join(f"{t:g}" for t in TARGET_TIMES)
    rows = {
        "aihwkit 1 pair, per tensor": dict(tables=["aihwkit-1pair"], **per_tensor),
        "aihwkit 2 pairs F=[1,3], per tensor": dict(tables=["aihwkit-2pair-f13"], **per_tensor),
        "seed table, max, per tensor": dict(tables=["seed"], **per_tensor),
        "aihwkit 1 pair, per column": dict(tables=["aihwkit-1pair"], **per_channel),
        "aihwkit 2 pairs F=[1,3], per column": dict(tables=["aihwkit-2pair-f13"],
                                                    **per_channel),
        "aihwkit 4 pairs F=[1,1,1,1], per column": dict(tables=["aihwkit-4pair-equal"],
                                                        **per_channel),
        "seed table, mse per channel": dict(tables=["seed"], **per_channel),
        "4x16lvl equal (fill), mse per channel": dict(tables=["4x16lvl-fill"], **per_channel),
        f"optimizer best: {optimized.table.name}, noise-aware": dict(
            tables=[optimized.table], noise_aware=TARGET_TIMES, **per_channel),
    }
    for label, kwargs in rows.items():
        names = ",".join(t if isinstance(t, str) else "" for t in kwargs["tables"]).strip(",")
        option = f"--tables {names}" if names else f"--table-file {table_file}"
        kwargs["cli"] = (f"aihwkit-slicing sweep {option} --mapping {kwargs['mapping']} "
                         f"--scale {kwargs['scale']} "
                         f"{'--per-channel' if kwargs['per_channel'] else '--per-tensor'}"
                         f"{' --noise-aware ' + noise_aware if 'noise_aware' in kwargs else ''}")
    return rows, optimized, table_file


def run_rows(task: Any, rows: Dict[str, Dict[str, Any]], repeats: int, seed: int
             ) -> Tuple[List[Dict[str, Any]], Dict[str, float]]:
    records: List[Dict[str, Any]] = []
    reference: Dict[str, float] = {}
    for label, kwargs in rows.items():
        options = {k: v for k, v in kwargs.items() if k != "cli"}
        result = run_sweep(task, times=TIMES, repeats=repeats, seed=seed, progress=False,
                           **options)
        for record in result.records:
            records.append(dict(record, table=label))
        reference = result.reference
    return records, reference


def summarize(records: List[Dict[str, Any]], reference: Dict[str, float], metric: str,
              task: str) -> SweepResult:
    return SweepResult(records, reference, metric, task, TIMES)


def compare_with_wpo(weights: Any, quick: bool, seed: int) -> Dict[str, Any]:
    """Our optimizer and aihwkit's WPO on the same weights, noise model and times."""
    from aihwkit.inference.converter.wpo import WeightProgrammingOptimizer
    from aihwkit_slicing.integration.rpu_configs import make_rpu_config

    matrices = weight_matrices(weights)
    flat = torch.cat([m.reshape(-1) for m in matrices])
    out: Dict[str, Any] = {"times": TARGET_TIMES}

    start = time.perf_counter()
    ours = optimize_table(matrices, n_pairs=4, device_levels=9 if quick else 33,
                          times=TARGET_TIMES, n_samples=300 if quick else 1000,
                          simulate=False, seed=seed)
    out["ours"] = {"table": ours.table.name, "objective_expected": ours.objective,
                   "seconds": time.perf_counter() - start}

    config = make_rpu_config(NPairConductanceConverter([1.0] * 4), "pcm", mapping="tensor")
    start = time.perf_counter()
    wpo = WeightProgrammingOptimizer(
        flat, [None] * 4, config, TARGET_TIMES, NPairConductanceConverter([1.0] * 4),
        popsize=2 if quick else 4, maxiter=2 if quick else 15, workers=1, disp=False,
        polish=False, baseline_iterations=3 if quick else 10, seed=seed + 100,
        callback=None,
    )
    wpo_converter, _ = wpo.run_optimizer()
    out["wpo"] = {"objective_own": float(wpo.best_loss), "baseline_own": float(wpo.loss_baseline),
                  "seconds": time.perf_counter() - start, "f_lst": [float(f) for f in
                                                                    wpo_converter.f_lst]}
    repeats = 1 if quick else 3
    out["ours"]["simulated"] = simulated_tnmse(ours.converter, matrices, "pcm", TARGET_TIMES,
                                               repeats, seed)
    out["wpo"]["simulated"] = simulated_tnmse(wpo_converter, matrices, "pcm", TARGET_TIMES,
                                              repeats, seed)
    out["aihwkit 4 pairs F=[1,1,1,1]"] = {"simulated": simulated_tnmse(
        NPairConductanceConverter([1.0] * 4), matrices, "pcm", TARGET_TIMES, repeats, seed)}
    return out


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("results/fidelity"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="small version for the tests")
    parser.add_argument("--no-minilm", action="store_true", help="skip MiniLM")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    repeats = 1 if args.quick else args.repeats
    started = time.perf_counter()
    all_records: List[Dict[str, Any]] = []
    tasks = [digits_task()]
    if minilm_available() and not args.quick and not args.no_minilm:
        tasks.insert(0, minilm_task())
    for task in tasks:
        rows, optimized, table_file = rows_for(task.model, args.quick, args.seed, args.out)
        print(f"\n{task.name}: optimizer picked {optimized.table.name} "
              f"(expected TNMSE {optimized.objective:.5f}), saved as {table_file}", flush=True)
        print("rows, and the command that reproduces each:")
        for label, kwargs in rows.items():
            print(f"  {label}: {kwargs['cli']} --model {task.name} --times "
                  f"{','.join(f'{t:g}' for t in TIMES)} --repeats {repeats} --seed {args.seed}")
        records, reference = run_rows(task, rows, repeats, args.seed)
        result = summarize(records, reference, task.metric, task.name)
        print(result.format_summary(TIMES), flush=True)
        plot_metric_vs_time(result, args.out / f"fidelity_{task.name}.png")
        all_records += result.records
    SweepResult(all_records, {}, "value", "all", TIMES).write_csv(args.out / "fidelity.csv")

    weights = tasks[0].model
    comparison = compare_with_wpo(weights, args.quick, args.seed)
    (args.out / "optimizer_vs_wpo.json").write_text(json.dumps(comparison, indent=2))
    print("\noptimizer vs aihwkit WPO (TNMSE, lower is better; same simulation for both):")
    print(f"  ours: {comparison['ours']['table']}: simulated {comparison['ours']['simulated']:.5f} "
          f"in {comparison['ours']['seconds']:.1f} s")
    print(f"  WPO : simulated {comparison['wpo']['simulated']:.5f} (its own loss "
          f"{comparison['wpo']['objective_own']:.5f}, "
          f"baseline {comparison['wpo']['baseline_own']:.5f})"
          f" in {comparison['wpo']['seconds']:.1f} s")
    print(f"  aihwkit 4 pairs F=[1,1,1,1]: simulated "
          f"{comparison['aihwkit 4 pairs F=[1,1,1,1]']['simulated']:.5f}")
    print(f"\nwrote {args.out} ({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
