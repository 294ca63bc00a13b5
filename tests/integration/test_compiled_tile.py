"""aihwkit's default, compiled tile (``InferenceRPUConfig``, C++ ``InferenceTile``).

What the other test files run on the pure-torch tiles, and do not yet run on the
compiled one: drift compensation (global and per column) with every noise model, the
naive-converter contrast to "drift leaves programmed weights alone", weights that move
under drift, programming of all-zero rows, ``state_dict`` reloads, the digitally sliced
layers (conversion, forward, program/drift, reload, training) and a drift sweep.

Every test here uses ``InferenceRPUConfig()``. Where the installed aihwkit/torch pair
cannot run the compiled tile (:mod:`aihwkit_slicing.integration.compat`) the tests skip with the
fix as the reason; elsewhere a broken compiled tile fails them. Tile dtypes other than
float32, which aihwkit 1.1.0's CPU extension does not have, are checked against aihwkit's
own ``SinglePairConductanceConverter``: ours must fail exactly where and how it fails.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from aihwkit.exceptions import ConfigError
from aihwkit.inference.compensation.drift import (
    GlobalDriftCompensation,
    PerColumnDriftCompensation,
)
from aihwkit.inference.converter.conductance import SinglePairConductanceConverter
from aihwkit.inference.noise.custom import StateIndependentNoiseModel
from aihwkit.inference.noise.hermes import HermesNoiseModel
from aihwkit.inference.noise.pcm import CustomDriftPCMLikeNoiseModel, PCMLikeNoiseModel
from aihwkit.inference.noise.reram import ReRamWan2022NoiseModel
from aihwkit.nn import AnalogLinear, AnalogSequential
from aihwkit.optim import AnalogSGD
from aihwkit.simulator.configs import InferenceRPUConfig
from aihwkit.simulator.parameters.enums import RPUDataType
from aihwkit.simulator.tiles.inference import InferenceTile
from torch import Tensor, nn

from aihwkit_slicing import (
    AnalogSlicedConv2d,
    AnalogSlicedLinear,
    QuantizedSlicedConductanceConverter,
    bit_sliced,
    convert_to_analog_sliced,
    convert_to_digital_sliced,
)
from aihwkit_slicing.experiments import sweep_plan as sweep_module
from aihwkit_slicing.integration.compat import uses_compiled_tile
from aihwkit_slicing.experiments.sweep import run_sweep
from aihwkit_slicing.experiments.tasks import digits_task

from aihwkit_helpers import max_rel_diff, require_compiled_tile  # isort: skip

INVARIANCE_RTOL = 1e-6


@pytest.fixture(autouse=True)
def _compiled_tile_works():
    require_compiled_tile()


def make_converter() -> QuantizedSlicedConductanceConverter:
    return QuantizedSlicedConductanceConverter.from_table(bit_sliced(2, 4))


def compiled_config(noise_model=None, compensation=None, perfect: bool = False
                    ) -> InferenceRPUConfig:
    """``InferenceRPUConfig()`` with ``noise_model``, ``compensation`` (a drift
    compensation class or None), no output noise and, if ``perfect``, ideal
    peripherals (so that a forward pass reads the tile weights exactly)."""
    config = InferenceRPUConfig()
    config.forward.out_noise = 0.0
    config.forward.is_perfect = perfect
    if noise_model is not None:
        config.noise_model = noise_model
    config.drift_compensation = compensation() if compensation is not None else None
    return config


def compiled_tiles(model: nn.Module) -> list:
    tiles = list(model.analog_tiles())
    assert tiles and all(isinstance(t, InferenceTile) for t in tiles)
    return tiles


def tile_weights(tile) -> Tensor:
    return tile.tile.get_weights().detach().clone()


def test_inference_rpu_config_makes_compiled_tiles():
    """The premise of this file: ``InferenceRPUConfig`` is aihwkit's C++ tile here."""
    config = InferenceRPUConfig()
    assert uses_compiled_tile(config)
    layer = AnalogLinear(4, 2, rpu_config=config)
    (tile,) = compiled_tiles(layer)
    assert type(tile.tile).__module__ == "aihwkit.simulator.rpu_base.tiles"


