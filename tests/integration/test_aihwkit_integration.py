"""aihwkit 1.1.0 integration: the converter inside real tiles ("the trap", docs/design.md).

aihwkit hands the converter weights it produced itself: ``drift_analog_weights`` converts
the *programmed* weights again, and the IR-drop tile converts the tile's current weights
(transposed and zero-padded) on every forward pass. These tests check, through aihwkit's
own code paths, that such weights are never quantized again:

* drift and read noise off: drifting leaves every tile's weights at its programmed
  weights, for every scaling rule (and a naive quantizing converter would move them);
* drift on: each device drifts from its own programmed conductance with the drift
  coefficient drawn for it, also after ``torch.save``/``torch.load`` and ``deepcopy``;
* the IR-drop tile's forward pass sees the programmed (or drifted) weights, with a
  per-channel scale that broadcasts over the output columns.

aihwkit's compiled tile (``InferenceRPUConfig``) runs the same checks when it works with
the installed torch; otherwise those cases are skipped by a probe.

Layout of the converter's output (docs/design.md): ``2P`` conductance tensors ``gp0, gm0, gp1,
gm1, ...`` in microsiemens and params with ``scale_ratio`` (uS per weight unit) and
``f_lst``; weights are ``sum_k f_k (gp_k - gm_k) / scale_ratio``.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Callable
from typing import Self

import pytest
import torch
from aihwkit.inference.noise.pcm import CustomDriftPCMLikeNoiseModel, PCMLikeNoiseModel
from aihwkit.nn import AnalogLinear, AnalogSequential
from aihwkit.simulator.configs import (
    InferenceRPUConfig,
    TorchInferenceRPUConfig,
    TorchInferenceRPUConfigIRDropT,
)
from aihwkit.simulator.parameters.enums import AnalogMVType
from torch import Tensor

from aihwkit_slicing import QuantizedSlicedConductanceConverter, bit_sliced, seed_table
from aihwkit_slicing.core.device_state import ATTRIBUTE as STATE_ATTRIBUTE

# ----------------------------------------------------------------------------- setup
#: Physical tile height of the IR-drop tile: layers with 16 inputs get zero-padded to it.
PHYS_INPUT_SIZE = 128
#: Relative tolerance (of max|w|) for "the weights did not move".
INVARIANCE_RTOL = 1e-6
DRIFT_TIMES = (1.0, 3600.0, 1.0e6)

#: (scale, per_channel) of every scaling rule the issue asks the trap tests for.
SCALE_RULES = [
    ("max", False),
    ("percentile", False),
    ("percentile", True),
    ("mse", False),
    ("mse", True),
]
SCALE_IDS = [f"{s}-{'per_channel' if pc else 'per_tensor'}" for s, pc in SCALE_RULES]

TABLES = {"seed": seed_table, "bit_sliced_2x4": lambda: bit_sliced(2, 4)}

MV_TYPES = [AnalogMVType.ONE_PASS, AnalogMVType.SPLIT_MODE, AnalogMVType.BIT_WISE]
MV_IDS = ["one_pass", "split_mode", "bit_wise"]

from aihwkit_helpers import (  # noqa: E402,F401
    max_rel_diff,
    require_compiled_tile,
    weights_from,
)


def make_converter(scale: str = "max", per_channel: bool = False,
                   table: str = "bit_sliced_2x4") -> QuantizedSlicedConductanceConverter:
    return QuantizedSlicedConductanceConverter.from_table(
        TABLES[table](), scale=scale, per_channel=per_channel
    )


def make_config(kind: str, noise_model, mv_type: AnalogMVType = AnalogMVType.ONE_PASS,
                drift_compensation: bool = False):
    """An rpu_config of ``kind`` ("torch", "irdrop" or "compiled") with ``noise_model``.

    Forward noise is off so that outputs are deterministic; the IR-drop tile has
    ``ir_drop = 1`` and a physical height of :data:`PHYS_INPUT_SIZE` rows.
    """
    if kind == "compiled":
        require_compiled_tile()
        config = InferenceRPUConfig()
    elif kind == "torch":
        config = TorchInferenceRPUConfig()
    elif kind == "irdrop":
        config = TorchInferenceRPUConfigIRDropT()
        config.forward.ir_drop = 1.0
        config.forward.mv_type = mv_type
        config.mapping.max_input_size = PHYS_INPUT_SIZE
    else:  # pragma: no cover - test bug
        raise ValueError(kind)
    config.forward.out_noise = 0.0
    config.noise_model = noise_model
    if not drift_compensation:
        config.drift_compensation = None
    return config


def two_layer_model(config, seed: int = 0) -> AnalogSequential:
    """16 -> 8 -> 4 analog MLP in eval mode (deterministic weights)."""
    torch.manual_seed(seed)
    model = AnalogSequential(
        AnalogLinear(16, 8, bias=False, rpu_config=config),
        AnalogLinear(8, 4, bias=False, rpu_config=config),
    )
    return model.eval()


def tiles_of(model) -> list:
    return list(model.analog_tiles())


def tile_weights(tile) -> Tensor:
    return tile.tile.get_weights().detach().clone()


def pad_like_irdrop(weights: Tensor, phys_input_size: int = PHYS_INPUT_SIZE) -> Tensor:
    """What the IR-drop tile converts: ``weights.T`` zero-padded symmetrically in rows."""
    transposed = weights.T
    pad1 = (phys_input_size - transposed.shape[0]) // 2
    pad2 = phys_input_size - transposed.shape[0] - pad1
    return torch.nn.functional.pad(transposed, (0, 0, pad1, pad2))


class ConversionSpy:
    """Records what ``converter.convert_to_conductances`` returns (instance patch).

    Use as a context manager; the patch is removed on exit so that the model can be
    pickled or deep-copied afterwards.
    """

    def __init__(self, converter: QuantizedSlicedConductanceConverter,
                 method: str = "convert_to_conductances"):
        self.converter = converter
        self.method = method
        self.calls: list[tuple] = []

    def __enter__(self) -> Self:
        original = getattr(self.converter, self.method)

        if self.method == "convert_to_conductances":
            def spy(weights):
                conductances, params = original(weights)
                self.calls.append((weights.detach().clone(),
                                   [g.clone() for g in conductances], dict(params)))
                return conductances, params
        else:
            def spy(conductances, params):
                weights = original(conductances, params)
                self.calls.append(([g.clone() for g in conductances], dict(params), weights))
                return weights

        setattr(self.converter, self.method, spy)
        return self

    def __exit__(self, *exc) -> None:
        self.converter.__dict__.pop(self.method, None)


class NaiveQuantizingConverter(QuantizedSlicedConductanceConverter):
    """Contrast: quantizes whatever it is given (no knowledge of produced weights)."""

    def convert_to_conductances(self, weights):
        return self._convert_new_target(weights.detach().clone())


def pcm_drift_by_hand(conductances: list[Tensor], nu: list[Tensor], params: dict,
                      t_inference: float, t_0: float) -> Tensor:
    """PCMLikeNoiseModel drift with read noise off, per device, back to weights (float64).

    ``g(t) = max(g_prog * ((t + t_0) / t_0) ** -nu, 0)``.
    """
    factor = (t_inference + t_0) / t_0
    drifted = [(g.double() * factor ** (-n.double())).clamp(min=0.0)
               for g, n in zip(conductances, nu)]
    return weights_from(drifted, params)


# ================================================== drift and read noise off: no movement
@pytest.mark.parametrize("table", list(TABLES))
@pytest.mark.parametrize("scale,per_channel", SCALE_RULES, ids=SCALE_IDS)
@pytest.mark.parametrize("kind", ["torch", "irdrop", "compiled"])
def test_drift_without_drift_or_read_noise_keeps_programmed_weights(kind, scale, per_channel,
                                                                     table):
    conv = make_converter(scale, per_channel, table)
    noise = PCMLikeNoiseModel(g_converter=conv, drift_scale=0.0, read_noise_scale=0.0)
    model = two_layer_model(make_config(kind, noise))
    model.program_analog_weights()

    for tile in tiles_of(model):
        programmed = tile.programmed_weights.detach().clone()
        quantized = conv.quantize(tile.reference_combined_weights)
        # programming noise is on: the programmed weights are not the quantized targets
        assert max_rel_diff(programmed, quantized) > 1e-3
        assert torch.equal(tile_weights(tile), programmed)

    for t_inference in DRIFT_TIMES:
        model.drift_analog_weights(t_inference)
        for index, tile in enumerate(tiles_of(model)):
            moved = max_rel_diff(tile_weights(tile), tile.programmed_weights)
            assert moved <= INVARIANCE_RTOL, (
                f"tile {index} moved by {moved:.3g} of max|w| at t={t_inference:g} s"
            )


def test_naive_quantizing_converter_moves_weights_when_drift_is_off():
    """Contrast for the test above: re-quantizing the programmed weights moves them."""
    conv = NaiveQuantizingConverter.from_table(bit_sliced(2, 4))
    noise = PCMLikeNoiseModel(g_converter=conv, drift_scale=0.0, read_noise_scale=0.0)
    model = two_layer_model(make_config("torch", noise))
    model.program_analog_weights()
    model.drift_analog_weights(3600.0)

    for tile in tiles_of(model):
        programmed = tile.programmed_weights
        noise_rms = float((programmed - conv.quantize(tile.reference_combined_weights))
                          .double().pow(2).mean().sqrt())
        moved = float((tile_weights(tile) - programmed).double().pow(2).mean().sqrt())
        assert moved > 0.5 * noise_rms > 0.0


# ======================================================= drift on: per-device drift
@pytest.mark.parametrize("scale,per_channel", SCALE_RULES, ids=SCALE_IDS)
def test_apply_drift_noise_drifts_each_device_from_its_programmed_conductance(scale,
                                                                             per_channel):
    conv = make_converter(scale, per_channel)
    noise = PCMLikeNoiseModel(g_converter=conv, read_noise_scale=0.0)
    torch.manual_seed(1)
    weights = torch.randn(8, 16)

    with ConversionSpy(noise.g_converter, "convert_back_to_weights") as spy:
        programmed, nu = noise.apply_programming_noise(weights)
    assert len(spy.calls) == 1
    device_conductances, params, returned = spy.calls[0]
    assert returned is programmed

    assert len(nu) == 2 * len(conv.f_lst) == conv.n_devices
    assert all(n.shape == weights.shape for n in nu)
    assert all(g.shape == weights.shape for g in device_conductances)
    # the programmed weights are the weighted sum of the noisy device conductances ...
    assert max_rel_diff(programmed, weights_from(device_conductances, params)) <= 1e-6
    # ... and not the quantized targets
    assert max_rel_diff(programmed, conv.quantize(weights)) > 1e-3
    # converting them again gives back exactly those per-device conductances
    again, params_again = noise.g_converter.convert_to_conductances(programmed)
    assert all(torch.equal(a, g) for a, g in zip(again, device_conductances))
    assert torch.equal(torch.as_tensor(params_again["scale_ratio"]),
                       torch.as_tensor(params["scale_ratio"]))

    for t_inference in DRIFT_TIMES:
        drifted = noise.apply_drift_noise(programmed, nu, t_inference)
        expected = pcm_drift_by_hand(device_conductances, nu, params, t_inference, noise.t_0)
        assert max_rel_diff(drifted, expected) <= 1e-5, f"t={t_inference:g} s"
    # drift on really moves the weights at long times
    assert max_rel_diff(noise.apply_drift_noise(programmed, nu, 1.0e6), programmed) > 1e-2


def test_drift_coefficients_are_drawn_for_each_devices_target_conductance():
    """nu_d is drawn from device d's target conductance (deterministic custom drift model)."""
    conv = make_converter()
    drift_model = {"g_lst": [0.0, 25.0], "nu_mean_lst": [0.1, 0.02], "nu_std_lst": [0.0, 0.0]}
    noise = CustomDriftPCMLikeNoiseModel(drift_model, g_converter=conv, read_noise_scale=0.0)
    torch.manual_seed(2)
    weights = torch.randn(8, 16)

    with ConversionSpy(noise.g_converter) as spy:
        programmed, nu = noise.apply_programming_noise(weights)
    (_, targets, params), = spy.calls
    assert max_rel_diff(weights_from(targets, params), conv.quantize(weights)) <= 1e-6
    assert max_rel_diff(programmed, conv.quantize(weights)) > 1e-3  # noise on the devices
    assert len(nu) == conv.n_devices
    for nu_d, g_d in zip(nu, targets):
        expected = 0.1 + (0.02 - 0.1) * g_d / 25.0
        torch.testing.assert_close(nu_d, expected.float(), rtol=1e-5, atol=1e-7)
    # the levels of a sliced cell put different devices of one weight at different
    # conductances, so the coefficients really differ from device to device
    assert any(not torch.equal(nu[0], n) for n in nu[1:])


