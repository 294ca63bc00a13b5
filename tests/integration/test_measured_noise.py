"""Differential and unit tests of the measured noise model (``MeasuredNoiseModel``).

* Against ``PCMLikeNoiseModel``: with each level's statistics taken from the PCM
  model's own formulas at that level, the programmed and drifted conductances of every
  device and level (mean and std over 20,000 devices) match aihwkit's within sampling
  error, through the same converter and aihwkit's own ``apply_programming_noise`` /
  ``apply_drift_noise``.
* Exactly: with zero noise and one drift exponent every drifted device equals
  ``g * ((t + t0) / t0) ** -nu``; zero noise everywhere equals the ``"none"`` model.
* Stuck devices: the fraction drawn, and a stuck device drifts with its stuck level.
* The bundled device models are aihwkit's fits at their levels.

(Every tile class and drift compensation: ``test_aihwkit_layers_and_noise_models.py``
runs "measured" with the other noise models.)
"""

from __future__ import annotations

import math

import pytest
import torch
from aihwkit.inference import GlobalDriftCompensation, PCMLikeNoiseModel
from aihwkit.inference.converter.conductance import SinglePairConductanceConverter
from aihwkit.inference.noise.hermes import HermesNoiseModel
from aihwkit.inference.noise.reram import ReRamWan2022NoiseModel
from aihwkit.nn import AnalogLinear
from aihwkit.simulator.configs import TorchInferenceRPUConfig

from aihwkit_slicing import (
    DeviceModel,
    MeasuredNoiseModel,
    QuantizedSlicedConductanceConverter,
    bit_sliced,
    single_pair,
)
from aihwkit_slicing.core.device_model import bundled_device_models
from aihwkit_slicing.core.device_state import state_of
from aihwkit_slicing.integration.noise_models import NOISE_MODELS, build_noise_model
from aihwkit_slicing.integration.setting import noise_params

N_DEVICES = 20_000
#: |difference| / its standard error above which a mean or std counts as different.
Z_MAX = 5.0

# ------------------------------------------------------------------ PCM's formulas
PCM_G_MAX, PCM_T0, PCM_T_READ = 25.0, 20.0, 250.0e-9


def pcm_level_statistics(g: float, t_inference: float) -> tuple:
    """PCMLikeNoiseModel's default formulas (aihwkit 1.1.0 ``pcm.py``) at ``g`` uS.

    Programming std and drift exponent mean and std are the model's own at ``g``. Its
    read noise is relative to each device's drifted conductance, ``|g_drift| * q_s *
    sqrt(log((t + t_read) / (2 t_read)))``; the std in microsiemens at a level is that
    times the root mean square of ``g_drift`` over the level's devices:
    ``E[g_prog**2] = g**2 + prog_std**2`` and ``E[((t / t0) ** -nu) ** 2] =
    exp(-2 mu L + 2 sigma**2 L**2)`` for ``nu ~ N(mu, sigma)``, ``L = log(t / t0)``.
    """
    x = g / PCM_G_MAX
    prog = 0.26348 + 1.9650 * x - 1.1731 * x ** 2
    log_x = math.log(max(x, 1e-7))
    mu = min(max(-0.0155 * log_x + 0.0244, 0.049), 0.1)
    sigma = min(max(-0.0125 * log_x - 0.0059, 0.008), 0.045)
    q_s = min(0.0088 / max(x ** 0.65, 1e-3), 0.2)
    t = t_inference + PCM_T0
    accumulated = q_s * math.sqrt(math.log((t + PCM_T_READ) / (2 * PCM_T_READ)))
    log_t = math.log(t / PCM_T0)
    mean_square_drift = math.exp(-2 * mu * log_t + 2 * sigma ** 2 * log_t ** 2)
    read = accumulated * math.sqrt((g * g + prog * prog) * mean_square_drift)
    return prog, mu, sigma, read


def pcm_device_model(levels, t_inference: float) -> DeviceModel:
    stats = [pcm_level_statistics(g, t_inference) for g in levels]
    return DeviceModel(levels=tuple(levels), prog_std=tuple(s[0] for s in stats),
                       nu_mean=tuple(s[1] for s in stats), nu_std=tuple(s[2] for s in stats),
                       read_std=tuple(s[3] for s in stats), t0=PCM_T0, name="pcm formulas")


