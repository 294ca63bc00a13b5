"""The same setting seen from every path gives the same numbers.

One :class:`~aihwkit_slicing.integration.setting.SimulatedSetting` describes what a record
simulated; these tests look at it from memory, from the CSV read back, from a resumed
sweep, from Dask workers and from an allocation's JSON, and check that nothing but what
should differ does. No helper normalises a difference away: records are compared with
``==``.
"""

from __future__ import annotations

import copy
import json
import math
import warnings

import pytest
import torch
from torch import nn

from aihwkit_slicing import bit_sliced, seed_table, single_pair
from aihwkit_slicing.core.tables import ProgrammingTable
from aihwkit_slicing.design.assignment import TableAssignment
from aihwkit_slicing.experiments.results import SweepResult, read_records
from aihwkit_slicing.experiments.sweep import run_sweep
from aihwkit_slicing.experiments.tasks import Task, digits_task
from aihwkit_slicing.integration.setting import SimulatedSetting

SMALL = dict(tables=["seed", "1x4lvl"], times=[1.0, 86400.0], repeats=2, progress=False)


@pytest.fixture(scope="module")
def task():
    return digits_task()


def summary_text(result):
    return result.format_summary()


# ============================================== summaries from every path (item 2)
def test_the_summary_is_the_same_from_memory_and_from_the_csv_read_back(task, tmp_path):
    result = run_sweep(task, out=tmp_path, **SMALL)
    records = read_records(tmp_path / "results.csv")
    assert records == result.records
    again = SweepResult(records=records, reference=result.reference, metric=result.metric,
                        task=result.task, times=result.times)
    assert again.summary() == result.summary()
    assert summary_text(again) == summary_text(result)
    assert all(row["repeats"] == 2 for row in again.summary())


def test_a_resumed_sweep_has_the_records_and_summary_of_an_uninterrupted_one(task, tmp_path):
    whole = run_sweep(task, out=tmp_path, **SMALL)
    path = tmp_path / "results.csv"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-4]))  # the last unit (6 records) torn
    resumed = run_sweep(task, out=tmp_path, resume=True, **SMALL)
    assert resumed.records == whole.records
    def ordered(records):
        return sorted(records, key=lambda r: (r["table"], r["repeat"], r["t_inference"],
                                              r["metric"]))

    assert ordered(read_records(path)) == ordered(whole.records)
    assert resumed.summary() == whole.summary()
    assert summary_text(resumed) == summary_text(whole)


def test_the_summary_is_the_same_from_dask_workers(task):
    here = run_sweep(task, **SMALL)
    there = run_sweep(task, workers=2, threads=1, **SMALL)
    assert there.records == here.records
    assert there.summary() == here.summary()
    assert all(row["repeats"] == 2 for row in there.summary())


def test_summary_rows_group_repeats_whatever_type_equal_fields_arrive_as(task):
    result = run_sweep(task, tables=["seed"], times=[1.0], repeats=3, progress=False)
    # Dask and CSV round trips give equal values of other identities (floats, None)
    shuffled = [dict(r, n_devices=float(r["n_devices"]) + 0.0) for r in result.records]
    again = SweepResult(shuffled, result.reference, result.metric, result.task, result.times)
    assert [row["repeats"] for row in again.summary()] == [3]


# ======================================================= names (items 3 and 19)
def test_renaming_a_table_changes_nothing_but_its_name(task):
    a = run_sweep(task, tables={"first": seed_table()}, times=[86400.0], repeats=2,
                  progress=False)
    b = run_sweep(task, tables={"second": seed_table().with_name("other")},
                  times=[86400.0], repeats=2, progress=False)
    assert [dict(r, table=None) for r in a.records] == [dict(r, table=None) for r in b.records]
    assert {r["table"] for r in b.records} == {"second"}
    assert {r["setting_id"] for r in a.records} == {r["setting_id"] for r in b.records}