def _program_and_record_devices(model) -> list[tuple[list[Tensor], dict]]:
    """Program ``model``; per tile, the noisy device conductances and params."""
    spies = [ConversionSpy(tile.rpu_config.noise_model.g_converter, "convert_back_to_weights")
             for tile in tiles_of(model)]
    for spy in spies:
        spy.__enter__()
    try:
        model.program_analog_weights()
    finally:
        for spy in spies:
            spy.__exit__()
    records = []
    for spy, tile in zip(spies, tiles_of(model)):
        (conductances, params, returned), = spy.calls
        assert returned is tile.programmed_weights
        records.append((conductances, params))
    return records


def _save_and_load(model):
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)


COPIES: dict[str, Callable] = {
    "original": lambda model: model,
    "torch_save_load": _save_and_load,
    "deepcopy": copy.deepcopy,
}


@pytest.mark.parametrize("how", list(COPIES))
@pytest.mark.parametrize("kind", ["torch", "irdrop", "compiled"])
def test_copied_programmed_model_drifts_each_device_from_its_programmed_conductance(kind, how):
    conv = make_converter()
    noise = PCMLikeNoiseModel(g_converter=conv, read_noise_scale=0.0)
    model = two_layer_model(make_config(kind, noise))
    devices = _program_and_record_devices(model)
    nus = [[n.clone() for n in tile.drift_noise_parameters] for tile in tiles_of(model)]

    copied = COPIES[how](model)

    for tile, (conductances, params), nu in zip(tiles_of(copied), devices, nus):
        assert hasattr(tile.programmed_weights, STATE_ATTRIBUTE)
        assert max_rel_diff(tile.programmed_weights, weights_from(conductances, params)) <= 1e-6
        assert all(torch.equal(a, b) for a, b in zip(tile.drift_noise_parameters, nu))
    for t_inference in DRIFT_TIMES:
        copied.drift_analog_weights(t_inference)
        for index, (tile, (conductances, params), nu) in enumerate(
            zip(tiles_of(copied), devices, nus)
        ):
            t_0 = tile.rpu_config.noise_model.t_0
            expected = pcm_drift_by_hand(conductances, nu, params, t_inference, t_0)
            assert max_rel_diff(tile_weights(tile), expected) <= 1e-5, (
                f"tile {index}, t={t_inference:g} s"
            )


