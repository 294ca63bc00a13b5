"""Digitally summed slicing as a sweep setting (``DigitalSlicing``): names, devices,
identity, and sweeps of it recorded like any table."""

from __future__ import annotations

import pytest

from aihwkit_slicing.digital.spec import DigitalSlicing
from aihwkit_slicing.experiments.sweep import run_sweep
from aihwkit_slicing.experiments.tasks import digits_task


@pytest.fixture(scope="module")
def task():
    return digits_task()


@pytest.mark.parametrize("name, slices, significance, levels, devices, weight_levels", [
    ("digital-2-equal", 2, "equal", None, 4, None),
    ("digital-2-base-4", 2, "base", 4, 4, 31.0),
    ("digital-3-binary-2", 3, "binary", 2, 6, 127.0),
    ("digital-2-equal@1x16lvl", 2, "equal", None, 4, 31.0),  # the table's 31 levels
    ("digital-2-equal@4x4lvl-base", 2, "equal", None, 16, 511.0),
    ("digital-2-base-4@seed", 2, "base", 4, 8, 31.0),  # min(2 * 4**2 - 1, 7**2)
    ("digital-3-binary-1@seed", 3, "binary", 1, 12, 15.0),
])
def test_a_name_gives_the_slicing_it_says(name, slices, significance, levels, devices,
                                          weight_levels):
    spec = DigitalSlicing.from_name(name)
    assert (spec.n_slices, spec.significance, spec.levels) == (slices, significance, levels)
    assert spec.devices_per_weight() == devices
    assert spec.levels_per_weight() == weight_levels
    assert spec.display_name == name and spec.default_name == name


@pytest.mark.parametrize("name, message", [
    ("digital-two-equal", "not a digital slicing name"),
    ("digital-2-equal-4", "levels only apply to 'base' and 'binary'"),
    ("digital-0-equal", "n_slices must be at least 1"),
    ("digital-2-equal@nope", "unknown table 'nope'"),
    ("digital-2-base-1", "levels_per_slice"),
])
def test_a_bad_name_is_refused_naming_the_problem(name, message):
    with pytest.raises(ValueError, match=message):
        DigitalSlicing.from_name(name)


def test_the_identity_leaves_the_name_out():
    named = DigitalSlicing(2, "base", 4, name="mine")
    assert named.content_hash() == DigitalSlicing.from_name("digital-2-base-4").content_hash()
    assert named.content_hash() != DigitalSlicing(2, "base", 8).content_hash()
    assert named != DigitalSlicing(2, "base", 4)  # names differ
    assert DigitalSlicing(2, "base", 4) == DigitalSlicing.from_name("digital-2-base-4")


@pytest.mark.parametrize("default, spelled_out", [
    ("digital-2-base", "digital-2-base-2"), ("digital-2-binary", "digital-2-binary-1"),
    ("digital-3-base@1x16lvl", "digital-3-base-2@1x16lvl")])
def test_a_default_spelled_out_is_the_same_slicing(default, spelled_out):
    a, b = DigitalSlicing.from_name(default), DigitalSlicing.from_name(spelled_out)
    assert a.weight_slicing() == b.weight_slicing()
    assert a.content_hash() == b.content_hash() and a.key() == b.key()
    assert a.levels_used == b.levels_used == int(spelled_out.split("@")[0][-1])


def test_zero_bits_are_refused_not_read_as_the_default():
    with pytest.raises(ValueError, match="bits_per_slice must be at least 1"):
        DigitalSlicing(2, "binary", 0)


def test_defaults_spelled_out_share_a_sweep_row_and_quantized_slices_record_levels(task):
    result = run_sweep(task, tables=["digital-2-base", "digital-2-base-2",
                                     "digital-2-equal@1x16lvl"],
                       times=[1.0], repeats=1, progress=False, noise_models=["none"])
    rows = {r["table"]: r for r in result.of_metric()}
    assert rows["digital-2-base"]["setting_id"] == rows["digital-2-base-2"]["setting_id"]
    assert rows["digital-2-base"]["table_hash"] == rows["digital-2-base-2"]["table_hash"]
    assert rows["digital-2-base"]["n_levels"] == 7.0
    assert rows["digital-2-equal@1x16lvl"]["n_levels"] == 31.0


def test_one_equal_slice_is_the_continuous_pair_record_for_record(task):
    """A layer sliced once, on aihwkit's single pair, is that pair: same seeds (common
    random numbers), same tiles, same numbers."""
    result = run_sweep(task, tables=["aihwkit-1pair", "digital-1-equal"], times=[86400.0],
                       repeats=2, progress=False)
    def values(table, weight_metric):
        return [r["value"] for r in result.records if r["table"] == table
                and r["metric"].startswith("weight_") == weight_metric]

    # what the network computes: identical
    assert values("digital-1-equal", False) == values("aihwkit-1pair", False)
    # the weight errors: the same errors, measured on the sliced layer in its own units
    # (divided by each output's max|w|) rather than in the tile's scaled float32 units:
    # equal to a few float32 roundings (2**-23 = 1.2e-7 each)
    assert values("digital-1-equal", True) == pytest.approx(values("aihwkit-1pair", True),
                                                            rel=1e-6, abs=0)


def test_a_digital_row_records_its_devices_and_identity(task):
    result = run_sweep(task, tables=["digital-2-equal", DigitalSlicing(2, "equal", name="x")],
                       times=[1.0], repeats=1, progress=False)
    rows = {r["table"]: r for r in result.of_metric()}
    assert rows["digital-2-equal"]["n_devices"] == 4.0
    assert rows["digital-2-equal"]["n_levels"] is None
    assert rows["digital-2-equal"]["setting_id"] == rows["x"]["setting_id"]
    assert rows["digital-2-equal"]["value"] == rows["x"]["value"]
    assert 0.9 < rows["x"]["value"] <= 1.0
