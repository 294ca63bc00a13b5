"""Sweeps with measured devices: ``noise_models=["measured"]`` uses each table's own device
model, records say which one, tables without one are refused before anything runs."""

from __future__ import annotations

import json

import pytest

from aihwkit_slicing import DeviceModel, MeasuredNoiseModel, bit_sliced, on_device, single_pair
from aihwkit_slicing.core.device_model import bundled_device_models
from aihwkit_slicing.design.assignment import TableAssignment
from aihwkit_slicing.design.encodings import seeded_level_noise
from aihwkit_slicing.experiments.sweep import run_sweep
from aihwkit_slicing.experiments.sweep_plan import SweepPlan
from aihwkit_slicing.experiments.tasks import digits_task

LEVELS_4 = [0.0, 25 / 3, 50 / 3, 25.0]
#: aihwkit's scaling, cheaper than the sweeps' default MSE search (scaling is not tested here)
FAST = dict(scale="max", per_channel=False, progress=False)


@pytest.fixture(scope="module")
def task():
    return digits_task()


def pcm_like(prog_std: float, name: str) -> DeviceModel:
    return DeviceModel.constant(LEVELS_4, t0=20.0, prog_std=prog_std, nu_mean=0.05,
                                nu_std=0.01, read_std=0.1, name=name)


def test_each_table_is_programmed_with_its_own_device_and_the_records_say_which(task):
    quiet, noisy = pcm_like(0.2, "quiet"), pcm_like(2.0, "noisy")
    tables = {"quiet": bit_sliced(2, 4).with_device(quiet),
              "noisy": bit_sliced(2, 4).with_device(noisy)}
    result = run_sweep(task, tables=tables, noise_models=["measured"], times=[86400.0],
                       repeats=1, **FAST)
    rows = {r["table"]: r for r in result.of_metric("weight_rms_error")}
    assert json.loads(rows["quiet"]["noise_params"]) == {"device_model": quiet.content_hash()}
    assert json.loads(rows["noisy"]["noise_params"]) == {"device_model": noisy.content_hash()}
    # what the tables program is the same; only the device differs
    assert rows["quiet"]["table_hash"] == rows["noisy"]["table_hash"]
    assert rows["quiet"]["setting_id"] != rows["noisy"]["setting_id"]
    errors = {name: [r["value"] for r in result.of_metric("weight_rms_error")
                     if r["table"] == name] for name in tables}
    assert min(errors["noisy"]) > 2 * max(errors["quiet"])


def test_a_table_without_a_device_model_is_refused_before_anything_runs(task, tmp_path):
    device = pcm_like(0.2, "d")
    tables = {"carrying": bit_sliced(2, 4).with_device(device), "seed": "seed"}
    with pytest.raises(ValueError) as error:
        run_sweep(task, tables=tables, noise_models=["measured"], times=[1.0], repeats=1,
                  out=tmp_path / "out", progress=False)
    assert str(error.value) == ("noise model 'measured' takes each table's device model, but "
                                "table 'seed' has none; give its JSON a \"device\" key "
                                "(docs/devices.md)")
    assert not (tmp_path / "out" / "results.csv").exists()
    with pytest.raises(ValueError, match="^noise model 'measured' programs device levels, but "
                                         "'aihwkit-1pair' is aihwkit's continuous converter"):
        run_sweep(task, tables=["aihwkit-1pair"], noise_models=["measured"], times=[1.0],
                  repeats=1, **FAST)
    # a model with its own device refuses a table whose conductances are not its levels
    pinned = MeasuredNoiseModel(DeviceModel.constant([0.0, 10.0, 25.0]))
    with pytest.raises(ValueError, match=r"^table 'bits': g_lst\[0\]\[4\] = 8.33333 uS is not "
                                         "a level of the device model"):
        run_sweep(task, tables={"bits": bit_sliced(2, 4)}, noise_models={"mine": pinned},
                  times=[1.0], repeats=1, **FAST)


def test_zero_noise_measured_devices_score_like_the_none_model(task):
    tables = {"bits": bit_sliced(2, 4).with_device(DeviceModel.constant(LEVELS_4))}
    kwargs = dict(tables=tables, times=[1.0, 31536000.0], repeats=1, **FAST)
    measured = run_sweep(task, noise_models=["measured"], **kwargs)
    none = run_sweep(task, noise_models=["none"], **kwargs)

    def values(result):
        return [(r["table"], r["t_inference"], r["metric"], r["value"]) for r in result.records]

    assert values(measured) == values(none)
    assert {r["noise_model"] for r in measured.records} == {"measured"}


def test_an_assignment_under_measured_records_every_layers_device(task):
    quiet, noisy = pcm_like(0.2, "quiet"), pcm_like(1.0, "noisy")
    assignment = TableAssignment([("0", single_pair(4).with_device(quiet)),
                                  ("*", bit_sliced(2, 4).with_device(noisy))], name="mixed")
    result = run_sweep(task, tables=[assignment], noise_models=["measured"], times=[1.0],
                       repeats=1, **FAST)
    params = {r["noise_params"] for r in result.records}
    assert params == {json.dumps([json.dumps({"device_model": quiet.content_hash()}),
                                  json.dumps({"device_model": noisy.content_hash()})])}


def test_noise_aware_clipping_simulates_each_tables_device():
    """Two tables that program alike but carry different devices get different level
    noise (the sweep's cache of level noise knows the device)."""
    quiet, noisy = pcm_like(0.2, "quiet"), pcm_like(2.0, "noisy")
    tables = {"quiet": bit_sliced(2, 4).with_device(quiet),
              "noisy": bit_sliced(2, 4).with_device(noisy)}
    plan = SweepPlan(task="digits", metric="accuracy", model_hash="-", tables=tables,
                     noise_models={"measured": "measured"}, compensations=[True],
                     times=[86400.0], repeats=1, seed=0, noise_aware=[86400.0])
    for name, table in tables.items():
        expected = seeded_level_noise(table, "measured", [86400.0], True)
        assert plan.converter(table, "measured").level_noise == expected, name
    assert plan.converter(tables["quiet"], "measured").level_noise != plan.converter(
        tables["noisy"], "measured").level_noise


def test_the_bundled_devices_sweep_with_the_builtin_tables(task):
    device = bundled_device_models()["reram-wan-2022"]
    result = run_sweep(task, tables={"1x16lvl": on_device(single_pair(16), device)},
                       noise_models={"pcm fit": "pcm", "measured": "measured"},
                       times=[86400.0], repeats=1, **FAST)
    rows = {r["noise_model"]: r for r in result.of_metric()}
    assert rows["measured"]["noise_params"] == json.dumps(
        {"device_model": device.content_hash()})
    assert rows["pcm fit"]["setting_id"] != rows["measured"]["setting_id"]
    assert 0.5 < rows["measured"]["value"] <= 1.0
