"""A programmed chip saved and restored from any model (aihwkit_slicing.integration.checkpoint).

The reference is always the original model itself: after ``load_programmed`` into a
freshly converted model, every tile attribute equals the original's bit for bit, and
drifting both with the same seed gives the same weights and outputs. Bad files must
raise ``ValueError`` naming the problem and leave the model exactly as it was.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any, Callable, Dict, List

import pytest
import torch
from aihwkit.inference.converter.conductance import (
    NPairConductanceConverter,
    SinglePairConductanceConverter,
)
from aihwkit.nn.conversion import convert_to_analog
from aihwkit.optim.context import AnalogContext
from aihwkit.simulator.configs import (
    InferenceRPUConfig,
    TorchInferenceRPUConfig,
    TorchInferenceRPUConfigIRDropT,
)
from torch import Tensor, nn

from aihwkit_slicing import (
    QuantizedSlicedConductanceConverter,
    bit_sliced,
    convert_to_analog_sliced,
    load_programmed,
    save_programmed,
    seed_table,
)
from aihwkit_slicing.core import device_state
from aihwkit_slicing.integration.checkpoint import FORMAT, FORMAT_VERSION
from aihwkit_slicing.experiments.models.digits import DigitsCNN, load_digits_model
from aihwkit_slicing.integration.rpu_configs import make_rpu_config

from aihwkit_helpers import require_compiled_tile

TILE_KINDS = ["compiled", "torch", "irdrop"]
DRIFT_TIME = 86400.0  # seconds


# ======================================================================= models
def converter(name: str = "ours", table=None) -> Any:
    if name == "ours":
        return QuantizedSlicedConductanceConverter.from_table(table or seed_table())
    if name == "single_pair":
        return SinglePairConductanceConverter()
    if name == "n_pair":
        return NPairConductanceConverter(f_lst=[1.0, 3.0])
    raise ValueError(name)  # pragma: no cover - test bug


def rpu_config(kind: str, conv: Any) -> Any:
    """PCM noise and global drift compensation on the given tile kind.

    The compiled tile reads its forward noise from its own generator, not torch's, so
    it runs with ideal peripherals; the IR-drop tile needs its real forward pass (the
    one that converts weights), so it runs with aihwkit's default peripherals, output
    noise off.
    """
    if kind == "compiled":
        require_compiled_tile()
        return make_rpu_config(conv, base=InferenceRPUConfig())
    if kind == "torch":
        return make_rpu_config(conv, base=TorchInferenceRPUConfig())
    base = TorchInferenceRPUConfigIRDropT()
    base.forward.ir_drop = 1.0
    base.forward.out_noise = 0.0
    base.mapping.max_input_size = 64
    return make_rpu_config(conv, base=base, peripherals="realistic")


class Branchy(nn.Module):
    """Not a Sequential: two branches, a batch norm, a head (conversion wraps the root)."""

    def __init__(self) -> None:
        super().__init__()
        self.left = nn.Linear(8, 6)
        self.right = nn.Linear(8, 6, bias=False)
        self.norm = nn.BatchNorm1d(6)
        self.head = nn.Linear(6, 4)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(torch.relu(self.norm(self.left(x) + self.right(x))))


def mlp(hidden: int = 6, outputs: int = 4) -> nn.Module:
    return nn.Sequential(nn.Linear(8, hidden), nn.ReLU(), nn.Linear(hidden, outputs))


def branchy() -> nn.Module:
    model = Branchy()
    model.norm.running_mean.uniform_(-0.5, 0.5)  # digital state the checkpoint must carry
    model.norm.running_var.uniform_(0.5, 2.0)
    return model.eval()


def digits() -> nn.Module:
    model = DigitsCNN()  # random weights: a fresh model differs from the saved one
    return model.eval()


ARCHITECTURES: Dict[str, Callable[[], nn.Module]] = {
    "mlp": mlp, "branchy": branchy, "digits": digits, "sliced": mlp,
}
INPUTS = {"mlp": (5, 8), "branchy": (5, 8), "digits": (3, 1, 8, 8), "sliced": (5, 8)}


def analog(architecture: str, kind: str, conv: Any, seed: int = 0) -> nn.Module:
    """A freshly converted model; ``seed`` draws its digital weights."""
    torch.manual_seed(seed)
    digital = ARCHITECTURES[architecture]()
    config = rpu_config(kind, conv)
    if architecture == "sliced":
        return convert_to_analog_sliced(digital, config, n_slices=2).eval()
    return convert_to_analog(digital, config).eval()


def programmed(architecture: str = "mlp", kind: str = "torch", conv_name: str = "ours",
               drift: bool = True) -> nn.Module:
    model = analog(architecture, kind, converter(conv_name))
    torch.manual_seed(10)
    model.program_analog_weights()
    if drift:
        model.drift_analog_weights(3600.0)
    return model


# ====================================================================== helpers
def tiles(model: nn.Module) -> List[Any]:
    return [tile for _, tile in model.named_analog_tiles()]


def tile_snapshot(tile: Any) -> Dict[str, Any]:
    """Every attribute a checkpoint restores, copied (device state by identity too)."""
    def copy(value: Any) -> Any:
        if isinstance(value, Tensor):
            return value.detach().clone()
        if isinstance(value, list):
            return [copy(v) for v in value]
        return value

    state = None if tile.programmed_weights is None else device_state.state_of(
        tile.programmed_weights)
    return {
        "current": tile.tile.get_weights().clone(),
        "reference": copy(tile.reference_combined_weights),
        "programmed": copy(tile.programmed_weights),
        "drift_noise_parameters": copy(tile.drift_noise_parameters),
        "alpha": copy(tile.alpha),
        "drift_baseline": copy(tile.drift_baseline),
        "drift_readout_tensor": copy(tile.drift_readout_tensor),
        "device_state": state,
        "conductances": None if state is None else copy(state.conductances),
        "drifted_to": None if state is None else state.drifted_to,
        "drifted_conductances": None if state is None or state.current is None else copy(
            state.current.conductances),
    }


def snapshot(model: nn.Module) -> Dict[str, Any]:
    """The model's state: its state_dict tensors (without the tiles' analog contexts,
    which hold no state: a constant in aihwkit 1.1.0, an unreadable view of the tile
    weights in 1.2.0) and every tile's attributes."""
    return {
        "state_dict": {k: v.detach().clone()
                       for k, v in model.state_dict(keep_vars=True).items()
                       if isinstance(v, Tensor) and not isinstance(v, AnalogContext)},
        "tiles": [tile_snapshot(tile) for tile in tiles(model)],
    }