def test_state_dict_does_not_keep_programmed_weights_so_loaded_model_is_programmed_afresh():
    """aihwkit's ``state_dict`` keeps the tile weights but not ``programmed_weights``
    (nor ``reference_combined_weights`` or the drift coefficients), whatever the converter.

    A model loaded from a state dict therefore is programmed afresh at its first
    ``drift_analog_weights``, with the loaded (already programmed) weights as targets.
    Use ``torch.save``/``torch.load`` of the whole model to keep the programmed devices.
    """
    conv = make_converter()
    noise = PCMLikeNoiseModel(g_converter=conv, read_noise_scale=0.0)
    config = make_config("torch", noise)
    model = two_layer_model(config)
    model.program_analog_weights()

    fresh = two_layer_model(config, seed=5)
    fresh.load_state_dict(model.state_dict())
    for tile, source in zip(tiles_of(fresh), tiles_of(model)):
        assert tile.programmed_weights is None
        assert tile.reference_combined_weights is None
        assert tile.drift_noise_parameters is None
        assert torch.equal(tile_weights(tile), tile_weights(source))

    fresh.drift_analog_weights(3600.0)
    for tile, source in zip(tiles_of(fresh), tiles_of(model)):
        assert tile.programmed_weights is not None
        assert not torch.equal(tile.programmed_weights, source.programmed_weights)


