"""Digitally summed vs analog summed weight slicing on the 8x8 digits data.

Takes the bundled pretrained digits CNN (:mod:`aihwkit_slicing.experiments.models.digits`, two
``Conv2d`` and two ``Linear`` layers, scored on the fixed held-out split of
scikit-learn's 8x8 digits) and converts it to analog in four ways, all with aihwkit's
``PCMLikeNoiseModel``, ``GlobalDriftCompensation`` and ideal peripherals
(``forward.is_perfect=True``):

* ``unsliced``: one device pair per weight, aihwkit's default conductance mapping;
* ``4 equal slices``: :func:`aihwkit_slicing.convert_to_analog_sliced`, four tiles of
  ``W / 4`` summed digitally (8 devices per weight);
* ``4 binary slices``: four tiles holding the base-4 digits of the weight
  (2 bits per slice, 8 bits of magnitude plus sign), summed digitally with factors
  1, 4, 16, 64 (8 devices per weight); ``significance="binary", bits_per_slice=2``
  is the same split as ``significance="base", levels_per_slice=4``;
* ``analog sum``: the same digits on four device pairs of one unit cell whose
  currents add up before one ADC: ``QuantizedSlicedConductanceConverter`` with the
  ``bit_sliced(4, 4)`` table (8 devices per weight, one tile).

Every slice's tile uses its full weight range (``weight_scaling_omega = 1.0``, see
``docs/digital-slicing.md``); with ideal peripherals and aihwkit's PCM-like noise,
which scales to each tile's maximum anyway, that changes nothing but float rounding.
``examples/digital_mapping.py`` measures aihwkit's default peripherals.

For each, it programs the weights ``--repeats`` times and reports the held-out
accuracy after drifting to 1 s, 1 h, 1 day and 1 year (mean and standard deviation
over the programmings).

Run::

    python examples/digital_slicing.py            # about 20 s on 2 cores
    python examples/digital_slicing.py --repeats 2
"""

from __future__ import annotations

import argparse
import copy
import time
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from aihwkit.inference.compensation.drift import GlobalDriftCompensation
from aihwkit.inference.noise.pcm import PCMLikeNoiseModel
from aihwkit.nn.conversion import convert_to_analog
from aihwkit.simulator.configs import TorchInferenceRPUConfig

from aihwkit_slicing import (
    QuantizedSlicedConductanceConverter,
    bit_sliced,
    convert_to_analog_sliced,
)
from aihwkit_slicing.experiments.models.digits import load_digits_model, load_digits_split

#: Drift times (seconds after programming) and their labels.
TIMES: Tuple[Tuple[str, float], ...] = (
    ("1 s", 1.0),
    ("1 h", 3600.0),
    ("1 day", 86400.0),
    ("1 year", 365.25 * 86400.0),
)


@torch.no_grad()
def accuracy(model: nn.Module, images: Tensor, labels: Tensor) -> float:
    """Fraction of correctly classified images."""
    return float((model(images).argmax(dim=1) == labels).float().mean())


def rpu_config(g_converter: object = None) -> TorchInferenceRPUConfig:
    """PCM-like noise, global drift compensation, ideal peripherals."""
    config = TorchInferenceRPUConfig()
    config.forward.is_perfect = True
    config.noise_model = (
        PCMLikeNoiseModel() if g_converter is None else PCMLikeNoiseModel(g_converter=g_converter)
    )
    config.drift_compensation = GlobalDriftCompensation()
    return config


def variants() -> Dict[str, Tuple[int, Callable[[nn.Module], nn.Module]]]:
    """Name -> (devices per weight, conversion of the trained digital model)."""
    converter = QuantizedSlicedConductanceConverter.from_table(bit_sliced(4, 4))
    return {
        "unsliced": (2, lambda m: convert_to_analog(m, rpu_config())),
        "4 equal slices (digital sum)": (
            8, lambda m: convert_to_analog_sliced(m, rpu_config(), 4, significance="equal")),
        "4 binary slices x 2 bit (digital sum)": (
            8, lambda m: convert_to_analog_sliced(m, rpu_config(), 4, significance="binary",
                                                  bits_per_slice=2)),
        "analog sum, bit_sliced(4, 4) cell": (
            8, lambda m: convert_to_analog(m, rpu_config(copy.deepcopy(converter)))),
    }


def drift_sweep(
    model: nn.Module, images: Tensor, labels: Tensor, repeats: int,
    times: Sequence[Tuple[str, float]] = TIMES, seed: int = 0,
) -> np.ndarray:
    """Accuracies ``[repeats, len(times)]``: program anew per repeat, then drift."""
    model.eval()
    results = np.zeros((repeats, len(times)))
    for rep in range(repeats):
        torch.manual_seed(seed + rep)
        model.program_analog_weights()
        for j, (_, t_inference) in enumerate(times):
            model.drift_analog_weights(t_inference)
            results[rep, j] = accuracy(model, images, labels)
    return results


def main(repeats: int = 25, seed: int = 0,
         times: Sequence[Tuple[str, float]] = TIMES, verbose: bool = True,
         threads: int = 1) -> Dict[str, object]:
    """Train, convert, sweep; print and return the accuracy table.

    ``threads`` torch threads (default 1): the tensors are tiny, and on a busy
    2-core machine two threads made the run several times slower.
    """
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _run(repeats, seed, times, verbose)
    finally:
        torch.set_num_threads(previous_threads)


def _run(repeats: int, seed: int, times: Sequence[Tuple[str, float]],
         verbose: bool) -> Dict[str, object]:
    start = time.perf_counter()
    _, _, x_test, y_test = load_digits_split()
    model = load_digits_model()
    digital = accuracy(model, x_test, y_test)

    table: Dict[str, Tuple[int, np.ndarray]] = {}
    for name, (devices, convert) in variants().items():
        analog = convert(model)
        table[name] = (devices, drift_sweep(analog, x_test, y_test, repeats, times, seed))
    elapsed = time.perf_counter() - start

    if verbose:
        print(f"bundled digits CNN: {len(y_test)} held-out images; "
              f"digital accuracy {100 * digital:.2f} %")
        print(f"held-out accuracy (%), mean +- std over {repeats} programmings "
              "(PCM-like noise, global drift compensation, ideal peripherals)\n")
        print(format_table(table, times))
        print(f"\ntotal run time {elapsed:.1f} s")
    return {"digital": digital, "table": table, "seconds": elapsed}


def format_table(table: Dict[str, Tuple[int, np.ndarray]],
                 times: Sequence[Tuple[str, float]] = TIMES) -> str:
    """A markdown table: one row per variant, one column per drift time."""
    header = "| variant | devices/weight | " + " | ".join(label for label, _ in times) + " |"
    lines = [header, "|" + "---|" * (2 + len(times))]
    for name, (devices, acc) in table.items():
        cells = [f"{100 * acc[:, j].mean():.2f} ± {100 * acc[:, j].std():.2f}"
                 for j in range(len(times))]
        lines.append(f"| {name} | {devices} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _parse_args(argv: List[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=25,
                        help="programmings per variant (default 25)")
    parser.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    return args


if __name__ == "__main__":
    ARGS = _parse_args()
    main(repeats=ARGS.repeats, seed=ARGS.seed)