def assert_same(a: Any, b: Any, where: str = "") -> None:
    """Equal bit for bit, shapes and dtypes included (tensors, lists, dicts, values)."""
    if isinstance(a, Tensor):
        assert isinstance(b, Tensor), where
        assert a.shape == b.shape and a.dtype == b.dtype, f"{where}: {a.shape} vs {b.shape}"
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            if key != "device_state":
                assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} vs {b!r}"


def outputs(model: nn.Module, architecture: str, seed: int = 5) -> Tensor:
    torch.manual_seed(123)
    x = torch.rand(INPUTS[architecture])
    torch.manual_seed(seed)
    with torch.no_grad():
        return model(x)


def drifted(model: nn.Module, seed: int = 7, t_inference: float = DRIFT_TIME) -> List[Tensor]:
    torch.manual_seed(seed)
    model.drift_analog_weights(t_inference)
    return [tile.tile.get_weights().clone() for tile in tiles(model)]


def check_restored(original: nn.Module, restored: nn.Module, architecture: str) -> None:
    """Bit-for-bit restore, same outputs, same drift with the same seed."""
    assert_same(snapshot(original)["state_dict"], snapshot(restored)["state_dict"])
    assert_same(snapshot(original)["tiles"], snapshot(restored)["tiles"], "tiles")
    assert torch.equal(outputs(original, architecture), outputs(restored, architecture))
    expected = drifted(original)
    got = drifted(restored)
    for want, have in zip(expected, got, strict=True):
        assert torch.equal(want, have)
    assert torch.equal(outputs(original, architecture), outputs(restored, architecture))
    assert_same(snapshot(original)["tiles"], snapshot(restored)["tiles"], "tiles after drift")


