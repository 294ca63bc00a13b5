"""Benchmark: the same sweep in this process and on a local Dask cluster (and a GPU).

One grid (default: MiniLM, 3 tables x 3 times x 2 repeats, PCM, the sweep's defaults),
each run in a fresh process so that every engine starts the same way:

* in-process, with all cores to torch (``threads = cores``);
* ``workers=2``: a local Dask cluster of 2 worker processes, 1 torch thread each;
* on the GPU (``device="cuda"``), when one is present.

It prints each wall time, its ratio to the in-process run, and whether the records
equal those of the in-process run with the same threads per process (records do not
depend on the engine; floating-point sums may depend on the number of threads).

Run: ``python benchmarks/bench_sweep.py [--model minilm] [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Dict, List, Optional, Sequence

CHILD = r"""
import json, sys, time
from aihwkit_slicing.experiments.sweep import run_sweep
options = json.loads(sys.argv[1])
start = time.perf_counter()
result = run_sweep(progress=False, **options)
print(json.dumps({"seconds": time.perf_counter() - start,
                  "records": [[r["table"], r["repeat"], r["t_inference"], r["metric"],
                               r["value"]] for r in result.records]}))
"""


def run(options: Dict) -> Dict:
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(options)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="minilm", help="task name (default minilm)")
    parser.add_argument("--quick", action="store_true",
                        help="digits, 2 tables x 2 times x 2 repeats (for the tests)")
    args = parser.parse_args(argv)
    model = "digits" if args.quick else args.model
    grid = dict(task=model, tables=["aihwkit-1pair", "seed"] if args.quick else
                ["aihwkit-1pair", "seed", "4x4lvl-base"],
                times=[1.0, 86400.0] if args.quick else [1.0, 86400.0, 31536000.0],
                repeats=2, seed=0)
    cores = len(os.sched_getaffinity(0))
    print(f"sweep of {model}: {len(grid['tables'])} tables x {len(grid['times'])} times x "
          f"{grid['repeats']} repeats, {cores} cores")
    rows: List = []
    in_process = run(dict(grid, threads=cores))
    rows.append(("in-process", f"{cores} threads", in_process))
    single = run(dict(grid, threads=1))
    rows.append(("in-process", "1 thread", single))
    on_dask = run(dict(grid, workers=2, threads=1))
    rows.append(("Dask, --workers 2", "1 thread each", on_dask))
    try:
        import torch

        if torch.cuda.is_available():
            rows.append((f"GPU ({torch.cuda.get_device_name(0)})", "",
                         run(dict(grid, device="cuda", threads=cores))))
    except ImportError:  # pragma: no cover
        pass
    base = in_process["seconds"]
    for engine, threads, row in rows:
        same = row["records"] == single["records"] if threads.startswith("1 thread") else None
        note = "" if same is None else ("  records equal the 1-thread run" if same
                                        else "  RECORDS DIFFER from the 1-thread run")
        print(f"  {engine:<36s} {threads:<14s} {row['seconds']:7.1f} s  "
              f"{row['seconds'] / base:5.2f}x in-process{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
