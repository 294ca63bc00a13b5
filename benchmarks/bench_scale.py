"""Benchmark: the converter at network scale, against aihwkit's own converter.

All in one run, ratios against a baseline measured in the same process:

1. **Table builds**: ``bit_sliced(4, 16)`` (923,521 columns), ``bit_sliced(3, 24)``,
   ``equal_significance(4, 16)``, against one ``argsort`` of as many values (the
   ``O(L log L)`` floor).
2. **Per-channel search on ResNet-18** (torchvision, 21 analog layers,
   ``TorchInferenceRPUConfig``, PCM): programming time with ``bit_sliced(4, 4)`` for
   ``mse`` per tensor, per channel and noise-aware per channel, and aihwkit's default
   converter; the SQNR of the quantized weights of each rule.
3. **A MiniLM-sized network** (6 blocks, hidden 384, 37 linear layers, random weights,
   ``TorchInferenceRPUConfig``, PCM): program, drift to one day, forward of 64 x 128
   tokens with ours (``bit_sliced(4, 4)``, mse per channel) and aihwkit's
   ``NPairConductanceConverter`` F=[1,1,1,1] (the same 8 devices), on the CPU and, when
   present, on the GPU; ours as a ratio of NPair's time (target: programming at most
   1.00x, i.e. no slower than aihwkit's own 4-pair converter).
4. **Memory per weight**: resident memory growth after program + drift, in units of the
   fp32 size of the analog weights, ours (exact device state, and ``compact_state=True``:
   float16 conductances) against aihwkit NPair, each in a fresh process (peak resident
   set included: glibc keeps freed memory).

Run: ``python benchmarks/bench_scale.py [--quick] [--threads N] [--skip memory,...]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from aihwkit.inference import PCMLikeNoiseModel
from aihwkit.inference.converter.conductance import NPairConductanceConverter
from aihwkit.nn.conversion import convert_to_analog
from aihwkit.simulator.configs import TorchInferenceRPUConfig

from aihwkit_slicing import QuantizedSlicedConductanceConverter, bit_sliced, equal_significance
from aihwkit_slicing.design.encodings import level_noise

SECTIONS = ("tables", "resnet", "network", "memory")


def timed(fn: Callable[[], Any], device: Optional[torch.device] = None) -> Tuple[float, Any]:
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    result = fn()
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, result


def rpu_config(converter: Any) -> TorchInferenceRPUConfig:
    config = TorchInferenceRPUConfig()
    config.forward.is_perfect = True
    config.noise_model = PCMLikeNoiseModel(g_converter=converter)
    return config


def npair() -> NPairConductanceConverter:
    return NPairConductanceConverter(f_lst=[1.0] * 4, g_max=25.0, g_min=0.0)


def ours(**kwargs: Any) -> QuantizedSlicedConductanceConverter:
    return QuantizedSlicedConductanceConverter.from_table(bit_sliced(4, 4), **kwargs)


# ================================================================ 1. tables
def bench_tables(quick: bool) -> None:
    print("\n1. table builds (best of 2; sort = one argsort of as many values)")
    cases = [("bit_sliced(4, 4)", lambda: bit_sliced(4, 4), 2401)]
    if not quick:
        cases += [("bit_sliced(3, 24)", lambda: bit_sliced(3, 24), 47**3),
                  ("equal_significance(4, 16)", lambda: equal_significance(4, 16), 31**4),
                  ("bit_sliced(4, 16)", lambda: bit_sliced(4, 16), 31**4)]
    for name, build, columns in cases:
        build_time = min(timed(build)[0] for _ in range(2))
        values = np.random.default_rng(0).random(columns)
        sort_time = min(timed(lambda: np.argsort(values, kind="stable"))[0] for _ in range(2))
        print(f"  {name:<26s} {columns:>8d} columns  {build_time:7.3f} s  "
              f"{build_time / sort_time:6.1f}x the sort")


# ============================================================== 2. resnet
def sqnr_db(converter: Any, matrices: List[torch.Tensor]) -> float:
    error = signal = 0.0
    for w in matrices:
        q = converter.quantize(w)
        error += float((q - w).double().square().sum())
        signal += float(w.double().square().sum())
    return 10 * math.log10(signal / error)


def bench_resnet(quick: bool) -> None:
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    matrices = [m.weight.detach().reshape(m.weight.shape[0], -1) for m in model.modules()
                if isinstance(m, (nn.Conv2d, nn.Linear))]
    noise = level_noise(bit_sliced(4, 4), "pcm", [86400.0, 31536000.0],
                        n_samples=200 if quick else 1000)
    rules = {
        "aihwkit default (SinglePair)": None,
        "ours mse per tensor": ours(scale="mse"),
        "ours mse per channel": ours(scale="mse", per_channel=True),
        "ours mse per channel, noise-aware": ours(scale="mse", per_channel=True,
                                                  level_noise=noise),
    }
    print(f"\n2. ResNet-18 ({len(matrices)} analog layers, "
          f"{sum(m.numel() for m in matrices) / 1e6:.1f} M weights), bit_sliced(4, 4), "
          "programming with PCM noise")
    times = {}
    for label, converter in rules.items():
        config = TorchInferenceRPUConfig()
        if converter is not None:
            config.noise_model = PCMLikeNoiseModel(g_converter=converter)
        analog = convert_to_analog(model, config).eval()
        torch.manual_seed(1)
        times[label], _ = timed(analog.program_analog_weights)
        del analog
        gc.collect()
    base = times["ours mse per tensor"]
    for label, seconds in times.items():
        converter = rules[label]
        quality = f"SQNR {sqnr_db(converter, matrices):6.2f} dB" if converter else ""
        print(f"  {label:<36s} {seconds:6.2f} s  {seconds / base:5.2f}x per tensor  {quality}")


# ============================================================= 3. network
def minilm_sized() -> nn.Module:
    """6 blocks of hidden 384 (q, k, v, o, up, down) and a pooler: 37 linear layers."""
    layers: List[nn.Module] = []
    for _ in range(6):
        layers += [nn.Linear(384, 384) for _ in range(4)]
        layers += [nn.Linear(384, 1536), nn.GELU(), nn.Linear(1536, 384)]
    layers.append(nn.Linear(384, 384))
    return nn.Sequential(*layers)


def bench_network(device: torch.device, quick: bool,
                  repeats: int = 2) -> Dict[str, Dict[str, float]]:
    """Program, drift and forward with NPair and ours, round by round (best of
    ``repeats``): a load that comes and goes on a shared machine hits both alike."""
    torch.manual_seed(0)
    model = minilm_sized().eval()
    tokens = torch.randn(16 if quick else 64 * 128, 384, device=device)
    candidates = [("aihwkit NPair F=[1,1,1,1]", npair()),
                  ("ours bit_sliced(4, 4), mse per channel", ours(scale="mse", per_channel=True))]
    rows: Dict[str, Dict[str, float]] = {}
    for _ in range(1 if quick else repeats):
        for label, converter in candidates:
            analog = convert_to_analog(model, rpu_config(converter)).eval().to(device)
            torch.manual_seed(1)
            program, _ = timed(analog.program_analog_weights, device)
            drift, _ = timed(lambda model=analog: model.drift_analog_weights(86400.0), device)
            with torch.no_grad():
                analog(tokens)
                forward, _ = timed(lambda model=analog: model(tokens), device)
            best = rows.setdefault(label, {"program": math.inf, "drift": math.inf,
                                           "forward": math.inf})
            for key, seconds in (("program", program), ("drift", drift),
                                 ("forward", forward)):
                best[key] = min(best[key], seconds)
            del analog
            gc.collect()
    base = rows["aihwkit NPair F=[1,1,1,1]"]
    gpu = f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""
    print(f"\n3. MiniLM-sized network (37 linear layers) on {device}{gpu}, "
          f"{torch.get_num_threads()} torch threads, forward of {tokens.shape[0]} tokens, "
          f"best of {1 if quick else repeats} (interleaved); ratios: time / NPair's")
    for label, row in rows.items():
        ratio = {key: row[key] / base[key] for key in row}
        print(f"  {label:<40s} program {row['program']:6.2f} s ({ratio['program']:4.2f}x)"
              f"  drift {row['drift']:5.2f} s ({ratio['drift']:4.2f}x)"
              f"  forward {row['forward'] * 1000:7.1f} ms ({ratio['forward']:4.2f}x)")
    ours_row = rows["ours bit_sliced(4, 4), mse per channel"]
    print(f"  ours program vs aihwkit NPair: {ours_row['program'] / base['program']:.2f}x "
          "NPair's time (target: at most 1.00x)")
    return rows


# ============================================================== 4. memory
MEMORY_CHILD = r"""
import gc, json, sys, resource, torch
torch.set_num_threads(int(sys.argv[2]))
sys.path.insert(0, sys.argv[3])
from bench_scale import minilm_sized, npair, ours, rpu_config
from aihwkit.nn.conversion import convert_to_analog
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) * 1024
torch.manual_seed(0)
model = minilm_sized().eval()
converter = npair() if sys.argv[1] == "npair" else ours(
    scale="mse", per_channel=True, compact_state=sys.argv[1] == "compact")