# ========================================================== bit-for-bit restore
#: aihwkit 1.1.0's IR-drop tile cannot run a convolution (its forward pass fails on the
#: batched input, ``RuntimeError: The size of tensor a (3) must match the size of tensor
#: b (64)``, with aihwkit's own converter too), so the CNN runs on the other tiles.
COMBINATIONS = [(architecture, kind) for architecture in ARCHITECTURES for kind in TILE_KINDS
                if (architecture, kind) != ("digits", "irdrop")]


@pytest.mark.parametrize(("architecture", "kind"), COMBINATIONS)
def test_every_architecture_and_tile_restores_bit_for_bit_and_drifts_like_the_original(
        architecture, kind, tmp_path):
    original = programmed(architecture, kind)
    path = tmp_path / "chip.pt"
    save_programmed(original, path)
    restored = analog(architecture, kind, converter(), seed=1)
    assert not torch.equal(tiles(restored)[0].tile.get_weights(),
                           tiles(original)[0].tile.get_weights())
    load_programmed(restored, path)
    check_restored(original, restored, architecture)


@pytest.mark.parametrize("kind", TILE_KINDS)
@pytest.mark.parametrize("conv_name", ["single_pair", "n_pair"])
def test_aihwkit_converters_restore_and_drift_like_the_original(conv_name, kind, tmp_path):
    original = programmed("mlp", kind, conv_name)
    save_programmed(original, tmp_path / "chip.pt")
    restored = analog("mlp", kind, converter(conv_name), seed=1)
    load_programmed(restored, tmp_path / "chip.pt")
    check_restored(original, restored, "mlp")


@pytest.mark.parametrize("drift", [False, True])
def test_programmed_but_not_drifted_and_drifted_models_both_restore(drift, tmp_path):
    original = programmed(drift=drift)
    assert tiles(original)[0].alpha.dim() == (0 if drift else 1)  # aihwkit's shape change
    save_programmed(original, tmp_path / "chip.pt")
    restored = analog("mlp", "torch", converter(), seed=1)
    load_programmed(restored, tmp_path / "chip.pt")
    assert tiles(restored)[0].alpha.shape == tiles(original)[0].alpha.shape
    check_restored(original, restored, "mlp")


def test_unprogrammed_model_restores_and_programs_at_first_drift_as_the_original(tmp_path):
    original = analog("mlp", "torch", converter())
    save_programmed(original, tmp_path / "chip.pt")
    restored = analog("mlp", "torch", converter(), seed=1)
    load_programmed(restored, tmp_path / "chip.pt")
    assert all(tile.programmed_weights is None for tile in tiles(restored))
    check_restored(original, restored, "mlp")


def test_restored_programmed_weights_carry_the_saved_devices(tmp_path):
    original = programmed()
    save_programmed(original, tmp_path / "chip.pt")
    restored = analog("mlp", "torch", converter(), seed=1)
    load_programmed(restored, tmp_path / "chip.pt")
    for before, after in zip(tiles(original), tiles(restored), strict=True):
        saved = device_state.state_of(before.programmed_weights)
        state = device_state.state_of(after.programmed_weights)
        assert state is not None and state is not saved
        assert state.drifted_to == saved.drifted_to == 3600.0
        assert_same(state.conductances, saved.conductances)
        assert torch.equal(state.scale, saved.scale)
        assert device_state.tile_states(after, after.rpu_config.noise_model.g_converter
                                        .table.key)[-1] is state
        conv = after.rpu_config.noise_model.g_converter
        # Drift converts the programmed weights: the converter answers with these devices.
        got, _ = conv.convert_to_conductances(after.programmed_weights)
        assert_same(got, saved.conductances)


def test_irdrop_tile_restores_the_drifted_devices_its_forward_pass_converts(tmp_path):
    original = programmed(kind="irdrop")
    save_programmed(original, tmp_path / "chip.pt")
    restored = analog("mlp", "irdrop", converter(), seed=1)
    load_programmed(restored, tmp_path / "chip.pt")
    for before, after in zip(tiles(original), tiles(restored), strict=True):
        saved = device_state.state_of(before.programmed_weights).current
        state = device_state.state_of(after.programmed_weights).current
        assert saved is not None and state is not None
        assert state.t_inference == saved.t_inference == 3600.0
        assert_same(state.conductances, saved.conductances)
    assert torch.equal(outputs(original, "mlp"), outputs(restored, "mlp"))


