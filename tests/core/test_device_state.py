"""Device state through aihwkit: results depend on the model, the table and the seed only.

Each test names the finding it covers (the issue "Trustworthy device state"); the
references have no memory at all: a converter that quantizes a copy of whatever it is
given, the table's own columns, or a fresh Python process.
"""

from __future__ import annotations

import gc
import io
import json
import pickle
import subprocess
import sys
import textwrap

import pytest
import torch
from aihwkit.inference.noise.pcm import PCMLikeNoiseModel
from aihwkit.nn import AnalogLinear, AnalogSequential
from aihwkit.nn.conversion import convert_to_analog, convert_to_digital
from aihwkit.simulator.configs import TorchInferenceRPUConfig, TorchInferenceRPUConfigIRDropT

from aihwkit_slicing import QuantizedSlicedConductanceConverter, bit_sliced, from_device_levels
from aihwkit_slicing.core import device_state
from aihwkit_slicing.experiments.metrics import clipped_fractions

PHYS_INPUT_SIZE = 64


class MemoryFreeConverter(QuantizedSlicedConductanceConverter):
    """Reference: quantizes a copy of whatever it is given; recognizes nothing."""

    def convert_to_conductances(self, weights):
        return self._convert_new_target(weights.detach().clone())


def converter(cls=QuantizedSlicedConductanceConverter, **kwargs):
    return cls.from_table(bit_sliced(2, 4), **kwargs)


def config(conv, irdrop=False, **noise):
    cfg = TorchInferenceRPUConfigIRDropT() if irdrop else TorchInferenceRPUConfig()
    if irdrop:
        cfg.forward.ir_drop = 1.0
        cfg.mapping.max_input_size = PHYS_INPUT_SIZE
    cfg.forward.out_noise = 0.0
    cfg.noise_model = PCMLikeNoiseModel(g_converter=conv, **noise)
    cfg.drift_compensation = None
    return cfg


NOISE_FREE = dict(prog_noise_scale=0.0, drift_scale=0.0, read_noise_scale=0.0)


def layer_with(weights, cfg):
    layer = AnalogLinear(weights.shape[1], weights.shape[0], bias=False, rpu_config=cfg).eval()
    layer.set_weights(weights)
    return layer


def tile_of(module):
    return next(module.analog_tiles())


def programmed_layer(seed=0, **kwargs):
    torch.manual_seed(seed)
    layer = layer_with(torch.randn(8, 16), config(converter(**kwargs)))
    layer.program_analog_weights()
    return layer


def reference_quantized(weights, **kwargs):
    return converter(MemoryFreeConverter, **kwargs).quantize(weights.detach().clone())


# ============================== finding 2: re-programming is programming
@pytest.mark.parametrize("per_channel", [False, True])
def test_clone_of_programmed_weights_is_quantized_when_programmed_into_a_new_layer(per_channel):
    source = programmed_layer(per_channel=per_channel, scale="mse")
    exported = tile_of(source).tile.get_weights().clone()  # a plain tensor
    assert not torch.equal(exported, reference_quantized(exported, per_channel=per_channel,
                                                         scale="mse"))
    target = layer_with(exported, config(converter(per_channel=per_channel, scale="mse"),
                                         **NOISE_FREE))
    target.program_analog_weights()
    assert torch.equal(tile_of(target).programmed_weights,
                       reference_quantized(exported, per_channel=per_channel, scale="mse"))


def test_program_weights_not_from_reference_quantizes_the_current_tile_weights():
    layer = programmed_layer()
    tile = tile_of(layer)
    current = tile.tile.get_weights().clone()
    tile.rpu_config.noise_model = PCMLikeNoiseModel(g_converter=converter(), **NOISE_FREE)
    tile.program_weights(from_reference=False)
    assert torch.equal(tile.programmed_weights, reference_quantized(current))


def test_digital_round_trip_of_a_programmed_model_is_quantized_afresh():
    torch.manual_seed(1)
    cfg = config(converter())
    model = AnalogSequential(AnalogLinear(16, 8, bias=False, rpu_config=cfg)).eval()
    model.program_analog_weights()
    digital = convert_to_digital(model)
    weights = digital[0].weight.detach().clone()
    analog = convert_to_analog(digital, config(converter(), **NOISE_FREE)).eval()
    analog.program_analog_weights()
    assert torch.equal(tile_of(analog).programmed_weights, reference_quantized(weights))


def assert_converter_keeps_no_record(conv):
    """Program tensors through a noise model and check that the converter the noise
    model actually uses (aihwkit deep-copies the one it is given) pickles the same after
    one programming (its caches filled) as after 20 more: it keeps no record of them."""
    noise = PCMLikeNoiseModel(g_converter=conv)
    torch.manual_seed(2)
    kept = [noise.apply_programming_noise(torch.randn(8, 16))[0]]
    before = pickle.dumps(noise.g_converter)
    kept += [noise.apply_programming_noise(torch.randn(8, 16))[0] for _ in range(20)]
    assert len(kept) == 21
    assert pickle.dumps(noise.g_converter) == before


