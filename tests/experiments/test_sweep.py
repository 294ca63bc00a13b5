"""The sweep API: tidy self-describing records, reproducibility, agreement with floating
point, per-layer tables, order and worker independence, resume."""

import json
import os
import math

import pytest
import torch

from aihwkit_slicing import QuantizedSlicedConductanceConverter, seed_table
from aihwkit_slicing.integration.catalog import make_converter
from aihwkit_slicing.experiments.metrics import weight_errors
from aihwkit_slicing.experiments.plotting import plot_metric_vs_time
from aihwkit_slicing.experiments.results import (
    RECORD_FIELDS,
    SweepResult,
    format_time,
    read_records,
)
from aihwkit_slicing.integration.rpu_configs import make_rpu_config
from aihwkit_slicing.experiments.sweep import iter_times, run_sweep
from aihwkit_slicing.experiments.tasks import digits_task
from aihwkit_slicing.experiments.models.digits import accuracy, load_digits_model, load_digits_split


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
    for record in result.records:
        assert set(RECORD_FIELDS) == set(record)
        assert math.isfinite(record["value"]) and record["value"] >= 0
    accuracy_records = result.of_metric("accuracy")
    assert len(accuracy_records) == 2 * 2 * 2 * 2 * 3
    assert all(0.0 <= r["value"] <= 1.0 for r in accuracy_records)
    assert {r["metric"] for r in result.records} == {"accuracy", "weight_rms_error",
                                                     "weight_max_error"}
    combos = {(r["table"], r["noise_model"], r["compensation"], r["t_inference"], r["repeat"],
               r["metric"]) for r in result.records}
    assert len(combos) == len(result.records)
    assert {r["n_devices"] for r in result.records if r["table"] == "seed"} == {4.0}
    summary = result.summary()
    assert len(summary) == 2 * 2 * 2 * 3
    assert all(row["repeats"] == 2 for row in summary)


def test_sweep_is_reproducible_for_a_seed_and_changes_with_it(task):
    kwargs = dict(tables=["seed"], times=[86400.0], repeats=2, progress=False)
    first = run_sweep(task, seed=3, **kwargs)
    second = run_sweep(task, seed=3, **kwargs)
    other = run_sweep(task, seed=4, **kwargs)
    assert first.records == second.records
    assert ([r["value"] for r in first.of_metric("weight_rms_error")]
            != [r["value"] for r in other.of_metric("weight_rms_error")])


@pytest.mark.parametrize("mapping", ["column", "tensor"])
def test_without_noise_the_continuous_baseline_matches_floating_point_accuracy(task, mapping):
    result = run_sweep(task, tables=["aihwkit-1pair"], noise_models=["none"], mapping=mapping,
                       times=[1.0, 31536000.0], repeats=1, compensation=False, progress=False)
    for record in result.of_metric("accuracy"):
        assert record["value"] == pytest.approx(result.reference["accuracy"], abs=1e-12)
    for record in result.of_metric("weight_rms_error"):
        assert record["value"] < 1e-6


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
                       compensation=False, scale="max", per_channel=False, mapping="tensor",
                       progress=False)
    assert result.of_metric()[0]["value"] == pytest.approx(expected, abs=1e-12)
    assert expected < result.reference["accuracy"] + 1e-12


def test_drift_lowers_uncompensated_weights_more_than_compensated(task):
    result = run_sweep(task, tables=["aihwkit-1pair"], times=[31536000.0], repeats=1,
                       compensation=[True, False], progress=False)
    error = {r["compensation"]: r["value"] for r in result.of_metric("weight_rms_error")}
    assert error[False] > 1.5 * error[True]


def test_weight_errors_are_zero_before_any_noise():
    from aihwkit.nn.conversion import convert_to_analog

    model = load_digits_model()
    config = make_rpu_config(make_converter("aihwkit-1pair"), "none", compensation=False)
    analog = convert_to_analog(model, config, ensure_analog_root=True).eval()
    analog.program_analog_weights()
    stats = weight_errors(analog)
    assert stats["weight_rms_error"] < 1e-6 and stats["weight_max_error"] < 1e-5


