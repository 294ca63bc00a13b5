"""Digital slicing on aihwkit's default rpu_config: the digits CNN, scaled or not.

Converts the bundled pretrained digits CNN (:mod:`aihwkit_slicing.experiments.models.digits`)
with ``TorchInferenceRPUConfig()`` as it comes (aihwkit's default forward: 7-bit
DAC, 9-bit ADC with ``out_bound = 12``, output noise 0.06, noise and bound
management; PCM-like programming noise and drift, global drift compensation) and
with ideal peripherals (``forward.is_perfect = True``), and reports, on the 540
held-out images, the accuracy and the relative output error
``||y - y_fp|| / ||y_fp||`` of the logits against the floating-point network:

* unsliced: aihwkit's ``convert_to_analog``, its default mapping
  (``weight_scaling_omega = 0``) and, for comparison, ``weight_scaling_omega = 1``;
* 4 equal slices and 4 binary slices of 2 bits
  (:func:`aihwkit_slicing.convert_to_analog_sliced`), each slice mapped to its tile's
  full range (the default) and with ``scale_slices=False`` (the mapping as given,
  which is how these layers behaved before they scaled their slices).

Each is evaluated as converted (no programming noise; the peripherals only) and
programmed and drifted for one day. A second table converts the drifted models back
to digital, with and without each slice's drift compensation factor.

Run::

    python examples/digital_mapping.py             # about 1.5 min on 2 cores
    python examples/digital_mapping.py --seeds 1
"""

from __future__ import annotations

import argparse
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from aihwkit.nn.conversion import convert_to_analog, convert_to_digital
from aihwkit.simulator.configs import TorchInferenceRPUConfig

from aihwkit_slicing import convert_to_analog_sliced, convert_to_digital_sliced
from aihwkit_slicing.experiments.models.digits import load_digits_model, load_digits_split

#: Peripheral settings: name -> whether ``forward.is_perfect`` is set.
PERIPHERALS: Dict[str, bool] = {"default": False, "ideal": True}

#: Conditions: name -> drift time in seconds (None: as converted, not programmed).
CONDITIONS: Dict[str, Optional[float]] = {"as converted": None, "1 day": 86400.0}

#: Drift time of the conversion-back table (seconds).
T_BACK = 86400.0


def rpu_config(ideal: bool, weight_scaling_omega: float = 0.0) -> TorchInferenceRPUConfig:
    """``TorchInferenceRPUConfig()`` as it comes, optionally ideal or scaled."""
    config = TorchInferenceRPUConfig()
    config.forward.is_perfect = ideal
    if weight_scaling_omega:
        config.mapping.weight_scaling_omega = weight_scaling_omega
    return config


def variants() -> Dict[str, Callable[[nn.Module, bool], nn.Module]]:
    """Name -> conversion ``(digital model, ideal peripherals) -> analog model``."""

    def sliced(significance: str, bits: Optional[int], scale_slices: bool
               ) -> Callable[[nn.Module, bool], nn.Module]:
        return lambda model, ideal: convert_to_analog_sliced(
            model, rpu_config(ideal), 4, significance=significance, bits_per_slice=bits,
            scale_slices=scale_slices)

    return {
        "unsliced (aihwkit default mapping)":
            lambda model, ideal: convert_to_analog(model, rpu_config(ideal)),
        "unsliced, weight_scaling_omega=1":
            lambda model, ideal: convert_to_analog(model, rpu_config(ideal, 1.0)),
        "4 equal slices": sliced("equal", None, True),
        "4 equal slices, scale_slices=False": sliced("equal", None, False),
        "4 binary slices x 2 bit": sliced("binary", 2, True),
        "4 binary slices x 2 bit, scale_slices=False": sliced("binary", 2, False),
    }


def relative_error(output: Tensor, reference: Tensor) -> float:
    """``||output - reference|| / ||reference||`` (Frobenius norms)."""
    return float((output - reference).norm() / reference.norm())


def score(output: Tensor, reference: Tensor, labels: Tensor) -> Tuple[float, float]:
    """``(accuracy, relative output error)`` of logits against the reference."""
    accuracy = float((output.argmax(dim=1) == labels).float().mean())
    return accuracy, relative_error(output, reference)


@torch.no_grad()
def evaluate(convert: Callable[[nn.Module, bool], nn.Module], model: nn.Module,
             images: Tensor, labels: Tensor, reference: Tensor, ideal: bool,
             t_inference: Optional[float], seed: int) -> Tuple[float, float]:
    """Convert with ``torch.manual_seed(seed)``, optionally program and drift, score."""
    torch.manual_seed(seed)
    analog = convert(model, ideal).eval()
    if t_inference is not None:
        analog.program_analog_weights()
        analog.drift_analog_weights(t_inference)
    return score(analog(images), reference, labels)


