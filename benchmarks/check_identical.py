"""Bit-for-bit check: conversion results before and after a change to the converter.

Speed work must not change a number. This script converts a fixed set of weights
(shapes, dtypes, heavy tails, ties, zeros, all-zero rows, rows long enough to be
subsampled) with a fixed set of tables (seed, ``4x4lvl-base``, equal significance,
uneven and asymmetric levels, many levels, noise-aware) and every scaling rule (max,
percentile, mse; per tensor and per channel) and records everything a conversion
returns: the ``2P`` conductances, the scale, the clipped fraction and the weights back
(and :meth:`quantize`, the IR-drop layout with channels along dimension 1, and a small
analog network programmed, drifted and run forward with fixed seeds).

Record once on the code before the change, then check after every change::

    python benchmarks/check_identical.py --record /tmp/reference.pt
    python benchmarks/check_identical.py --check /tmp/reference.pt

``--check`` compares with ``torch.equal`` (and ``==`` for the clipped fraction) and
exits non-zero, naming every case that differs.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Callable, Dict, Iterator, List, Tuple

import torch

from aihwkit_slicing import (
    QuantizedSlicedConductanceConverter,
    bit_sliced,
    equal_significance,
    from_device_levels,
    seed_table,
)
from aihwkit_slicing.integration.catalog import TABLES
from aihwkit_slicing.design.encodings import level_noise

Case = Tuple[str, Callable[[], Dict[str, object]]]


def tables() -> Dict[str, object]:
    return {
        "seed": seed_table(),
        "4x4lvl-base": TABLES["4x4lvl-base"],
        "2x4lvl-base": TABLES["2x4lvl-base"],
        "1x16lvl": TABLES["1x16lvl"],
        "4x4lvl-equal": TABLES["4x4lvl-equal"],
        "4x16lvl-fill": TABLES["4x16lvl-fill"],
        "equal 2x3": equal_significance(2, 3),
        "non-uniform": from_device_levels([1, 3], [0.0, 1.5, 6.0, 13.0]),
        "asymmetric": from_device_levels([1], [[0.0, 10.0, 20.0], [0.0, 5.0]]),
        "3x24": bit_sliced(3, 24),
    }


def weights() -> Dict[str, torch.Tensor]:
    """Small and medium weights of every kind the rules meet."""
    gen = torch.Generator().manual_seed(20)
    out: Dict[str, torch.Tensor] = {}
    out["randn 300x500"] = torch.randn(300, 500, generator=gen)
    rows = torch.randn(64, 3000, generator=gen) * torch.rand(64, 1, generator=gen).mul(4)
    rows[3] = 0.0  # an all-zero channel
    rows[5, :1500] = 0.0  # half zeros
    rows[7] = rows[7].abs()  # one sign
    rows[9] = -rows[9].abs()
    rows[11, 17] = 40.0  # an outlier
    out["mixed rows 64x3000"] = rows
    heavy = torch.randn(128, 768, generator=gen) / torch.rand(128, 768, generator=gen).add(0.05)
    out["heavy tails 128x768"] = heavy
    out["ties 96x384"] = torch.round(torch.randn(96, 384, generator=gen) * 8) / 8
    out["float64 40x700"] = torch.randn(40, 700, generator=gen, dtype=torch.float64)
    out["float16 32x256"] = torch.randn(32, 256, generator=gen).half()
    out["bfloat16 32x256"] = torch.randn(32, 256, generator=gen).bfloat16()
    out["vector 1000"] = torch.randn(1000, generator=gen)
    out["conv 16x3x3x3"] = torch.randn(16, 3, 3, 3, generator=gen)
    out["one column 50x1"] = torch.randn(50, 1, generator=gen)
    out["transposed 200x120"] = torch.randn(120, 200, generator=gen).T
    out["tiny values 20x300"] = torch.randn(20, 300, generator=gen) * 1e-30
    out["row 1x5000"] = torch.randn(1, 5000, generator=gen)
    return out


def large_weights() -> Dict[str, torch.Tensor]:
    """Weights whose MSE search subsamples (per tensor, or rows past 2**20)."""
    gen = torch.Generator().manual_seed(21)
    return {
        "large 1100x1000": torch.randn(1100, 1000, generator=gen),
        "long rows 2x1050000": torch.randn(2, 1_050_000, generator=gen),
    }


RULES = [("max", False, 99.9), ("max", True, 99.9), ("percentile", False, 99.9),
         ("percentile", True, 90.0), ("mse", False, 99.9), ("mse", True, 99.9)]


def convert(converter: QuantizedSlicedConductanceConverter, w: torch.Tensor,
            channel_dim: int = 0) -> Dict[str, object]:
    if channel_dim == 0:
        conductances, params = converter.convert_to_conductances(w)
    else:
        conductances, params = converter._convert_new_target(w, channel_dim=channel_dim)
    back = converter.convert_back_to_weights(conductances, params)
    return {"g": torch.stack(conductances), "scale": params["scale_ratio"],
            "clipped": params["clipped_fraction"], "back": back}


def cases(quick: bool) -> Iterator[Case]:
    named = tables()
    noise = level_noise(named["4x4lvl-base"], "pcm", [86400.0, 31536000.0], n_samples=200)
    seed_noise = level_noise(named["seed"], "pcm", [86400.0], n_samples=200)
    small = weights()
    for tname, table in named.items():
        for rule, per_channel, percentile in RULES:
            converter = QuantizedSlicedConductanceConverter.from_table(
                table, scale=rule, per_channel=per_channel, percentile=percentile)
            for wname, w in small.items():
                yield (f"{tname} | {rule} pc={per_channel} | {wname}",
                       lambda c=converter, w=w: convert(c, w))
            if tname in ("seed", "4x4lvl-base", "non-uniform"):
                w = small["mixed rows 64x3000"]
                yield (f"{tname} | {rule} pc={per_channel} | quantize",
                       lambda c=converter, w=w: {"q": c.quantize(w)})
                w = small["randn 300x500"]
                yield (f"{tname} | {rule} pc={per_channel} | channels along dim 1",
                       lambda c=converter, w=w: convert(c, w, channel_dim=1))
    for tname, table, level in (("4x4lvl-base", named["4x4lvl-base"], noise),
                                ("seed", named["seed"], seed_noise)):
        for per_channel in (False, True):
            converter = QuantizedSlicedConductanceConverter.from_table(
                table, scale="mse", per_channel=per_channel, level_noise=level)
            for wname, w in small.items():
                yield (f"{tname} noise-aware | mse pc={per_channel} | {wname}",
                       lambda c=converter, w=w: convert(c, w))
    if quick:
        return
    for tname in ("seed", "4x4lvl-base", "non-uniform"):
        for rule, per_channel, percentile in RULES:
            converter = QuantizedSlicedConductanceConverter.from_table(
                named[tname], scale=rule, per_channel=per_channel, percentile=percentile)
            for wname, w in large_weights().items():
                yield (f"{tname} | {rule} pc={per_channel} | {wname}",
                       lambda c=converter, w=w: convert(c, w))
    converter = QuantizedSlicedConductanceConverter.from_table(
        named["4x4lvl-base"], scale="mse", per_channel=True, level_noise=noise)
    for wname, w in large_weights().items():
        yield (f"4x4lvl-base noise-aware | mse pc=True | {wname}",
               lambda c=converter, w=w: convert(c, w))
    yield ("network program, drift, forward", network)


def network() -> Dict[str, object]:
    """A small analog network: programmed, drifted and run forward with fixed seeds."""
    from aihwkit.inference import PCMLikeNoiseModel
    from aihwkit.nn.conversion import convert_to_analog
    from aihwkit.simulator.configs import TorchInferenceRPUConfig

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 48), torch.nn.ReLU(),
                                torch.nn.Linear(48, 16))
    out: Dict[str, object] = {}
    for rule, per_channel in (("max", False), ("mse", True)):
        config = TorchInferenceRPUConfig()
        config.forward.is_perfect = True
        config.noise_model = PCMLikeNoiseModel(
            g_converter=QuantizedSlicedConductanceConverter.from_table(
                bit_sliced(4, 4), scale=rule, per_channel=per_channel))
        analog = convert_to_analog(model, config).eval()
        torch.manual_seed(1)
        analog.program_analog_weights()
        analog.drift_analog_weights(86400.0)
        x = torch.randn(8, 64, generator=torch.Generator().manual_seed(2))
        with torch.no_grad():
            out[f"{rule} forward"] = analog(x)
        for i, tile in enumerate(analog.analog_tiles()):
            out[f"{rule} tile {i} weights"] = tile.get_weights()[0]
    return out


def equal(a: object, b: object) -> bool:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--record", metavar="PATH")
    mode.add_argument("--check", metavar="PATH")
    parser.add_argument("--quick", action="store_true", help="small weights only")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    reference = torch.load(args.check, weights_only=False) if args.check else {}
    results: Dict[str, object] = {}
    differ: List[str] = []
    start = time.perf_counter()
    for name, run in cases(args.quick):
        result = run()
        if args.record:
            results[name] = result
        elif name not in reference:
            differ.append(f"{name}: not in the reference")
        elif not equal(result, reference[name]):
            differ.append(name)
    elapsed = time.perf_counter() - start
    if args.record:
        torch.save(results, args.record)
        print(f"recorded {len(results)} cases in {elapsed:.0f} s to {args.record}")
        return 0
    count = sum(1 for _ in cases(args.quick))
    for name in differ:
        print(f"DIFFERS: {name}")
    print(f"{count - len(differ)} of {count} cases identical bit for bit ({elapsed:.0f} s)")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
