"""Tests of digitally summed weight slicing (aihwkit_slicing.digital, issue #4)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from aihwkit.nn import AnalogConv2d, AnalogLinear, AnalogSequential
from aihwkit.nn.modules.container import AnalogWrapper
from aihwkit.optim import AnalogSGD
from aihwkit.simulator.configs import TorchInferenceRPUConfig

from aihwkit_slicing import (
    AnalogSlicedConv2d,
    AnalogSlicedLinear,
    WeightSlicing,
    convert_to_analog_sliced,
    convert_to_digital_sliced,
)
from aihwkit_slicing.digital.slice_configs import SLICE_WEIGHT_SCALING_OMEGA, slice_rpu_config

SIGNIFICANCES = [
    pytest.param("equal", None, id="equal"),
    pytest.param([4.0, 1.0, 2.5], None, id="list"),
    pytest.param("binary", 2, id="binary"),
]


def perfect_config() -> TorchInferenceRPUConfig:
    """Ideal peripherals, no weight noise until programmed."""
    config = TorchInferenceRPUConfig()
    config.forward.is_perfect = True
    return config


def binary_quantized(weight: torch.Tensor, total_bits: int) -> torch.Tensor:
    """Reference: ``total_bits`` bits of magnitude plus sign, per-tensor max scale."""
    w = weight.double()
    delta = w.abs().max() / (2**total_bits - 1)
    return (torch.round(w / delta) * delta).to(weight.dtype)


def tile_weights(module: nn.Module) -> list:
    return [tile.tile.weight.detach().clone() for tile in module.analog_tiles()]


class TinyNet(nn.Module):
    """Conv + linear, not a Sequential: conversion has to wrap the root."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(8, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)))


# ============================================================== WeightSlicing
def test_equal_factors_are_all_one():
    assert WeightSlicing(3, "equal").factors == (1.0, 1.0, 1.0)


def test_binary_factors_are_powers_of_two_to_the_bits_per_slice():
    assert WeightSlicing(3, "binary", bits_per_slice=2).factors == (1.0, 4.0, 16.0)
    assert WeightSlicing(3, "binary").factors == (1.0, 2.0, 4.0)


def test_list_factors_keep_slice_order():
    assert WeightSlicing(3, [4, 1, 2.5]).factors == (4.0, 1.0, 2.5)


@pytest.mark.parametrize(
    "kwargs, error, names",
    [
        (dict(n_slices=0), ValueError, "n_slices"),
        (dict(n_slices=-2), ValueError, "n_slices"),
        (dict(n_slices=2.0), TypeError, "n_slices"),
        (dict(n_slices=True), TypeError, "n_slices"),
        (dict(n_slices=3, significance=[1.0, 2.0]), ValueError, "significance"),
        (dict(n_slices=2, significance=[1.0, 0.0]), ValueError, "significance[1]"),
        (dict(n_slices=2, significance=[-1.0, 1.0]), ValueError, "significance[0]"),
        (dict(n_slices=2, significance=[1.0, math.nan]), ValueError, "significance[1]"),
        (dict(n_slices=2, significance=[math.inf, 1.0]), ValueError, "significance[0]"),
        (dict(n_slices=2, significance="bits"), ValueError, "significance"),
        (dict(n_slices=2, significance=3), TypeError, "significance"),
        (dict(n_slices=2, significance=["a", 1.0]), TypeError, "significance[0]"),
        (dict(n_slices=2, significance="binary", bits_per_slice=0), ValueError,
         "bits_per_slice"),
        (dict(n_slices=2, significance="binary", bits_per_slice=1.5), TypeError,
         "bits_per_slice"),
        (dict(n_slices=14, significance="binary", bits_per_slice=4), ValueError,
         "bits_per_slice"),
        (dict(n_slices=2, significance="equal", bits_per_slice=2), ValueError,
         "bits_per_slice"),
    ],
)
def test_bad_slicing_arguments_raise_naming_the_argument(kwargs, error, names):
    with pytest.raises(error, match=names.replace("[", r"\[").replace("]", r"\]")):
        WeightSlicing(**kwargs)


@pytest.mark.parametrize("factory", [
    lambda: AnalogSlicedLinear(3, 2, 0),
    lambda: AnalogSlicedConv2d(1, 2, 3, 2, significance=[1.0]),
    lambda: convert_to_analog_sliced(TinyNet(), perfect_config(), 2, significance=[1.0, -1.0]),
])
def test_layers_and_conversion_reject_bad_slicing_naming_the_argument(factory):
    with pytest.raises(ValueError, match="n_slices|significance"):
        factory()


def test_repr_of_slicing_can_be_pasted_back():
    for slicing in (WeightSlicing(2), WeightSlicing(3, [1, 2, 3]),
                    WeightSlicing(4, "binary", bits_per_slice=2)):
        assert eval(repr(slicing)) == slicing  # pylint: disable=eval-used


weights_1d = st.lists(
    st.floats(-10.0, 10.0, allow_nan=False, allow_infinity=False, width=32),
    min_size=1, max_size=24,
).map(lambda values: torch.tensor(values, dtype=torch.float64))


@settings(max_examples=60, deadline=None)
@given(weight=weights_1d, n_slices=st.integers(1, 5))
def test_equal_split_gives_each_slice_the_nth_part(weight, n_slices):
    slicing = WeightSlicing(n_slices, "equal")
    parts = slicing.split(weight)
    for part in parts:
        torch.testing.assert_close(part, weight / n_slices, rtol=0, atol=1e-15)
    torch.testing.assert_close(slicing.combine(parts), weight, rtol=1e-12, atol=1e-12)


