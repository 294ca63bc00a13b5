"""aihwkit 1.1.0 integration: the converter everywhere aihwkit uses a conductance converter.

The converter is set as ``rpu_config.noise_model.g_converter`` and a model is programmed,
drifted and run, for

* layers: ``AnalogLinear``, ``AnalogConv1d``, ``AnalogConv2d`` and ``convert_to_analog``
  of a plain torch model;
* tiles: ``TorchInferenceRPUConfig``, ``TorchInferenceRPUConfigIRDropT`` (``ir_drop = 1``,
  ``BIT_WISE`` and ``SPLIT_MODE``, zero padding to 128 rows) and, behind a probe,
  ``InferenceRPUConfig`` (aihwkit's compiled tile);
* noise models: ``PCMLikeNoiseModel``, ``CustomDriftPCMLikeNoiseModel``,
  ``ReRamWan2022NoiseModel``, ``HermesNoiseModel``, ``StateIndependentNoiseModel`` and
  our ``MeasuredNoiseModel`` (a device model at the table's levels);
* with and without ``GlobalDriftCompensation``.

Each case checks that every tile's noise model holds a deep copy of our converter and
reads ``g_max`` from it, that programming stores noisy (not merely quantized) weights,
that outputs are finite and shaped right, that drift changes the outputs, and, for the
IR-drop tile, that every conversion in the forward pass reproduces a tile's weights.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable

import aihwkit
import pytest
import torch
from aihwkit.exceptions import ModuleError
from aihwkit.inference.compensation.drift import GlobalDriftCompensation
from aihwkit.inference.noise.custom import StateIndependentNoiseModel
from aihwkit.inference.noise.hermes import HermesNoiseModel
from aihwkit.inference.noise.pcm import CustomDriftPCMLikeNoiseModel, PCMLikeNoiseModel
from aihwkit.inference.noise.reram import ReRamWan2022NoiseModel
from aihwkit.nn import AnalogConv1d, AnalogConv2d, AnalogLinear
from aihwkit.nn.conversion import convert_to_analog
from aihwkit.simulator.configs import (
    InferenceRPUConfig,
    TorchInferenceRPUConfig,
    TorchInferenceRPUConfigIRDropT,
)
from aihwkit.simulator.parameters.enums import AnalogMVType
from torch import Tensor, nn

from aihwkit_slicing import (
    DeviceModel,
    MeasuredNoiseModel,
    QuantizedSlicedConductanceConverter,
    bit_sliced,
)

# aihwkit 1.1.0's HermesNoiseModel indexes with a list of bool tensors, which torch
# deprecates (UserWarning on every call); not ours to fix.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Using a non-tuple sequence for multidimensional indexing:UserWarning"
)

PHYS_INPUT_SIZE = 128
INVARIANCE_RTOL = 1e-6

from aihwkit_helpers import (  # noqa: E402,F401
    max_rel_diff,
    require_compiled_tile,
    weights_from,
)


def make_converter(**table_kwargs) -> QuantizedSlicedConductanceConverter:
    return QuantizedSlicedConductanceConverter.from_table(bit_sliced(2, 4, **table_kwargs))


# ------------------------------------------------------------------- noise models
def _custom_drift_model(conv) -> dict:
    """Drift coefficients over a g_lst range that covers [g_min, g_max] of ``conv``."""
    mid = (conv.g_min + conv.g_max) / 2
    return {
        "g_lst": [conv.g_min, mid, conv.g_max],
        "nu_mean_lst": [0.1, 0.06, 0.03],
        "nu_std_lst": [0.02, 0.01, 0.005],
    }


def _device_model(conv) -> DeviceModel:
    """Per-level statistics at every conductance of ``conv``'s table (PCM-like sizes)."""
    levels = sorted({float(g) for g in conv.table.conductances.ravel()})
    top = levels[-1]
    return DeviceModel(levels=tuple(levels),
                       prog_std=tuple(0.3 + 0.03 * g for g in levels),
                       nu_mean=tuple(0.08 - 0.04 * g / top for g in levels),
                       nu_std=tuple(0.02 for _ in levels),
                       read_std=tuple(0.01 * g for g in levels), t0=20.0)