def test_compiled_tile_restores_the_output_offsets_it_drew_when_created(tmp_path):
    def build() -> nn.Module:
        config = rpu_config("compiled", converter())
        config.forward.is_perfect = False  # aihwkit's periphery, without its random noise
        config.forward.v_offset_std = 0.1  # drawn per tile by the compiled simulator
        config.forward.out_noise = config.forward.inp_noise = config.forward.w_noise = 0.0
        torch.manual_seed(0)
        return convert_to_analog(mlp(), config).eval()

    original, restored = build(), build()
    extra = [tile.tile.dump_extra()["rpu.fb_pass.fwd.v_offset"] for tile in tiles(original)]
    assert extra != [tile.tile.dump_extra()["rpu.fb_pass.fwd.v_offset"]
                     for tile in tiles(restored)]
    original.drift_analog_weights(60.0)
    save_programmed(original, tmp_path / "chip.pt")
    load_programmed(restored, tmp_path / "chip.pt")
    assert [tile.tile.dump_extra() for tile in tiles(restored)] == [
        tile.tile.dump_extra() for tile in tiles(original)]
    assert torch.equal(outputs(original, "mlp"), outputs(restored, "mlp"))


def context_keys(model: nn.Module) -> List[str]:
    return [key for key, value in model.state_dict(keep_vars=True).items()
            if isinstance(value, AnalogContext)]


@pytest.mark.parametrize("kind", TILE_KINDS)
def test_the_file_holds_no_analog_context(kind, tmp_path):
    """aihwkit's AnalogContext holds no state: aihwkit 1.1.0 makes it a constant, 1.2.0 a
    view of the tile weights whose detach() is uninitialized memory (the file held that)."""
    original = programmed("mlp", kind)
    save_programmed(original, tmp_path / "chip.pt")
    saved = torch.load(tmp_path / "chip.pt", weights_only=True)["state_dict"]
    assert len(context_keys(original)) == 2
    assert not set(context_keys(original)) & saved.keys()


@pytest.mark.parametrize("kind", TILE_KINDS)
def test_a_file_with_the_analog_contexts_of_aihwkit_1_1_still_loads(kind, tmp_path):
    """Files written before held each tile's analog context as aihwkit 1.1.0 has it (a
    0-d tensor of ones); they load, on aihwkit 1.2.0 too, where the context is the
    tile's weights in placeholder mode and refuses to be written."""
    original = programmed("mlp", kind)
    path = tmp_path / "chip.pt"
    save_programmed(original, path)
    checkpoint = torch.load(path, weights_only=True)
    for key in context_keys(original):
        checkpoint["state_dict"][key] = torch.ones(())
    torch.save(checkpoint, path)
    restored = analog("mlp", kind, converter(), seed=1)
    load_programmed(restored, path)
    check_restored(original, restored, "mlp")


def test_sliced_layers_are_reached_slice_by_slice(tmp_path):
    model = programmed("sliced")
    names = [name for name, _ in model.named_analog_tiles()]
    assert names == ["0.slices.0.analog_module", "0.slices.1.analog_module",
                     "2.slices.0.analog_module", "2.slices.1.analog_module"]
    save_programmed(model, tmp_path / "chip.pt")
    saved = json.loads(torch.load(tmp_path / "chip.pt", weights_only=True)["metadata"])
    assert [entry["name"] for entry in saved["tiles"]] == names
    assert saved["extra_states"]["0._extra_state"]["n_slices"] == 2


def test_a_drift_readout_tensor_other_than_the_identity_is_stored_as_it_is(tmp_path):
    original = programmed(drift=False)
    for tile in tiles(original):
        tile.drift_readout_tensor = torch.rand_like(tile.drift_readout_tensor)
        tile.drift_baseline = tile.rpu_config.drift_compensation.readout(
            tile._forward_drift_readout_tensor())
    original.drift_analog_weights(3600.0)
    save_programmed(original, tmp_path / "chip.pt")
    checkpoint = torch.load(tmp_path / "chip.pt", weights_only=True)
    assert checkpoint["tiles"]["0.analog_module"]["drift_readout_tensor"] is not None
    restored = analog("mlp", "torch", converter(), seed=1)
    load_programmed(restored, tmp_path / "chip.pt")
    check_restored(original, restored, "mlp")