def device_levels(table) -> list:
    return sorted({float(g) for g in table.conductances.ravel()})


def programmed_and_drifted(noise_model, weights, t_inference, seed):
    """Per device, the programmed and the drifted conductances (aihwkit's own calls)."""
    torch.manual_seed(seed)
    programmed, parameters = noise_model.apply_programming_noise(weights)
    drifted = noise_model.apply_drift_noise(programmed, parameters, t_inference)
    return state_of(programmed).conductances, state_of(drifted).conductances


def z_scores(a: torch.Tensor, b: torch.Tensor) -> tuple:
    """(z of the difference of means, z of the difference of stds), with the standard
    error of a std from each sample's kurtosis (the drifted conductances are skewed)."""
    a, b = a.double(), b.double()

    def se_std(x):
        centered = x - x.mean()
        kurtosis = float((centered ** 4).mean() / x.var() ** 2)
        return float(x.std()) * math.sqrt(max(kurtosis - 1, 0.0) / (4 * len(x)))

    z_mean = float(a.mean() - b.mean()) / math.sqrt(float(a.var() / len(a) + b.var() / len(b)))
    se = math.hypot(se_std(a), se_std(b))
    z_std = float(a.std() - b.std()) / se if se > 0 else (0.0 if a.std() == b.std() else math.inf)
    return z_mean, z_std


@pytest.mark.parametrize("table,t_inference", [
    (single_pair(6), 3600.0),
    (single_pair(6), 31536000.0),
    (bit_sliced(2, 4), 86400.0),
], ids=["1x6lvl-1h", "1x6lvl-1y", "2x4lvl-1d"])
def test_programmed_and_drifted_conductances_match_pcm_per_level(table, t_inference):
    converter = QuantizedSlicedConductanceConverter.from_table(table)
    levels = device_levels(table)
    measured = MeasuredNoiseModel(pcm_device_model(levels, t_inference), g_converter=converter)
    pcm = PCMLikeNoiseModel(g_converter=converter)
    # every level of the table, N_DEVICES times (scale "max": the weights are the levels)
    weights = torch.tensor(table.levels, dtype=torch.float32)[:, None].repeat(1, N_DEVICES)
    targets, _ = converter.convert_to_conductances(weights)
    ours = programmed_and_drifted(measured, weights, t_inference, seed=1)
    theirs = programmed_and_drifted(pcm, weights, t_inference, seed=2)
    compared = 0
    for device in range(table.n_devices):
        for level in levels:
            at_level = targets[device] == level
            if int(at_level.sum()) < N_DEVICES:
                continue
            for stage, what in enumerate(("programmed", "drifted")):
                a, b = ours[stage][device][at_level], theirs[stage][device][at_level]
                z_mean, z_std = z_scores(a, b)
                where = f"device {device}, level {level:g} uS, {what}"
                if level == 0.0 and what == "drifted":
                    # PCMLikeNoiseModel's read noise is proportional to each device's own
                    # conductance: the half of the off devices programmed to exactly 0 uS
                    # (clipped) stay there, which a per-level std in uS cannot express.
                    # The difference is bounded: under 0.2 % of g_max (docs/devices.md).
                    assert abs(float(a.double().mean() - b.double().mean())) < 0.002 * 25
                    assert abs(float(a.double().std() - b.double().std())) < 0.002 * 25
                    continue
                assert abs(z_mean) < Z_MAX, f"{where}: mean {a.mean():.5g} vs {b.mean():.5g}"
                assert abs(z_std) < Z_MAX, f"{where}: std {a.std():.5g} vs {b.std():.5g}"
                compared += 1
    assert compared >= 2 * (table.n_devices * (len(levels) - 1) - 1)