def test_a_digitally_summed_layer_counts_the_rounding_of_its_split():
    """Each slice's tile knows only its slice's target; the error must be the sum of the
    slices against the floating-point weight (7 levels per weight here: not 0)."""
    from aihwkit.nn import AnalogSequential

    from aihwkit_slicing.digital.layers import AnalogSlicedLinear
    from aihwkit_slicing.digital.slicing import WeightSlicing

    torch.manual_seed(0)
    linear = torch.nn.Linear(32, 8, bias=False)
    slicing = WeightSlicing(2, "base", levels_per_slice=2)
    config = make_rpu_config(make_converter("aihwkit-1pair"), "none", compensation=False)
    layer = AnalogSlicedLinear.from_digital(linear, config, 2, "base", levels_per_slice=2).eval()
    layer.program_analog_weights()
    weight = linear.weight.detach().double()
    # per-column mapping (the default): relative to each output's max|w|
    expected = (slicing.combine(slicing.split(weight)) - weight) / weight.abs().amax(
        dim=1, keepdim=True)
    stats = weight_errors(AnalogSequential(layer))
    assert stats["weight_rms_error"] == pytest.approx(float(expected.square().mean().sqrt()),
                                                      rel=1e-4)
    assert stats["weight_max_error"] == pytest.approx(float(expected.abs().max()), rel=1e-4)
    assert stats["weight_rms_error"] > 0.01


def test_an_all_zero_output_of_a_sliced_layer_is_measured_against_the_layers_max():
    """Per-output normalisation must not divide a zero output's (near-zero) error by 0."""
    from aihwkit.inference.noise.pcm import PCMLikeNoiseModel
    from aihwkit.nn import AnalogSequential

    from aihwkit_slicing.digital.layers import AnalogSlicedLinear

    torch.manual_seed(0)
    linear = torch.nn.Linear(32, 8, bias=False)
    with torch.no_grad():
        linear.weight[2] = 0.0
    config = make_rpu_config(make_converter("aihwkit-1pair"), PCMLikeNoiseModel(),
                             compensation=False)
    layer = AnalogSlicedLinear.from_digital(linear, config, 2, "base",
                                            levels_per_slice=4).eval()
    layer.program_analog_weights()
    stats = weight_errors(AnalogSequential(layer))
    assert 0 < stats["weight_max_error"] < 1.0


def test_a_sliced_layer_loaded_from_a_state_dict_is_left_out_of_weight_errors():
    from aihwkit.nn import AnalogSequential

    from aihwkit_slicing.digital.layers import AnalogSlicedLinear

    config = make_rpu_config(make_converter("aihwkit-1pair"), "none", compensation=False)
    first = AnalogSlicedLinear.from_digital(torch.nn.Linear(8, 4), config, 2, "base",
                                                levels_per_slice=2)
    second = AnalogSlicedLinear.from_digital(torch.nn.Linear(8, 4), config, 2, "base",
                                                levels_per_slice=2)
    second.load_state_dict(first.state_dict())
    stats = weight_errors(AnalogSequential(second))
    assert math.isnan(stats["weight_rms_error"]) and math.isnan(stats["weight_max_error"])


def test_results_are_written_as_csv_and_png(task, tmp_path):
    result = run_sweep(task, tables=["seed"], times=[1.0, 3600.0], repeats=2, progress=False)
    csv_path = result.write_csv(tmp_path / "results.csv")
    lines = csv_path.read_text().splitlines()
    assert lines[0].split(",") == RECORD_FIELDS
    assert len(lines) == 1 + 2 * 2 * 3
    assert read_records(csv_path) == result.records
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
    records = [dict(task="t", table="a", setting_id="s", n_devices=2.0, n_levels=3.0,
                    noise_model="pcm", compensation=True, peripherals="ideal",
                    mapping="tensor", t_inference=1.0, repeat=i, metric="accuracy", value=v)
               for i, v in enumerate([0.5, 0.7])]
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
    assert len(result.of_metric()) == 2


def test_two_tables_with_the_same_name_are_refused(task):
    with pytest.raises(ValueError, match="both called 'seed'"):
        run_sweep(task, tables=[seed_table(), seed_table()], times=[1.0], progress=False)


# ================================================ records independent of order and workers
SMALL = dict(tables=["aihwkit-1pair", "seed"], times=[1.0, 3600.0], repeats=2, progress=False)


def by_key(records):
    """Records keyed by everything that identifies them (for order-free comparison)."""
    return {(r["table"], r["noise_model"], r["compensation"], r["repeat"], r["t_inference"],
             r["metric"]): r["value"] for r in records}


