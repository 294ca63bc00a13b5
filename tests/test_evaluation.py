"""The sweep API: record shape, reproducibility, agreement with floating point."""

import math

import pytest
import torch

from aihwkit_slicing import QuantizedSlicedConductanceConverter, seed_table
from aihwkit_slicing.catalog import make_converter
from aihwkit_slicing.metrics import weight_errors
from aihwkit_slicing.plotting import plot_metric_vs_time
from aihwkit_slicing.results import RECORD_FIELDS, SweepResult, format_time
from aihwkit_slicing.rpu_configs import make_rpu_config
from aihwkit_slicing.sweep import iter_times, run_sweep
from aihwkit_slicing.tasks import digits_task
from aihwkit_slicing.models.digits import accuracy, load_digits_model, load_digits_split


@pytest.fixture(scope="module")
def task():
    return digits_task()


def test_bundled_digits_network_reaches_97_percent_in_floating_point():
    _, _, x_test, y_test = load_digits_split()
    assert len(x_test) == 540  # the fixed 30 % split
    assert accuracy(load_digits_model(), x_test, y_test) >= 0.97


def test_sweep_returns_one_record_per_table_noise_compensation_repeat_and_time(task):
    result = run_sweep(task, tables=["aihwkit-1pair", "seed"], noise_models=["pcm", "hermes"],
                       times=[1.0, 3600.0, 86400.0], repeats=2, compensation=[True, False],
                       progress=False)
    assert len(result.records) == 2 * 2 * 2 * 2 * 3
    for record in result.records:
        assert set(RECORD_FIELDS) <= set(record)
        assert 0.0 <= record["value"] <= 1.0
        assert record["weight_rms_error"] >= 0 and math.isfinite(record["weight_rms_error"])
    combos = {(r["table"], r["noise_model"], r["compensation"], r["t_inference"], r["repeat"])
              for r in result.records}
    assert len(combos) == len(result.records)
    assert {r["n_devices"] for r in result.records if r["table"] == "seed"} == {4}
    summary = result.summary()
    assert len(summary) == 2 * 2 * 2 * 3
    assert all(row["repeats"] == 2 for row in summary)


def test_sweep_is_reproducible_for_a_seed_and_changes_with_it(task):
    kwargs = dict(tables=["seed"], times=[86400.0], repeats=2, progress=False)
    first = run_sweep(task, seed=3, **kwargs)
    second = run_sweep(task, seed=3, **kwargs)
    other = run_sweep(task, seed=4, **kwargs)
    assert [r["value"] for r in first.records] == [r["value"] for r in second.records]
    assert ([r["weight_rms_error"] for r in first.records]
            == [r["weight_rms_error"] for r in second.records])
    assert ([r["weight_rms_error"] for r in first.records]
            != [r["weight_rms_error"] for r in other.records])


def test_without_noise_the_continuous_baseline_matches_floating_point_accuracy(task):
    result = run_sweep(task, tables=["aihwkit-1pair"], noise_models=["none"],
                       times=[1.0, 31536000.0], repeats=1, compensation=False, progress=False)
    for record in result.records:
        assert record["value"] == pytest.approx(result.reference["accuracy"], abs=1e-12)
        assert record["weight_rms_error"] < 1e-6


def test_without_noise_a_table_scores_like_the_quantized_floating_point_model(task):
    """The analog network with noise off equals the digital network with quantized weights."""
    converter = QuantizedSlicedConductanceConverter.from_table(seed_table())
    quantized = load_digits_model()
    with torch.no_grad():
        for module in quantized.modules():
            if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
                flat = module.weight.reshape(module.weight.shape[0], -1)
                module.weight.copy_(converter.quantize(flat).reshape(module.weight.shape))
    _, _, x_test, y_test = load_digits_split()
    expected = accuracy(quantized, x_test, y_test)
    result = run_sweep(task, tables=["seed"], noise_models=["none"], times=[1.0], repeats=1,
                       compensation=False, progress=False)
    assert result.records[0]["value"] == pytest.approx(expected, abs=1e-12)
    assert expected < result.reference["accuracy"] + 1e-12


def test_drift_lowers_uncompensated_weights_more_than_compensated(task):
    result = run_sweep(task, tables=["aihwkit-1pair"], times=[31536000.0], repeats=1,
                       compensation=[True, False], progress=False)
    error = {r["compensation"]: r["weight_rms_error"] for r in result.records}
    assert error[False] > 1.5 * error[True]


