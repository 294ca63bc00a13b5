"""Tests of :mod:`aihwkit_slicing.core.device_model` and the device model a table carries.

A device model lists per-level statistics; it is validated on load with one line naming
the key and the index, it travels in a table's JSON under ``"device"`` without changing
what the table programs (``programmed_hash``), and it maps every conductance of its
table to a level exactly.
"""

from __future__ import annotations

import json
import math
import pickle

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from aihwkit_slicing.core.builders import (
    bit_sliced,
    builtin_tables,
    on_device,
    seed_table,
    single_pair,
)
from aihwkit_slicing.core.device_model import (
    DeviceModel,
    bundled_device_models,
    load_device_model,
)
from aihwkit_slicing.core.table_files import load_table, save_table
from aihwkit_slicing.core.tables import ProgrammingTable

LEVELS_4 = [0.0, 25 / 3, 50 / 3, 25.0]  # the levels of bit_sliced(2, 4) and single_pair(4)


def device_dict(**changes):
    data = {"name": "d", "source": "a paper", "t0": 20.0, "levels": [0.0, 5.0, 10.0],
            "prog_std": [0.1, 0.2, 0.3], "nu_mean": [0.05, 0.04, 0.03],
            "nu_std": [0.01, 0.01, 0.01], "read_std": [0.0, 0.1, 0.2]}
    data.update(changes)
    return {k: v for k, v in data.items() if v is not ...}


# ------------------------------------------------------------------ validation
@pytest.mark.parametrize("changes,message", [
    ({"colour": "red"}, "device: unknown key(s) colour; a device model has name, source, t0, "
                        "levels, prog_std, nu_mean, nu_std, read_std, stuck"),
    ({"nu_std": ...}, "device needs the key(s) nu_std"),
    ({"prog_std": [0.1, 0.2]}, "device.prog_std has 2 entries but device.levels has 3; give one "
                               "per level"),
    ({"read_std": [0.1]}, "device.read_std has 1 entry but device.levels has 3"),
    ({"prog_std": [0.1, -0.2, 0.3]}, "device.prog_std[1] = -0.2: a standard deviation must be "
                                     ">= 0"),
    ({"nu_std": [0.0, 0.0, -1e-3]}, "device.nu_std[2] = -0.001: a standard deviation"),
    ({"read_std": [-1, 0, 0]}, "device.read_std[0] = -1: a standard deviation"),
    ({"nu_mean": [0.1, "x", 0.1]}, "device.nu_mean[1] must be a finite number, got 'x'"),
    ({"nu_mean": [0.1, 0.1, float("nan")]}, "device.nu_mean[2] must be a finite number, got nan"),
    ({"levels": [0.0, 5.0, 5.0]}, "device.levels[2] = 5 uS is not above device.levels[1] = 5 uS;"
                                  " levels must ascend"),
    ({"levels": [-1.0, 5.0, 10.0]}, "device.levels[0] = -1 uS: conductances must be >= 0"),
    ({"levels": [1.0], "prog_std": [0], "nu_mean": [0], "nu_std": [0], "read_std": [0]},
     "device.levels must list at least two conductances, got [1.0]"),
    ({"levels": "0,5,10"}, "device.levels must be a list of numbers (one per level), got '0,5,10'"),
    ({"t0": 0}, "device.t0 must be a number of seconds > 0"),
    ({"t0": ...}, "device needs the key(s) t0"),
    ({"stuck": [0.0, 1.5, 0.0]}, "device.stuck[1] = 1.5: a fraction of the devices must lie in "
                                 "[0, 1]"),
    ({"stuck": [0.5, 0.3, 0.4]}, "device.stuck sums to 1.2: at most 1"),
    ({"name": 3}, "device.name must be a string, got 3"),
])
def test_a_bad_device_model_is_refused_naming_the_key_and_index(changes, message):
    with pytest.raises(ValueError) as error:
        DeviceModel.from_dict(device_dict(**changes))
    assert str(error.value).startswith(message), str(error.value)
    assert "\n" not in str(error.value)


def test_a_device_model_must_be_an_object():
    with pytest.raises(ValueError, match="^device must be a JSON object of per-level lists, got "
                                         "list$"):
        DeviceModel.from_dict([1, 2])