def test_every_table_gets_the_same_random_draws_in_a_repeat(task):
    """Common random numbers: the same table under two names gives the same numbers."""
    result = run_sweep(task, tables={"one": seed_table(), "two": seed_table()},
                       times=[86400.0], repeats=2, progress=False)
    one = [r["value"] for r in result.records if r["table"] == "one"]
    two = [r["value"] for r in result.records if r["table"] == "two"]
    assert one == two


def test_two_unnamed_tables_of_an_assignment_stay_two_tables():
    data = {"format": "aihwkit-slicing-assignment", "version": 1, "rules": [
        {"layers": "0", "table": dict(single_pair(4).to_dict(), name=None)},
        {"layers": "*", "table": dict(bit_sliced(4, 4).to_dict(), name=None)}]}
    assignment = TableAssignment.from_dict(data)
    model = nn.Sequential(nn.Linear(10, 10), nn.Linear(10, 30))
    # 100 weights on 2 devices, 300 on 8
    assert assignment.devices_per_weight(model) == pytest.approx((100 * 2 + 300 * 8) / 400)
    names = list(assignment.layer_tables(model).values())
    assert names[0] != names[1]
    from aihwkit.nn.conversion import convert_to_analog
    from aihwkit.simulator.configs import TorchInferenceRPUConfig

    analog = convert_to_analog(model, TorchInferenceRPUConfig(),
                               specific_rpu_config_fun=assignment.rpu_config_fun())
    devices = [tile.rpu_config.noise_model.g_converter.n_devices
               for tile in analog.analog_tiles()]
    assert devices == [2, 8]


# ============================================================ resume (item 5)
def perturbed_digits():
    task = digits_task()
    model = copy.deepcopy(task.model)
    with torch.no_grad():
        next(model.parameters()).mul_(1.01)
    return Task("digits", model, task.evaluate, task.metric)


def test_resume_refuses_the_records_of_another_network_of_the_same_task_name(task, tmp_path):
    run_sweep(task, out=tmp_path, tables=["seed"], times=[1.0], repeats=1, progress=False)
    with pytest.raises(ValueError, match="model_hash"):
        run_sweep(perturbed_digits(), out=tmp_path, resume=True, tables=["seed"],
                  times=[1.0], repeats=1, progress=False)


def test_resume_names_the_setting_field_that_differs(task, tmp_path):
    run_sweep(task, out=tmp_path, tables=["seed"], times=[1.0], repeats=1, progress=False)
    with pytest.raises(ValueError, match="mapping: 'column' != 'tensor'"):
        run_sweep(task, out=tmp_path, resume=True, tables=["seed"], times=[1.0],
                  repeats=1, mapping="tensor", progress=False)


def test_resume_refuses_the_same_network_scored_by_another_evaluation(task, tmp_path):
    """Records of two evaluations (here: the full split and its first 100 samples) must
    not be summarised side by side, nor the reference overwritten."""
    from aihwkit_slicing.experiments.models.digits import accuracy, load_digits_split

    run_sweep(task, out=tmp_path, tables=["seed"], times=[1.0], repeats=1, progress=False)
    before = json.loads((tmp_path / "sweep.json").read_text())["reference"]
    _, _, x_test, y_test = load_digits_split()
    fewer = Task("digits", task.model,
                 lambda model: {"accuracy": accuracy(model, x_test[:100], y_test[:100])},
                 "accuracy")
    with pytest.raises(ValueError, match="other reference"):
        run_sweep(fewer, out=tmp_path, resume=True, tables=["seed"], times=[1.0],
                  repeats=1, progress=False)
    assert json.loads((tmp_path / "sweep.json").read_text())["reference"] == before


def test_resume_refuses_repeats_drawn_on_another_device_type(task, tmp_path):
    """CUDA draws other numbers than the CPU for the same seed: its repeats would not pair
    with the CPU's (common random numbers) nor belong in one mean."""
    run_sweep(task, out=tmp_path, tables=["seed"], times=[1.0], repeats=1, progress=False)
    path = tmp_path / "sweep.json"
    manifest = json.loads(path.read_text())
    manifest["device"] = "cuda:0"
    path.write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="other device"):
        run_sweep(task, out=tmp_path, resume=True, tables=["seed"], times=[1.0],
                  repeats=1, progress=False)


