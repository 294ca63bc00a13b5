"""The opt-in compact device state: float16 conductances behind produced weights.

Default converters keep the devices exact (the other test files); with
``compact_state=True`` every kept conductance is rounded to float16 and the weights are
computed from the kept devices, so recognition stays exact and the error is bounded.
"""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch
from aihwkit.inference.noise.pcm import PCMLikeNoiseModel
from aihwkit.nn import AnalogLinear
from aihwkit.simulator.configs import TorchInferenceRPUConfig, TorchInferenceRPUConfigIRDropT

from aihwkit_slicing import QuantizedSlicedConductanceConverter, bit_sliced, seed_table
from aihwkit_slicing.core import device_state

PHYS_INPUT_SIZE = 64


def converter(compact=True, table=None, **kwargs):
    return QuantizedSlicedConductanceConverter.from_table(
        table if table is not None else bit_sliced(4, 4), compact_state=compact, **kwargs)


def layer(conv, seed=0, irdrop=False, shape=(12, 16)):
    cfg = TorchInferenceRPUConfigIRDropT() if irdrop else TorchInferenceRPUConfig()
    if irdrop:
        cfg.forward.ir_drop = 1.0
        cfg.mapping.max_input_size = PHYS_INPUT_SIZE
    cfg.forward.out_noise = 0.0
    cfg.noise_model = PCMLikeNoiseModel(g_converter=conv)
    cfg.drift_compensation = None
    torch.manual_seed(seed)
    module = AnalogLinear(shape[1], shape[0], bias=False, rpu_config=cfg).eval()
    module.set_weights(torch.randn(*shape))
    return module


def tile_of(module):
    return next(module.analog_tiles())


def half_ulp(g):
    """Half a float16 ulp at |g| (the largest rounding error of a conversion)."""
    a = g.abs().double().clamp(min=2.0**-14)
    return torch.exp2(torch.floor(torch.log2(a)) - 11)


def spied_conductances(conv, method):
    calls = []
    original = getattr(conv, method)

    def spy(*args):
        calls.append(args)
        return original(*args)

    setattr(conv, method, spy)
    return calls


@pytest.mark.parametrize("scale,per_channel", [("max", False), ("mse", True)])
def test_kept_devices_are_float16_and_decode_to_the_programmed_weights(scale, per_channel):
    module = layer(converter(scale=scale, per_channel=per_channel), seed=1)
    conv = tile_of(module).rpu_config.noise_model.g_converter  # (the tile's own copy)
    calls = spied_conductances(conv, "convert_back_to_weights")
    module.program_analog_weights()
    tile = tile_of(module)
    state = device_state.state_of(tile.programmed_weights)
    assert state.compact and all(g.dtype == torch.float16 for g in state.stored)
    assert state.dtype == torch.float32 and "float16" in repr(state)
    (noisy, params), = calls
    # every kept conductance is the noise model's, rounded to float16 (at most half an ulp)
    for g, kept in zip(noisy, state.stored):
        assert torch.equal(kept, g.to(torch.float16))
        assert torch.all((kept.float() - g).abs() <= half_ulp(g))
    # the weights are those of the kept devices, exactly
    decoded = conv.quantizer.decode([g.float() for g in state.stored], params["scale_ratio"])
    assert torch.equal(tile.programmed_weights, decoded)
    # ... and within the rounding of the exact devices' weights
    exact = conv.quantizer.decode(noisy, params["scale_ratio"])
    bound = sum(f * (half_ulp(gp) + half_ulp(gm)) for f, gp, gm in
                zip(conv.f_lst, noisy[0::2], noisy[1::2])) / params["scale_ratio"]
    assert torch.all((tile.programmed_weights - exact).abs() <= bound * (1 + 1e-5) + 1e-6)


def test_compact_state_holds_half_the_bytes_of_the_exact_one():
    sizes = {}
    for compact in (False, True):
        module = layer(converter(compact), seed=2)
        module.program_analog_weights()
        state = device_state.state_of(tile_of(module).programmed_weights)
        sizes[compact] = sum(g.numel() * g.element_size() for g in state.stored)
    assert sizes[True] * 2 == sizes[False]


def test_drift_starts_from_the_kept_devices_without_quantizing_again():
    module = layer(converter(), seed=3)
    conv = tile_of(module).rpu_config.noise_model.g_converter  # (the tile's own copy)
    module.program_analog_weights()
    state = device_state.state_of(tile_of(module).programmed_weights)
    calls = []
    original = conv.convert_to_conductances

    def spy(weights):
        result = original(weights)
        calls.append(result)
        return result

    conv.convert_to_conductances = spy
    module.drift_analog_weights(86400.0)
    (given, params), = calls
    assert params["device_state"] is state  # recognised: the kept devices, not a new target
    assert all(g.dtype == torch.float32 and torch.equal(g, kept.float())
               for g, kept in zip(given, state.stored))