# ======================================================= program and drift, one layer
class NaiveQuantizingConverter(QuantizedSlicedConductanceConverter):
    """Quantizes whatever it is given (no memory of the weights it produced)."""

    def convert_to_conductances(self, weights):
        return super().convert_to_conductances(weights.detach().clone())


@pytest.mark.parametrize("converter_class", [QuantizedSlicedConductanceConverter,
                                             NaiveQuantizingConverter],
                         ids=["ours", "naive_requantizing"])
def test_drift_off_keeps_programmed_weights_where_requantizing_would_move_them(
    converter_class,
):
    """The compiled tile, too, hands the programmed weights back to the converter on
    every drift: ours keeps them (to 1e-6 of max|w|), a converter that quantizes them
    again moves them by about the programming noise."""
    conv = converter_class.from_table(bit_sliced(2, 4))
    noise = PCMLikeNoiseModel(g_converter=conv, drift_scale=0.0, read_noise_scale=0.0)
    torch.manual_seed(0)
    layer = AnalogLinear(16, 8, bias=False, rpu_config=compiled_config(noise)).eval()
    layer.program_analog_weights()
    (tile,) = compiled_tiles(layer)
    programmed = tile.programmed_weights.clone()
    noise_size = max_rel_diff(programmed, conv.quantize(tile.reference_combined_weights))
    assert noise_size > 1e-3  # programming noise is on
    for t_inference in (1.0, 3600.0, 1.0e6):
        layer.drift_analog_weights(t_inference)
        moved = max_rel_diff(tile_weights(tile), programmed)
        if converter_class is NaiveQuantizingConverter:
            assert moved > 0.1 * noise_size
        else:
            assert moved <= INVARIANCE_RTOL, f"moved by {moved:.3g} at t={t_inference:g} s"


def test_drift_on_moves_the_weights_further_with_time():
    noise = PCMLikeNoiseModel(g_converter=make_converter(), read_noise_scale=0.0)
    torch.manual_seed(1)
    layer = AnalogLinear(16, 8, bias=False, rpu_config=compiled_config(noise)).eval()
    layer.program_analog_weights()
    (tile,) = compiled_tiles(layer)
    moved = []
    for t_inference in (1.0, 3600.0, 1.0e6):
        layer.drift_analog_weights(t_inference)
        moved.append(max_rel_diff(tile_weights(tile), tile.programmed_weights))
    assert moved == sorted(moved) and moved[0] < moved[-1]
    assert moved[-1] > 1e-2


@pytest.mark.parametrize("which", ["zero_row", "all_zero"])
def test_programming_all_zero_rows_keeps_the_programmed_weights_under_drift(which):
    noise = PCMLikeNoiseModel(g_converter=make_converter(), drift_scale=0.0,
                              read_noise_scale=0.0)
    layer = AnalogLinear(16, 8, bias=False, rpu_config=compiled_config(noise)).eval()
    torch.manual_seed(6)
    weights = torch.randn(8, 16)
    if which == "zero_row":
        weights[3] = 0.0
    else:
        weights.zero_()
    layer.set_weights(weights)
    layer.program_analog_weights()
    (tile,) = compiled_tiles(layer)
    programmed = tile.programmed_weights.clone()
    assert torch.isfinite(programmed).all()
    layer.drift_analog_weights(3600.0)
    assert (tile_weights(tile) - programmed).abs().max() <= INVARIANCE_RTOL * max(
        float(programmed.abs().max()), 1e-12)


def test_state_dict_reload_is_programmed_afresh_at_the_first_drift():
    """As on the torch tiles: ``state_dict`` keeps the tile weights, not the programming."""
    config = compiled_config(PCMLikeNoiseModel(g_converter=make_converter(),
                                               read_noise_scale=0.0))
    torch.manual_seed(2)
    model = AnalogLinear(16, 8, bias=False, rpu_config=config).eval()
    model.program_analog_weights()
    fresh = AnalogLinear(16, 8, bias=False, rpu_config=config).eval()
    fresh.load_state_dict(model.state_dict())
    (tile,), (source,) = compiled_tiles(fresh), compiled_tiles(model)
    assert tile.programmed_weights is None
    assert torch.equal(tile_weights(tile), tile_weights(source))
    fresh.drift_analog_weights(3600.0)
    assert tile.programmed_weights is not None
    assert not torch.equal(tile.programmed_weights, source.programmed_weights)