def test_resume_without_a_sweep_description_refuses_to_delete_results(task, tmp_path):
    run_sweep(task, out=tmp_path, tables=["seed"], times=[1.0], repeats=1, progress=False)
    (tmp_path / "sweep.json").unlink()
    before = (tmp_path / "results.csv").read_text()
    with pytest.raises(ValueError, match="sweep.json"):
        run_sweep(task, out=tmp_path, resume=True, tables=["seed"], times=[1.0],
                  repeats=1, progress=False)
    assert (tmp_path / "results.csv").read_text() == before


def test_a_truncated_sweep_description_is_named(task, tmp_path):
    run_sweep(task, out=tmp_path, tables=["seed"], times=[1.0], repeats=1, progress=False)
    path = tmp_path / "sweep.json"
    path.write_text(path.read_text()[:40])
    with pytest.raises(ValueError, match=str(path)):
        run_sweep(task, out=tmp_path, resume=True, tables=["seed"], times=[1.0],
                  repeats=1, progress=False)


def test_replacing_earlier_results_says_so(task, tmp_path):
    run_sweep(task, out=tmp_path, tables=["seed"], times=[1.0], repeats=1, progress=False)
    with pytest.warns(UserWarning, match="replacing .*results.csv"):
        run_sweep(task, out=tmp_path, tables=["seed"], times=[1.0], repeats=1,
                  progress=False)


# ========================================================= bad input (items 8, 10)
@pytest.mark.parametrize("bad", ["off", "on", [], [True, "off"], None, 0])
def test_compensation_must_be_booleans(task, bad):
    with pytest.raises(ValueError, match="compensation must be True, False"):
        run_sweep(task, tables=["seed"], times=[1.0], repeats=1, compensation=bad,
                  progress=False)


def small_task(evaluate, metric="cosine", model=None):
    model = model or nn.Sequential(nn.Linear(4, 3))
    return Task("small", model, evaluate, metric)


def test_a_metric_evaluate_does_not_return_is_named_before_anything_is_programmed():
    task = small_task(lambda net: {"accuracy": 1.0})
    with pytest.raises(ValueError, match="'cosine' is not among the metrics.*'accuracy'"):
        run_sweep(task, tables=["seed"], times=[1.0], repeats=1, progress=False)


def test_an_evaluate_returning_a_number_is_named():
    task = small_task(lambda net: 0.5)
    with pytest.raises(ValueError, match="evaluate must return a dict"):
        run_sweep(task, tables=["seed"], times=[1.0], repeats=1, progress=False)


def test_a_model_with_nothing_to_convert_is_refused():
    task = small_task(lambda net: {"cosine": 1.0}, model=nn.Sequential(nn.ReLU()))
    with pytest.raises(ValueError, match="no Linear or Conv layer"):
        run_sweep(task, tables=["seed"], times=[1.0], repeats=1, progress=False)


def test_a_noise_aware_converter_passed_as_a_table_is_recorded_as_such(task):
    from aihwkit_slicing import QuantizedSlicedConductanceConverter
    from aihwkit_slicing.design.encodings import level_noise

    noise = level_noise(seed_table(), "pcm", [86400.0], n_samples=100)
    converter = QuantizedSlicedConductanceConverter.from_table(
        seed_table(), scale="mse", per_channel=True, level_noise=noise)
    result = run_sweep(task, tables={"aware": converter, "plain": "seed"}, times=[1.0],
                       repeats=1, progress=False)
    levels = {r["table"]: r["level_noise"] for r in result.records}
    assert levels["aware"].startswith("given:") and levels["plain"] == ""
    ids = {r["table"]: r["setting_id"] for r in result.records}
    assert ids["aware"] != ids["plain"]


def test_no_setting_field_is_nan(task):
    result = run_sweep(task, tables=["aihwkit-1pair", "seed"], times=[1.0], repeats=1,
                       progress=False)
    for record in result.records:
        setting = SimulatedSetting.from_json(record)
        assert not any(isinstance(v, float) and math.isnan(v)
                       for v in setting.to_json().values())
        assert setting.setting_id == record["setting_id"]