def test_the_differential_comparison_sees_a_wrong_level_statistic():
    """The comparison above is sharp: 5 % more programming noise at one level fails it."""
    table = single_pair(6)
    converter = QuantizedSlicedConductanceConverter.from_table(table)
    right = pcm_device_model(device_levels(table), 3600.0)
    wrong = DeviceModel(levels=right.levels, prog_std=right.prog_std[:3] + (
        right.prog_std[3] * 1.05,) + right.prog_std[4:], nu_mean=right.nu_mean,
        nu_std=right.nu_std, read_std=right.read_std, t0=right.t0)
    weights = torch.full((1, N_DEVICES + 1), 15.0)  # gp0 at level 3: 15 uS
    weights[0, 0] = 25.0  # the largest weight: "max" scaling keeps weights in uS
    assert torch.all(converter.convert_to_conductances(weights)[0][0][0, 1:] == 15.0)
    pcm = programmed_and_drifted(PCMLikeNoiseModel(g_converter=converter), weights, 3600.0, 2)
    z = {}
    for name, device in (("right", right), ("wrong", wrong)):
        ours = programmed_and_drifted(MeasuredNoiseModel(device, g_converter=converter),
                                      weights, 3600.0, 1)
        z[name] = z_scores(ours[0][0][0, 1:], pcm[0][0][0, 1:])[1]
    assert abs(z["right"]) < Z_MAX < abs(z["wrong"])


# ------------------------------------------------------------------ exact cases
@pytest.mark.parametrize("nu", [0.05, -0.02])
def test_with_zero_noise_and_one_drift_exponent_every_device_drifts_exactly(nu):
    table = bit_sliced(2, 4)
    levels = device_levels(table)
    device = DeviceModel.constant(levels, t0=30.0, nu_mean=nu)
    converter = QuantizedSlicedConductanceConverter.from_table(table)
    model = MeasuredNoiseModel(device, g_converter=converter)
    torch.manual_seed(0)
    weights = torch.randn(16, 32)
    targets, _ = converter.convert_to_conductances(weights)
    programmed, parameters = model.apply_programming_noise(weights)
    assert all(torch.equal(g, t) for g, t in zip(state_of(programmed).conductances, targets))
    for t in (0.0, 1.0, 3600.0, 31536000.0):
        drifted = model.apply_drift_noise(programmed, parameters, t)
        for g, target in zip(state_of(drifted).conductances, targets):
            nu_tensor = torch.full_like(target, nu)
            assert torch.equal(g, target * ((t + 30.0) / 30.0) ** -nu_tensor)
            reference = target.double() * ((t + 30.0) / 30.0) ** -nu  # float64 formula
            assert torch.allclose(g.double(), reference, rtol=2e-7, atol=0)

    # through a tile: the drifted weights the tile holds are those devices' weights
    config = TorchInferenceRPUConfig()
    config.noise_model = model
    layer = AnalogLinear(32, 16, bias=False, rpu_config=config).eval()
    layer.set_weights(weights)
    layer.program_analog_weights()
    layer.drift_analog_weights(86400.0)
    tile = next(layer.analog_tiles())
    state = state_of(tile.programmed_weights)
    expected = [g * ((86400.0 + 30.0) / 30.0) ** -torch.full_like(g, nu)
                for g in state.conductances]
    assert torch.equal(tile.tile.get_weights(),
                       converter.quantizer.decode(expected, state.scale))


def test_zero_noise_everywhere_equals_the_none_model_with_drift_compensation():
    table = bit_sliced(2, 4)
    device = DeviceModel.constant(device_levels(table))
    outputs, weights = [], []
    for noise_model in (NOISE_MODELS["none"], lambda conv: MeasuredNoiseModel(
            device, g_converter=conv)):
        config = TorchInferenceRPUConfig()
        config.noise_model = noise_model(QuantizedSlicedConductanceConverter.from_table(table))
        config.drift_compensation = GlobalDriftCompensation()
        config.forward.is_perfect = True  # only the weights differ between the runs
        torch.manual_seed(3)
        layer = AnalogLinear(24, 12, rpu_config=config).eval()
        x = torch.rand(5, 24)
        layer.program_analog_weights()
        layer.drift_analog_weights(31536000.0)
        outputs.append(layer(x))
        weights.append(next(layer.analog_tiles()).tile.get_weights())
    assert torch.equal(weights[0], weights[1]) and torch.equal(outputs[0], outputs[1])