def test_records_do_not_depend_on_the_order_or_number_of_times_or_tables(task):
    """Finding 8 of the trust issue: --times 1,3600 and 3600,1 gave different records."""
    base = run_sweep(task, **SMALL)
    reordered = run_sweep(task, **dict(SMALL, times=[3600.0, 1.0]))
    more = run_sweep(task, **dict(SMALL, times=[1.0, 86400.0, 3600.0],
                                  tables=["seed", "1x4lvl", "aihwkit-1pair"]))
    assert by_key(base.records) == by_key(reordered.records)
    extended = by_key(more.records)
    assert all(extended[key] == value for key, value in by_key(base.records).items())


def test_records_carry_every_setting_and_the_versions(task):
    import aihwkit

    result = run_sweep(task, tables=["seed"], times=[1.0], repeats=1, scale="percentile",
                       percentile=99.0, per_channel=False, noise_models={
                           "quiet-pcm": __import__("aihwkit").inference.PCMLikeNoiseModel(
                               read_noise_scale=0.5)}, progress=False)
    record = result.of_metric()[0]
    assert record["scale"] == "percentile" and record["percentile"] == 99.0
    assert record["per_channel"] is False and record["level_noise"] == ""
    assert record["noise_model"] == "quiet-pcm"
    assert json.loads(record["noise_params"]) == {"read_noise_scale": 0.5}
    assert record["table_hash"] == seed_table().programmed_hash()
    assert record["seed"] == 0 and record["device"] == "cpu"
    assert record["aihwkit"] == aihwkit.__version__ and record["torch"] == torch.__version__
    assert record["rpu_config"].startswith("TorchInferenceRPUConfig:")


def test_to_pandas_gives_one_row_per_record(task):
    result = run_sweep(task, tables=["seed"], times=[1.0], repeats=1, progress=False)
    frame = result.to_pandas()
    assert list(frame.columns) == RECORD_FIELDS and len(frame) == len(result.records)


def test_per_layer_tables_on_the_digits_cnn(task):
    assignment = {"features": "seed", "*": "4x4lvl-base"}
    result = run_sweep(task, tables=[assignment], times=[1.0], repeats=1, progress=False)
    record = result.of_metric()[0]
    assert record["table"] == "features=seed,*=4x4lvl-base"
    weights = {name: m.weight.numel() for name, m in task.model.named_modules()
               if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))}
    conv = sum(n for name, n in weights.items() if name.startswith("features"))
    expected = (4 * conv + 8 * (sum(weights.values()) - conv)) / sum(weights.values())
    assert record["n_devices"] == pytest.approx(expected)
    # every layer really got its table
    from aihwkit_slicing.design.assignment import TableAssignment
    from aihwkit_slicing.experiments.sweep_plan import Setting, SweepPlan

    plan = SweepPlan(task="digits", metric="accuracy", model_hash="0",
                     tables={"a": TableAssignment(assignment)}, noise_models={"pcm": "pcm"},
                     compensations=[True], times=[1.0], repeats=1, seed=0)
    analog = plan.analog_model(task.model, Setting("a", "pcm", True))
    tables = {name: tile.rpu_config.noise_model.g_converter.table.name
              for name, tile in analog.named_analog_tiles()}
    assert {t for n, t in tables.items() if "features" in n} == {"seed"}
    assert {t for n, t in tables.items() if "classifier" in n} == {"4x4lvl-base"}


def test_an_assignment_is_evaluated_with_the_scaling_rule_it_records(task):
    """An allocation records the rule it was measured with; a sweep evaluates it with that
    rule, whatever it applies to its plain tables, and the record says which."""
    from aihwkit_slicing.design.assignment import TableAssignment

    rules = {"features": "seed", "*": "4x4lvl-base"}
    recorded = TableAssignment(rules, scale={"scale": "max", "per_channel": False})
    plain = TableAssignment(rules)
    kwargs = dict(times=[1.0], repeats=1, progress=False)
    with pytest.warns(UserWarning, match=r"assignment 'a' keeps the scaling it records \(max "
                      r"per tensor\); the sweep's \(mse per channel\) applies to tables "
                      "without one"):
        ours = run_sweep(task, tables={"a": recorded, "seed": "seed"}, **kwargs).of_metric()
    as_max = run_sweep(task, tables={"a": plain}, scale="max", per_channel=False,
                       **kwargs).of_metric()
    assert (ours[0]["scale"], ours[0]["per_channel"]) == ("max", False)
    assert (ours[1]["scale"], ours[1]["per_channel"]) == ("mse", True)  # the sweep's own
    assert ours[0]["value"] == as_max[0]["value"]


