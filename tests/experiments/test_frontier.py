"""The frontier study: families at device counts, one sweep with common random numbers,
a tidy table, a plot, and the command line's quick run."""

from __future__ import annotations

import csv
import math

import pytest

from aihwkit_slicing.cli.main import main
from aihwkit_slicing.digital.spec import DigitalSlicing
from aihwkit_slicing.experiments.frontier import (
    FAMILIES,
    DIFFERENCE_LINEAR_RANGE,
    FrontierRow,
    family_spec,
    frontier_figure,
    frontier_rows,
    plot_frontier,
    run_frontier,
    write_rows,
)
from aihwkit_slicing.experiments.tasks import digits_task
from aihwkit_slicing.integration.catalog import devices_per_weight, make_converter


@pytest.mark.parametrize("family", [f for f in FAMILIES if f != "allocation"])
@pytest.mark.parametrize("devices", [2, 4, 6, 8, 16])
def test_every_family_configuration_has_the_devices_it_is_listed_at(family, devices):
    spec = family_spec(family, devices, tuned=False)
    if spec is None:
        return
    if isinstance(spec, DigitalSlicing):
        assert spec.devices_per_weight() == devices
    else:
        assert devices_per_weight(make_converter(spec)) == devices


def test_families_are_defined_where_they_say():
    assert family_spec("npair-f2", 2, tuned=False) is None  # needs two pairs
    assert family_spec("binary-tuned", 16, tuned=False) is None  # 2 to 4 pairs
    assert family_spec("npair-equal", 3, tuned=False) is None  # odd: no pairs
    with pytest.raises(ValueError, match="unknown family 'nope'"):
        family_spec("nope", 4)


@pytest.fixture(scope="module")
def frontier():
    return run_frontier(digits_task(), devices=[2, 4], families=["npair-equal", "base4",
                                                                  "digital-equal"],
                        times=[86400.0], repeats=2, tuned=False, progress=False)


def test_the_frontier_is_one_sweep_with_the_same_seeds_for_every_configuration(frontier):
    assert {r["table"] for r in frontier.records} == {
        "npair-equal@2", "npair-equal@4", "base4@2", "base4@4", "digital-equal@4"}
    assert {r["seed"] for r in frontier.records} == {0}


def test_frontier_rows_summarise_the_sweep(frontier, tmp_path):
    rows = frontier_rows(frontier, baseline="npair-equal@4")
    summary = {(s["table"], s["t_inference"]): s for s in frontier.summary()}
    for row in rows:
        assert row.mean == pytest.approx(summary[(row.table, row.t_inference)]["value_mean"])
        assert row.low <= row.mean <= row.high
        assert row.family == row.table.split("@")[0] and row.devices == int(
            row.table.split("@")[1])
        if row.table == "npair-equal@4":
            assert math.isnan(row.diff)
        else:
            assert row.diff_low <= row.diff <= row.diff_high
    path = write_rows(rows, tmp_path / "frontier.csv")
    with path.open() as handle:
        written = list(csv.DictReader(handle))
    assert len(written) == len(rows) == 5
    assert plot_frontier(rows, tmp_path / "frontier.png").stat().st_size > 5000


def test_the_plot_draws_the_paired_differences_without_flattening_them(frontier):
    import matplotlib.pyplot as plt

    rows = frontier_rows(frontier, baseline="npair-equal@4")
    figure = frontier_figure(rows)
    try:
        means, differences = figure.axes[0], figure.axes[1]
        assert differences.get_yscale() == "symlog"  # a family far below stays visible
        drawn = sorted(y for bars in differences.containers for y in bars.lines[0].get_ydata())
        # accuracy in percent; the baseline has no difference to itself
        assert drawn == pytest.approx(sorted(100 * row.diff for row in rows
                                             if row.table != "npair-equal@4"))
        assert "paired difference to npair-equal@4" in differences.get_ylabel()
        assert f"{100 * DIFFERENCE_LINEAR_RANGE:g}" in differences.get_ylabel()
        assert sorted(y for bars in means.containers for y in bars.lines[0].get_ydata()) == (
            pytest.approx(sorted(100 * row.mean for row in rows)))
    finally:
        plt.close(figure)
    no_baseline = frontier_rows(frontier, baseline="not-swept@4")
    figure = frontier_figure(no_baseline)
    try:
        assert len(figure.axes) == 1  # nothing paired: the means alone
    finally:
        plt.close(figure)