# ------------------------------------------------------------------ stuck devices
def test_stuck_devices_hold_their_level_and_drift_with_its_statistics():
    levels = [0.0, 25 / 3, 50 / 3, 25.0]
    device = DeviceModel(levels=tuple(levels), prog_std=(0.0,) * 4, nu_mean=(0, 0, 0, 0.1),
                         nu_std=(0.0,) * 4, read_std=(0.0,) * 4, stuck=(0.0, 0.0, 0.05, 0.2),
                         t0=20.0)
    table = bit_sliced(2, 4)
    config = TorchInferenceRPUConfig()
    config.noise_model = MeasuredNoiseModel.from_table(table.with_device(device))
    layer = AnalogLinear(100, 100, bias=False, rpu_config=config).eval()
    layer.set_weights(torch.zeros(100, 100))  # every device targets 0 uS
    torch.manual_seed(0)
    layer.program_analog_weights()
    tile = next(layer.analog_tiles())
    programmed = torch.stack(state_of(tile.programmed_weights).conductances)
    n = programmed.numel()
    for level, fraction in ((25.0, 0.2), (50 / 3, 0.05)):
        count = int((programmed == torch.tensor(level)).sum())
        assert abs(count - n * fraction) < 5 * math.sqrt(n * fraction * (1 - fraction))
    assert int(((programmed != 0) & (programmed != 25.0)
                & (programmed != torch.tensor(50 / 3))).sum()) == 0
    # only the devices stuck at the top level drift, by (t + t0) / t0) ** -0.1
    drifted = [model_g for model_g in tile.rpu_config.noise_model.apply_drift_noise(
        tile.programmed_weights, tile.drift_noise_parameters, 1000.0).__dict__[
        "_aihwkit_slicing_devices"].conductances]
    drifted = torch.stack(drifted)
    top = programmed == 25.0
    assert torch.equal(drifted[~top], programmed[~top])
    assert torch.allclose(drifted[top], torch.tensor(25.0 * (1020 / 20) ** -0.1))


# ------------------------------------------------------------------ refusals, records
def test_what_the_model_cannot_program_is_refused_in_one_line():
    table = bit_sliced(2, 4, name="bits")
    converter = QuantizedSlicedConductanceConverter.from_table(table)
    weights = torch.randn(4, 4)
    with pytest.raises(ValueError, match="^table bits has no device model; the measured noise "
                                         "model takes each table's own"):
        NOISE_MODELS["measured"](converter).apply_programming_noise(weights)
    with pytest.raises(ValueError, match="^the measured noise model has no device model: its "
                                         "converter SinglePairConductanceConverter programs no "
                                         "table"):
        MeasuredNoiseModel().apply_programming_noise(weights)
    other = MeasuredNoiseModel(DeviceModel.constant([0.0, 10.0, 25.0]), g_converter=converter)
    with pytest.raises(ValueError, match="^conductance 8.33333 uS is not a level of the device "
                                         r"model \(unnamed\) \(nearest: levels\[1\] = 10 uS\)"):
        other.apply_programming_noise(weights)
    with pytest.raises(ValueError, match="^table bits has no device model"):
        MeasuredNoiseModel.from_table(table)
    with pytest.raises(ValueError, match="^drift_scale must be a finite number >= 0, got -1"):
        MeasuredNoiseModel(drift_scale=-1)


def test_the_recorded_parameters_name_the_device_model_and_changed_scales():
    table = bit_sliced(2, 4)
    one = DeviceModel.constant(device_levels(table), prog_std=0.5)
    two = DeviceModel.constant(device_levels(table), prog_std=0.6)
    converter = QuantizedSlicedConductanceConverter.from_table(table.with_device(one))
    follows = build_noise_model("measured", converter)
    assert noise_params(follows) == f'{{"device_model": "{one.content_hash()}"}}'
    pinned = build_noise_model(MeasuredNoiseModel(two, read_noise_scale=0.5), converter)
    assert noise_params(pinned) == (f'{{"device_model": "{two.content_hash()}", '
                                    '"read_noise_scale": 0.5}')
    probe = build_noise_model("measured", SinglePairConductanceConverter())
    assert noise_params(probe) == '{"device_model": "from each table"}'
    assert pinned.g_max == converter.g_max == 25.0