def test_an_assignment_recorded_noise_aware_gets_level_noise_in_a_plain_sweep(task):
    from aihwkit_slicing.design.assignment import TableAssignment
    from aihwkit_slicing.experiments.sweep_plan import Setting, SweepPlan

    recorded = TableAssignment({"*": "4x4lvl-base"}, scale={
        "scale": "mse", "per_channel": True, "noise_aware": [86400.0]})
    plan = SweepPlan(task="digits", metric="accuracy", model_hash="0", tables={"a": recorded},
                     noise_models={"pcm": "pcm"}, compensations=[True], times=[86400.0],
                     repeats=1, seed=0)
    assert plan.describe(Setting("a", "pcm", True), task.model).level_noise == "86400"
    analog = plan.analog_model(task.model, Setting("a", "pcm", True))
    for tile in analog.analog_tiles():
        assert tile.rpu_config.noise_model.g_converter.level_noise is not None


def test_a_matching_recorded_rule_does_not_warn(task, recwarn):
    from aihwkit_slicing.design.assignment import TableAssignment

    recorded = TableAssignment({"*": "seed"}, scale={"scale": "mse", "per_channel": True})
    run_sweep(task, tables={"a": recorded}, times=[1.0], repeats=1, progress=False)
    assert not [w for w in recwarn if "keeps the scaling" in str(w.message)]


@pytest.mark.parametrize("scale", [{"noise_aware": None}, {"noise_aware": []}, None, {}])
def test_an_empty_or_none_rule_entry_is_not_recorded(scale):
    from aihwkit_slicing.design.assignment import ScalingRule, TableAssignment

    assignment = TableAssignment({"*": "seed"}, scale=scale)
    assert assignment.scale == {} and assignment.scaling_rule() == ScalingRule()


def test_the_sweeps_level_noise_follows_the_settings_drift_compensation(task):
    from aihwkit_slicing.design.encodings import level_noise
    from aihwkit_slicing.experiments.sweep_plan import SweepPlan
    from aihwkit_slicing.integration.level_noise import noise_model_identity
    from aihwkit_slicing.integration.setting import stable_seed

    plan = SweepPlan(task="digits", metric="accuracy", model_hash="0", tables={
        "t": "4x4lvl-base"}, noise_models={"pcm": "pcm"}, compensations=[True, False],
        times=[86400.0], repeats=1, seed=0, noise_aware=[86400.0])
    table = plan.converter("4x4lvl-base", "pcm").table
    seed = stable_seed("level noise", table.programmed_hash(),
                       noise_model_identity("pcm", table))
    for compensation in (True, False):
        got = plan.converter("4x4lvl-base", "pcm", compensation).level_noise
        expected = level_noise(table, "pcm", [86400.0], seed=seed, compensation=compensation)
        assert got == expected, compensation
    assert (plan.converter("4x4lvl-base", "pcm", True).level_noise.mean_square
            != plan.converter("4x4lvl-base", "pcm", False).level_noise.mean_square)


@pytest.mark.parametrize("scale, message", [
    ({"scale": "nope"}, "scale must be one of"),
    ({"scale": "percentile", "percentile": 150}, "percentile must lie in"),
    ({"scale": "max", "noise_aware": [86400.0]}, "noise_aware needs scale='mse'"),
    ({"scale": "mse", "noise_aware": ["soon"]},
     "noise_aware: times must be finite numbers of seconds"),
    ({"scale": "mse", "noise_aware": 86400}, "noise_aware must be a list of seconds"),
    ({"scale": "mse", "noise_aware": "86400"}, "noise_aware must be a list of seconds"),
    ({"scale": "mse", "per_channel": "yes"}, "per_channel must be True or False"),
    ({"scale": "mse", "clip": 3}, "unknown key 'clip'"),
    ("mse", "scaling rule must be a dict"),
])
def test_a_bad_recorded_rule_is_named(scale, message):
    from aihwkit_slicing.design.assignment import TableAssignment

    with pytest.raises(ValueError, match=message):
        TableAssignment({"*": "seed"}, scale=scale)


def test_a_layer_no_rule_matches_is_named(task):
    with pytest.raises(ValueError, match="no table is assigned to layer 'classifier.1'"):
        run_sweep(task, tables=[{"features": "seed"}], times=[1.0], repeats=1, progress=False)