NOISE_MODELS: dict[str, Callable] = {
    "pcm": lambda conv: PCMLikeNoiseModel(g_converter=conv),
    "custom_drift_pcm": lambda conv: CustomDriftPCMLikeNoiseModel(
        _custom_drift_model(conv), g_converter=conv
    ),
    "reram_wan2022": lambda conv: ReRamWan2022NoiseModel(g_converter=conv),
    "hermes": lambda conv: HermesNoiseModel(g_converter=conv),
    "state_independent": lambda conv: StateIndependentNoiseModel(g_converter=conv),
    "measured": lambda conv: MeasuredNoiseModel(_device_model(conv), g_converter=conv),
}
#: Inference times in seconds; ReRamWan2022NoiseModel only knows its coeff_dic keys.
DRIFT_TIMES = {"reram_wan2022": (1.0, 86400.0, 172800.0)}
DEFAULT_DRIFT_TIMES = (1.0, 1.0e6)
#: Models whose conductances decay with time (global drift compensation scales up).
DECAYING = {"pcm", "custom_drift_pcm", "hermes", "state_independent", "measured"}

# ------------------------------------------------------------------- rpu configs
CONFIGS = ["torch", "irdrop_bit_wise", "irdrop_split_mode", "compiled"]


def make_config(kind: str, noise_model, drift_compensation: bool):
    if kind == "compiled":
        require_compiled_tile()
        config = InferenceRPUConfig()
    elif kind == "torch":
        config = TorchInferenceRPUConfig()
    else:
        config = TorchInferenceRPUConfigIRDropT()
        config.forward.ir_drop = 1.0
        config.forward.mv_type = {
            "irdrop_bit_wise": AnalogMVType.BIT_WISE,
            "irdrop_split_mode": AnalogMVType.SPLIT_MODE,
        }[kind]
        config.mapping.max_input_size = PHYS_INPUT_SIZE
        # aihwkit quantizes the output of every bit plane (BIT_WISE) or half (SPLIT_MODE)
        # with out_res and truncates it with the ADC model; with the defaults the BIT_WISE
        # output of these tiny layers is exactly 0 whatever the weights (also with
        # aihwkit's own converter), so drift could not show in the outputs.
        config.forward.out_res = -1
        config.forward.adc_quantization = False
    config.forward.out_noise = 0.0  # deterministic forward: output changes come from drift
    config.noise_model = noise_model
    config.drift_compensation = GlobalDriftCompensation() if drift_compensation else None
    return config


# ------------------------------------------------------------------------- layers
def _linear(config) -> tuple[nn.Module, Tensor, tuple[int, ...]]:
    return AnalogLinear(16, 8, bias=True, rpu_config=config), torch.rand(2, 16), (2, 8)


def _conv1d(config):
    layer = AnalogConv1d(2, 4, kernel_size=3, padding=1, bias=True, rpu_config=config)
    return layer, torch.rand(2, 2, 8), (2, 4, 8)


def _conv2d(config):
    layer = AnalogConv2d(2, 4, kernel_size=3, padding=1, bias=True, rpu_config=config)
    return layer, torch.rand(2, 2, 4, 4), (2, 4, 4, 4)


def _converted_mlp(config):
    digital = nn.Sequential(nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 8))
    return convert_to_analog(digital, config), torch.rand(2, 16), (2, 8)


def _converted_cnn(config):
    digital = nn.Sequential(
        nn.Conv2d(2, 4, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 8),
    )
    return convert_to_analog(digital, config), torch.rand(2, 2, 4, 4), (2, 8)