def test_a_table_in_siemens_is_refused_naming_the_unit():
    with pytest.raises(ValueError, match="g_max = 2.5e-05 uS: conductances are in "
                                         "microsiemens"):
        ProgrammingTable([1.0], [[0.0, 2.5e-5], [2.5e-5, 0.0]])


def test_an_entry_outside_the_device_range_is_named_in_plain_numbers():
    with pytest.raises(ValueError) as error:
        ProgrammingTable([1.0], [[0.0, 10.0], [10.0, 0.0]], g_max=5.0)
    assert str(error.value) == "g_lst[0][1] = 10 uS lies above g_max = 5 uS"


def test_warnings_of_a_sweep_are_not_raised_for_a_plain_one(task):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run_sweep(task, tables=["seed"], times=[1.0], repeats=1, progress=False)


# ================================================= allocation from JSON (item 4)
def test_an_allocation_evaluates_the_same_from_memory_and_from_its_json(task):
    from aihwkit_slicing.experiments.models.digits import load_digits_split
    from aihwkit_slicing.experiments.sensitivity import allocate_tables

    candidates = [bit_sliced(2, 4, name="b24"), single_pair(4, name="p4")]
    allocation = allocate_tables(task.model, candidates, devices_per_weight=3.0,
                                 noise_model="pcm", times=[86400.0],
                                 inputs=load_digits_split()[0][:64], repeats=1, quiet=True,
                                 noise_aware=True)
    data = json.loads(json.dumps(allocation.to_dict()))
    assert any(isinstance(rule["table"], dict) and len(rule["table"]["g_lst"][0])
               < bit_sliced(2, 4).n_columns for rule in data["rules"])  # reduced tables
    loaded = TableAssignment.from_dict(data)
    assert loaded.recorded == allocation.to_assignment().recorded
    assert loaded.recorded["mapping"] == "column" and loaded.recorded["seed"] == 0
    kwargs = dict(times=[86400.0], repeats=2, progress=False)
    from_memory = run_sweep(task, tables=[allocation.to_assignment()], **kwargs)
    from_json = run_sweep(task, tables=[loaded], **kwargs)
    assert from_json.records == from_memory.records


def test_an_assignment_swept_in_another_setting_than_recorded_says_so(task):
    assignment = TableAssignment({"*": "seed"}, recorded={"compensation": False,
                                                          "noise_model": "pcm"})
    with pytest.warns(UserWarning, match="chosen with compensation False"):
        run_sweep(task, tables=[assignment], times=[1.0], repeats=1, progress=False)


def test_a_bad_recorded_setting_is_named():
    with pytest.raises(ValueError, match="mapping must be one of"):
        TableAssignment({"*": "seed"}, recorded={"mapping": "rows"})
    with pytest.raises(ValueError, match="unknown key 'noise'"):
        TableAssignment({"*": "seed"}, recorded={"noise": "pcm"})


# ================================================= converters keep their own scaling
def own_converter(name, **scaling):
    from aihwkit_slicing import QuantizedSlicedConductanceConverter
    from aihwkit_slicing.integration.catalog import NAMED_TABLES

    return QuantizedSlicedConductanceConverter.from_table(NAMED_TABLES[name], **scaling)


def scaling_of(record):
    return record["scale"], record["per_channel"], record["level_noise"]