def test_two_worker_dask_cluster_gives_the_records_of_the_in_process_run(task):
    in_process = run_sweep(task, threads=1, **SMALL)
    on_dask = run_sweep(task, workers=2, threads=1, **SMALL)
    assert on_dask.records == in_process.records


def test_units_are_appended_as_they_finish_and_resume_skips_them(task, tmp_path):
    out = tmp_path / "sweep"
    full = run_sweep(task, out=out, **SMALL)
    lines = (out / "results.csv").read_text().splitlines()
    # drop the last unit and tear a line, as an interruption would
    torn = tmp_path / "torn"
    torn.mkdir()
    (torn / "sweep.json").write_text((out / "sweep.json").read_text())
    per_unit = (len(lines) - 1) // 4
    (torn / "results.csv").write_text("\n".join(lines[: 1 + 3 * per_unit]) + "\n"
                                      + lines[1 + 3 * per_unit][:20])
    resumed = run_sweep(task, out=torn, resume=True, **SMALL)
    assert read_records(torn / "results.csv") == read_records(out / "results.csv")
    assert resumed.records == full.records


def test_resume_refuses_a_folder_of_another_sweep(task, tmp_path):
    run_sweep(task, out=tmp_path, **dict(SMALL, repeats=1))
    with pytest.raises(ValueError, match="holds 2 settings, this sweep has 1"):
        run_sweep(task, out=tmp_path, resume=True, **dict(SMALL, repeats=1, tables=["seed"]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_small_sweep_on_cuda_matches_the_cpu_in_accuracy(task):
    cpu = run_sweep(task, tables=["seed"], times=[1.0], repeats=1, progress=False)
    cuda = run_sweep(task, tables=["seed"], times=[1.0], repeats=1, device="cuda",
                     progress=False)
    assert cuda.of_metric()[0]["device"].startswith("cuda")
    assert abs(cuda.of_metric()[0]["value"] - cpu.of_metric()[0]["value"]) < 0.05


def test_noise_aware_clipping_is_recorded_and_needs_mse(task):
    result = run_sweep(task, tables=["seed"], times=[86400.0], repeats=1,
                       noise_aware=[86400.0], progress=False)
    assert result.of_metric()[0]["level_noise"] == "86400"
    with pytest.raises(ValueError, match="noise_aware needs scale='mse'"):
        run_sweep(task, tables=["seed"], times=[1.0], noise_aware=[1.0], scale="max",
                  progress=False)


def test_each_noise_model_gets_default_times_it_supports(task):
    from aihwkit_slicing.integration.noise_models import default_times

    assert default_times("reram") == [1.0, 86400.0, 172800.0]
    result = run_sweep(task, tables=["aihwkit-1pair"], noise_models=["reram"], repeats=1,
                       progress=False)
    assert result.times == [1.0, 86400.0, 172800.0]


def test_two_local_clusters_at_once_start_without_a_port_warning():
    """Two sweeps with --workers on one machine (two test workers, two notebooks) each
    start a cluster; the second warned 'Port 8787 is already in use'."""
    import warnings

    from aihwkit_slicing.experiments.distributed import start_local_cluster

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with start_local_cluster(1) as first, start_local_cluster(1) as second:
            assert first.scheduler_address != second.scheduler_address


def test_dask_workers_get_glibcs_malloc_thresholds_back():
    """Dask's MALLOC_TRIM_THRESHOLD_ pins the mmap threshold at 128 KiB (a MiniLM unit ran
    3x slower on a worker); a worker sets both thresholds to glibc's dynamic maximum."""
    import ctypes.util
    import subprocess
    import sys

    if sys.platform != "linux" or not ctypes.util.find_library("c"):
        pytest.skip("glibc only")
    script = ("import resource, torch\n"
              "from aihwkit_slicing.experiments.distributed import restore_malloc_thresholds\n"
              "assert restore_malloc_thresholds()\n"
              "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
              "for _ in range(50):\n"
              "    torch.empty(2**20).fill_(1.0)\n"  # 4 MiB: heap, not a fresh mmap each time
              "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n")
    env = dict(os.environ, MALLOC_TRIM_THRESHOLD_="65536")  # as Dask's nanny sets it
    faults = int(subprocess.run([sys.executable, "-c", script], env=env, check=True,
                                capture_output=True, text=True).stdout)
    assert faults < 50 * 1024 / 2, faults  # a fresh 4 MiB mapping faults in 1024 pages