@settings(max_examples=80, deadline=None)
@given(
    weight=weights_1d,
    factors=st.lists(st.floats(0.05, 50.0), min_size=1, max_size=5),
)
def test_list_split_reconstructs_the_weight_within_each_slices_range(weight, factors):
    slicing = WeightSlicing(len(factors), factors)
    parts = slicing.split(weight)
    rho = slicing.slice_range(weight)
    torch.testing.assert_close(slicing.combine(parts), weight, rtol=1e-12, atol=1e-12)
    for part in parts:
        assert float(part.abs().max()) <= rho * (1 + 1e-9) + 1e-300


@settings(max_examples=80, deadline=None)
@given(weight=weights_1d, n_slices=st.integers(1, 4), bits=st.integers(1, 4))
def test_binary_split_is_a_sign_and_digit_decomposition(weight, n_slices, bits):
    slicing = WeightSlicing(n_slices, "binary", bits_per_slice=bits)
    parts = slicing.split(weight)
    r_max = float(weight.abs().max())
    delta = r_max / (2 ** (n_slices * bits) - 1)
    rebuilt = slicing.combine(parts)
    assert float((rebuilt - weight).abs().max()) <= delta / 2 * (1 + 1e-9) + 1e-300
    if r_max == 0:
        assert all(float(p.abs().max()) == 0 for p in parts)
        return
    for part in parts:
        digits = part / delta
        torch.testing.assert_close(digits, torch.round(digits), rtol=0, atol=1e-6)
        assert float(digits.abs().max()) <= 2**bits - 1 + 1e-6
        assert bool((part * weight >= 0).all())  # every slice carries the weight's sign


def test_binary_split_equals_rounding_to_the_stated_resolution():
    weight = torch.linspace(-1.0, 0.7, 41)
    slicing = WeightSlicing(3, "binary", bits_per_slice=2)
    rebuilt = slicing.combine(slicing.split(weight))
    torch.testing.assert_close(rebuilt, binary_quantized(weight, 6), rtol=0, atol=1e-7)


def test_binary_largest_weight_fills_every_slice():
    weight = torch.tensor([-0.3, 0.1, 0.9])
    parts = WeightSlicing(3, "binary", bits_per_slice=2).split(weight)
    delta = 0.9 / 63
    for part in parts:
        assert part[2].item() == pytest.approx(3 * delta)


def test_list_split_fills_most_significant_slices_first():
    # factors [1, 4]: rho = 1 / 5; slice 1 (f=4) takes what it can, slice 0 the rest
    weight = torch.tensor([1.0, 0.5, -0.1], dtype=torch.float64)
    low, high = WeightSlicing(2, [1.0, 4.0]).split(weight)
    torch.testing.assert_close(high, torch.tensor([0.2, 0.125, -0.025], dtype=torch.float64))
    torch.testing.assert_close(low, torch.tensor([0.2, 0.0, 0.0], dtype=torch.float64))


def test_split_of_zero_weight_is_all_zero_slices():
    for slicing in (WeightSlicing(2), WeightSlicing(2, [1, 3]), WeightSlicing(2, "binary")):
        parts = slicing.split(torch.zeros(3, 2))
        assert all(bool((p == 0).all()) for p in parts)


def test_split_of_non_finite_weight_raises_naming_weight():
    with pytest.raises(ValueError, match="weight must be finite"):
        WeightSlicing(2).split(torch.tensor([1.0, math.nan]))


def test_split_keeps_dtype_and_shape():
    weight = torch.randn(3, 2, 2, 2, dtype=torch.float32)
    parts = WeightSlicing(3, "binary").split(weight)
    assert [(p.dtype, p.shape) for p in parts] == [(torch.float32, weight.shape)] * 3


# ======================================================= "base" / levels_per_slice
def base_quantized(weight: torch.Tensor, levels: int) -> torch.Tensor:
    """Reference: ``levels`` levels of magnitude plus sign, per-tensor max scale."""
    w = weight.double()
    delta = w.abs().max() / (levels - 1)
    return (torch.round(w / delta) * delta).to(weight.dtype)


def test_base_factors_are_powers_of_the_levels_per_slice():
    assert WeightSlicing(3, "base", levels_per_slice=3).factors == (1.0, 3.0, 9.0)
    assert WeightSlicing(2, "base").factors == (1.0, 2.0)  # default: 2 levels


@pytest.mark.parametrize("n_slices", [1, 2, 4])
@pytest.mark.parametrize("bits", [1, 2, 3])
def test_base_with_a_power_of_two_levels_is_binary(n_slices, bits):
    base = WeightSlicing(n_slices, "base", levels_per_slice=2**bits)
    binary = WeightSlicing(n_slices, "binary", bits_per_slice=bits)
    assert base == binary and hash(base) == hash(binary)
    assert base.factors == binary.factors
    assert base.total_bits == binary.total_bits == n_slices * bits
    assert binary.levels_per_slice == 2**bits
    torch.manual_seed(bits)
    weight = torch.randn(5, 7)
    for mine, theirs in zip(base.split(weight), binary.split(weight), strict=True):
        assert torch.equal(mine, theirs)


def test_binary_keeps_its_spelling_in_repr_and_attributes():
    binary = WeightSlicing(4, "binary", bits_per_slice=2)
    assert repr(binary) == "WeightSlicing(n_slices=4, significance='binary', bits_per_slice=2)"
    assert (binary.significance, binary.bits_per_slice) == ("binary", 2)
    base = WeightSlicing(4, "base", levels_per_slice=4)
    assert repr(base) == "WeightSlicing(n_slices=4, significance='base', levels_per_slice=4)"
    assert base.bits_per_slice is None and base.total_bits == 8
    assert WeightSlicing(2, "base", levels_per_slice=3).total_bits is None


