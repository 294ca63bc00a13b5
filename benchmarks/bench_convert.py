"""Benchmark: converter round trip (convert_to_conductances, then convert_back_to_weights).

On one weight matrix (default 3000 x 5000, float32, 2 torch threads) and for two tables
(the seed table of docs/design.md, 4 devices, and ``4x4lvl-base``, 8 devices), times in
the same process, the candidates interleaved round by round (best of ``--repeats``):

* ours: ``QuantizedSlicedConductanceConverter`` with aihwkit's ``max`` scaling, and with
  the default rule of sweeps, ``mse`` per output channel;
* aihwkit's ``NPairConductanceConverter`` with the same ``f_lst`` (the same devices);
* aihwkit's ``CustomPairConductanceConverter`` with the same ``f_lst`` and the table's
  programmed columns (one per level) as ``g_lst``;
* a memory-copy bound: the same bytes moved by plain torch ops (the weights copied
  into ``2P`` fresh conductance tensors, which are then summed into one fresh tensor:
  ``2P + 1`` tensor copies).

It prints the best and median wall times and the target ratios: ``max`` against the
memory bound, ``mse`` per channel against NPair and against ``max``. Then the peak extra
memory of our round trip in units of the weight tensor's size (CPU: peak resident set
via /proc, measured after all timings with glibc's mmap threshold fixed at 128 KiB, so
that every weight-sized buffer is mapped when allocated and unmapped when freed and
the figure is the peak of live buffers, not what malloc kept; CUDA: the allocator's
peak).

Run: ``python benchmarks/bench_convert.py [--rows 3000] [--cols 5000] [--threads 2]
[--device cpu|cuda]``.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from typing import Callable, Dict, List, Tuple

import torch
from aihwkit.inference.converter.conductance import (
    CustomPairConductanceConverter,
    NPairConductanceConverter,
)

from aihwkit_slicing import QuantizedSlicedConductanceConverter, bit_sliced, seed_table
from aihwkit_slicing.core.tables import ProgrammingTable
from aihwkit_slicing.experiments.distributed import M_MMAP_THRESHOLD, mallopt


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not found in /proc/self/status")


#: The mmap threshold the memory figures use (glibc's initial one, which its dynamic
#: rule would otherwise raise).
FIXED_MMAP_THRESHOLD = 128 * 1024


def fix_mmap_threshold() -> bool:
    """Pin glibc's mmap threshold (False where there is no glibc: figures then include
    what malloc keeps of freed blocks, up to a few weights more)."""
    return mallopt(M_MMAP_THRESHOLD, FIXED_MMAP_THRESHOLD)


def peak_extra_bytes(fn: Callable[[], object], device: torch.device) -> int:
    """Peak memory allocated while ``fn`` runs, beyond what was allocated before
    (on the CPU, call :func:`fix_mmap_threshold` first)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    if not os.path.exists("/proc/self/clear_refs"):
        return -1
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # reset the peak resident set size (VmHWM) to the current one
    before = _rss_kib("VmRSS")
    fn()
    return (_rss_kib("VmHWM") - before) * 1024


def round_trip(converter) -> Callable[[torch.Tensor], torch.Tensor]:
    def run(weights: torch.Tensor) -> torch.Tensor:
        conductances, params = converter.convert_to_conductances(weights)
        return converter.convert_back_to_weights(conductances, params)

    return run


