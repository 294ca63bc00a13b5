"""Benchmark: the measured noise model against aihwkit's ``PCMLikeNoiseModel``, same process.

What a measured device model costs over aihwkit's PCM fit, as ratios of times measured
in one run, ``PCMLikeNoiseModel`` = 1.00. The two are timed in turn, repeat by repeat
(after one untimed call each), and each keeps its best time: on a shared machine a
burst of load then hits both alike.

1. **The noise model alone**, on the ``2P`` conductance tensors of one weight matrix
   (``--size`` square, default 2048): programming (``apply_programming_noise_to_conductance``
   and ``generate_drift_coefficients`` per device) and drift to one day
   (``apply_drift_noise_to_conductance``), for ``1x16lvl`` and ``4x4lvl-base`` on the
   bundled ``pcm-hermes-2023`` device's levels.
2. **Through the converter**, as a tile calls them: ``apply_programming_noise`` and
   ``apply_drift_noise`` of the same matrix (conversion included, scale ``max``).
3. **A MiniLM-sized network** (6 blocks, hidden 384, 37 linear layers, random weights,
   ``TorchInferenceRPUConfig``, ``4x4lvl-base`` on the device, ``mse`` per channel as
   sweeps scale): ``program_analog_weights`` and ``drift_analog_weights(86400)``.

Run: ``python benchmarks/bench_noise_models.py [--quick] [--threads N] [--size N]
[--repeats N]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch
from torch import nn

from aihwkit.inference import PCMLikeNoiseModel
from aihwkit.nn.conversion import convert_to_analog
from aihwkit.simulator.configs import TorchInferenceRPUConfig

from aihwkit_slicing import (
    MeasuredNoiseModel,
    QuantizedSlicedConductanceConverter,
    builtin_tables,
    on_device,
)
from aihwkit_slicing.core.device_model import bundled_device_models

DAY = 86400.0
PCM, MEASURED = "PCMLikeNoiseModel", "MeasuredNoiseModel"


def best_in_turn(repeats: int, calls: Dict[str, Callable[[], Any]]) -> Dict[str, float]:
    """Per label, the shortest of ``repeats`` timed calls, the labels taking turns, after
    one untimed (warm-up) call each."""
    for call in calls.values():
        call()
    best = {label: float("inf") for label in calls}
    for _ in range(repeats):
        for label, call in calls.items():
            start = time.perf_counter()
            call()
            best[label] = min(best[label], time.perf_counter() - start)
    return best


def noise_models(converter: QuantizedSlicedConductanceConverter) -> Dict[str, Any]:
    return {PCM: PCMLikeNoiseModel(g_converter=converter),
            MEASURED: MeasuredNoiseModel(g_converter=converter)}


def ratio_line(label: str, times: Dict[str, float]) -> str:
    return (f"  {label:<40s} PCM {times[PCM] * 1000:8.1f} ms   measured "
            f"{times[MEASURED] * 1000:8.1f} ms ({times[MEASURED] / times[PCM]:4.2f}x)")


def bench_matrix(size: int, repeats: int) -> None:
    device = bundled_device_models()["pcm-hermes-2023"]
    torch.manual_seed(0)
    weights = torch.randn(size, size)
    print(f"\n1./2. one {size} x {size} matrix on {device.name} levels, best of {repeats}")
    for name in ("1x16lvl", "4x4lvl-base"):
        table = on_device(builtin_tables()[name], device)
        converter = QuantizedSlicedConductanceConverter.from_table(table)
        targets, _ = converter.convert_to_conductances(weights)
        models = noise_models(converter)

        def program(model: Any) -> List[Any]:
            out = []
            for g in targets:
                target = g.clone()
                out.append((model.apply_programming_noise_to_conductance(target),
                            model.generate_drift_coefficients(target)))
            return out

        programmed = {label: program(model) for label, model in models.items()}
        through = {label: model.apply_programming_noise(weights)
                   for label, model in models.items()}
        rows = {
            "noise model alone, program": {
                label: (lambda model=model: program(model)) for label, model in models.items()},
            "noise model alone, drift": {
                label: (lambda model=model, label=label: [
                    model.apply_drift_noise_to_conductance(g, nu, DAY)
                    for g, nu in programmed[label]]) for label, model in models.items()},
            "through the converter, program": {
                label: (lambda model=model: model.apply_programming_noise(weights))
                for label, model in models.items()},
            "through the converter, drift": {
                label: (lambda model=model, label=label: model.apply_drift_noise(
                    through[label][0], through[label][1], DAY))
                for label, model in models.items()},
        }
        print(f" {name} ({table.n_devices} devices per weight)")
        for label, calls in rows.items():
            print(ratio_line(label, best_in_turn(repeats, calls)))


def minilm_sized(quick: bool) -> nn.Module:
    """6 blocks of hidden 384 (q, k, v, o, up, down) and a pooler: 37 linear layers."""
    width, blocks = (64, 1) if quick else (384, 6)
    layers: List[nn.Module] = []
    for _ in range(blocks):
        layers += [nn.Linear(width, width) for _ in range(4)]
        layers += [nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width)]
    layers.append(nn.Linear(width, width))
    return nn.Sequential(*layers)


def bench_network(quick: bool, repeats: int) -> None:
    device = bundled_device_models()["pcm-hermes-2023"]
    table = on_device(builtin_tables()["4x4lvl-base"], device)
    torch.manual_seed(0)
    model = minilm_sized(quick).eval()
    analog = {}
    for label, noise_model in noise_models(QuantizedSlicedConductanceConverter.from_table(
            table, scale="mse", per_channel=True)).items():
        config = TorchInferenceRPUConfig()
        config.forward.is_perfect = True
        config.noise_model = noise_model
        analog[label] = convert_to_analog(model, config).eval()
    program = best_in_turn(repeats, {label: network.program_analog_weights
                                     for label, network in analog.items()})
    drift = best_in_turn(repeats, {label: (lambda network=network: network.drift_analog_weights(
        DAY)) for label, network in analog.items()})
    layers = sum(1 for m in model.modules() if isinstance(m, nn.Linear))
    print(f"\n3. MiniLM-sized network ({layers} linear layers), 4x4lvl-base on {device.name}, "
          f"mse per channel, best of {repeats}")
    print(ratio_line("program", program))
    print(ratio_line("drift", drift))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (for tests)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    size, repeats = (128, 1) if args.quick else (args.size, args.repeats)
    print(f"measured noise model vs aihwkit PCMLikeNoiseModel, {args.threads} torch thread(s), "
          f"ratios in the same process (PCM = 1.00x)")
    bench_matrix(size, repeats)
    bench_network(args.quick, 1 if args.quick else max(1, repeats // 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