def test_pickled_converter_carries_no_record_of_what_it_produced():
    assert_converter_keeps_no_record(converter())


class RememberingConverter(QuantizedSlicedConductanceConverter):
    """A converter that keeps per-instance memory of what it produced (the defect)."""

    def convert_back_to_weights(self, conductances, params):
        weights = super().convert_back_to_weights(conductances, params)
        self.__dict__.setdefault("produced", []).append(weights.sum().item())
        return weights


def test_the_no_record_check_fails_for_a_converter_that_remembers():
    with pytest.raises(AssertionError):
        assert_converter_keeps_no_record(converter(RememberingConverter))


SUBPROCESS = textwrap.dedent("""
    import sys, torch
    from aihwkit.inference.noise.pcm import PCMLikeNoiseModel
    from aihwkit_slicing import QuantizedSlicedConductanceConverter, bit_sliced
    weights = torch.load(sys.argv[1], weights_only=True)
    conv = QuantizedSlicedConductanceConverter.from_table(bit_sliced(2, 4))
    noise = PCMLikeNoiseModel(g_converter=conv, prog_noise_scale=0.0, drift_scale=0.0,
                              read_noise_scale=0.0)
    torch.save(noise.apply_programming_noise(weights)[0].clone(), sys.argv[2])
""")


def test_programming_an_exported_clone_gives_the_same_weights_as_a_fresh_process(tmp_path):
    source = programmed_layer(seed=3)
    exported = tile_of(source).tile.get_weights().clone()
    here = PCMLikeNoiseModel(g_converter=converter(), **NOISE_FREE).apply_programming_noise(
        exported)[0]
    torch.save(exported, tmp_path / "in.pt")
    subprocess.run([sys.executable, "-c", SUBPROCESS, str(tmp_path / "in.pt"),
                    str(tmp_path / "out.pt")], check=True)
    there = torch.load(tmp_path / "out.pt", weights_only=True)
    assert torch.equal(here, there)


# ============================== finding 5: real devices in the IR-drop forward
def _spy(conv, method, calls):
    original = getattr(conv, method)

    def spy(*args):
        result = original(*args)
        calls.append((args, result))
        return result

    setattr(conv, method, spy)
    return lambda: conv.__dict__.pop(method, None)


@pytest.mark.parametrize("scale,per_channel", [("max", False), ("mse", True)])
def test_irdrop_forward_sees_every_drifted_device_conductance_exactly(scale, per_channel):
    torch.manual_seed(4)
    conv = converter(scale=scale, per_channel=per_channel)
    layer = layer_with(torch.randn(8, 16), config(conv, irdrop=True))
    tile = tile_of(layer)
    drift_calls, forward_calls = [], []
    undo = _spy(tile.rpu_config.noise_model.g_converter, "convert_back_to_weights", drift_calls)
    layer.program_analog_weights()
    layer.drift_analog_weights(86400.0)
    undo()
    (_, _), ((drifted, _), _) = drift_calls  # programming, then the drift
    undo = _spy(tile.tile._g_converter, "convert_to_conductances", forward_calls)
    layer(torch.rand(3, 16))
    undo()
    assert forward_calls
    top = (PHYS_INPUT_SIZE - 16) // 2
    zero = conv.quantizer.zero_conductances(torch.float32, torch.device("cpu"))
    for _, (conductances, _) in forward_calls:
        assert len(conductances) == len(drifted)
        for device, (seen, g) in enumerate(zip(conductances, drifted)):
            assert seen.shape == (PHYS_INPUT_SIZE, 8)
            assert torch.equal(seen[top:top + 16], g.T), f"device {device}"
            assert torch.all(seen[:top] == zero[device])
            assert torch.all(seen[top + 16:] == zero[device])


def test_irdrop_forward_of_a_copied_drifted_model_sees_the_copied_devices():
    import copy

    torch.manual_seed(5)
    layer = layer_with(torch.randn(8, 16), config(converter(), irdrop=True))
    layer.program_analog_weights()
    layer.drift_analog_weights(3600.0)
    inputs = torch.rand(2, 16)
    expected = layer(inputs)
    duplicate = copy.deepcopy(layer)
    del layer
    gc.collect()
    assert torch.equal(duplicate(inputs), expected)