def copy_bound(n_devices: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """The same bytes as a round trip, moved by plain copies and sums."""

    def run(weights: torch.Tensor) -> torch.Tensor:
        block = torch.empty((n_devices,) + tuple(weights.shape), dtype=weights.dtype,
                            device=weights.device)
        for d in range(n_devices):
            block[d].copy_(weights)
        out = torch.sub(block[0], block[1])
        for d in range(2, n_devices, 2):
            out.add_(block[d]).sub_(block[d + 1])
        return out

    return run


def convert_only(converter) -> Callable[[torch.Tensor], object]:
    return lambda weights: converter.convert_to_conductances(weights)


def our_converters(table: ProgrammingTable) -> Tuple[QuantizedSlicedConductanceConverter,
                                                     QuantizedSlicedConductanceConverter]:
    """Ours with aihwkit's ``max`` scaling, and with ``mse`` per output channel."""
    return (QuantizedSlicedConductanceConverter.from_table(table),
            QuantizedSlicedConductanceConverter.from_table(table, scale="mse",
                                                           per_channel=True))


def interleaved_best(candidates: Dict[str, Tuple[Callable[[torch.Tensor], object],
                                                torch.Tensor]],
                     repeats: int) -> Dict[str, Tuple[float, float]]:
    """Best and median wall time (s) of every candidate, run round by round (one
    warm-up each first): a load that comes and goes on a shared machine then hits all
    candidates alike, and the ratios are those of one moment."""
    for fn, inputs in candidates.values():
        fn(inputs)
        _sync(inputs.device)
    times: Dict[str, List[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, (fn, inputs) in candidates.items():
            gc.collect()
            _sync(inputs.device)
            start = time.perf_counter()
            fn(inputs)
            _sync(inputs.device)
            times[name].append(time.perf_counter() - start)
    return {name: (min(t), statistics.median(t)) for name, t in times.items()}


OURS_MAX = "ours, max"
OURS_MSE = "ours, mse per channel (default rule)"
NPAIR = "aihwkit NPair (same f_lst, continuous)"
BOUND = "memory-copy bound (2P + 1 copies)"


def bench_table(table: ProgrammingTable, weights: torch.Tensor, repeats: int) -> Dict[str, float]:
    """Times of every candidate on ``table``, printed with the target ratios."""
    device = weights.device
    ours, ours_mse = our_converters(table)
    custom = CustomPairConductanceConverter(
        f_lst=table.f_lst, g_lst=table.level_conductances.tolist(),
        g_min=table.g_min, g_max=table.g_max,
    )
    # aihwkit's CustomPair interpolates with numpy: it only runs on CPU tensors
    custom_name = "aihwkit CustomPair (same f_lst, g_lst)"
    custom_weights = weights
    if device.type != "cpu":
        custom_name += " [CPU copy]"
        custom_weights = weights.cpu()
    candidates = {
        OURS_MAX: (round_trip(ours), weights),
        OURS_MSE: (round_trip(ours_mse), weights),
        "ours, max, convert only": (convert_only(ours), weights),
        custom_name: (round_trip(custom), custom_weights),
        NPAIR: (round_trip(
            NPairConductanceConverter(f_lst=table.f_lst, g_min=table.g_min, g_max=table.g_max)
        ), weights),
        BOUND: (copy_bound(table.n_devices), weights),
    }
    times = interleaved_best(candidates, repeats)
    ours_best = times[OURS_MAX][0]
    print(f"\ntable {table.name}: {table.n_devices} devices, {table.n_levels} levels, "
          f"weights {tuple(weights.shape)} {weights.dtype} on {device}, "
          f"best of {repeats} (interleaved)")
    print(f"  {'round trip':46s} {'best ms':>9s} {'median ms':>10s} {'time / ours max':>16s}")
    for name, (best, median) in times.items():
        print(f"  {name:46s} {best * 1e3:9.1f} {median * 1e3:10.1f} {best / ours_best:16.2f}")
    ratios = {
        "max / memory bound": times[OURS_MAX][0] / times[BOUND][0],
        "mse per channel / NPair": times[OURS_MSE][0] / times[NPAIR][0],
        "mse per channel / max": times[OURS_MSE][0] / ours_best,
        "CustomPair / max": times[custom_name][0] / ours_best,
    }
    print(f"  ours max vs memory-copy bound: {ratios['max / memory bound']:.2f}x the copy time "
          "(target: at most 1.5x)")
    print(f"  ours mse per channel vs aihwkit NPair, {table.n_devices} devices: "
          f"{ratios['mse per channel / NPair']:.2f}x NPair's time (target: at most 1.00x)")
    print(f"  ours mse per channel vs ours max: {ratios['mse per channel / max']:.2f}x")
    print(f"  CustomPair vs ours: {ratios['CustomPair / max']:.1f}x slower than ours"
          + (" (CustomPair on the CPU)" if device.type != "cpu" else ""))
    return ratios


def bench_memory(table: ProgrammingTable, weights: torch.Tensor) -> Dict[str, float]:
    """Peak extra memory of our round trip on ``table``, in weight tensors, printed."""
    size = weights.numel() * weights.element_size()
    peaks = {}
    for label, converter in zip(("max", "mse per channel"), our_converters(table)):
        round_trip(converter)(weights)  # lookup tables
        peak = peak_extra_bytes(lambda c=converter: round_trip(c)(weights), weights.device)
        if peak >= 0:
            peaks[label] = peak / size
            print(f"  {table.name}, {label}: {peak / size:.2f} x the weight tensor "
                  f"(budget 2P + 2 = {table.n_devices + 2})")
    return peaks


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=3000, help="rows (output channels)")
    parser.add_argument("--cols", type=int, default=5000, help="columns (inputs)")
    parser.add_argument("--size", type=int, default=None,
                        help="rows and columns of a square weight (overrides both)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float16", "bfloat16",
                                                               "float32", "float64"])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows, cols = (args.size, args.size) if args.size else (args.rows, args.cols)
    torch.manual_seed(0)
    weights = torch.randn(rows, cols, dtype=getattr(torch, args.dtype), device=device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
    tables = (seed_table(), bit_sliced(4, 4, name="4x4lvl-base"))
    for table in tables:
        bench_table(table, weights, args.repeats)
    # after every timing: pinning the threshold makes each allocation a fresh mapping
    fixed = device.type != "cpu" or fix_mmap_threshold()
    print("\npeak extra memory of our round trip"
          + ("" if fixed else " (no glibc: includes what malloc kept of freed blocks)"))
    for table in tables:
        bench_memory(table, weights)
    return 0


if __name__ == "__main__":
    sys.exit(main())
