"""Which table wins on a measured device? Rankings under the PCM fit and under the device.

For each bundled device model (``docs/devices.md``) the named tables are put on the
device's levels (:func:`aihwkit_slicing.on_device`: the table's ``g_max`` on the
device's highest level) and swept twice in one sweep: under aihwkit's PCM fit
(``"pcm"``, rescaled to the table's ``g_max``) and under the device's own per-level
statistics (``"measured"``). Every table sees the same random streams (common random
numbers), so the rankings are paired. Prints, per device and time, the tables ranked
by the task's metric (mean over repeats) under both noise models, and Kendall's tau
between the two rankings.

Run: ``python examples/measured_devices.py [--model digits|minilm] [--tables a,b,...]
[--times 86400,31536000] [--repeats 2] [--threads 1] [--out results/devices]
[--quick]`` (``--quick``, or ``AIHWKIT_SLICING_FAST=1``: digits, two tables, one time,
one repeat).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from typing import Dict, List, Optional, Sequence, Tuple

from scipy.stats import kendalltau

from aihwkit_slicing import ProgrammingTable, builtin_tables, on_device
from aihwkit_slicing.core.device_model import DeviceModel, bundled_device_models
from aihwkit_slicing.experiments.results import SweepResult, format_time
from aihwkit_slicing.experiments.sweep import run_sweep

TABLES = ["seed", "1x4lvl", "1x16lvl", "2x4lvl-base", "4x4lvl-base"]
NOISE_MODELS = {"pcm fit": "pcm", "measured": "measured"}


def device_tables(device: DeviceModel, names: Sequence[str]) -> Dict[str, ProgrammingTable]:
    """The built-in tables ``names`` on ``device``'s levels, carrying it."""
    known = builtin_tables()
    return {name: on_device(known[name], device) for name in names}


def ranking(result: SweepResult, noise_model: str, t: float
            ) -> List[Tuple[str, float, float]]:
    """``(table, mean, std)`` of the main metric over repeats, best first."""
    values: Dict[str, List[float]] = {}
    for record in result.of_metric():
        if record["noise_model"] == noise_model and record["t_inference"] == t:
            values.setdefault(record["table"], []).append(record["value"])
    rows = [(table, statistics.fmean(v), statistics.stdev(v) if len(v) > 1 else 0.0)
            for table, v in values.items()]
    return sorted(rows, key=lambda row: -row[1])


def report(result: SweepResult, device: DeviceModel) -> str:
    lines = [f"\n{device.name}: {result.task}, {result.metric} (floating point "
             f"{result.reference[result.metric]:.4f}), mean +- std over repeats"]
    for t in result.times:
        ranked = {name: ranking(result, name, t) for name in NOISE_MODELS}
        lines.append(f"  t = {format_time(t)}")
        lines.append(f"    {'rank':<5s}" + "".join(f"{name:<32s}" for name in NOISE_MODELS))
        for rank in range(len(ranked["pcm fit"])):
            cells = "".join(f"{r[rank][0]:<13s} {r[rank][1]:.4f} +- {r[rank][2]:.4f}    "
                            for r in ranked.values())
            lines.append(f"    {rank + 1:<5d}{cells}")
        means = {name: {row[0]: row[1] for row in rows} for name, rows in ranked.items()}
        tables = sorted(means["pcm fit"])
        tau = kendalltau([means["pcm fit"][n] for n in tables],
                         [means["measured"][n] for n in tables])[0]  # tau-b: ties count
        best = {name: {n for n, v in m.items() if v == max(m.values())}
                for name, m in means.items()}
        lines.append(f"    Kendall's tau-b between the two: {tau:.2f}; best under the PCM "
                     f"fit: {', '.join(sorted(best['pcm fit']))}; under the device: "
                     f"{', '.join(sorted(best['measured']))}")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="digits", help="digits or minilm")
    parser.add_argument("--tables", default=",".join(TABLES), help="built-in table names")
    parser.add_argument("--times", default="86400,31536000", help="seconds, comma-separated")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--devices", default=None, help="bundled device names (default all)")
    parser.add_argument("--out", default=None, help="a folder: one sweep folder per device")
    parser.add_argument("--quick", action="store_true", help="a smoke run (seconds)")
    args = parser.parse_args(argv)
    if args.quick or os.environ.get("AIHWKIT_SLICING_FAST") == "1":
        args.model, args.tables, args.times, args.repeats = "digits", "seed,1x4lvl", "86400", 1
    devices = bundled_device_models()
    names = list(devices) if args.devices is None else args.devices.split(",")
    times = [float(t) for t in args.times.split(",")]
    for name in names:
        device = devices[name]
        result = run_sweep(args.model, tables=device_tables(device, args.tables.split(",")),
                           noise_models=NOISE_MODELS, times=times, repeats=args.repeats,
                           seed=args.seed, threads=args.threads, progress=False,
                           out=None if args.out is None else os.path.join(args.out, name))
        print(report(result, device), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