# ======================================= IR-drop tile: the forward pass sees programmed weights
def _irdrop_layer(conv, mv_type, seed: int = 3, **noise_kwargs) -> AnalogLinear:
    noise = PCMLikeNoiseModel(g_converter=conv, read_noise_scale=0.0, **noise_kwargs)
    torch.manual_seed(seed)
    config = make_config("irdrop", noise, mv_type)
    return AnalogLinear(16, 8, bias=False, rpu_config=config).eval()


def _assert_forward_sees_tile_weights(layer, per_channel: bool, batch: int = 2) -> Tensor:
    """Forward ``layer`` once; every conversion must reproduce the tile's weights."""
    tile = tiles_of(layer)[0]
    with ConversionSpy(tile.tile._g_converter) as spy:
        out = layer(torch.rand(batch, 16))
    assert out.shape == (batch, 8) and torch.isfinite(out).all()
    assert spy.calls, "the IR-drop tile did not call the converter"
    expected = pad_like_irdrop(tile_weights(tile))
    for given, conductances, params in spy.calls:
        assert given.shape == expected.shape
        scale = torch.as_tensor(params["scale_ratio"])
        if per_channel:
            assert scale.shape == (1, 8), "a per-channel scale must broadcast over outputs"
        else:
            assert scale.numel() == 1
        assert max_rel_diff(weights_from(conductances, params), expected) <= INVARIANCE_RTOL
    return out