LAYERS: dict[str, Callable] = {
    "AnalogLinear": _linear,
    "AnalogConv1d": _conv1d,
    "AnalogConv2d": _conv2d,
    "convert_to_analog_mlp": _converted_mlp,
    "convert_to_analog_cnn": _converted_cnn,
}

_aihwkit_support: dict[tuple[str, str], str | None] = {}


def skip_unless_aihwkit_supports(layer: str, kind: str) -> None:
    """Skip if aihwkit 1.1.0 itself cannot run ``layer`` on ``kind`` tiles.

    Probes once per case with aihwkit's *default* converter, so a failure there is
    aihwkit's and not ours. Known in aihwkit 1.1.0: ``AnalogConv1d`` needs indexed
    convolution, which the torch tiles do not support (``ModuleError``), and the IR-drop
    tile's ``_matmul_irdrop`` only handles 2-d inputs, not the ``[batch, positions, in]``
    inputs of convolutions (``RuntimeError`` in ``analog_mvm_irdrop_t``).
    """
    key = (layer, kind)
    if key not in _aihwkit_support:
        reason = None
        if kind != "compiled":
            model, x, _ = LAYERS[layer](make_config(kind, PCMLikeNoiseModel(), False))
            try:
                model.eval()(x)
            except ModuleError as error:
                if "does not support indexed" not in str(error):
                    raise
                reason = f"ModuleError: {error}"
            except RuntimeError as error:
                frames = traceback.extract_tb(error.__traceback__)
                if not frames or "analog_mvm_irdrop_t" not in frames[-1].filename:
                    raise
                reason = f"RuntimeError in analog_mvm_irdrop_t: {error}"
        _aihwkit_support[key] = reason
    if _aihwkit_support[key] is not None:
        pytest.skip(f"aihwkit {aihwkit.__version__} cannot run {layer} on {kind} tiles, "
                    f"even with its own converter ({_aihwkit_support[key]})")


# ------------------------------------------------------------------------ helpers
def pad_like_irdrop(weights: Tensor) -> Tensor:
    transposed = weights.T
    pad1 = (PHYS_INPUT_SIZE - transposed.shape[0]) // 2
    pad2 = PHYS_INPUT_SIZE - transposed.shape[0] - pad1
    return torch.nn.functional.pad(transposed, (0, 0, pad1, pad2))


def forward_conversions(model, tiles, x: Tensor) -> tuple[Tensor, list[tuple[list, dict]]]:
    """Run ``model(x)``, recording what the IR-drop tiles' converters returned."""
    converters = {id(t.tile._g_converter): t.tile._g_converter for t in tiles}
    calls: list[tuple[list, dict]] = []
    for converter in converters.values():
        original = converter.convert_to_conductances

        def spy(weights, original=original):
            conductances, params = original(weights)
            calls.append(([g.clone() for g in conductances], dict(params)))
            return conductances, params

        converter.convert_to_conductances = spy
    try:
        out = model(x)
    finally:
        for converter in converters.values():
            converter.__dict__.pop("convert_to_conductances", None)
    return out, calls