def test_a_converter_as_the_slice_table_is_recorded_with_the_scaling_its_tiles_use(task):
    """A slice table given as our converter keeps its own rule (no noise-aware level
    noise is drawn for it): the record says so, not the sweep's rule."""
    from aihwkit_slicing.digital.spec import DigitalSlicing
    from aihwkit_slicing.experiments.sweep_plan import Setting, SweepPlan

    sliced = DigitalSlicing(2, "equal", name="d",
                            slice_table=own_converter("1x16lvl", scale="max",
                                                      per_channel=False))
    result = run_sweep(task, tables=[sliced], times=[1.0], repeats=1, progress=False,
                       noise_models=["none"], noise_aware=[86400.0])
    assert {scaling_of(r) for r in result.records} == {("max", False, "")}
    plan = SweepPlan(task="digits", metric="accuracy", model_hash="0", tables={"d": sliced},
                     noise_models={"none": "none"}, compensations=[True], times=[1.0],
                     repeats=1, seed=0, noise_aware=[86400.0])
    analog = plan.analog_model(task.model, Setting("d", "none", True))
    used = {(c.scale, c.per_channel, c.level_noise) for c in
            (tile.rpu_config.noise_model.g_converter for tile in analog.analog_tiles())}
    assert used == {("max", False, None)}


def test_an_assignment_of_converters_records_their_common_scaling(task):
    assignment = TableAssignment({"features": own_converter("1x16lvl", scale="max",
                                                            per_channel=False),
                                  "*": own_converter("seed", scale="max", per_channel=False)})
    result = run_sweep(task, tables={"a": assignment}, times=[1.0], repeats=1,
                       progress=False, noise_models=["none"])
    assert {scaling_of(r) for r in result.records} == {("max", False, "")}


def test_an_assignment_of_a_converter_and_a_table_of_the_same_rule_is_recorded(task):
    assignment = TableAssignment({"features": own_converter("1x16lvl", scale="mse",
                                                            per_channel=True),
                                  "*": "seed"})
    result = run_sweep(task, tables={"a": assignment}, times=[1.0], repeats=1,
                       progress=False, noise_models=["none"])
    assert {scaling_of(r) for r in result.records} == {("mse", True, "")}


@pytest.mark.parametrize("other, message", [
    (lambda: "seed", "1x16lvl \\(its converter\\): max per tensor; seed \\(the sweep's\\): "
                     "mse per channel"),
    (lambda: own_converter("seed", scale="mse", per_channel=True),
     "1x16lvl \\(its converter\\): max per tensor; seed \\(its converter\\): mse per channel"),
])
def test_an_assignment_mixing_scaling_rules_is_refused_naming_its_tables(task, other, message):
    assignment = TableAssignment({"features": own_converter("1x16lvl", scale="max",
                                                            per_channel=False),
                                  "*": other()}, name="mixed")
    with pytest.raises(ValueError, match="table 'mixed' scales its quantized tables by "
                                         "different rules.*" + message):
        run_sweep(task, tables=[assignment], times=[1.0], repeats=1, progress=False,
                  noise_models=["none"])


def test_compact_state_is_part_of_what_a_converter_programs():
    from aihwkit_slicing import QuantizedSlicedConductanceConverter
    from aihwkit_slicing.integration.catalog import spec_hash

    exact = QuantizedSlicedConductanceConverter.from_table(seed_table())
    compact = QuantizedSlicedConductanceConverter.from_table(seed_table(), compact_state=True)
    assert spec_hash(exact) != spec_hash(compact)


def test_one_noise_setting_given_as_numpy_torch_tuple_or_list_is_recorded_alike():
    """A setting must neither vanish from the record (numpy or torch numbers were
    dropped: 3x the noise recorded as the default) nor split into two (tuple vs list)."""
    import numpy as np
    from aihwkit.inference.noise.pcm import PCMLikeNoiseModel

    from aihwkit_slicing.integration.setting import noise_params

    plain = noise_params(PCMLikeNoiseModel(prog_noise_scale=3.0))
    assert plain == noise_params(PCMLikeNoiseModel(prog_noise_scale=np.float32(3.0)))
    assert plain == noise_params(PCMLikeNoiseModel(prog_noise_scale=torch.tensor(3.0)))
    assert plain != noise_params(PCMLikeNoiseModel())
    default = PCMLikeNoiseModel().prog_coeff
    assert noise_params(PCMLikeNoiseModel(prog_coeff=tuple(default))) == \
        noise_params(PCMLikeNoiseModel(prog_coeff=list(default))) == ""