@pytest.mark.parametrize("scale,per_channel", SCALE_RULES, ids=SCALE_IDS)
@pytest.mark.parametrize("mv_type", MV_TYPES, ids=MV_IDS)
def test_irdrop_forward_sees_programmed_and_drifted_weights(mv_type, scale, per_channel):
    conv = make_converter(scale, per_channel)
    layer = _irdrop_layer(conv, mv_type)
    layer.program_analog_weights()
    tile = tiles_of(layer)[0]
    assert max_rel_diff(tile_weights(tile),
                        conv.quantize(tile.reference_combined_weights)) > 1e-3

    _assert_forward_sees_tile_weights(layer, per_channel)

    layer.drift_analog_weights(3600.0)
    assert max_rel_diff(tile_weights(tile), tile.programmed_weights) > 1e-3
    _assert_forward_sees_tile_weights(layer, per_channel)


@pytest.mark.parametrize("scale,per_channel", [("max", False), ("mse", True)],
                         ids=["max-per_tensor", "mse-per_channel"])
@pytest.mark.parametrize("how", ["torch_save_load", "deepcopy"])
def test_irdrop_forward_of_copied_model_sees_programmed_weights(how, scale, per_channel):
    conv = make_converter(scale, per_channel)
    layer = _irdrop_layer(conv, AnalogMVType.ONE_PASS)
    layer.program_analog_weights()
    layer.drift_analog_weights(60.0)
    copied = COPIES[how](layer)
    assert torch.equal(tile_weights(tiles_of(copied)[0]), tile_weights(tiles_of(layer)[0]))
    _assert_forward_sees_tile_weights(copied, per_channel)


def test_irdrop_forward_with_naive_quantizing_converter_sees_requantized_weights():
    """Contrast: without memory of produced weights the forward pass re-quantizes."""
    conv = NaiveQuantizingConverter.from_table(bit_sliced(2, 4))
    layer = _irdrop_layer(conv, AnalogMVType.ONE_PASS)
    layer.program_analog_weights()
    tile = tiles_of(layer)[0]
    with ConversionSpy(tile.tile._g_converter) as spy:
        layer(torch.rand(2, 16))
    (_, conductances, params), = spy.calls
    seen = weights_from(conductances, params)
    assert max_rel_diff(seen, pad_like_irdrop(tile_weights(tile))) > 1e-3