# ============================================ drift compensation x every noise model
def _custom_drift(conv) -> CustomDriftPCMLikeNoiseModel:
    mid = (conv.g_min + conv.g_max) / 2
    return CustomDriftPCMLikeNoiseModel(
        {"g_lst": [conv.g_min, mid, conv.g_max], "nu_mean_lst": [0.1, 0.06, 0.03],
         "nu_std_lst": [0.02, 0.01, 0.005]},
        g_converter=conv,
    )


NOISE_MODELS: dict[str, Callable] = {
    "pcm": lambda conv: PCMLikeNoiseModel(g_converter=conv),
    "custom_drift_pcm": _custom_drift,
    "hermes": lambda conv: HermesNoiseModel(g_converter=conv),
    "reram_wan2022": lambda conv: ReRamWan2022NoiseModel(g_converter=conv),
    "state_independent": lambda conv: StateIndependentNoiseModel(g_converter=conv),
}
#: ReRamWan2022NoiseModel only knows the times of its coeff_dic (1 s, 1 day, 2 days).
DRIFT_TIME = {"reram_wan2022": 172800.0}
#: Models whose conductances decay: compensation must scale every output up.
DECAYING = {"pcm", "custom_drift_pcm", "hermes", "state_independent"}


@pytest.mark.filterwarnings(
    "ignore:Using a non-tuple sequence for multidimensional indexing:UserWarning")
@pytest.mark.parametrize("compensation", [GlobalDriftCompensation, PerColumnDriftCompensation],
                         ids=["global", "per_column"])
@pytest.mark.parametrize("noise_name", list(NOISE_MODELS))
def test_drift_compensation_reads_the_drifted_weights_of_every_noise_model(noise_name,
                                                                           compensation):
    """``alpha`` is the mean |w| before drift over the mean |w| after it (per output
    column for ``PerColumnDriftCompensation``): with ideal peripherals the readout sees
    exactly the tile weights the converter left there."""
    conv = make_converter()
    config = compiled_config(NOISE_MODELS[noise_name](conv), compensation, perfect=True)
    torch.manual_seed(3)
    layer = AnalogLinear(16, 8, bias=False, rpu_config=config).eval()
    (tile,) = compiled_tiles(layer)
    assert tile.rpu_config.noise_model.g_converter == conv
    layer.program_analog_weights()
    programmed = tile_weights(tile)
    layer.drift_analog_weights(DRIFT_TIME.get(noise_name, 1.0e6))
    drifted = tile_weights(tile)
    assert max_rel_diff(drifted, programmed) > 1e-2

    alpha = tile.alpha.detach().reshape(-1)
    if compensation is PerColumnDriftCompensation:
        expected = programmed.abs().mean(dim=1) / drifted.abs().mean(dim=1)
        assert alpha.shape == (8,) and len(set(alpha.tolist())) > 1
    else:
        expected = (programmed.abs().mean() / drifted.abs().mean()).reshape(1)
    torch.testing.assert_close(alpha, expected, rtol=1e-5, atol=0.0)
    if noise_name in DECAYING:
        assert bool((alpha > 1.0).all())
    x = torch.rand(4, 16)
    torch.testing.assert_close(layer(x), (x @ drifted.T) * alpha, rtol=1e-5, atol=1e-6)


# ================================================================ sliced layers
class CompiledTileNet(nn.Module):
    """Conv + linear, not a Sequential. (Its own name: aihwkit 1.1.0's ``AnalogWrapper``
    caches its wrapper classes by class *name*, so two ``TinyNet`` classes in one process
    would share one wrapper, and ``convert_to_digital`` would return the wrong class.)"""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(8, 3))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(torch.relu(self.conv(x)))


def converted_tiny_net(config: InferenceRPUConfig, n_slices: int = 3, **slicing) -> nn.Module:
    torch.manual_seed(4)
    return convert_to_analog_sliced(CompiledTileNet(), config, n_slices, **slicing)