def test_the_identity_drift_readout_tensor_is_stored_as_its_size(tmp_path):
    save_programmed(programmed(), tmp_path / "chip.pt")
    checkpoint = torch.load(tmp_path / "chip.pt", weights_only=True)
    metadata = json.loads(checkpoint["metadata"])
    assert checkpoint["tiles"]["0.analog_module"]["drift_readout_tensor"] is None
    assert metadata["tiles"][0]["drift_readout_identity"] == {"size": 8, "dtype": "float32"}


# ============================================================ file and process
def test_file_loads_with_weights_only_and_holds_only_plain_values(tmp_path):
    save_programmed(programmed("digits"), tmp_path / "chip.pt")
    checkpoint = torch.load(tmp_path / "chip.pt", weights_only=True)
    assert checkpoint["format"] == FORMAT and checkpoint["version"] == FORMAT_VERSION

    def kinds(value: Any) -> set:
        if isinstance(value, dict):
            assert all(isinstance(key, str) for key in value)
            return set().union(*(kinds(v) for v in value.values())) if value else set()
        if isinstance(value, list):
            return set().union(*(kinds(v) for v in value)) if value else set()
        return {type(value)}

    assert kinds(checkpoint) <= {Tensor, str, int, float, bool, type(None)}
    metadata = json.loads(checkpoint["metadata"])
    first = metadata["tiles"][0]
    assert len(metadata["converters"]) == 1  # the four tiles share one converter record
    assert metadata["converters"][first["converter"]]["table"] == seed_table().to_dict()
    assert first["devices"]["drifted_to"] == 3600.0
    assert first["noise_model"] == "PCMLikeNoiseModel"


def test_aihwkit_converter_settings_are_recorded(tmp_path):
    save_programmed(programmed(conv_name="n_pair"), tmp_path / "chip.pt")
    metadata = json.loads(torch.load(tmp_path / "chip.pt", weights_only=True)["metadata"])
    recorded = metadata["converters"][metadata["tiles"][0]["converter"]]
    assert recorded["class"] == "NPairConductanceConverter"
    assert recorded["settings"]["f_lst"] == [1.0, 3.0]
    assert metadata["tiles"][0]["devices"] is None


RELOAD = textwrap.dedent("""
    import sys, torch
    from aihwkit.nn.conversion import convert_to_analog
    from aihwkit.simulator.configs import TorchInferenceRPUConfig
    from aihwkit_slicing import QuantizedSlicedConductanceConverter, load_programmed, seed_table
    from aihwkit_slicing.experiments.models.digits import load_digits_model
    from aihwkit_slicing.integration.rpu_configs import make_rpu_config
    conv = QuantizedSlicedConductanceConverter.from_table(seed_table())
    model = convert_to_analog(load_digits_model(), make_rpu_config(
        conv, base=TorchInferenceRPUConfig())).eval()
    load_programmed(model, sys.argv[1])
    torch.manual_seed(7)
    model.drift_analog_weights(86400.0)
    torch.save([tile.tile.get_weights() for tile in model.analog_tiles()], sys.argv[2])
""")


def test_reload_in_a_fresh_process_drifts_like_the_original(tmp_path):
    conv = converter()
    original = convert_to_analog(load_digits_model(), make_rpu_config(
        conv, base=TorchInferenceRPUConfig())).eval()
    torch.manual_seed(10)
    original.drift_analog_weights(1.0)
    save_programmed(original, tmp_path / "chip.pt")
    subprocess.run([sys.executable, "-c", RELOAD, str(tmp_path / "chip.pt"),
                    str(tmp_path / "drifted.pt")], check=True)
    there = torch.load(tmp_path / "drifted.pt", weights_only=True)
    here = drifted(original, seed=7, t_inference=86400.0)
    assert len(here) == len(there) == 4
    for want, have in zip(here, there):
        assert torch.equal(want, have)