def test_irdrop_tile_converter_is_another_copy_than_the_tiles_noise_model_converter():
    """Documents aihwkit 1.1.0: ``tile.tile._g_converter`` is the converter of the
    rpu_config *given to the layer*, while programming and drift use the tile's own
    deep copy; both are equal to, and not the same object as, the converter passed to
    the noise model (which deep-copies it too)."""
    conv = make_converter()
    layer = _irdrop_layer(conv, AnalogMVType.ONE_PASS)
    tile = tiles_of(layer)[0]
    forward_converter = tile.tile._g_converter
    program_converter = tile.rpu_config.noise_model.g_converter
    assert isinstance(forward_converter, QuantizedSlicedConductanceConverter)
    assert forward_converter is not program_converter
    assert forward_converter == program_converter == conv
    assert conv is not forward_converter and conv is not program_converter


def test_irdrop_forward_sees_programmed_weights_of_each_tile_of_a_split_layer():
    """A layer wider than the physical tile is split into several tiles. Each tile
    programs with its own converter copy, but (aihwkit 1.1.0) all tiles of the layer
    forward with one shared converter object; every conversion in the forward pass
    must still reproduce the weights of the tile it came from."""
    conv = make_converter("mse", True)
    noise = PCMLikeNoiseModel(g_converter=conv, read_noise_scale=0.0)
    torch.manual_seed(4)
    layer = AnalogLinear(160, 8, bias=False,
                         rpu_config=make_config("irdrop", noise)).eval()
    layer.program_analog_weights()
    tiles = tiles_of(layer)
    assert len(tiles) >= 2
    forward_converters = {id(tile.tile._g_converter): tile.tile._g_converter for tile in tiles}
    program_converters = {id(tile.rpu_config.noise_model.g_converter) for tile in tiles}
    assert len(program_converters) == len(tiles)

    spies = [ConversionSpy(c) for c in forward_converters.values()]
    for spy in spies:
        spy.__enter__()
    try:
        out = layer(torch.rand(2, 160))
    finally:
        for spy in spies:
            spy.__exit__()
    assert out.shape == (2, 8) and torch.isfinite(out).all()

    expected = [pad_like_irdrop(tile_weights(tile)) for tile in tiles]
    seen_tiles = set()
    for _, conductances, params in (call for spy in spies for call in spy.calls):
        assert torch.as_tensor(params["scale_ratio"]).shape == (1, 8)
        seen = weights_from(conductances, params)
        errors = [max_rel_diff(seen, e) for e in expected]
        best = min(range(len(tiles)), key=errors.__getitem__)
        assert errors[best] <= INVARIANCE_RTOL, f"errors per tile: {errors}"
        seen_tiles.add(best)
    assert seen_tiles == set(range(len(tiles)))



@pytest.mark.parametrize("scale,per_channel", [("max", False), ("mse", True)],
                         ids=["max-per_tensor", "mse-per_channel"])
@pytest.mark.parametrize("data_type,rtol", [("DOUBLE", 1e-12), ("HALF", 2e-3)],
                         ids=["float64", "float16"])