def test_repr_of_base_slicing_can_be_pasted_back():
    for slicing in (WeightSlicing(3, "base", levels_per_slice=3), WeightSlicing(2, "base")):
        pasted = eval(repr(slicing))  # pylint: disable=eval-used
        assert pasted == slicing and pasted.arguments() == slicing.arguments()


@pytest.mark.parametrize(
    "kwargs, error, pattern",
    [
        (dict(levels_per_slice=1), ValueError, "levels_per_slice must be at least 2, got 1"),
        (dict(levels_per_slice=0), ValueError, "levels_per_slice must be at least 2, got 0"),
        (dict(levels_per_slice=-4), ValueError, "levels_per_slice must be at least 2, got -4"),
        (dict(levels_per_slice=2.5), TypeError, "levels_per_slice must be an integer, got 2.5"),
        (dict(levels_per_slice=True), TypeError, "levels_per_slice must be an integer"),
        (dict(n_slices=2, levels_per_slice=2**27), ValueError,
         r"levels_per_slice \*\* n_slices must be at most 2\*\*52, got "
         r"levels_per_slice=134217728 with n_slices=2"),
        (dict(significance="binary", levels_per_slice=4), ValueError,
         "levels_per_slice only applies to significance='base', got levels_per_slice=4 "
         "with significance='binary' .give bits_per_slice"),
        (dict(significance="equal", levels_per_slice=4), ValueError,
         "levels_per_slice only applies to significance='base', got levels_per_slice=4"),
        (dict(significance=[1.0, 2.0], levels_per_slice=4), ValueError, "levels_per_slice"),
        (dict(bits_per_slice=2), ValueError,
         "bits_per_slice only applies to significance='binary', got bits_per_slice=2"),
    ],
)
def test_bad_levels_per_slice_raise_naming_the_argument_and_value(kwargs, error, pattern):
    arguments = dict(n_slices=2, significance="base") | kwargs
    with pytest.raises(error, match=pattern):
        WeightSlicing(**arguments)


def test_base_allows_levels_up_to_the_float64_limit():
    assert WeightSlicing(2, "base", levels_per_slice=2**26).factors == (1.0, 2.0**26)
    assert WeightSlicing(52, "base", levels_per_slice=2).total_bits == 52


@settings(max_examples=80, deadline=None)
@given(weight=weights_1d, n_slices=st.integers(1, 4), levels=st.integers(2, 7))
def test_base_split_is_a_sign_and_digit_decomposition(weight, n_slices, levels):
    slicing = WeightSlicing(n_slices, "base", levels_per_slice=levels)
    parts = slicing.split(weight)
    r_max = float(weight.abs().max())
    delta = r_max / (levels**n_slices - 1)
    rebuilt = slicing.combine(parts)
    assert float((rebuilt - weight).abs().max()) <= delta / 2 * (1 + 1e-9) + 1e-300
    if r_max == 0:
        assert all(float(p.abs().max()) == 0 for p in parts)
        return
    for part in parts:
        digits = part / delta
        torch.testing.assert_close(digits, torch.round(digits), rtol=0, atol=1e-6)
        assert float(digits.abs().max()) <= levels - 1 + 1e-6
        assert bool((part * weight >= 0).all())  # every slice carries the weight's sign


def test_base_split_equals_rounding_to_levels_to_the_n():
    weight = torch.linspace(-1.0, 0.7, 53)
    slicing = WeightSlicing(3, "base", levels_per_slice=3)
    rebuilt = slicing.combine(slicing.split(weight))
    torch.testing.assert_close(rebuilt, base_quantized(weight, 27), rtol=0, atol=1e-7)
    # ternary digits of the largest weight: 26 = 2 + 2 * 3 + 2 * 9
    for part in slicing.split(weight):
        assert part[0].item() == pytest.approx(-2 / 26)


def test_sliced_layers_take_base_slicing_and_compute_the_quantized_layer():
    torch.manual_seed(11)
    digital = TinyNet()
    model = convert_to_analog_sliced(digital, perfect_config(), 3, significance="base",
                                     levels_per_slice=3)
    assert model.conv.slicing == WeightSlicing(3, "base", levels_per_slice=3)
    assert "levels_per_slice=3" in repr(model.head[1])
    assert model.conv.significance_factors == (1.0, 3.0, 9.0)
    x = torch.randn(4, 1, 4, 4)
    conv = nn.functional.conv2d(x, base_quantized(digital.conv.weight, 27), digital.conv.bias)
    hidden = torch.relu(conv).flatten(1)
    expected = nn.functional.linear(hidden, base_quantized(digital.head[1].weight, 27),
                                    digital.head[1].bias)
    torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-6)


def test_state_of_a_binary_layer_loads_into_the_equal_base_layer_only():
    binary = AnalogSlicedLinear(3, 2, 2, significance="binary", bits_per_slice=2)
    state = binary.state_dict()
    base = AnalogSlicedLinear(3, 2, 2, significance="base", levels_per_slice=4)
    base.load_state_dict(state)
    torch.testing.assert_close(base.get_weights()[0], binary.get_weights()[0])
    assert base.get_extra_state()["levels_per_slice"] == 4
    assert "levels_per_slice" not in binary.get_extra_state()  # states as before
    with pytest.raises(ValueError, match="levels_per_slice=4"):
        AnalogSlicedLinear(3, 2, 2, significance="base", levels_per_slice=3).load_state_dict(
            base.state_dict())