def check_program_drift_inference(model, x: Tensor, out_shape: tuple[int, ...], conv,
                                  kind: str, noise_name: str, compensation: bool) -> None:
    """The checks shared by every layer / tile / noise model / compensation case."""
    model = model.eval()
    tiles = list(model.analog_tiles())
    assert tiles
    for tile in tiles:
        noise = tile.rpu_config.noise_model
        assert isinstance(noise.g_converter, QuantizedSlicedConductanceConverter)
        assert noise.g_converter == conv and noise.g_converter is not conv  # a deep copy
        assert noise.g_max == conv.g_max
        if kind.startswith("irdrop"):
            assert isinstance(tile.tile._g_converter, QuantizedSlicedConductanceConverter)
            assert tile.tile._g_converter == conv

    model.program_analog_weights()
    for tile in tiles:
        programmed = tile.programmed_weights
        assert torch.isfinite(programmed).all()
        # programming noise: the stored weights are not merely the quantized ones
        assert max_rel_diff(programmed, conv.quantize(tile.reference_combined_weights)) > 1e-3
        assert len(tile.drift_noise_parameters) == conv.n_devices
    y_programmed = model(x)
    assert y_programmed.shape == out_shape and torch.isfinite(y_programmed).all()

    times = DRIFT_TIMES.get(noise_name, DEFAULT_DRIFT_TIMES)
    for t_inference in times:
        model.drift_analog_weights(t_inference)
        for tile in tiles:
            assert torch.isfinite(tile.tile.get_weights()).all()
            alpha = tile.alpha.detach().reshape(-1)
            assert torch.isfinite(alpha).all() and (alpha > 0).all()
            if not compensation:
                assert torch.all(alpha == 1.0)
        if kind.startswith("irdrop"):
            y_drifted, calls = forward_conversions(model, tiles, x)
            expected = [pad_like_irdrop(tile.tile.get_weights()) for tile in tiles]
            assert calls
            for conductances, params in calls:
                seen = weights_from(conductances, params)
                candidates = [e for e in expected if e.shape == seen.shape]
                assert min(max_rel_diff(seen, e) for e in candidates) <= INVARIANCE_RTOL
        else:
            y_drifted = model(x)
        assert y_drifted.shape == out_shape and torch.isfinite(y_drifted).all()

    # drift (and the noise accumulated with it) changes what the model computes
    change = max_rel_diff(y_drifted, y_programmed)
    assert change > 1e-3, f"outputs changed by only {change:.3g} of max|y| after drift"
    if compensation and noise_name in DECAYING:
        # conductances decayed by t = 1e6 s: the global compensation scales outputs up
        assert all(float(tile.alpha.reshape(-1)[0]) > 1.0 for tile in tiles)


# ========================================================================== tests
@pytest.mark.parametrize("compensation", [False, True], ids=["no_compensation", "global_drift"])
@pytest.mark.parametrize("kind", CONFIGS)
@pytest.mark.parametrize("layer", list(LAYERS))
def test_every_layer_type_programs_drifts_and_infers_with_the_converter(layer, kind,
                                                                        compensation):
    skip_unless_aihwkit_supports(layer, kind)
    conv = make_converter()
    config = make_config(kind, PCMLikeNoiseModel(g_converter=conv), compensation)
    torch.manual_seed(0)
    model, x, out_shape = LAYERS[layer](config)
    check_program_drift_inference(model, x, out_shape, conv, kind, "pcm", compensation)


@pytest.mark.parametrize("compensation", [False, True], ids=["no_compensation", "global_drift"])
@pytest.mark.parametrize("kind", CONFIGS)
@pytest.mark.parametrize("noise_name", list(NOISE_MODELS))
def test_every_noise_model_programs_drifts_and_infers_with_the_converter(noise_name, kind,
                                                                         compensation):
    conv = make_converter()
    config = make_config(kind, NOISE_MODELS[noise_name](conv), compensation)
    torch.manual_seed(1)
    model, x, out_shape = _linear(config)
    check_program_drift_inference(model, x, out_shape, conv, kind, noise_name, compensation)


@pytest.mark.parametrize("noise_name", list(NOISE_MODELS))
def test_converter_g_max_reaches_the_noise_model_and_every_tile(noise_name):
    conv = make_converter(g_min=2.0, g_max=30.0)
    assert (conv.g_min, conv.g_max) == (2.0, 30.0)
    noise = NOISE_MODELS[noise_name](conv)
    assert noise.g_max == conv.g_max == 30.0
    assert noise.g_converter == conv and noise.g_converter is not conv
    layer = AnalogLinear(16, 8, rpu_config=make_config("torch", noise, False))
    for tile in layer.analog_tiles():
        assert tile.rpu_config.noise_model.g_max == 30.0
        assert tile.rpu_config.noise_model.g_converter.g_min == 2.0