def test_weight_errors_are_zero_before_any_noise():
    from aihwkit.nn.conversion import convert_to_analog

    model = load_digits_model()
    config = make_rpu_config(make_converter("aihwkit-1pair"), "none", compensation=False)
    analog = convert_to_analog(model, config, ensure_analog_root=True).eval()
    analog.program_analog_weights()
    stats = weight_errors(analog)
    assert stats["weight_rms_error"] < 1e-6 and stats["weight_max_error"] < 1e-5


def test_results_are_written_as_csv_and_png(task, tmp_path):
    result = run_sweep(task, tables=["seed"], times=[1.0, 3600.0], repeats=2, progress=False)
    csv_path = result.write_csv(tmp_path / "results.csv")
    lines = csv_path.read_text().splitlines()
    assert lines[0].split(",")[: len(RECORD_FIELDS)] == RECORD_FIELDS
    assert len(lines) == 1 + 4
    plot_metric_vs_time(result, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").read_bytes()[:4] == b"\x89PNG"
    text = result.format_summary()
    assert "seed" in text and "1 h" in text


@pytest.mark.parametrize("bad", [[], [-1.0], [float("nan")], ["x"]])
def test_sweep_rejects_bad_times(task, bad):
    with pytest.raises(ValueError, match="times"):
        run_sweep(task, tables=["seed"], times=bad, progress=False)


@pytest.mark.parametrize("bad", [0, -2, 1.5, True])
def test_sweep_rejects_bad_repeats(task, bad):
    with pytest.raises(ValueError, match="repeats"):
        run_sweep(task, tables=["seed"], times=[1.0], repeats=bad, progress=False)


def test_sweep_rejects_unknown_tables_and_noise_models(task):
    with pytest.raises(ValueError, match="unknown table 'nope'"):
        run_sweep(task, tables=["nope"], times=[1.0], progress=False)
    with pytest.raises(ValueError, match="unknown noise model 'nope'"):
        run_sweep(task, tables=["seed"], noise_models=["nope"], times=[1.0], progress=False)


def test_reram_noise_model_names_the_times_it_supports(task):
    with pytest.raises(ValueError, match="only knows the times"):
        run_sweep(task, tables=["seed"], noise_models=["reram"], times=[3600.0],
                  progress=False)


def test_rpu_config_presets():
    converter = make_converter("seed")
    ideal = make_rpu_config(converter)
    assert ideal.forward.is_perfect and ideal.drift_compensation is not None
    assert ideal.noise_model.g_converter == converter
    realistic = make_rpu_config(converter, compensation=False, peripherals="realistic",
                                mapping="column")
    assert not realistic.forward.is_perfect and realistic.drift_compensation is None
    assert realistic.mapping.weight_scaling_omega == 1.0
    with pytest.raises(ValueError, match="peripherals"):
        make_rpu_config(converter, peripherals="noisy")
    with pytest.raises(ValueError, match="mapping"):
        make_rpu_config(converter, mapping="row")


def test_time_helpers():
    assert [format_time(t) for t in (1, 3600, 86400, 2592000, 31536000, 315360000)] == [
        "1 s", "1 h", "1 day", "1 month", "1 year", "10 years"]
    assert list(iter_times("1, 3600")) == [1.0, 3600.0]
    with pytest.raises(ValueError, match="'abc'"):
        list(iter_times("1,abc"))


def test_sweep_result_summary_keeps_mean_and_spread():
    records = [dict(task="t", table="a", n_devices=2, n_levels=3.0, noise_model="pcm",
                    compensation=True, peripherals="ideal", mapping="tensor", t_inference=1.0,
                    repeat=i, metric="accuracy", value=v, weight_rms_error=0.1,
                    weight_max_error=0.2) for i, v in enumerate([0.5, 0.7])]
    row = SweepResult(records, {"accuracy": 1.0}, "accuracy", "t", [1.0]).summary()[0]
    assert row["value_mean"] == pytest.approx(0.6)
    assert row["value_std"] == pytest.approx(0.1414213562, rel=1e-6)


def test_noise_model_classes_and_numpy_times_are_accepted(task):
    import numpy as np
    from aihwkit.inference import PCMLikeNoiseModel

    config = make_rpu_config(make_converter("seed"), PCMLikeNoiseModel)
    assert isinstance(config.noise_model.g_converter, type(make_converter("seed")))
    result = run_sweep(task, tables=["seed"], times=np.array([1.0, 3600.0]),
                       repeats=np.int64(1), progress=False)
    assert len(result.records) == 2


def test_two_tables_with_the_same_name_are_refused(task):
    with pytest.raises(ValueError, match="both called 'seed'"):
        run_sweep(task, tables=[seed_table(), seed_table()], times=[1.0], progress=False)