def test_drifted_weights_of_compact_and_exact_states_agree_within_the_bound():
    drifted, scales = {}, {}
    for compact in (False, True):
        module = layer(converter(compact), seed=4)
        module.program_analog_weights()
        scales[compact] = device_state.state_of(tile_of(module).programmed_weights).scale
        torch.manual_seed(40)
        module.drift_analog_weights(3600.0)
        drifted[compact] = tile_of(module).tile.get_weights().clone()
    assert torch.equal(scales[False], scales[True])
    # the same programming noise (same seed): kept conductances differ by at most half a
    # float16 ulp, 2**-7 uS below 32 uS; drift multiplies them by at most 1, and read
    # noise scales with them: per weight at most sum_k f_k * 2 * 2**-7 / scale, doubled
    bound = 2 * sum(converter().f_lst) * 2 * 2.0**-7 / scales[True]
    assert not torch.equal(drifted[False], drifted[True])
    assert bool(((drifted[False] - drifted[True]).abs() <= bound).all())


def test_irdrop_forward_sees_the_kept_drifted_devices():
    module = layer(converter(), seed=5, irdrop=True, shape=(8, 16))
    module.program_analog_weights()
    module.drift_analog_weights(86400.0)
    programmed = device_state.state_of(tile_of(module).programmed_weights)
    drifted = programmed.current
    assert drifted is not None and drifted.compact
    calls = []
    g_converter = tile_of(module).tile._g_converter
    original = g_converter.convert_to_conductances

    def spy(weights):
        result = original(weights)
        calls.append(result)
        return result

    g_converter.convert_to_conductances = spy
    module(torch.rand(3, 16))
    assert calls
    top = (PHYS_INPUT_SIZE - 16) // 2
    for conductances, _ in calls:
        for seen, kept in zip(conductances, drifted.stored):
            assert seen.dtype == torch.float32
            assert torch.equal(seen[top:top + 16], kept.float().T)


def test_compact_state_survives_deepcopy_pickle_and_torch_save():
    module = layer(converter(), seed=6)
    module.program_analog_weights()
    for copied in (copy.deepcopy(module), pickle.loads(pickle.dumps(module))):
        state = device_state.state_of(tile_of(copied).programmed_weights)
        assert state.compact
        conv = tile_of(copied).rpu_config.noise_model.g_converter
        _, params = conv.convert_to_conductances(tile_of(copied).programmed_weights)
        assert params.get("device_state") is state
    buffer = io.BytesIO()
    torch.save(module, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert device_state.state_of(tile_of(loaded).programmed_weights).compact


def test_checkpoint_of_a_compact_model_restores_compact_devices(tmp_path):
    from aihwkit_slicing import load_programmed, save_programmed

    module = layer(converter(), seed=7)
    module.program_analog_weights()
    path = tmp_path / "model.pt"
    save_programmed(module, path)
    fresh = layer(converter(), seed=7)
    load_programmed(fresh, path)
    state = device_state.state_of(tile_of(fresh).programmed_weights)
    assert state.compact
    assert torch.equal(tile_of(fresh).programmed_weights, tile_of(module).programmed_weights)
    # not into an exact converter: its later drifts would not round as the saved one's
    exact = layer(converter(compact=False), seed=7)
    with pytest.raises(ValueError, match="compact_state=True"):
        load_programmed(exact, path)


def test_state_pickled_by_an_earlier_version_loads_as_an_exact_state():
    g = [torch.rand(3, 4) for _ in range(2)]
    weights = g[0] - g[1]
    state = device_state.DeviceState("key", g, torch.tensor(1.0), 0.0, weights)
    old = state.__getstate__()
    old["conductances"] = old.pop("stored")
    del old["dtype"]
    revived = device_state.DeviceState.__new__(device_state.DeviceState)
    revived.__setstate__(old)
    assert not revived.compact and revived.dtype == torch.float32
    assert all(a is b for a, b in zip(revived.conductances, g))


def test_conductances_beyond_float16_keep_the_state_exact():
    table = seed_table(g_min=0.0, g_max=1e5)  # 100 mS devices: beyond float16
    conv = converter(table=table)
    weights = torch.randn(4, 5)
    conductances, params = conv.convert_to_conductances(weights)
    produced = conv.convert_back_to_weights(conductances, params)
    assert not device_state.state_of(produced).compact


def test_half_an_ulp_of_float16_is_under_one_percent_of_pcm_programming_noise():
    """The bound the docstring states, against aihwkit's PCM programming noise."""
    noise = PCMLikeNoiseModel()
    g = torch.linspace(0.0, 25.0, 100001, dtype=torch.float64)
    sigma = sum(c * (g / 25.0) ** i for i, c in enumerate(noise.prog_coeff))
    assert float((half_ulp(g) / sigma).max()) < 0.01
    assert float(half_ulp(torch.tensor(25.0))) <= 0.0078125


def test_compact_state_is_part_of_equality_repr_and_validated():
    assert converter(True) != converter(False)
    assert "compact_state=True" in repr(converter(True))
    assert "compact_state" not in repr(converter(False))
    with pytest.raises(ValueError, match="compact_state"):
        converter(compact="yes")


def test_decode_of_float16_devices_equals_decode_of_their_float32_values():
    conv = converter(compact=False)
    g = [torch.rand(7, 300000) * 25 for _ in range(8)]
    kept = [x.half() for x in g]
    scale = torch.rand(7, 1) + 0.5
    widened = conv.quantizer.decode([x.float() for x in kept], scale)
    assert torch.equal(conv.quantizer.decode(kept, scale, torch.float32), widened)