@pytest.mark.parametrize("significance,bits", [("equal", None), ("binary", 2)])
def test_sliced_model_computes_the_reconstructed_digital_model(significance, bits):
    model = converted_tiny_net(compiled_config(perfect=True), significance=significance,
                               bits_per_slice=bits).eval()
    assert isinstance(model.conv, AnalogSlicedConv2d)
    assert isinstance(model.head[1], AnalogSlicedLinear)
    assert len(compiled_tiles(model)) == 2 * 3
    digital = convert_to_digital_sliced(model)
    torch.manual_seed(4)
    original = CompiledTileNet()
    x = torch.rand(5, 1, 4, 4)
    torch.testing.assert_close(model(x), digital(x), rtol=1e-5, atol=1e-6)
    gap = max_rel_diff(digital(x), original(x))
    if significance == "equal":
        assert gap < 1e-5  # an exact split
    else:
        assert 1e-5 < gap < 0.1  # 6 bits of magnitude


def test_program_and_drift_reach_every_slice_tile_with_the_converter():
    conv = make_converter()
    config = compiled_config(PCMLikeNoiseModel(g_converter=conv), GlobalDriftCompensation)
    model = converted_tiny_net(config).eval()
    tiles = compiled_tiles(model)
    model.program_analog_weights()
    for tile in tiles:
        assert len(tile.drift_noise_parameters) == conv.n_devices
        assert max_rel_diff(tile.programmed_weights,
                            conv.quantize(tile.reference_combined_weights)) > 1e-3
    model.drift_analog_weights(86400.0)
    for tile in tiles:
        assert max_rel_diff(tile_weights(tile), tile.programmed_weights) > 1e-3
        assert float(tile.alpha.reshape(-1)[0]) > 1.0
    assert torch.isfinite(model(torch.rand(2, 1, 4, 4))).all()


def test_sliced_state_dict_round_trip_restores_weights_and_outputs():
    config = compiled_config(PCMLikeNoiseModel(g_converter=make_converter()), perfect=True)
    model = converted_tiny_net(config, n_slices=2).eval()
    model.program_analog_weights()
    x = torch.rand(3, 1, 4, 4)
    clone = converted_tiny_net(config, n_slices=2).eval()
    assert not torch.equal(clone(x), model(x))
    clone.load_state_dict(model.state_dict())
    for a, b in zip(compiled_tiles(model), compiled_tiles(clone), strict=True):
        assert torch.equal(tile_weights(a), tile_weights(b))
    torch.testing.assert_close(clone(x), model(x))


def test_hardware_aware_training_of_sliced_layers_lowers_the_loss():
    torch.manual_seed(8)
    inputs = torch.randn(128, 8)
    labels = (inputs @ torch.randn(8, 3)).argmax(dim=1)
    model = AnalogSequential(
        AnalogSlicedLinear(8, 16, 2, rpu_config=InferenceRPUConfig()),
        nn.ReLU(),
        AnalogSlicedLinear(16, 3, 2, significance=[2.0, 1.0], rpu_config=InferenceRPUConfig()),
    )
    compiled_tiles(model)
    optimizer = AnalogSGD(model.parameters(), lr=0.05)
    optimizer.regroup_param_groups(model)
    loss_fn = nn.CrossEntropyLoss()

    def full_loss() -> float:
        with torch.no_grad():
            return loss_fn(model.eval()(inputs), labels).item()

    before = full_loss()
    slices_before = [layer.get_slice_weights() for layer in (model[0], model[2])]
    model.train()
    for start in range(0, 128, 16):
        optimizer.zero_grad()
        loss_fn(model(inputs[start:start + 16]), labels[start:start + 16]).backward()
        optimizer.step()
    assert full_loss() < 0.9 * before
    for layer, old in zip((model[0], model[2]), slices_before, strict=True):
        for new_w, old_w in zip(layer.get_slice_weights(), old, strict=True):
            assert not torch.equal(new_w, old_w)  # every slice was trained