def test_save_refuses_a_model_without_analog_tiles(tmp_path):
    with pytest.raises(ValueError, match="not an aihwkit analog model"):
        save_programmed(mlp(), tmp_path / "chip.pt")
    assert not (tmp_path / "chip.pt").exists()


# ==================================================================== bad files
def expect_refusal(model: nn.Module, path: Any, *fragments: str) -> None:
    """``load_programmed`` raises a ValueError naming the file and the problem, and
    leaves ``model`` exactly as it was."""
    before = snapshot(model)
    states = [tile["device_state"] for tile in before["tiles"]]
    with pytest.raises(ValueError) as raised:
        load_programmed(model, path)
    message = str(raised.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, message
    after = snapshot(model)
    assert_same(before, after, "model")
    assert [tile["device_state"] for tile in after["tiles"]] == states


@pytest.fixture
def target() -> nn.Module:
    """A programmed, drifted model that a bad file must leave alone."""
    model = analog("mlp", "torch", converter(), seed=3)
    torch.manual_seed(4)
    model.drift_analog_weights(60.0)
    return model


@pytest.fixture
def good_file(tmp_path) -> Any:
    path = tmp_path / "chip.pt"
    save_programmed(programmed(), path)
    return path


def test_a_file_that_is_not_a_torch_file_is_refused(target, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not a checkpoint\n")
    expect_refusal(target, path, "not a programmed-chip checkpoint", "not a torch file")


def test_a_plain_state_dict_is_refused(target, tmp_path):
    path = tmp_path / "state.pt"
    torch.save({k: v for k, v in target.state_dict().items() if isinstance(v, Tensor)}, path)
    expect_refusal(target, path, "not a programmed-chip checkpoint", "expected format")


def test_a_pickled_whole_model_is_refused_without_unpickling_it(target, tmp_path):
    path = tmp_path / "model.pt"
    torch.save(mlp(), path)
    expect_refusal(target, path, "weights_only=True", "pickled Python objects")


@pytest.mark.parametrize("fraction", [0.0, 0.5, 0.99])
def test_a_truncated_file_is_refused(target, good_file, fraction):
    data = good_file.read_bytes()
    good_file.write_bytes(data[:int(len(data) * fraction)])
    expect_refusal(target, good_file, "cannot read", "truncated")


def test_another_format_version_is_refused(target, good_file):
    checkpoint = torch.load(good_file, weights_only=True)
    checkpoint["version"] = FORMAT_VERSION + 1
    torch.save(checkpoint, good_file)
    expect_refusal(target, good_file, f"format version {FORMAT_VERSION + 1}")


def test_another_tile_count_is_refused(good_file, tmp_path):
    torch.manual_seed(0)
    three_layers = convert_to_analog(nn.Sequential(
        nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 2)),
        rpu_config("torch", converter())).eval()
    three_layers.drift_analog_weights(60.0)
    expect_refusal(three_layers, good_file, "the file has 2 analog tiles", "the model 3")


def test_another_shape_in_the_last_tile_is_refused_before_the_first_tile_changes(good_file):
    torch.manual_seed(0)
    model = convert_to_analog(mlp(outputs=2), rpu_config("torch", converter())).eval()
    model.drift_analog_weights(60.0)
    expect_refusal(model, good_file, "tile '2.analog_module'", "(4, 6)", "(2, 6)")


def test_another_architecture_is_refused(good_file):
    model = analog("branchy", "torch", converter())
    expect_refusal(model, good_file, "saved from another model")


def test_another_programming_table_is_refused(good_file):
    model = analog("mlp", "torch", converter(table=bit_sliced(2, 4)), seed=1)
    model.drift_analog_weights(60.0)
    expect_refusal(model, good_file, "another programming table", "'seed'", "f_lst=[1.0, 4.0]")


def test_another_converter_class_is_refused(good_file):
    model = analog("mlp", "torch", converter("single_pair"), seed=1)
    expect_refusal(model, good_file, "QuantizedSlicedConductanceConverter",
                   "SinglePairConductanceConverter")


def test_another_tile_class_is_refused(good_file):
    model = analog("mlp", "irdrop", converter(), seed=1)
    expect_refusal(model, good_file, "TorchSimulatorTile in the file",
                   "TorchSimulatorTileIRDropT in the model")


def test_compiled_and_torch_tiles_do_not_stand_in_for_each_other(good_file):
    model = analog("mlp", "compiled", converter(), seed=1)
    expect_refusal(model, good_file, "TorchInferenceTile in the file",
                   "InferenceTile in the model")


def test_conductances_that_do_not_give_the_programmed_weights_are_refused(target, good_file):
    checkpoint = torch.load(good_file, weights_only=True)
    devices = checkpoint["tiles"]["2.analog_module"]["devices"]["conductances"]
    devices[1][0, 0] += 1.0  # one device of one weight, in microsiemens
    torch.save(checkpoint, good_file)
    expect_refusal(target, good_file, "tile '2.analog_module'", "do not decode")


def test_a_missing_state_dict_entry_is_refused(target, good_file):
    checkpoint = torch.load(good_file, weights_only=True)
    del checkpoint["state_dict"]["2.analog_module.bias"]
    torch.save(checkpoint, good_file)
    expect_refusal(target, good_file, "'2.analog_module.bias'", "missing in the file")


# ====================================================================== example
def test_example_evaluates_the_saved_chip_as_the_programming_process(tmp_path):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "examples" / "checkpoint.py"
    spec = importlib.util.spec_from_file_location("checkpoint_example", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    model = example.program_and_save("seed table", tmp_path / "chip.pt")
    restored = example.evaluate("seed table", tmp_path / "chip.pt")
    assert restored == example.drift_accuracies(model)
    assert len(restored) == 3 and all(0.9 < a <= 1.0 for a in restored)


# ============================== a checkpoint loads only into the model it describes
def one_layer(layer: nn.Module, compensation: bool = True, **noise: Any) -> nn.Module:
    config = make_rpu_config(converter(), compensation=compensation,
                             base=TorchInferenceRPUConfig())
    for key, value in noise.items():
        setattr(config.noise_model, key, value)
    return convert_to_analog(nn.Sequential(layer), config).eval()


def saved_chip(tmp_path, **kwargs: Any):
    torch.manual_seed(3)
    model = one_layer(nn.Linear(16, 8), **kwargs)
    model.program_analog_weights()
    model.drift_analog_weights(3600.0)
    save_programmed(model, tmp_path / "chip.pt")
    return tmp_path / "chip.pt"


@pytest.mark.parametrize("saved, loaded", [(True, False), (False, True)])
def test_a_chip_loads_only_into_a_model_with_its_drift_compensation(tmp_path, saved, loaded):
    path = saved_chip(tmp_path, compensation=saved)
    with pytest.raises(ValueError, match="drift compensation"):
        load_programmed(one_layer(nn.Linear(16, 8), compensation=loaded), path)


def test_a_linear_chip_does_not_load_into_a_conv_layer_of_the_same_tile_shape(tmp_path):
    path = saved_chip(tmp_path)
    conv = one_layer(nn.Conv2d(4, 8, 2))  # also an [8, 16] tile
    assert tiles(conv)[0].tile.get_weights().shape == (8, 16)
    with pytest.raises(ValueError, match="AnalogLinear in the file, a AnalogConv2d"):
        load_programmed(conv, path)


def test_a_chip_does_not_load_under_other_noise_model_parameters(tmp_path):
    path = saved_chip(tmp_path)
    with pytest.raises(ValueError, match="noise-model parameters"):
        load_programmed(one_layer(nn.Linear(16, 8), prog_noise_scale=0.5), path)


def test_a_chip_does_not_load_under_another_weight_mapping_naming_it(tmp_path):
    path = saved_chip(tmp_path)
    model = one_layer(nn.Linear(16, 8))
    tiles(model)[0].rpu_config.mapping.weight_scaling_omega = 0.0
    with pytest.raises(ValueError, match="its mapping differs"):
        load_programmed(model, path)


def test_the_saved_model_class_is_checked(tmp_path):
    path = saved_chip(tmp_path)
    torch.manual_seed(0)
    config = make_rpu_config(converter(), base=TorchInferenceRPUConfig())
    other = convert_to_analog(nn.Linear(16, 8), config).eval()  # the layer itself, no Sequential
    with pytest.raises(ValueError, match="saved from another model"):
        load_programmed(other, path)
