"""Program a chip once, save it, and evaluate its drift later in another process.

Converts the bundled digits CNN to analog (PCM noise, ``TorchInferenceRPUConfig``,
global drift compensation) with ``QuantizedSlicedConductanceConverter``, programs it
once and saves the programmed chip with :func:`aihwkit_slicing.save_programmed`.
A fresh Python process then converts the same network again, restores the chip with
:func:`aihwkit_slicing.load_programmed` (no re-programming: the same devices, the same
programming noise) and prints the test accuracy after 1 s, 1 day and 1 year of drift,
next to what the programming process itself measures with the same seeds. Done for
the seed table (4 devices per weight) and for ``bit_sliced(4, 4)`` (8 devices per
weight), with the file size per analog weight.

Run: ``python examples/checkpoint.py`` (about 20 s; most of it is starting the two
evaluation processes). ``--evaluate TABLE FILE`` is the evaluation process alone.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, Dict, List

import torch
from aihwkit.nn.conversion import convert_to_analog
from aihwkit.simulator.configs import TorchInferenceRPUConfig
from torch import nn

from aihwkit_slicing import (
    ProgrammingTable,
    QuantizedSlicedConductanceConverter,
    bit_sliced,
    load_programmed,
    save_programmed,
    seed_table,
)
from aihwkit_slicing.experiments.models.digits import accuracy, load_digits_model, load_digits_split
from aihwkit_slicing.integration.rpu_configs import make_rpu_config

TABLES: Dict[str, Callable[[], ProgrammingTable]] = {
    "seed table": seed_table,
    "bit_sliced(4, 4)": lambda: bit_sliced(4, 4),
}
#: Inference times in seconds: 1 s, 1 day, 1 year.
TIMES = {"1 s": 1.0, "1 day": 86400.0, "1 year": 31536000.0}
PROGRAMMING_SEED = 0
DRIFT_SEED = 1


def analog_digits(table: str) -> nn.Module:
    """The digits CNN, freshly converted: the same in every process."""
    converter = QuantizedSlicedConductanceConverter.from_table(TABLES[table]())
    rpu_config = make_rpu_config(converter, noise_model="pcm",
                                 base=TorchInferenceRPUConfig())
    return convert_to_analog(load_digits_model(), rpu_config).eval()


def drift_accuracies(model: nn.Module) -> List[float]:
    """Test accuracy after each of :data:`TIMES` (each drift starts from programming)."""
    _, _, x_test, y_test = load_digits_split()
    results = []
    for t_inference in TIMES.values():
        torch.manual_seed(DRIFT_SEED)
        model.drift_analog_weights(t_inference)
        results.append(accuracy(model, x_test, y_test))
    return results


def evaluate(table: str, path: Path) -> List[float]:
    """The evaluation process: restore the saved chip into a fresh model and drift it."""
    model = analog_digits(table)
    load_programmed(model, path)
    return drift_accuracies(model)


def program_and_save(table: str, path: Path) -> nn.Module:
    """Program the chip once and save it; returns the programmed model."""
    model = analog_digits(table)
    torch.manual_seed(PROGRAMMING_SEED)
    model.program_analog_weights()
    save_programmed(model, path)
    return model


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        for table in TABLES:
            path = Path(folder) / "chip.pt"
            model = program_and_save(table, path)
            weights = sum(tile.tile.get_weights().numel() for tile in model.analog_tiles())
            size = path.stat().st_size
            devices = TABLES[table]().n_devices
            print(f"{table} ({devices} devices per weight): {size / 1e6:.2f} MB for "
                  f"{weights} analog weights = {size / weights:.1f} bytes per weight")

            child = subprocess.run(
                [sys.executable, __file__, "--evaluate", table, str(path)],
                check=True, capture_output=True, text=True)
            there = json.loads(child.stdout.strip().splitlines()[-1])
            here = drift_accuracies(model)
            print(f"  {'t':>8s}  {'another process':>16s}  {'programming process':>20s}")
            for name, a, b in zip(TIMES, there, here, strict=True):
                print(f"  {name:>8s}  {a:16.4f}  {b:20.4f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evaluate", nargs=2, metavar=("TABLE", "FILE"),
                        help="only evaluate a saved chip (prints the accuracies as JSON)")
    arguments = parser.parse_args()
    if arguments.evaluate:
        print(json.dumps(evaluate(arguments.evaluate[0], Path(arguments.evaluate[1]))))
    else:
        main()