def test_scales_multiply_each_statistic():
    table = single_pair(4)
    device = DeviceModel.constant(device_levels(table), prog_std=1.0, nu_mean=0.1,
                                  read_std=2.0)
    model = MeasuredNoiseModel(device, g_converter=QuantizedSlicedConductanceConverter
                               .from_table(table), prog_noise_scale=0.0, drift_scale=0.5,
                               read_noise_scale=0.25)
    target = torch.full((4000,), 25.0)
    g_prog, parameters = model.program_conductance(target)
    assert torch.equal(g_prog, target)
    assert torch.allclose(parameters[0], torch.tensor(0.05))
    assert torch.allclose(parameters[1], torch.tensor(0.5))
    drifted = model.apply_drift_noise_to_conductance(g_prog, parameters, 0.0)
    assert abs(float((drifted - 25.0).std()) - 0.5) < 0.05


# ------------------------------------------------------------------ bundled numbers
def _sigma_seen(apply, g: float, *args) -> float:
    """The std aihwkit's model draws at ``g`` uS: ``(out - g) / randn`` with the same draw."""
    target = torch.full((64,), g)
    torch.manual_seed(5)
    draw = torch.randn(64)
    torch.manual_seed(5)
    out = apply(target, *args)
    kept = out > 0
    return float(((out - g)[kept] / draw[kept]).median())


def test_the_bundled_pcm_is_aihwkits_hermes_fit_at_its_levels():
    device = bundled_device_models()["pcm-hermes-2023"]
    hermes = HermesNoiseModel(num_devices=1, g_converter=SinglePairConductanceConverter(
        g_max=10.35))
    assert device.t0 == hermes.t_0 == 200.0
    for i, g in enumerate(device.levels):
        prog = _sigma_seen(hermes.apply_programming_noise_to_conductance, g)
        assert math.isclose(prog, device.prog_std[i], rel_tol=1e-4), (g, prog)
        torch.manual_seed(5)
        draw = torch.randn(64)
        torch.manual_seed(5)
        nu = hermes.generate_drift_coefficients(torch.full((64,), g))
        expected = (device.nu_mean[i] + device.nu_std[i] * draw).abs()
        assert torch.allclose(nu, expected, rtol=1e-4, atol=1e-6), g
        if g == 0.0:
            continue
        # accumulated 1/f noise one day after programming, at the mean drifted level:
        # the fit draws g_drift * (1 + q_s * sqrt(log(...)) * randn)
        t = 86400.0
        drifted = g * ((t + 200.0) / 200.0) ** -device.nu_mean[i]
        torch.manual_seed(5)
        draw = torch.randn(64)
        torch.manual_seed(5)
        out = hermes.apply_drift_noise_to_conductance(
            torch.full((64,), g), torch.full((64,), device.nu_mean[i]), t)
        read = float(((out.double() - drifted) / draw.double()).median())
        assert math.isclose(read, device.read_std[i], rel_tol=1e-3), (g, read)


def test_the_bundled_reram_is_aihwkits_wan_fit_at_its_levels():
    device = bundled_device_models()["reram-wan-2022"]
    wan = ReRamWan2022NoiseModel(g_converter=SinglePairConductanceConverter(g_max=40.0))
    for i, g in enumerate(device.levels):
        at_1s = _sigma_seen(wan.apply_programming_noise_to_conductance, g)
        at_1day = _sigma_seen(lambda target: wan.apply_drift_noise_to_conductance(
            target, target, 86400.0), g)
        assert math.isclose(at_1s, device.prog_std[i], rel_tol=1e-4), g
        assert math.isclose(math.hypot(device.prog_std[i], device.read_std[i]), at_1day,
                            rel_tol=1e-4), g
        assert device.nu_mean[i] == device.nu_std[i] == 0.0