def test_float64_and_float16_tiles_keep_programmed_weights_in_drift_and_irdrop_forward(
    data_type, rtol, scale, per_channel
):
    """Tiles in other dtypes: the converter computes in float64 for float64 weights and in
    float32 otherwise; float16 conductances round to about 1e-3 of g_max, far below the
    spacing of the levels, so re-quantization would still show.

    (aihwkit 1.1.0's IR-drop tile computes NaN outputs in float16 even with its own
    converter, so output finiteness is only asserted for float64.)"""
    from aihwkit.simulator.parameters.enums import RPUDataType

    conv = make_converter(scale, per_channel)
    noise = PCMLikeNoiseModel(g_converter=conv, drift_scale=0.0, read_noise_scale=0.0)
    config = make_config("irdrop", noise)
    config.runtime.data_type = getattr(RPUDataType, data_type)
    torch.manual_seed(9)
    layer = AnalogLinear(16, 8, bias=False, rpu_config=config).eval()
    layer.program_analog_weights()
    tile = tiles_of(layer)[0]
    dtype = tile.tile.weight.dtype
    assert dtype == {"DOUBLE": torch.float64, "HALF": torch.float16}[data_type]
    assert tile.programmed_weights.dtype == dtype

    layer.drift_analog_weights(3600.0)
    assert torch.equal(tile_weights(tile), tile.programmed_weights)

    with ConversionSpy(tile.tile._g_converter) as spy:
        out = layer(torch.rand(2, 16, dtype=dtype))
    assert out.shape == (2, 8)
    if dtype == torch.float64:
        assert torch.isfinite(out).all()
    expected = pad_like_irdrop(tile_weights(tile))
    assert spy.calls
    for _, conductances, params in spy.calls:
        assert conductances[0].dtype == dtype
        assert max_rel_diff(weights_from(conductances, params), expected) <= rtol
    # the tolerance is far below what re-quantizing would change
    assert max_rel_diff(conv.quantize(tile_weights(tile)), tile_weights(tile)) > 10 * rtol

# ============================================= edge cases found by these tests (now fixed)


def _with_zero_rows(which: str, seed: int = 6) -> Tensor:
    torch.manual_seed(seed)
    weights = torch.randn(8, 16)
    if which == "zero_row":
        weights[3] = 0.0  # a pruned output neuron
    else:
        weights.zero_()  # e.g. a zero-initialized layer
    return weights


@pytest.mark.parametrize(
    "which,scale,per_channel",
    [
        pytest.param(which, scale, per_channel,
                     id=f"{which}-{scale}-{'per_channel' if per_channel else 'per_tensor'}")
        for which in ("zero_row", "all_zero")
        for scale, per_channel in SCALE_RULES + [("max", True)]
    ],
)
def test_programming_a_layer_with_all_zero_output_rows_keeps_the_trap_invariant(
    which, scale, per_channel
):
    conv = make_converter(scale, per_channel)
    noise = PCMLikeNoiseModel(g_converter=conv, drift_scale=0.0, read_noise_scale=0.0)
    layer = AnalogLinear(16, 8, bias=False, rpu_config=make_config("torch", noise)).eval()
    layer.set_weights(_with_zero_rows(which))
    layer.program_analog_weights()
    tile = tiles_of(layer)[0]
    programmed = tile.programmed_weights.clone()
    assert torch.isfinite(programmed).all()
    layer.drift_analog_weights(3600.0)
    assert (tile_weights(tile) - programmed).abs().max() <= INVARIANCE_RTOL * max(
        float(programmed.abs().max()), 1e-12
    )


@pytest.mark.parametrize("batch", [2, PHYS_INPUT_SIZE])
@pytest.mark.parametrize("scale,per_channel", SCALE_RULES + [("max", True)],
                         ids=SCALE_IDS + ["max-per_channel"])
def test_irdrop_forward_of_unprogrammed_layer_sees_the_quantized_weights(scale, per_channel,
                                                                          batch):
    """Before ``program_analog_weights`` the IR-drop forward pass quantizes the trained
    weights; it sees what noise-free programming stores, ``conv.quantize(w)``, with a
    per-channel scale per *output column* (finding 3: it was per input row, and at a
    batch as large as the tile height the wrong scale broadcast silently)."""
    conv = make_converter(scale, per_channel)
    layer = _irdrop_layer(conv, AnalogMVType.ONE_PASS)
    tile = tiles_of(layer)[0]
    trained = tile_weights(tile)
    inputs = torch.rand(batch, 16)
    with ConversionSpy(tile.tile._g_converter) as spy:
        out = layer(inputs)
    assert out.shape == (batch, 8) and torch.isfinite(out).all()
    expected = pad_like_irdrop(conv.quantize(trained))
    assert spy.calls
    for _, conductances, params in spy.calls:
        assert torch.as_tensor(params["scale_ratio"]).shape == ((1, 8) if per_channel else ())
        assert max_rel_diff(weights_from(conductances, params), expected) <= INVARIANCE_RTOL
    # the output for one input does not depend on the batch it came in
    single = layer(inputs[:1])
    assert max_rel_diff(out[:1], single) <= 1e-5




