"""Quantized weight slicing in aihwkit, end to end.

Builds the seed table of docs/design.md (4 devices, f_lst = [1, 2], 7 levels), sets
``QuantizedSlicedConductanceConverter`` as the conductance converter of aihwkit's
PCM noise model, converts the bundled digits CNN to analog, programs it and drifts
it to several times, and prints the accuracy and the weight error at each.

Run: ``python examples/quickstart.py`` (a few seconds).
"""

import torch

from aihwkit.inference import GlobalDriftCompensation, PCMLikeNoiseModel
from aihwkit.nn.conversion import convert_to_analog
from aihwkit.simulator.configs import TorchInferenceRPUConfig

from aihwkit_slicing import QuantizedSlicedConductanceConverter, bit_sliced, seed_table
from aihwkit_slicing.experiments.metrics import weight_errors
from aihwkit_slicing.experiments.models.digits import accuracy, load_digits_model, load_digits_split


def main() -> None:
    torch.manual_seed(0)
    table = seed_table()
    print(table.describe(), "\n")

    for name, converter in {
        "seed table, max scaling": QuantizedSlicedConductanceConverter.from_table(table),
        "seed table, MSE clipping per channel": QuantizedSlicedConductanceConverter.from_table(
            table, scale="mse", per_channel=True),
        "4 pairs of 4-level devices": QuantizedSlicedConductanceConverter.from_table(
            bit_sliced(4, 4), scale="mse", per_channel=True),
    }.items():
        rpu_config = TorchInferenceRPUConfig()
        rpu_config.forward.is_perfect = True  # only the weights are non-ideal
        rpu_config.noise_model = PCMLikeNoiseModel(g_converter=converter)
        rpu_config.drift_compensation = GlobalDriftCompensation()

        model = load_digits_model()
        _, _, x_test, y_test = load_digits_split()
        analog = convert_to_analog(model, rpu_config, ensure_analog_root=True).eval()
        analog.program_analog_weights()
        print(f"{name} (floating point {accuracy(model, x_test, y_test):.4f})")
        for t_inference in (1.0, 3600.0, 86400.0, 31536000.0):
            analog.drift_analog_weights(t_inference)
            error = weight_errors(analog)["weight_rms_error"]
            print(f"  t = {t_inference:>10.0f} s: accuracy {accuracy(analog, x_test, y_test):.4f},"
                  f" weight RMS error {error:.4f} of max|w|")


if __name__ == "__main__":
    main()