def test_irdrop_forward_of_one_model_does_not_depend_on_another_being_alive():
    """B restored by load_state_dict from A: its forward pass changed by 0.046 (|out| 0.51)
    once A was freed, because it found A's devices. B's own tile was never programmed, so
    it is quantized as in a fresh process, with A alive or not."""
    torch.manual_seed(7)
    weights = torch.randn(8, 16)
    first = layer_with(weights, config(converter(), irdrop=True))
    first.program_analog_weights()
    second = layer_with(torch.zeros(8, 16), config(converter(), irdrop=True))
    second.load_state_dict(first.state_dict())
    inputs = torch.rand(3, 16)
    with_first = second(inputs)
    del first
    gc.collect()
    assert torch.equal(second(inputs), with_first)
    fresh = layer_with(tile_of(second).tile.get_weights().clone(),
                       config(converter(), irdrop=True))
    assert torch.equal(fresh(inputs), with_first)


# ============================== finding 6: x-dependent PCM read noise
@pytest.mark.parametrize("batch", [1, PHYS_INPUT_SIZE])
def test_xdep_read_noise_raises_naming_the_setting(batch):
    torch.manual_seed(6)
    cfg = config(converter(), irdrop=True)
    cfg.forward.apply_xdep_pcm_read_noise = True
    layer = layer_with(torch.randn(8, 16), cfg)
    layer.program_analog_weights()
    with pytest.raises(ValueError, match="apply_xdep_pcm_read_noise = False"):
        layer(torch.rand(batch, 16))


# ============================== finding 7: clipped fraction
ASYMMETRIC = from_device_levels([1], [[0.0, 10.0, 20.0], [0.0, 5.0]])  # -5, 0, 10, 20 uS


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("scale", ["mse", "percentile"])
def test_clipped_fraction_counts_weights_beyond_either_outermost_level(scale, per_channel):
    assert list(ASYMMETRIC.levels) == [-5.0, 0.0, 10.0, 20.0]
    conv = QuantizedSlicedConductanceConverter.from_table(
        ASYMMETRIC, scale=scale, per_channel=per_channel, percentile=90.0)
    torch.manual_seed(7)
    weights = torch.randn(6, 200)
    _, params = conv.convert_to_conductances(weights)
    scaled = weights.double() * torch.as_tensor(params["scale_ratio"]).double()
    brute = float(((scaled > 20.0 + 1e-4) | (scaled < -5.0 - 1e-4)).double().mean())
    assert params["clipped_fraction"] == pytest.approx(brute, abs=1e-12)
    assert 0.0 < brute < 0.5


def test_clipped_fraction_is_kept_with_each_programmed_tile_and_through_drift():
    conv = QuantizedSlicedConductanceConverter.from_table(ASYMMETRIC, scale="mse")
    cfg = config(conv)
    torch.manual_seed(8)
    model = AnalogSequential(AnalogLinear(16, 8, bias=False, rpu_config=cfg),
                             AnalogLinear(8, 4, bias=False, rpu_config=cfg)).eval()
    expected = {}
    for name, tile in model.named_analog_tiles():
        _, params = QuantizedSlicedConductanceConverter.from_table(
            ASYMMETRIC, scale="mse").convert_to_conductances(tile.tile.get_weights().clone())
        expected[name] = params["clipped_fraction"]
    model.program_analog_weights()
    assert clipped_fractions(model) == expected
    assert any(v > 0 for v in expected.values())
    assert conv.last_clipped_fraction == 0.0  # aihwkit converts with its own copies
    # the drift re-conversion reports the programmed value, not 0
    tile = tile_of(model)
    _, params = tile.rpu_config.noise_model.g_converter.convert_to_conductances(
        tile.programmed_weights)
    assert params["clipped_fraction"] == expected["0.analog_module"]


# ============================== no history: lifetime of the state
def test_device_state_is_freed_with_its_tile_and_replaced_by_a_reprogramming():
    import weakref

    layer = programmed_layer(seed=9)
    first = weakref.ref(device_state.state_of(tile_of(layer).programmed_weights))
    layer.program_analog_weights()
    gc.collect()
    second = weakref.ref(device_state.state_of(tile_of(layer).programmed_weights))
    assert first() is None and second() is not None
    del layer
    gc.collect()
    assert second() is None


def test_torch_save_load_of_a_model_keeps_the_devices_without_a_shared_record(tmp_path):
    layer = programmed_layer(seed=10)
    conductances, _ = tile_of(layer).rpu_config.noise_model.g_converter.convert_to_conductances(
        tile_of(layer).programmed_weights)
    buffer = io.BytesIO()
    torch.save(layer, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    del layer
    gc.collect()
    tile = tile_of(loaded)
    again, _ = tile.rpu_config.noise_model.g_converter.convert_to_conductances(
        tile.programmed_weights)
    assert all(torch.equal(a, b) for a, b in zip(again, conductances))
    json.dumps(clipped_fractions(loaded))  # plain numbers
