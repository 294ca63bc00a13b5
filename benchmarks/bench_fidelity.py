"""Benchmark: how well quantized sliced tables hold up on real networks.

1. **MiniLM** (if the extra ``minilm`` is installed): all 37 linear layers analog,
   weight noise only (``forward.is_perfect=True``), ``PCMLikeNoiseModel``,
   ``GlobalDriftCompensation``; mean cosine similarity of the bundled sentences'
   embeddings to floating point at 1 s, 1 day and 1 year, ``--repeats`` programmings.
   Rows: aihwkit's continuous converters per tensor and per column (aihwkit's
   ``weight_scaling_columnwise`` mapping), the seed table with ``max`` and with ``mse``
   per channel, a 4-pair table, and the best table of the optimizer.
2. **Digits**: the same rows on the bundled digits CNN, as accuracy.
3. **Optimizer vs aihwkit's weight programming optimizer (WPO)** on the same weights,
   noise model and times: objective (TNMSE, the WPO loss) and wall time. Both results
   are also measured by the same simulation (:func:`simulated_tnmse`).

Writes ``fidelity.csv``, ``fidelity_minilm.png`` / ``fidelity_digits.png`` and
``optimizer_vs_wpo.json`` to ``--out``. ``--quick`` runs a small version (digits only,
one repeat, a tiny WPO budget) for the tests.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from aihwkit.inference.converter.conductance import NPairConductanceConverter

from aihwkit_slicing import QuantizedSlicedConductanceConverter, equal_significance, seed_table
from aihwkit_slicing.plotting import plot_metric_vs_time
from aihwkit_slicing.results import SweepResult
from aihwkit_slicing.sweep import run_sweep
from aihwkit_slicing.tasks import digits_task, minilm_task
from aihwkit_slicing.models.minilm import minilm_available
from aihwkit_slicing.optimizer import optimize_table, simulated_tnmse, weight_matrices

TIMES = [1.0, 86400.0, 31536000.0]
TARGET_TIMES = [86400.0, 31536000.0]


def rows_for(task_weights: Any, quick: bool, seed: int) -> Dict[str, Dict[str, Any]]:
    """The compared settings: name -> run_sweep keyword arguments."""
    seed_mse = QuantizedSlicedConductanceConverter.from_table(seed_table(), scale="mse",
                                                              per_channel=True)
    four_pair = equal_significance(4, 16, columns="fill")
    four_pair_converter = QuantizedSlicedConductanceConverter.from_table(
        four_pair, scale="mse", per_channel=True)
    optimized = optimize_table(task_weights, n_pairs=4, device_levels=9 if quick else 33,
                               times=TARGET_TIMES, n_samples=300 if quick else 1000,
                               simulate=False, seed=seed)
    rows = {
        "aihwkit 1 pair, per tensor": dict(tables={"aihwkit-1pair": "aihwkit-1pair"}),
        "aihwkit 2 pairs F=[1,3], per tensor": dict(tables={"aihwkit-2pair": "aihwkit-2pair-f13"}),
        "seed table, max, per tensor": dict(tables={"seed-max": "seed"}),
        "aihwkit 1 pair, per column": dict(tables={"aihwkit-1pair": "aihwkit-1pair"},
                                           mapping="column"),
        "aihwkit 2 pairs F=[1,3], per column": dict(tables={"aihwkit-2pair": "aihwkit-2pair-f13"},
                                                    mapping="column"),
        "aihwkit 4 pairs F=[1,1,1,1], per column": dict(
            tables={"aihwkit-4pair": "aihwkit-4pair-equal"}, mapping="column"),
        "seed table, mse per channel": dict(tables={"seed-mse": seed_mse}),
        "4x16lvl equal (fill), mse per channel": dict(tables={"4x16-fill": four_pair_converter}),
        f"optimizer best: {optimized.table.name}": dict(tables={"optimized":
                                                                optimized.converter}),
    }
    return rows, optimized


def run_rows(task: Any, rows: Dict[str, Dict[str, Any]], repeats: int, seed: int
             ) -> List[Dict[str, Any]]:
    records = []
    for label, kwargs in rows.items():
        result = run_sweep(task, times=TIMES, repeats=repeats, seed=seed, progress=False,
                           **kwargs)
        for record in result.records:
            record["row"] = label
            records.append(record)
        reference = result.reference
    return records, reference


def summarize(records: List[Dict[str, Any]], reference: Dict[str, float], metric: str,
              task: str) -> SweepResult:
    relabeled = [dict(r, table=r["row"]) for r in records]
    return SweepResult(relabeled, reference, metric, task, TIMES)


def compare_with_wpo(weights: Any, quick: bool, seed: int) -> Dict[str, Any]:
    """Our optimizer and aihwkit's WPO on the same weights, noise model and times."""
    from aihwkit.inference.converter.wpo import WeightProgrammingOptimizer
    from aihwkit_slicing.rpu_configs import make_rpu_config

    matrices = weight_matrices(weights)
    flat = torch.cat([m.reshape(-1) for m in matrices])
    out: Dict[str, Any] = {"times": TARGET_TIMES}

    start = time.perf_counter()
    ours = optimize_table(matrices, n_pairs=4, device_levels=9 if quick else 33,
                          times=TARGET_TIMES, n_samples=300 if quick else 1000,
                          simulate=False, seed=seed)
    out["ours"] = {"table": ours.table.name, "objective_expected": ours.objective,
                   "seconds": time.perf_counter() - start}

    config = make_rpu_config(NPairConductanceConverter([1.0] * 4), "pcm")
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
        rows, optimized = rows_for(task.model, args.quick, args.seed)
        print(f"\n{task.name}: optimizer picked {optimized.table.name} "
              f"(expected TNMSE {optimized.objective:.5f})", flush=True)
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
          f"{comparison['wpo']['objective_own']:.5f}, baseline {comparison['wpo']['baseline_own']:.5f})"
          f" in {comparison['wpo']['seconds']:.1f} s")
    print(f"  aihwkit 4 pairs F=[1,1,1,1]: simulated "
          f"{comparison['aihwkit 4 pairs F=[1,1,1,1]']['simulated']:.5f}")
    print(f"\nwrote {args.out} ({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