# ------------------------------------------------------------------ checkpoints
def test_a_chip_programmed_with_a_measured_device_restores_and_drifts_alike(tmp_path):
    from aihwkit_slicing import load_programmed, save_programmed

    table = bit_sliced(2, 4).with_device(DeviceModel.constant(
        [0.0, 25 / 3, 50 / 3, 25.0], prog_std=0.4, nu_mean=0.05, nu_std=0.01, read_std=0.1))

    def chip():
        config = TorchInferenceRPUConfig()
        config.noise_model = MeasuredNoiseModel.from_table(table)
        config.drift_compensation = GlobalDriftCompensation()
        config.forward.is_perfect = True
        torch.manual_seed(0)
        return AnalogLinear(16, 8, rpu_config=config).eval()

    original = chip()
    original.program_analog_weights()
    save_programmed(original, tmp_path / "chip.pt")
    restored = chip()
    load_programmed(restored, tmp_path / "chip.pt")
    for model in (original, restored):
        torch.manual_seed(7)
        model.drift_analog_weights(86400.0)
    x = torch.rand(3, 16)
    assert torch.equal(original(x), restored(x))
    assert torch.equal(original.get_weights()[0], restored.get_weights()[0])
    other = chip()
    next(other.analog_tiles()).rpu_config.noise_model = MeasuredNoiseModel(
        DeviceModel.constant([0.0, 25 / 3, 50 / 3, 25.0]),
        g_converter=QuantizedSlicedConductanceConverter.from_table(table))
    with pytest.raises(ValueError, match="device_model"):  # another device: refused
        load_programmed(other, tmp_path / "chip.pt")


# ------------------------------------------------------------------ dtypes, CUDA
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_other_dtypes_keep_their_dtype_and_levels(dtype):
    table = bit_sliced(2, 4)
    device = DeviceModel.constant(device_levels(table), nu_mean=0.05, read_std=0.0)
    model = MeasuredNoiseModel(device, g_converter=QuantizedSlicedConductanceConverter
                               .from_table(table))
    target = torch.tensor(device.levels, dtype=dtype).repeat(50)
    g_prog, parameters = model.program_conductance(target)
    assert g_prog.dtype == parameters.dtype == dtype and torch.equal(g_prog, target)
    drifted = model.apply_drift_noise_to_conductance(g_prog, parameters, 3600.0)
    assert drifted.dtype == dtype
    expected = target.double() * ((3600.0 + 20.0) / 20.0) ** -0.05
    tolerance = 1e-3 if dtype == torch.float16 else 1e-12
    assert torch.allclose(drifted.double(), expected, rtol=tolerance, atol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cuda_tile_programs_and_drifts_its_devices_as_the_cpu():
    levels = [0.0, 25 / 3, 50 / 3, 25.0]
    exact = DeviceModel.constant(levels, nu_mean=0.05)
    noisy = DeviceModel(levels=tuple(levels), prog_std=(0.3,) * 4, nu_mean=(0.05,) * 4,
                        nu_std=(0.01,) * 4, read_std=(0.1,) * 4, stuck=(0.0, 0.0, 0.0, 0.01),
                        t0=20.0)
    weights = {}
    for where in ("cpu", "cuda"):
        config = TorchInferenceRPUConfig()
        config.forward.is_perfect = True
        config.noise_model = MeasuredNoiseModel.from_table(bit_sliced(2, 4).with_device(exact))
        torch.manual_seed(0)
        layer = AnalogLinear(32, 16, bias=False, rpu_config=config).eval().to(where)
        layer.program_analog_weights()
        layer.drift_analog_weights(86400.0)
        weights[where] = next(layer.analog_tiles()).tile.get_weights().cpu()
    assert torch.allclose(weights["cuda"], weights["cpu"], rtol=1e-6, atol=1e-7)
    config = TorchInferenceRPUConfig()
    config.noise_model = MeasuredNoiseModel.from_table(bit_sliced(2, 4).with_device(noisy))
    layer = AnalogLinear(32, 16, rpu_config=config).eval().cuda()
    layer.program_analog_weights()
    layer.drift_analog_weights(86400.0)
    assert torch.isfinite(layer(torch.rand(4, 32, device="cuda"))).all()