def _synthetic_rows(repeats):
    """Two times, an accuracy metric, a baseline and two other configurations."""
    rows = []
    for t, shift in ((86400.0, 0.0), (31536000.0, -0.05)):
        for table, devices, mean, diff in (("npair-equal@4", 4, 0.95, float("nan")),
                                           ("equal@4", 4, 0.955, 0.004),
                                           ("base4@4", 4, 0.40, -0.55)):
            known = diff == diff and repeats > 1
            diff = diff + shift  # (NaN stays NaN)
            rows.append(FrontierRow(
                table.split("@")[0], devices, table, 4.0, t, "accuracy", mean + shift,
                mean + shift - 0.01, mean + shift + 0.02, diff,
                diff - 0.003 if known else float("nan"),
                diff + 0.001 if known else float("nan"), "npair-equal@4", repeats, 0.95))
    return rows


def test_every_time_has_a_difference_panel_with_the_right_scale_and_bars():
    import matplotlib.pyplot as plt

    rows = _synthetic_rows(repeats=3)
    figure = frontier_figure(rows)
    try:
        top, bottom = figure.axes[:2], figure.axes[2:]
        assert len(bottom) == 2
        for panel, t in zip(bottom, (86400.0, 31536000.0)):
            at = [row for row in rows if row.t_inference == t and row.diff == row.diff]
            transform = panel.yaxis.get_transform()
            assert panel.get_yscale() == "symlog"
            assert transform.linthresh == pytest.approx(100 * DIFFERENCE_LINEAR_RANGE)
            drawn, extents = [], []
            for bars in panel.containers:
                drawn += list(bars.lines[0].get_ydata())
                for segment in bars.lines[2][0].get_segments():
                    extents += sorted((segment[0][1], segment[1][1]))
            assert sorted(drawn) == pytest.approx(sorted(100 * row.diff for row in at))
            assert sorted(extents) == pytest.approx(sorted(
                value for row in at for value in (100 * row.diff_low, 100 * row.diff_high)))
        assert "percentage points" in bottom[0].get_ylabel()
        assert all(panel.get_yscale() == "linear" for panel in top)
        assert "paired differences" in figure._suptitle.get_text()
    finally:
        plt.close(figure)


def test_one_repeat_claims_no_interval_for_the_differences_either():
    import matplotlib.pyplot as plt

    figure = frontier_figure(_synthetic_rows(repeats=1))
    try:
        caption = figure._suptitle.get_text()
        assert "no interval (one repeat)" in caption
        assert "t-interval" not in caption
    finally:
        plt.close(figure)


def test_bad_frontier_arguments_are_named():
    with pytest.raises(ValueError, match="devices must be even integers"):
        run_frontier(digits_task(), devices=[3], progress=False)
    with pytest.raises(ValueError, match="unknown family 'nope'"):
        run_frontier(digits_task(), families=["nope"], progress=False)


def test_frontier_quick_runs_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "frontier"
    assert main(["frontier", "--quick", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "paired difference to npair-equal@4" in printed and "allocation" in printed
    assert (out / "frontier.csv").exists() and (out / "frontier.png").exists()
    assert (out / "results.csv").exists() and (out / "sweep.json").exists()


@pytest.mark.parametrize("args, message", [
    (["--devices", "3"], "--devices takes even integers >= 2"),
    (["--families", "nope"], "unknown family 'nope'"),
    (["--baseline", "npair-equal@64"], "--baseline must be a swept configuration"),
    (["--allocation-repeats", "0"], "--allocation-repeats"),
])
def test_bad_frontier_options_are_one_line(args, message, capsys, tmp_path):
    code = main(["frontier", "--model", "digits", "--out", str(tmp_path), *args])
    assert code == 2
    assert message in capsys.readouterr().err