def test_python_arguments_are_checked_like_the_json_keys():
    with pytest.raises(ValueError, match=r"^prog_std\[0\] = -1: a standard deviation"):
        DeviceModel.constant([0, 1], prog_std=-1)
    with pytest.raises(ValueError, match=r"^levels\[1\] = 0 uS is not above levels\[0\]"):
        DeviceModel.constant([0, 0])


def test_a_table_whose_conductances_are_not_levels_is_refused_naming_the_entry():
    device = DeviceModel.constant([0.0, 10.0, 25.0])
    with pytest.raises(ValueError) as error:
        single_pair(4).with_device(device)
    assert str(error.value) == (
        "g_lst[0][4] = 8.33333 uS is not a level of the device model (nearest: "
        "device.levels[1] = 10 uS); every conductance of the table must be one of the "
        "device's levels")
    data = single_pair(4).to_dict()
    data["device"] = device.to_dict()
    with pytest.raises(ValueError, match=r"^g_lst\[0\]\[4\] = 8.33333 uS is not a level"):
        ProgrammingTable.from_dict(data)


def test_a_table_file_with_a_bad_device_names_the_file_and_the_key(tmp_path):
    data = seed_table().to_dict()
    data["device"] = device_dict(levels=[0.0, 12.5, 25.0], prog_std=[0.1, -0.2, 0.3])
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError) as error:
        load_table(path)
    assert str(error.value) == (f"{path}: device.prog_std[1] = -0.2: a standard deviation must "
                                "be >= 0")


# ------------------------------------------------------------------ the table's JSON
def test_the_device_travels_in_the_table_json_and_leaves_what_it_programs_unchanged(tmp_path):
    table = bit_sliced(2, 4)
    device = DeviceModel(levels=tuple(LEVELS_4), prog_std=(0.2, 0.5, 0.7, 1.0),
                         nu_mean=(0.1, 0.06, 0.05, 0.04), nu_std=(0.03, 0.02, 0.01, 0.01),
                         read_std=(0.0, 0.1, 0.2, 0.3), stuck=(0.01, 0.0, 0.0, 0.02), t0=20.0,
                         name="pcm-like", source="made up for the test")
    carrying = table.with_device(device)
    assert carrying.device == device and table.device is None
    assert carrying.programmed_hash() == table.programmed_hash()
    assert carrying.key == table.key and carrying.content_hash() == table.content_hash()
    assert carrying != table  # a table's equality includes its device
    assert carrying.with_device(None) == table

    data = carrying.to_dict()
    assert data["device"]["stuck"] == [0.01, 0.0, 0.0, 0.02]
    again = ProgrammingTable.from_dict(json.loads(json.dumps(data)))
    assert again == carrying and again.device.name == "pcm-like"
    assert again.device.source == "made up for the test"
    path = tmp_path / "t.json"
    save_table(carrying, path)
    assert load_table(path) == carrying
    assert load_device_model(path) == device
    assert pickle.loads(pickle.dumps(carrying)) == carrying
    assert "device" not in table.to_dict()


def test_with_encodings_and_with_name_keep_the_device():
    device = DeviceModel.constant([0.0, 25.0], prog_std=0.5)
    table = bit_sliced(2, 2, significance="equal").with_device(device)
    assert table.with_name("x").device == device
    columns = [cols[-1] for cols in table.encodings]
    assert table.with_encodings(columns).device == device


def test_the_content_hash_leaves_out_name_and_source_and_sees_every_number():
    base = DeviceModel.from_dict(device_dict())
    renamed = DeviceModel.from_dict(device_dict(name="other", source="elsewhere"))
    assert renamed.content_hash() == base.content_hash() and renamed == base
    no_stuck = DeviceModel.from_dict(device_dict(stuck=[0, 0, 0]))
    assert no_stuck == base and no_stuck.content_hash() == base.content_hash()
    for key, value in [("t0", 30.0), ("levels", [0.0, 5.0, 11.0]),
                       ("prog_std", [0.1, 0.2, 0.31]), ("nu_mean", [0.05, 0.04, 0.0]),
                       ("nu_std", [0.01, 0.02, 0.01]), ("read_std", [0.0, 0.1, 0.3]),
                       ("stuck", [0.0, 0.0, 0.01])]:
        changed = DeviceModel.from_dict(device_dict(**{key: value}))
        assert changed.content_hash() != base.content_hash(), key
        assert changed != base