@torch.no_grad()
def conversion_back(model: nn.Module, images: Tensor, labels: Tensor, reference: Tensor,
                    seed: int) -> Dict[str, Tuple[float, float]]:
    """Ideal peripherals, 1 day of drift: the analog models and their digital copies.

    Each analog model draws its noise from ``torch.manual_seed(seed)`` as in
    :func:`evaluate`, so its row repeats that of the first table.
    """
    analog = {}
    for name, convert in (("4 binary slices x 2 bit", variants()["4 binary slices x 2 bit"]),
                          ("unsliced", variants()["unsliced (aihwkit default mapping)"])):
        torch.manual_seed(seed)
        analog[name] = convert(model, True).eval()
        analog[name].program_analog_weights()
        analog[name].drift_analog_weights(T_BACK)
    sliced, unsliced = analog["4 binary slices x 2 bit"], analog["unsliced"]
    back = {
        "4 binary slices x 2 bit, analog": sliced,
        "convert_to_digital_sliced(model) (drift_compensation=True, the default)":
            convert_to_digital_sliced(sliced),
        "convert_to_digital_sliced(model, drift_compensation=False)":
            convert_to_digital_sliced(sliced, drift_compensation=False),
        "unsliced (aihwkit), analog": unsliced,
        "aihwkit convert_to_digital(model) (no drift compensation)":
            convert_to_digital(unsliced),
    }
    return {name: score(m.eval()(images), reference, labels) for name, m in back.items()}


def main(seeds: int = 3, peripherals: Sequence[str] = tuple(PERIPHERALS),
         conditions: Sequence[str] = tuple(CONDITIONS), back: bool = True,
         verbose: bool = True, threads: int = 1) -> Dict[str, object]:
    """Measure; print and return the tables.

    Args:
        seeds: Torch seeds ``0 .. seeds - 1`` (conversion, noise, programming).
        peripherals: Names from :data:`PERIPHERALS` to measure.
        conditions: Names from :data:`CONDITIONS` to measure.
        back: Also measure the conversion back to digital.
        verbose: Print the tables.
        threads: Torch threads while measuring (the tensors are small).

    Returns:
        ``{"table": {(variant, peripherals, condition): array [seeds, 2]},
        "back": {name: array [seeds, 2]}, "seconds": run time}``; the arrays hold
        ``(accuracy, relative output error)`` per seed.
    """
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _run(seeds, peripherals, conditions, back, verbose)
    finally:
        torch.set_num_threads(previous_threads)


def _run(seeds: int, peripherals: Sequence[str], conditions: Sequence[str], back: bool,
         verbose: bool) -> Dict[str, object]:
    start = time.perf_counter()
    _, _, images, labels = load_digits_split()
    model = load_digits_model()
    with torch.no_grad():
        reference = model(images)
    table: Dict[Tuple[str, str, str], np.ndarray] = {}
    for name, convert in variants().items():
        for periphery in peripherals:
            for condition in conditions:
                table[(name, periphery, condition)] = np.array([
                    evaluate(convert, model, images, labels, reference, PERIPHERALS[periphery],
                             CONDITIONS[condition], seed)
                    for seed in range(seeds)])
    back_table: Dict[str, np.ndarray] = {}
    if back:
        runs = [conversion_back(model, images, labels, reference, seed)
                for seed in range(seeds)]
        back_table = {name: np.array([run[name] for run in runs]) for name in runs[0]}
    elapsed = time.perf_counter() - start
    if verbose:
        digital = score(reference, reference, labels)[0]
        print(f"bundled digits CNN, {len(labels)} held-out images, floating-point "
              f"accuracy {100 * digital:.2f} %; mean +- std over {seeds} seed(s)\n")
        for periphery in peripherals:
            print(f"{periphery} peripherals (forward.is_perfect = {PERIPHERALS[periphery]})\n")
            print(format_table(table, periphery, conditions) + "\n")
        if back:
            print("converted back to digital after 1 day (ideal peripherals)\n")
            print(format_back(back_table))
        print(f"\ntotal run time {elapsed:.1f} s")
    return {"table": table, "back": back_table, "seconds": elapsed}


def _cell(values: np.ndarray, percent: bool) -> str:
    scale = 100.0 if percent else 1.0
    if len(values) == 1:
        return f"{scale * values[0]:.3g}" if not percent else f"{scale * values[0]:.1f}"
    if percent:
        return f"{scale * values.mean():.1f} ± {scale * values.std():.1f}"
    return f"{values.mean():.3g} ± {values.std():.2g}"


def format_table(table: Dict[Tuple[str, str, str], np.ndarray], peripherals: str,
                 conditions: Sequence[str] = tuple(CONDITIONS)) -> str:
    """A markdown table for one peripheral setting: a row per variant, a column pair
    (accuracy %, relative output error) per condition."""
    header = "| variant | " + " | ".join(
        f"{c}: accuracy % | {c}: rel. error" for c in conditions) + " |"
    lines = [header, "|" + "---|" * (1 + 2 * len(conditions))]
    for name in dict.fromkeys(key[0] for key in table):
        cells = [f"{_cell(table[(name, peripherals, c)][:, 0], True)} | "
                 f"{_cell(table[(name, peripherals, c)][:, 1], False)}" for c in conditions]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_back(back: Dict[str, np.ndarray]) -> str:
    """A markdown table of the conversion back to digital."""
    lines = ["| model | accuracy % | rel. error |", "|---|---|---|"]
    for name, values in back.items():
        lines.append(f"| {name} | {_cell(values[:, 0], True)} | {_cell(values[:, 1], False)} |")
    return "\n".join(lines)


def _parse_args(argv: List[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3, help="torch seeds (default 3)")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"--seeds must be at least 1, got {args.seeds}")
    return args


if __name__ == "__main__":
    main(seeds=_parse_args().seeds)