def test_irdrop_forward_recognizes_layers_whose_programmed_weights_share_min_and_max():
    conv = make_converter("max", True)
    noise = PCMLikeNoiseModel(g_converter=conv, prog_noise_scale=0.0, drift_scale=0.0,
                              read_noise_scale=0.0)
    config = make_config("irdrop", noise)
    torch.manual_seed(7)
    model = AnalogSequential(AnalogLinear(16, 8, bias=False, rpu_config=config),
                             AnalogLinear(16, 8, bias=False, rpu_config=config)).eval()
    for layer in model:
        weights = torch.randn(8, 16).clamp(-1.0, 1.0)  # e.g. a fixed-value weight clip
        weights[0, 0], weights[0, 1] = 1.0, -1.0
        layer.set_weights(weights)
    model.program_analog_weights()
    for layer in model:
        _assert_forward_sees_tile_weights(layer, per_channel=True)




def test_idle_irdrop_layer_keeps_its_devices_through_thousands_of_other_conversions():
    """Finding 1: with a bounded record, about 1025 conversions with an equal table
    (another model's sweep) evicted an idle, drifted layer, whose next forward pass saw
    re-quantized weights. Device state has no capacity now."""
    conv = make_converter()
    layer = _irdrop_layer(conv, AnalogMVType.ONE_PASS)
    layer.program_analog_weights()
    layer.drift_analog_weights(3600.0)
    inputs = torch.rand(4, 16)
    before = layer(inputs)
    other = PCMLikeNoiseModel(g_converter=make_converter())
    torch.manual_seed(8)
    for _ in range(1100):
        other.apply_programming_noise(torch.randn(4, 4))
    with pytest.warns(DeprecationWarning):
        other.g_converter.forget()
    _assert_forward_sees_tile_weights(layer, per_channel=False)
    assert torch.equal(layer(inputs), before)


def test_irdrop_forward_sees_weights_programmed_with_a_noise_model_given_to_program():
    """``program_analog_weights(noise_model=...)`` is aihwkit's way to program with
    another noise model; here it holds a newly built converter equal to the layer's."""
    conv = make_converter()
    layer = _irdrop_layer(conv, AnalogMVType.ONE_PASS)
    other = make_converter()
    assert other == conv
    layer.program_analog_weights(
        noise_model=PCMLikeNoiseModel(g_converter=other, read_noise_scale=0.0)
    )
    _assert_forward_sees_tile_weights(layer, per_channel=False)


@pytest.mark.parametrize(
    "load_rpu_config",
    [
        pytest.param(None, id="default"),
        pytest.param(True, id="load_rpu_config"),
        pytest.param(False, id="keep_rpu_config"),
    ],
)
def test_irdrop_forward_of_model_loaded_from_state_dict_sees_its_programmed_weights(
    load_rpu_config,
):
    """The standard checkpoint workflow: save a state dict, load it into a new model,
    drift (which programs afresh, see the state-dict test above) and run inference."""
    conv = make_converter()
    source = _irdrop_layer(conv, AnalogMVType.ONE_PASS)
    source.program_analog_weights()
    buffer = io.BytesIO()
    torch.save(source.state_dict(), buffer)
    buffer.seek(0)

    loaded = _irdrop_layer(conv, AnalogMVType.ONE_PASS, seed=11)
    loaded.load_state_dict(torch.load(buffer, weights_only=False),
                           load_rpu_config=load_rpu_config)
    loaded.drift_analog_weights(100.0)
    _assert_forward_sees_tile_weights(loaded, per_channel=False)
