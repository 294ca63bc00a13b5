"""The CUDA path gives the CPU result bit for bit (runs where a GPU is present).

The converter's lookup, scaling search and decoding use the same torch operations on
every device; these tests check that a GPU changes nothing: conductances, scales and
decoded weights equal the CPU's exactly, and noise-free programming of a CUDA tile equals
the CPU tile's.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from aihwkit_slicing import QuantizedSlicedConductanceConverter, bit_sliced, seed_table

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

RULES = [("max", False), ("percentile", True), ("mse", False), ("mse", True)]


@pytest.mark.parametrize("scale,per_channel", RULES)
@pytest.mark.parametrize("table", [seed_table(), bit_sliced(4, 4)], ids=["seed", "4x4"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_conversion_on_cuda_equals_the_cpu_bit_for_bit(table, scale, per_channel, dtype):
    converter = QuantizedSlicedConductanceConverter.from_table(table, scale=scale,
                                                               per_channel=per_channel)
    weights = torch.randn(96, 300, generator=torch.Generator().manual_seed(0)).to(dtype)
    cpu, cpu_params = converter.convert_to_conductances(weights)
    gpu, gpu_params = converter.convert_to_conductances(weights.cuda())
    assert all(g.device.type == "cuda" for g in gpu)
    assert all(torch.equal(a, b.cpu()) for a, b in zip(cpu, gpu))
    assert torch.equal(torch.as_tensor(cpu_params["scale_ratio"]),
                       torch.as_tensor(gpu_params["scale_ratio"]).cpu())
    assert cpu_params["clipped_fraction"] == gpu_params["clipped_fraction"]
    back_cpu = converter.convert_back_to_weights(cpu, cpu_params)
    back_gpu = converter.convert_back_to_weights(gpu, gpu_params)
    assert torch.equal(back_cpu, back_gpu.cpu())


def test_noise_free_programming_of_a_cuda_tile_equals_the_cpu_tile():
    from aihwkit.inference import PCMLikeNoiseModel
    from aihwkit.nn import AnalogLinear
    from aihwkit.simulator.configs import TorchInferenceRPUConfig

    converter = QuantizedSlicedConductanceConverter.from_table(bit_sliced(2, 4), scale="mse",
                                                               per_channel=True)
    config = TorchInferenceRPUConfig()
    config.noise_model = PCMLikeNoiseModel(g_converter=converter, prog_noise_scale=0.0,
                                           drift_scale=0.0, read_noise_scale=0.0)
    weights = torch.randn(8, 16, generator=torch.Generator().manual_seed(1))
    layers = []
    for device in ("cpu", "cuda"):
        layer = AnalogLinear(16, 8, bias=False, rpu_config=config).eval()
        layer.set_weights(weights)
        layer = layer.to(device)
        layer.program_analog_weights()
        layer.drift_analog_weights(3600.0)
        layers.append(next(layer.analog_tiles()).tile.get_weights().cpu())
    assert torch.equal(layers[0], layers[1])


def test_bench_convert_runs_on_cuda_with_custompair_on_a_cpu_copy(capsys):
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_convert.py"
    spec = importlib.util.spec_from_file_location("bench_convert", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--size", "256", "--repeats", "1", "--device", "cuda"]) == 0
    out = capsys.readouterr().out
    assert "[CPU copy]" in out and "on cuda" in out