@pytest.mark.parametrize(
    "g_lst,accepted",
    [([2.0, 30.0], True), ([0.0, 40.0], True), ([0.0, 25.0], False), ([5.0, 30.0], False)],
    ids=["exact_range", "wider_range", "misses_g_max", "misses_g_min"],
)
def test_custom_drift_model_range_is_checked_against_converter_g_min_and_g_max(g_lst,
                                                                              accepted):
    conv = make_converter(g_min=2.0, g_max=30.0)
    drift_model = {"g_lst": g_lst, "nu_mean_lst": [0.05, 0.05], "nu_std_lst": [0.0, 0.0]}
    if accepted:
        noise = CustomDriftPCMLikeNoiseModel(drift_model, g_converter=conv)
        assert noise.g_max == 30.0
    else:
        with pytest.raises(ValueError, match="g_min = 2.000, g_max = 30.000"):
            CustomDriftPCMLikeNoiseModel(drift_model, g_converter=conv)


@pytest.mark.parametrize("converter", ["aihwkit_default", "sliced"])
def test_global_drift_compensation_with_bit_wise_irdrop_reads_zero_as_with_aihwkit_converter(
    converter,
):
    """Documents aihwkit 1.1.0: with its default ADC model (``adc_quantization=True``,
    truncation) the BIT_WISE IR-drop tile returns exactly 0 for the one-hot read-out
    inputs of ``GlobalDriftCompensation``, with aihwkit's own converter as with ours, so
    the baseline is clamped to 1e-4 and ``alpha`` stays 1: no compensation at all. Our
    converter does not change that behaviour."""
    conv = make_converter()
    noise = PCMLikeNoiseModel() if converter == "aihwkit_default" else PCMLikeNoiseModel(
        g_converter=conv
    )
    config = make_config("irdrop_bit_wise", noise, drift_compensation=True)
    config.forward.adc_quantization = True  # aihwkit's default
    torch.manual_seed(2)
    layer, x, _ = _linear(config)
    layer = layer.eval()
    layer.program_analog_weights()
    layer.drift_analog_weights(1.0e6)
    tile = next(layer.analog_tiles())
    assert float(tile.drift_baseline) == pytest.approx(1e-4)
    assert float(tile.alpha.reshape(-1)[0]) == 1.0
    assert torch.isfinite(layer(x)).all()


@pytest.mark.parametrize(
    "layer,kind",
    [
        ("AnalogConv1d", "torch"),
        ("AnalogConv1d", "irdrop_split_mode"),
        ("AnalogConv2d", "irdrop_bit_wise"),
        ("convert_to_analog_cnn", "irdrop_split_mode"),
    ],
)
def test_layers_aihwkit_cannot_run_forward_still_program_and_drift_with_the_converter(layer,
                                                                                     kind):
    """aihwkit 1.1.0 cannot run these forward passes on CPU, whatever the converter
    (``AnalogConv1d`` needs indexed convolution, unsupported by the torch tiles; the
    IR-drop tile rejects the 3-d inputs of convolutions). Programming and drift do not
    need a forward pass (no drift compensation) and must work with the converter."""
    conv = make_converter()
    noise = PCMLikeNoiseModel(g_converter=conv, read_noise_scale=0.0)
    torch.manual_seed(3)
    model, _, _ = LAYERS[layer](make_config(kind, noise, drift_compensation=False))
    model = model.eval()
    tiles = list(model.analog_tiles())
    for tile in tiles:
        assert tile.rpu_config.noise_model.g_converter == conv
        assert tile.rpu_config.noise_model.g_converter is not conv
    model.program_analog_weights()
    for tile in tiles:
        assert max_rel_diff(tile.programmed_weights,
                            conv.quantize(tile.reference_combined_weights)) > 1e-3
    model.drift_analog_weights(1.0e6)
    for tile in tiles:
        drifted = tile.tile.get_weights()
        assert torch.isfinite(drifted).all()
        assert max_rel_diff(drifted, tile.programmed_weights) > 1e-2