analog = convert_to_analog(model, rpu_config(converter)).eval()
n = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
del model; gc.collect()
before = rss()
analog.program_analog_weights(); analog.drift_analog_weights(86400.0); gc.collect()
print(json.dumps({"growth": (rss() - before) / (4 * n), "weights": n}))
"""


def bench_memory(threads: int) -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    results = {}
    for which in ("npair", "ours", "compact"):
        done = subprocess.run([sys.executable, "-c", MEMORY_CHILD, which, str(threads), here],
                              capture_output=True, text=True, check=True)
        results[which] = json.loads(done.stdout.strip().splitlines()[-1])
    weights = results["npair"]["weights"]
    print(f"\n4. memory after program + drift, MiniLM-sized network ({weights / 1e6:.1f} M analog "
          "weights), resident growth in units of their fp32 size (fresh process each)")
    base = results["npair"]["growth"]
    print(f"  aihwkit NPair F=[1,1,1,1] (8 devices)        {base:5.2f}x")
    for which, label in (("ours", "ours bit_sliced(4, 4), exact state"),
                         ("compact", "ours, compact_state=True (float16)")):
        growth = results[which]["growth"]
        print(f"  {label:<44s} {growth:5.2f}x  ({growth / base:.2f}x NPair's; "
              f"+{growth - base:.2f} weights: the programmed conductance of every device, "
              "which per-device drift needs)")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (for the tests)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip", default="", help=f"comma-separated of {', '.join(SECTIONS)}")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    skip = {s for s in args.skip.split(",") if s}
    print(f"torch {torch.__version__}, {args.threads} threads")
    if "tables" not in skip:
        bench_tables(args.quick)
    if "resnet" not in skip:
        bench_resnet(args.quick)
    if "network" not in skip:
        bench_network(torch.device("cpu"), args.quick)
        if torch.cuda.is_available():
            bench_network(torch.device("cuda"), args.quick)
    if "memory" not in skip:
        bench_memory(args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
