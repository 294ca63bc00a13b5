"""Paired differences to a baseline, and their Student-t intervals, against a brute-force
reference on hand-made records."""

from __future__ import annotations

import math
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from aihwkit_slicing.experiments.paired import format_paired, mean_interval, paired_differences
from aihwkit_slicing.experiments.results import SweepResult


def records(values):
    """``values[table][repeat]`` at one time and setting, as sweep records."""
    return [dict(table=table, setting_id=table, noise_model="pcm", compensation=True,
                 t_inference=86400.0, repeat=repeat, metric="cosine", value=value)
            for table, by_repeat in values.items() for repeat, value in enumerate(by_repeat)]


def result(values):
    return SweepResult(records(values), {"cosine": 1.0}, "cosine", "t", [86400.0])


def test_paired_difference_is_the_mean_of_differences_with_a_t_interval():
    values = {"base": [0.90, 0.92, 0.91], "other": [0.93, 0.94, 0.95]}
    (row,) = paired_differences(result(values), "base")
    diffs = [0.03, 0.02, 0.04]
    assert row.mean == pytest.approx(statistics.fmean(diffs))
    half = stats.t.ppf(0.975, 2) * statistics.stdev(diffs) / math.sqrt(3)
    assert (row.low, row.high) == pytest.approx((0.03 - half, 0.03 + half))
    assert row.repeats == 3 and row.table == "other"


def test_pairing_removes_the_noise_both_share():
    """Independent draws would give a wide interval; paired ones a tight one."""
    shared = [0.80, 0.95, 0.85, 0.99]
    values = {"base": shared, "better": [v + 0.01 for v in shared]}
    (row,) = paired_differences(result(values), "base")
    assert row.mean == pytest.approx(0.01)
    assert row.high - row.low == pytest.approx(0.0, abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=2, max_size=6),
       st.lists(st.floats(-0.1, 0.1), min_size=2, max_size=6))
def test_the_interval_holds_the_mean(base, shift):
    n = min(len(base), len(shift))
    values = {"base": base[:n], "x": [b + s for b, s in zip(base[:n], shift[:n])]}
    (row,) = paired_differences(result(values), "base")
    assert row.low <= row.mean + 1e-12 and row.mean <= row.high + 1e-12


def test_one_repeat_has_no_interval():
    mean, low, high = mean_interval([0.5])
    assert mean == 0.5 and math.isnan(low) and math.isnan(high)
    text = format_paired(paired_differences(result({"a": [0.5], "b": [0.6]}), "a"),
                         [86400.0])
    assert "(1 repeat)" in text and "+0.1000" in text


def test_an_unknown_baseline_names_the_tables():
    with pytest.raises(ValueError, match="baseline 'c' is not a table of this sweep "
                                         "\\(tables: 'a', 'b'\\)"):
        paired_differences(result({"a": [0.5], "b": [0.6]}), "c")


@pytest.mark.parametrize("bad", [0, 1, 1.5, -0.1])
def test_the_confidence_level_is_checked(bad):
    with pytest.raises(ValueError, match="confidence must lie in \\(0, 1\\)"):
        paired_differences(result({"a": [0.5], "b": [0.6]}), "a", confidence=bad)


def test_the_sweep_command_prints_paired_differences(tmp_path, capsys):
    from aihwkit_slicing.cli.main import main

    args = ["sweep", "--tables", "aihwkit-1pair,digital-2-equal", "--times", "86400",
            "--repeats", "2", "--out", str(tmp_path), "--quiet"]
    assert main(args + ["--baseline", "aihwkit-1pair"]) == 0
    out = capsys.readouterr().out
    assert "accuracy minus 'aihwkit-1pair', same repeats" in out
    assert "digital-2-equal" in out.split("same repeats")[1]
    assert main(args + ["--baseline", "nope"]) == 2
    assert "--baseline 'nope' is not a swept table" in capsys.readouterr().err


def test_rows_of_one_table_in_two_settings_say_which_is_which():
    """With compensation on and off (or two noise models), one table has a line per
    setting: each line names its setting, as the sweep's summary does."""
    recs = []
    for noise in ("none", "pcm"):
        for compensation, shift in ((True, 0.02), (False, 0.01)):
            for repeat, base in enumerate((0.90, 0.92)):
                common = dict(noise_model=noise, compensation=compensation,
                              t_inference=86400.0, repeat=repeat, metric="cosine")
                recs.append(dict(common, table="base", setting_id=f"b{noise}{compensation}",
                                 value=base))
                recs.append(dict(common, table="seed", setting_id=f"s{noise}{compensation}",
                                 value=base + shift + (noise == "pcm") * 0.1))
    swept = SweepResult(recs, {"cosine": 1.0}, "cosine", "t", [86400.0])
    lines = format_paired(paired_differences(swept, "base"), [86400.0]).splitlines()
    assert lines[1].split() == ["table", "noise_model", "compensation", "1", "day"]
    rows = [line.split()[:4] for line in lines[3:]]
    assert rows == [["seed", "none", "on", "+0.0200"], ["seed", "none", "off", "+0.0100"],
                    ["seed", "pcm", "on", "+0.1200"], ["seed", "pcm", "off", "+0.1100"]]


def test_one_setting_adds_no_columns():
    text = format_paired(paired_differences(result({"a": [0.5, 0.6], "b": [0.6, 0.8]}), "a"),
                         [86400.0])
    assert text.splitlines()[1].split() == ["table", "1", "day"]