# ------------------------------------------------------------------ level lookup
@settings(max_examples=60, deadline=None)
@given(gaps=st.lists(st.floats(0.05, 10.0), min_size=1, max_size=40),
       start=st.floats(0.0, 5.0), dtype=st.sampled_from([torch.float32, torch.float64]))
def test_every_level_maps_to_its_own_index_and_nothing_else_is_a_level(gaps, start, dtype):
    levels = np.cumsum([start] + gaps).tolist()
    device = DeviceModel.constant(levels)
    tensor = torch.tensor(levels, dtype=torch.float64).to(dtype)
    assert device.level_indices(tensor).tolist() == list(range(len(levels)))
    # as a table's conductances, in any layout
    shuffled = tensor[torch.randperm(len(levels))].reshape(1, -1).expand(3, -1)
    expected = torch.tensor(levels, dtype=torch.float64)[device.level_indices(shuffled)]
    assert torch.equal(expected.to(dtype), shuffled)
    # halfway between two levels is no level
    middle = torch.tensor([(levels[0] + levels[1]) / 2], dtype=dtype)
    with pytest.raises(ValueError, match="is not a level of the device model"):
        device.level_indices(middle)


def test_a_conductance_that_is_no_level_is_named_with_its_nearest_level():
    device = DeviceModel.constant([0.0, 5.0, 10.0], name="three")
    with pytest.raises(ValueError) as error:
        device.level_indices(torch.tensor([[0.0, 5.0], [7.6, 10.0]]))
    assert str(error.value).startswith("conductance 7.6 uS is not a level of the device model "
                                       "three (nearest: levels[2] = 10 uS)")


# ------------------------------------------------------------------ bundled models
def test_the_bundled_models_load_by_name_and_say_where_their_numbers_come_from():
    models = bundled_device_models()
    assert set(models) == {"pcm-hermes-2023", "reram-wan-2022"}
    for name, model in models.items():
        assert model.name == name and model.n_levels == 16
        assert "aihwkit" in model.source and ("2023" in model.source or "2022" in model.source)
        assert load_device_model(name) == model
    with pytest.raises(ValueError, match="^no device model 'pcm': neither a file nor a bundled "
                                         "model \\(pcm-hermes-2023, reram-wan-2022\\)$"):
        load_device_model("pcm")


@pytest.mark.parametrize("device_name", ["pcm-hermes-2023", "reram-wan-2022"])
def test_every_builtin_table_goes_onto_a_bundled_device_with_its_columns(device_name):
    device = bundled_device_models()[device_name]
    for name, table in builtin_tables().items():
        moved = on_device(table, device)
        assert moved.device == device and moved.name == name
        assert moved.g_max == device.levels[-1]
        assert moved.selected_columns == table.selected_columns
        factor = device.levels[-1] / table.g_max
        np.testing.assert_allclose(moved.conductances, table.conductances * factor,
                                   rtol=0, atol=1e-12 * device.levels[-1])
        assert set(moved.conductances.ravel()) <= set(device.levels)  # exactly levels
        np.testing.assert_allclose(moved.levels, table.levels * factor, rtol=1e-12)


def test_on_device_refuses_a_table_whose_scaled_conductances_are_not_levels():
    device = DeviceModel.constant([0.0, 4.0, 8.0, 12.0], name="four")
    assert on_device(single_pair(4), device).g_max == 12.0
    with pytest.raises(ValueError, match=r"^g_lst of 1x16lvl x 0\.48\[0\]\[16\] = 0\.8 uS is not "
                                         r"a level"):
        on_device(single_pair(16, name="1x16lvl"), device)


def test_describe_lists_every_level():
    text = bundled_device_models()["reram-wan-2022"].describe()
    assert text.count("\n") == 17 and "t0 = 1 s" in text
    assert math.isclose(float(text.splitlines()[-1].split()[0]), 40.0)