# ======================================================================== sweep
def test_sweep_runs_on_compiled_tiles(monkeypatch):
    tile_types: list[type] = []
    convert = sweep_module.convert_to_analog

    def recording_convert(*args, **kwargs):
        model = convert(*args, **kwargs)
        tile_types.extend(type(t) for t in model.analog_tiles())
        return model

    monkeypatch.setattr(sweep_module, "convert_to_analog", recording_convert)
    result = run_sweep(digits_task(), tables=["seed"], times=[1.0, 3600.0], repeats=1,
                       rpu_config=InferenceRPUConfig(), progress=False)
    assert tile_types and set(tile_types) == {InferenceTile}
    assert [r["t_inference"] for r in result.of_metric()] == [1.0, 3600.0]
    assert result.of_metric()[0]["rpu_config"].startswith("InferenceRPUConfig:")
    for record in result.of_metric():
        assert record["value"] >= result.reference["accuracy"] - 0.05
    for record in result.of_metric("weight_rms_error"):
        assert 0.0 < record["value"] < 0.5


# ========================= dtypes: ours does what aihwkit's own converter does
def outcome(action: Callable[[], Tensor]) -> tuple[str, str]:
    """``("ok", dtype)`` if ``action()`` returns, else ``(error type, message)``."""
    try:
        result = action()
    except (ConfigError, RuntimeError) as error:
        return type(error).__name__, str(error)
    assert torch.isfinite(result).all()
    return "ok", str(result.dtype)


CONVERTERS: dict[str, Callable] = {
    "aihwkit_single_pair": SinglePairConductanceConverter,
    "sliced": make_converter,
}


def _program_drift_forward(converter: str, data_type: str) -> Tensor:
    noise = PCMLikeNoiseModel(g_converter=CONVERTERS[converter](), drift_scale=0.0,
                              read_noise_scale=0.0)
    config = compiled_config(noise)
    config.runtime.data_type = getattr(RPUDataType, data_type)
    layer = AnalogLinear(16, 8, bias=False, rpu_config=config).eval()
    layer.program_analog_weights()
    layer.drift_analog_weights(3600.0)
    (tile,) = compiled_tiles(layer)
    moved = max_rel_diff(tile_weights(tile), tile.programmed_weights)
    assert moved <= {"DOUBLE": 1e-12, "HALF": 2e-3}[data_type]
    return layer(torch.rand(2, 16, dtype=tile.get_dtype()))


@pytest.mark.parametrize("data_type", ["DOUBLE", "HALF"])
def test_float64_and_float16_compiled_tiles_work_as_far_as_with_aihwkits_converter(data_type):
    """aihwkit 1.1.0's CPU extension is built for float32 only: a float64 or float16
    compiled tile fails on creation (``ConfigError: Cannot find requested data_type``)
    with aihwkit's own converter, and the same way with ours. Where an aihwkit build has
    such tiles, ours must program, drift (keeping the programmed weights) and infer."""
    expected = outcome(lambda: _program_drift_forward("aihwkit_single_pair", data_type))
    assert outcome(lambda: _program_drift_forward("sliced", data_type)) == expected


def _float64_forward(layer: str, converter: str) -> Tensor:
    config = compiled_config(PCMLikeNoiseModel(g_converter=CONVERTERS[converter]()))
    torch.manual_seed(5)
    module = (AnalogLinear(4, 2, rpu_config=config) if layer == "AnalogLinear"
              else AnalogSlicedLinear(4, 2, 2, rpu_config=config))
    return module.to(torch.float64)(torch.rand(1, 4, dtype=torch.float64))


def test_compiled_layers_moved_to_float64_work_as_far_as_aihwkits_own():
    """``.to(torch.float64)`` leaves aihwkit 1.1.0's float32 C++ tile behind, and the
    first forward pass fails in aihwkit (``RuntimeError: weights must be of the right
    data type``) for its own layer and converter: so it does for our converter and for
    the sliced layers (which the torch tiles convert to float64)."""
    expected = outcome(lambda: _float64_forward("AnalogLinear", "aihwkit_single_pair"))
    assert outcome(lambda: _float64_forward("AnalogLinear", "sliced")) == expected
    assert outcome(lambda: _float64_forward("AnalogSlicedLinear", "sliced")) == expected
    assert outcome(lambda: _float64_forward("AnalogSlicedLinear",
                                            "aihwkit_single_pair")) == expected