# ================================================================ layers
@pytest.mark.parametrize("significance, bits", SIGNIFICANCES)
def test_sliced_linear_output_equals_digital_or_quantized_digital(significance, bits):
    torch.manual_seed(0)
    digital = nn.Linear(7, 5)
    sliced = AnalogSlicedLinear.from_digital(
        digital, perfect_config(), n_slices=3, significance=significance, bits_per_slice=bits
    )
    weight = digital.weight
    if significance == "binary":
        weight = binary_quantized(weight, 3 * bits)
    x = torch.randn(11, 7)
    expected = nn.functional.linear(x, weight, digital.bias)
    torch.testing.assert_close(sliced(x), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("significance, bits", SIGNIFICANCES)
def test_sliced_conv2d_output_equals_digital_or_quantized_digital(significance, bits):
    torch.manual_seed(1)
    digital = nn.Conv2d(2, 3, (3, 2), stride=(2, 1), padding=1, dilation=(1, 2))
    sliced = AnalogSlicedConv2d.from_digital(
        digital, perfect_config(), n_slices=3, significance=significance, bits_per_slice=bits
    )
    weight = digital.weight
    if significance == "binary":
        weight = binary_quantized(weight, 3 * bits)
    x = torch.randn(2, 2, 7, 6)
    expected = nn.functional.conv2d(x, weight, digital.bias, stride=(2, 1), padding=1,
                                    dilation=(1, 2))
    torch.testing.assert_close(sliced(x), expected, rtol=1e-5, atol=1e-6)


def test_weight_scaling_omega_per_tile_keeps_the_output():
    config = perfect_config()
    config.mapping.weight_scaling_omega = 1.0
    config.mapping.weight_scaling_columnwise = True
    torch.manual_seed(2)
    digital = nn.Linear(6, 4)
    sliced = AnalogSlicedLinear.from_digital(digital, config, n_slices=2,
                                             significance=[3.0, 1.0])
    x = torch.randn(5, 6)
    torch.testing.assert_close(sliced(x), digital(x), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(sliced.get_weights()[0], digital.weight.detach(),
                               rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("significance, bits", SIGNIFICANCES)
def test_get_weights_returns_the_reconstructed_weight(significance, bits):
    layer = AnalogSlicedConv2d(2, 3, 2, 3, significance=significance, bits_per_slice=bits,
                               rpu_config=perfect_config())
    weight = torch.randn(3, 2, 2, 2)
    bias = torch.randn(3)
    layer.set_weights(weight, bias)
    expected = binary_quantized(weight, 3 * bits) if significance == "binary" else weight
    got_weight, got_bias = layer.get_weights()
    torch.testing.assert_close(got_weight, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got_bias, bias)
    slicing = WeightSlicing(3, significance, bits)
    torch.testing.assert_close(layer.get_slice_weights(), slicing.split(weight),
                               rtol=1e-6, atol=1e-7)


def test_bias_is_added_once_not_per_slice():
    layer = AnalogSlicedLinear(4, 3, 4, rpu_config=perfect_config())
    bias = torch.tensor([1.0, -2.0, 0.5])
    layer.set_weights(torch.zeros(3, 4), bias)
    torch.testing.assert_close(layer(torch.randn(6, 4)), bias.expand(6, 3))
    assert all(s.analog_module.bias is None for s in layer.slices)


def test_conv_bias_is_added_once_per_output_channel():
    layer = AnalogSlicedConv2d(1, 2, 1, 3, rpu_config=perfect_config())
    layer.set_weights(torch.zeros(2, 1, 1, 1), torch.tensor([1.0, 3.0]))
    out = layer(torch.randn(1, 1, 2, 2))
    torch.testing.assert_close(out[0, 0], torch.ones(2, 2))
    torch.testing.assert_close(out[0, 1], torch.full((2, 2), 3.0))


def test_layer_without_bias_has_none_and_refuses_one():
    layer = AnalogSlicedLinear(2, 2, 2, bias=False, rpu_config=perfect_config())
    assert layer.bias is None and layer.get_weights()[1] is None
    with pytest.raises(ValueError, match="bias"):
        layer.set_weights(torch.zeros(2, 2), torch.zeros(2))


def test_set_weights_with_wrong_shape_raises_naming_weight():
    layer = AnalogSlicedLinear(3, 2, 2, rpu_config=perfect_config())
    with pytest.raises(ValueError, match=r"weight must have shape \(2, 3\)"):
        layer.set_weights(torch.zeros(3, 2))


def test_every_slice_has_its_own_tile_and_rpu_config_copy():
    config = perfect_config()
    layer = AnalogSlicedLinear(3, 2, 3, rpu_config=config)
    tiles = list(layer.analog_tiles())
    assert len(tiles) == 3 and len({id(t) for t in tiles}) == 3
    configs = [t.rpu_config for t in tiles]
    assert len({id(c) for c in configs} | {id(config)}) == 4


def test_non_config_rpu_config_raises_type_error():
    with pytest.raises(TypeError, match="rpu_config"):
        AnalogSlicedLinear(2, 2, 2, rpu_config="ideal")


def test_default_rpu_config_is_the_torch_inference_config():
    layer = AnalogSlicedLinear(2, 2, 2)
    assert all(isinstance(t.rpu_config, TorchInferenceRPUConfig) for t in layer.analog_tiles())


# ============================================= mapping on aihwkit's default rpu_config
def relative_error(output: torch.Tensor, reference: torch.Tensor) -> float:
    return float((output - reference).norm() / reference.norm())


@pytest.mark.parametrize("significance, bits", SIGNIFICANCES)
def test_every_slice_uses_its_tiles_full_range_on_the_default_rpu_config(significance, bits):
    config = TorchInferenceRPUConfig()
    layer = AnalogSlicedLinear(6, 4, 3, significance=significance, bits_per_slice=bits,
                               rpu_config=config)
    assert config.mapping.weight_scaling_omega == 0.0  # the caller's config is untouched
    for tile, part in zip(layer.analog_tiles(), layer.get_slice_weights(), strict=True):
        assert tile.rpu_config.mapping.weight_scaling_omega == 1.0
        assert float(tile.tile.weight.detach().abs().max()) == pytest.approx(1.0)
        assert float(tile.get_scales()) == pytest.approx(float(part.abs().max()))


def test_a_positive_weight_scaling_omega_is_kept():
    config = TorchInferenceRPUConfig()
    config.mapping.weight_scaling_omega = 0.6
    layer = AnalogSlicedLinear(6, 4, 2, significance="binary", rpu_config=config)
    for tile in layer.analog_tiles():
        assert tile.rpu_config.mapping.weight_scaling_omega == 0.6
        assert float(tile.tile.weight.detach().abs().max()) == pytest.approx(0.6)


def test_scale_slices_false_keeps_the_mapping_as_given():
    torch.manual_seed(12)
    digital = nn.Linear(6, 4)
    layer = AnalogSlicedLinear.from_digital(digital, TorchInferenceRPUConfig(), n_slices=2,
                                            significance="binary", bits_per_slice=2,
                                            scale_slices=False)
    assert "scale_slices=False" in repr(layer)
    for tile, part in zip(layer.analog_tiles(), layer.get_slice_weights(), strict=True):
        assert tile.rpu_config.mapping.weight_scaling_omega == 0.0
        assert tile.get_scales() is None
        torch.testing.assert_close(tile.tile.weight, part)  # stored as it is


def test_slice_rpu_config_copies_and_sets_omega_only_where_it_is_zero():
    config = TorchInferenceRPUConfig()
    config.mapping.weight_scaling_columnwise = True
    scaled = slice_rpu_config(config)
    assert scaled is not config and config.mapping.weight_scaling_omega == 0.0
    assert scaled.mapping.weight_scaling_omega == SLICE_WEIGHT_SCALING_OMEGA == 1.0
    assert scaled.mapping.weight_scaling_columnwise  # the rest of the mapping is kept
    assert slice_rpu_config(config, scale_slices=False).mapping.weight_scaling_omega == 0.0


@pytest.mark.parametrize("factory", [
    lambda: AnalogSlicedLinear(3, 2, 2, scale_slices=1),
    lambda: AnalogSlicedConv2d(1, 2, 3, 2, scale_slices="yes"),
    lambda: convert_to_analog_sliced(TinyNet(), None, 2, scale_slices=None),
])
def test_non_bool_scale_slices_raises_naming_it(factory):
    with pytest.raises(TypeError, match="scale_slices must be True or False, got"):
        factory()


def test_sliced_layer_on_the_default_rpu_config_errs_like_the_unsliced_layer():
    # aihwkit's default forward: output noise 0.06 and an ADC step of 24/510 in
    # tile output units. Unscaled binary slices (max |W_k| ~ 3/255 max|W|) gave a
    # relative error above 10 here, the unsliced layer 0.2.
    torch.manual_seed(13)
    digital = nn.Linear(64, 16)
    x = torch.rand(200, 64)
    scaled = TorchInferenceRPUConfig()
    scaled.mapping.weight_scaling_omega = 1.0
    with torch.no_grad():
        reference = digital(x)
        unsliced = relative_error(
            AnalogLinear.from_digital(digital, TorchInferenceRPUConfig()).eval()(x), reference)
        unsliced_scaled = relative_error(
            AnalogLinear.from_digital(digital, scaled).eval()(x), reference)
        for significance, bits in (("equal", None), ("binary", 2)):
            layer = AnalogSlicedLinear.from_digital(
                digital, TorchInferenceRPUConfig(), n_slices=4, significance=significance,
                bits_per_slice=bits).eval()
            error = relative_error(layer(x), reference)
            assert error < unsliced and error < 2 * unsliced_scaled, (significance, error)


def test_digits_cnn_keeps_its_accuracy_with_binary_slices_on_the_default_rpu_config():
    from aihwkit_slicing.experiments.models.digits import load_digits_model, load_digits_split

    _, _, images, labels = load_digits_split()
    model = load_digits_model()
    torch.manual_seed(0)
    sliced = convert_to_analog_sliced(model, TorchInferenceRPUConfig(), 4,
                                      significance="binary", bits_per_slice=2).eval()
    with torch.no_grad():
        reference = model(images)
        output = sliced(images)
    # measured 0.983 and 0.057 (unscaled slices: 0.109, chance, and 633)
    assert float((output.argmax(dim=1) == labels).float().mean()) > 0.95
    assert relative_error(output, reference) < 0.2


# ============================================================ model-wide calls
def converted_tiny_net(n_slices: int = 3) -> nn.Module:
    torch.manual_seed(3)
    return convert_to_analog_sliced(TinyNet(), TorchInferenceRPUConfig(), n_slices)


def test_conversion_replaces_linear_and_conv_and_wraps_the_root():
    model = converted_tiny_net()
    assert isinstance(model, AnalogWrapper)
    assert isinstance(model.conv, AnalogSlicedConv2d)
    assert isinstance(model.head, AnalogSequential)
    assert isinstance(model.head[1], AnalogSlicedLinear)


def test_analog_layers_of_a_converted_model_are_the_slices():
    model = converted_tiny_net(n_slices=3)
    layers = list(model.analog_layers())
    assert len(layers) == 6
    assert sum(isinstance(m, AnalogConv2d) for m in layers) == 3
    assert sum(isinstance(m, AnalogLinear) for m in layers) == 3


def test_program_and_drift_reach_every_tile():
    model = converted_tiny_net(n_slices=3)
    tiles = list(model.analog_tiles())
    assert len(tiles) == 2 * 3
    model.eval()
    model.program_analog_weights()
    assert all(t.programmed_weights is not None for t in tiles)
    programmed = tile_weights(model)
    model.drift_analog_weights(86400.0)
    drifted = tile_weights(model)
    assert all(not torch.equal(p, d) for p, d in zip(programmed, drifted, strict=True))
    assert all(t.alpha.item() != 1.0 for t in tiles)  # every tile compensated its drift


def test_drift_through_an_analog_sequential_reaches_every_slice():
    model = AnalogSequential(AnalogSlicedLinear(4, 3, 2), nn.ReLU(),
                             AnalogSlicedLinear(3, 2, 3, significance="binary"))
    model.eval()
    before = tile_weights(model)
    model.drift_analog_weights(3600.0)
    after = tile_weights(model)
    assert len(before) == 5
    assert all(not torch.equal(b, a) for b, a in zip(before, after, strict=True))


def test_train_and_eval_reach_every_slice_and_tile():
    model = converted_tiny_net()
    model.eval()
    assert not any(m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())


def test_state_dict_round_trip_restores_weights_and_outputs():
    model = converted_tiny_net(n_slices=2)
    model.eval()
    # programming noise makes every tile's weights unique. (No drift here: in
    # aihwkit 1.1.0 drifting turns each tile's `alpha` buffer 0-d, and such a state
    # no longer loads into an undrifted model, sliced or not.)
    model.program_analog_weights()
    x = torch.randn(3, 1, 4, 4)
    torch.manual_seed(5)
    expected = model(x)
    state = model.state_dict()
    assert any(key.endswith("slices.1.analog_module.tile.weight") for key in state)

    clone = converted_tiny_net(n_slices=2)
    clone.load_state_dict(state)
    clone.eval()
    for layer in ("conv", "head"):
        mine = getattr(model, layer)
        theirs = getattr(clone, layer)
        for a, b in zip(mine.analog_tiles(), theirs.analog_tiles(), strict=True):
            torch.testing.assert_close(a.tile.weight, b.tile.weight)
    torch.manual_seed(5)
    torch.testing.assert_close(clone(x), expected)


def test_load_state_dict_with_other_slicing_raises():
    state = AnalogSlicedLinear(3, 2, 2, significance="binary").state_dict()
    other = AnalogSlicedLinear(3, 2, 2, significance="equal")
    with pytest.raises(ValueError, match="WeightSlicing"):
        other.load_state_dict(state)


def test_to_float64_converts_every_slice_and_the_bias():
    torch.manual_seed(6)
    digital = nn.Linear(4, 3)
    layer = AnalogSlicedLinear.from_digital(digital, perfect_config(), n_slices=3,
                                            significance=[1.0, 2.0, 5.0])
    layer = layer.to(torch.float64)
    assert layer.bias.dtype == torch.float64
    assert all(t.tile.weight.dtype == torch.float64 for t in layer.analog_tiles())
    x = torch.randn(2, 4, dtype=torch.float64)
    torch.testing.assert_close(layer(x), digital.double()(x), rtol=1e-6, atol=1e-7)


# ================================================================ training
@pytest.mark.parametrize("scale_slices", [True, False])
def test_gradients_reach_every_slice_scaled_by_its_factor_and_mapping_scale(scale_slices):
    torch.manual_seed(7)
    digital = nn.Linear(5, 3)
    factors = [0.5, 1.0, 4.0]
    layer = AnalogSlicedLinear.from_digital(digital, perfect_config(), n_slices=3,
                                            significance=factors, scale_slices=scale_slices)
    x = torch.randn(8, 5)
    target = torch.randn(8, 3)
    nn.functional.mse_loss(digital(x), target).backward()
    nn.functional.mse_loss(layer(x), target).backward()
    for factor, tile in zip(factors, layer.analog_tiles(), strict=True):
        grad = tile.tile.weight.grad
        assert grad is not None and float(grad.abs().max()) > 0
        # the tile holds W_k / s_k and multiplies its output by s_k (digitally);
        # aihwkit divides the tile's gradient by s_k, so that an SGD step moves W_k
        # (in weight units) by -lr * f_k * dL/dW whatever the mapping scale
        scale = tile.get_scales()
        assert (scale is None) == (not scale_slices)
        scale = 1.0 if scale is None else float(scale)
        torch.testing.assert_close(grad * scale, factor * digital.weight.grad,
                                   rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(layer.bias.grad, digital.bias.grad, rtol=1e-5, atol=1e-7)


def test_one_epoch_of_hardware_aware_training_lowers_the_loss():
    torch.manual_seed(8)
    inputs = torch.randn(256, 8)
    labels = (inputs @ torch.randn(8, 3)).argmax(dim=1)
    model = AnalogSequential(
        AnalogSlicedLinear(8, 16, 2, rpu_config=TorchInferenceRPUConfig()),
        nn.ReLU(),
        AnalogSlicedLinear(16, 3, 2, significance=[2.0, 1.0],
                           rpu_config=TorchInferenceRPUConfig()),
    )
    optimizer = AnalogSGD(model.parameters(), lr=0.05)
    optimizer.regroup_param_groups(model)
    loss_fn = nn.CrossEntropyLoss()

    def full_loss() -> float:
        model.eval()
        with torch.no_grad():
            loss = loss_fn(model(inputs), labels).item()
        model.train()
        return loss

    before = full_loss()
    slices_before = [layer.get_slice_weights() for layer in (model[0], model[2])]
    for start in range(0, 256, 32):
        optimizer.zero_grad()
        loss_fn(model(inputs[start:start + 32]), labels[start:start + 32]).backward()
        optimizer.step()
    after = full_loss()
    assert after < 0.9 * before
    for layer, old in zip((model[0], model[2]), slices_before, strict=True):
        for new_w, old_w in zip(layer.get_slice_weights(), old, strict=True):
            assert not torch.equal(new_w, old_w)  # every slice was trained


# ================================================================ conversion
def test_convert_to_digital_sliced_gives_torch_layers_with_reconstructed_weights():
    torch.manual_seed(9)
    digital = TinyNet()
    model = convert_to_analog_sliced(digital, perfect_config(), 4, significance="binary",
                                     bits_per_slice=1)
    back = convert_to_digital_sliced(model)
    assert type(back) is TinyNet
    assert type(back.conv) is nn.Conv2d and type(back.head[1]) is nn.Linear
    assert type(back.head) is nn.Sequential
    torch.testing.assert_close(back.conv.weight, binary_quantized(digital.conv.weight, 4))
    torch.testing.assert_close(back.head[1].bias, digital.head[1].bias)
    x = torch.randn(2, 1, 4, 4)
    torch.testing.assert_close(back(x), model(x), rtol=1e-5, atol=1e-6)


def test_conversion_keeps_excluded_modules_digital():
    model = convert_to_analog_sliced(TinyNet(), perfect_config(), 2, exclude_modules=["conv"])
    assert type(model.conv) is nn.Conv2d
    assert isinstance(model.head[1], AnalogSlicedLinear)


def test_converting_a_grouped_convolution_raises_naming_groups():
    with pytest.raises(ValueError, match="groups"):
        convert_to_analog_sliced(nn.Conv2d(2, 2, 3, groups=2), perfect_config(), 2)


def test_converting_a_same_padded_convolution_raises_naming_padding():
    with pytest.raises(ValueError, match="padding"):
        convert_to_analog_sliced(nn.Conv2d(1, 2, 3, padding="same"), perfect_config(), 2)


def test_converting_a_bare_linear_gives_a_sliced_layer_with_its_weights():
    linear = nn.Linear(3, 2)
    layer = convert_to_analog_sliced(linear, perfect_config(), 2, significance=[1.0, 1.0])
    assert isinstance(layer, AnalogSlicedLinear)
    torch.testing.assert_close(layer.get_weights()[0], linear.weight.detach())


# ======================================================= converting back after drift
def drifted(model: nn.Module, seconds: float = 86400.0) -> nn.Module:
    model.eval()
    model.program_analog_weights()
    model.drift_analog_weights(seconds)
    return model


def test_convert_to_digital_sliced_after_drift_computes_what_the_analog_model_computes():
    torch.manual_seed(14)
    model = drifted(convert_to_analog_sliced(TinyNet(), perfect_config(), 3,
                                             significance="binary", bits_per_slice=2))
    alphas = [float(tile.alpha) for tile in model.analog_tiles()]
    assert all(abs(alpha - 1.0) > 0.05 for alpha in alphas)  # the drift is compensated
    x = torch.randn(6, 1, 4, 4)
    with torch.no_grad():
        analog = model(x)
        compensated = convert_to_digital_sliced(model)(x)
        plain = convert_to_digital_sliced(model, drift_compensation=False)(x)
    torch.testing.assert_close(compensated, analog, rtol=1e-4, atol=1e-5)
    assert relative_error(plain, analog) > 0.1  # without alpha: a different model


def test_convert_to_digital_sliced_without_drift_compensation_is_the_plain_reconstruction():
    torch.manual_seed(15)
    model = drifted(convert_to_analog_sliced(TinyNet(), perfect_config(), 2))
    back = convert_to_digital_sliced(model, drift_compensation=False)
    for name in ("conv", "head.1"):
        layer = model.get_submodule(name)
        expected = layer.slicing.combine(
            [analog.get_weights()[0].reshape(layer.weight_shape) for analog in layer.slices])
        assert torch.equal(back.get_submodule(name).weight.detach(), expected)
        assert torch.equal(expected, layer.get_weights()[0])


def test_drift_compensated_weights_scale_every_slice_by_its_own_alpha():
    torch.manual_seed(16)
    layer = drifted(AnalogSlicedLinear.from_digital(nn.Linear(5, 3), perfect_config(),
                                                    n_slices=3, significance=[1.0, 2.0, 4.0]))
    plain = layer.get_slice_weights()
    compensated = layer.get_slice_weights(drift_compensation=True)
    for tile, mine, theirs in zip(layer.analog_tiles(), compensated, plain, strict=True):
        torch.testing.assert_close(mine, tile.alpha.detach() * theirs)
    torch.testing.assert_close(layer.get_weights(drift_compensation=True)[0],
                               layer.slicing.combine(compensated))


def test_per_column_compensation_and_split_tiles_convert_to_what_the_layer_computes():
    from aihwkit.inference.compensation.drift import PerColumnDriftCompensation

    config = perfect_config()
    config.drift_compensation = PerColumnDriftCompensation()
    config.mapping.max_input_size = 4  # 10 inputs, 5 outputs: a 3 x 3 grid of tiles
    config.mapping.max_output_size = 2
    torch.manual_seed(17)
    layer = drifted(AnalogSlicedLinear.from_digital(nn.Linear(10, 5), config, n_slices=2,
                                                    significance="binary"))
    tiles = list(layer.analog_tiles())
    assert len(tiles) == 2 * 9
    assert all(tile.alpha.numel() == tile.out_size for tile in tiles)  # one per column
    assert len({round(float(a), 6) for tile in tiles for a in tile.alpha.flatten()}) > 9
    x = torch.randn(7, 10)
    with torch.no_grad():
        digital = AnalogSlicedLinear.to_digital(layer)
        torch.testing.assert_close(digital(x), layer(x), rtol=1e-4, atol=1e-5)


def test_realistic_read_out_follows_the_drift_compensation_choice():
    torch.manual_seed(18)
    layer = drifted(AnalogSlicedLinear.from_digital(nn.Linear(6, 4), perfect_config(),
                                                    n_slices=2, significance="binary"))
    for compensation in (True, False):
        exact = layer.get_weights(drift_compensation=compensation)[0]
        read = layer.get_weights(drift_compensation=compensation, realistic=True)[0]
        torch.testing.assert_close(read, exact, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(layer.get_weights(drift_compensation=True)[0],
                              layer.get_weights()[0], rtol=1e-2)


def test_slices_without_drift_compensation_convert_as_they_are():
    config = perfect_config()
    config.drift_compensation = None
    torch.manual_seed(19)
    model = drifted(convert_to_analog_sliced(TinyNet(), config, 2))
    x = torch.randn(2, 1, 4, 4)
    with torch.no_grad():
        for compensation in (True, False):
            back = convert_to_digital_sliced(model, drift_compensation=compensation)
            torch.testing.assert_close(back(x), model(x), rtol=1e-4, atol=1e-5)


def test_convert_to_digital_sliced_converts_a_bare_sliced_layer_and_checks_its_flag():
    layer = drifted(AnalogSlicedLinear(3, 2, 2, rpu_config=perfect_config()))
    back = convert_to_digital_sliced(layer)
    assert type(back) is nn.Linear
    torch.testing.assert_close(back.weight.detach(), layer.get_weights(drift_compensation=True)[0])
    with pytest.raises(TypeError, match="drift_compensation must be True or False, got 'yes'"):
        convert_to_digital_sliced(layer, drift_compensation="yes")


# ================================================================ example
def test_example_runs_in_fast_mode_and_reports_every_variant():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "examples" / "digital_slicing.py"
    spec = importlib.util.spec_from_file_location("digital_slicing_example", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    result = example.main(repeats=1, times=[("1 day", 86400.0)], verbose=False)
    assert result["digital"] > 0.8
    table = result["table"]
    assert len(table) == 4
    for devices, acc in table.values():
        assert devices in (2, 8) and acc.shape == (1, 1)
        assert 0.5 < float(acc[0, 0]) <= 1.0
    assert "| unsliced | 2 |" in example.format_table(table, [("1 day", 86400.0)])


def test_mapping_example_measures_scaled_and_unscaled_slices_on_the_default_config():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "examples" / "digital_mapping.py"
    spec = importlib.util.spec_from_file_location("digital_mapping_example", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    result = example.main(seeds=1, peripherals=("default",), conditions=("as converted",),
                          verbose=False)
    table = {name: values[0] for (name, _, _), values in result["table"].items()}
    assert len(table) == 6
    accuracy, error = table["4 binary slices x 2 bit"]
    assert accuracy > 0.95 and error < 0.1
    assert table["4 binary slices x 2 bit, scale_slices=False"][1] > 100
    assert table["4 equal slices"][1] < table["unsliced (aihwkit default mapping)"][1]
    back = {name: values[0] for name, values in result["back"].items()}
    analog = back["4 binary slices x 2 bit, analog"]
    assert back["convert_to_digital_sliced(model) (drift_compensation=True, the default)"][1] \
        == pytest.approx(analog[1], rel=1e-3)
    assert back["convert_to_digital_sliced(model, drift_compensation=False)"][1] > 2 * analog[1]
    text = example.format_table(result["table"], "default", ("as converted",))
    assert "| 4 binary slices x 2 bit | " in text


@pytest.mark.parametrize("n_slices, significance, levels", [(8, "base", 4), (3, "equal", None)])
def test_all_zero_rows_of_a_slice_program_to_near_zero_weights(n_slices, significance,
                                                                levels):
    """aihwkit maps an all-zero row with a digital scale of 1: its devices' programming
    noise then counts at full weight scale, times the slice's significance (base-4
    digits are zero in most rows of the top slices). Such rows must program to (near)
    zero, and the layer's weights stay close to the floating-point ones."""
    from aihwkit.inference.noise.pcm import PCMLikeNoiseModel
    from aihwkit.simulator.configs import TorchInferenceRPUConfig

    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 16, bias=False)
    with torch.no_grad():
        linear.weight[3] = 0.0  # a pruned output: zero in every slice
    config = TorchInferenceRPUConfig(noise_model=PCMLikeNoiseModel())
    config.mapping.weight_scaling_omega = 1.0
    config.mapping.weight_scaling_columnwise = True
    layer = AnalogSlicedLinear.from_digital(linear, config, n_slices, significance,
                                            levels_per_slice=levels).eval()
    layer.program_analog_weights()
    programmed = layer.get_weights()[0]
    weight = linear.weight.detach()
    # at the slices' own scales: a device's noise (about 1 % of a row's range), not 399
    assert programmed[3].abs().max() < 0.05 * weight.abs().max()
    relative = (programmed - weight).norm() / weight.norm()
    assert relative < 0.2, relative

