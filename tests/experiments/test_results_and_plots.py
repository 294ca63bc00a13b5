"""Results you can put in a paper: summaries of any metric with honest digits, figures
that state their setting, their sort order and what their bands are, a results folder
read back."""

import math

import matplotlib.pyplot as plt
import pytest
import torch
from scipy import stats

from aihwkit_slicing.experiments.plotting import (
    plot_conductances,
    plot_metric_at_times,
    plot_metric_vs_time,
    plot_sweep,
)
from aihwkit_slicing.experiments.results import SweepResult, read_sweep
from aihwkit_slicing.experiments.sweep import run_sweep
from aihwkit_slicing.experiments.tasks import Task

TIMES = [1.0, 86400.0, 31536000.0]


def hand_made(values, metric="accuracy", tables=("a", "b"), compensation=True):
    """A result of made-up records: ``values[table][time index]`` lists one value per
    repeat."""
    records = []
    for table in tables:
        for i, t in enumerate(TIMES):
            for repeat, value in enumerate(values[table][i]):
                records.append(dict(
                    task="t", table=table, setting_id=f"id-{table}", n_devices=4.0,
                    n_levels=7.0, scale="mse", per_channel=True, level_noise="",
                    noise_model="pcm", compensation=compensation, peripherals="ideal",
                    mapping="column", t_inference=t, repeat=repeat, metric=metric,
                    value=value))
    return SweepResult(records, {"accuracy": 0.98}, "accuracy", "t", list(TIMES))


THREE = {"a": [[0.90, 0.92, 0.94], [0.88, 0.90, 0.95], [0.80, 0.85, 0.90]],
         "b": [[0.95, 0.96, 0.97], [0.93, 0.95, 0.96], [0.91, 0.93, 0.97]]}
ONE = {"a": [[0.9], [0.8], [0.7]], "b": [[0.95], [0.94], [0.93]]}


# ============================================================== summaries
def test_the_summary_prints_the_std_with_the_means_decimals():
    text = hand_made(THREE).format_summary()
    header, _, _, row_a, _ = text.splitlines()
    assert header.startswith("t: accuracy (higher is better, floating point 0.9800), "
                             "mean ± std over 3 repeats")
    assert row_a.split()[2:] == ["0.9200", "±", "0.0200", "0.9100", "±", "0.0361", "0.8500",
                                 "±", "0.0500"]


def test_one_repeat_is_printed_without_a_spread():
    text = hand_made(ONE).format_summary()
    assert "±" not in text and "+-" not in text
    assert "one repeat (no spread)" in text.splitlines()[0]
    assert text.splitlines()[3].split()[2:] == ["0.9000", "0.8000", "0.7000"]


def test_a_summary_of_a_lower_is_better_metric_says_so():
    result = hand_made(THREE, metric="weight_rms_error")
    assert result.format_summary(metric="weight_rms_error").startswith(
        "t: weight_rms_error (lower is better), mean ± std")
    with pytest.raises(ValueError, match="no records of the metric 'accuracy'; the records "
                       "hold weight_rms_error"):
        result.format_summary()


# ================================================================= figures
def band_of(ax, colour_index=0):
    """Lower and upper edges of the shaded band of the ``colour_index``-th line."""
    bands = [c for c in ax.collections if len(c.get_paths()) and
             len(c.get_paths()[0].vertices)]
    vertices = bands[colour_index].get_paths()[0].vertices
    by_x = {}
    for x, y in vertices:
        by_x.setdefault(round(float(x), 6), []).append(float(y))
    return {x: (min(ys), max(ys)) for x, ys in by_x.items()}


def test_bands_are_the_95_percent_t_interval_of_the_mean_in_percent():
    ax = plot_metric_vs_time(hand_made(THREE))
    band = band_of(ax)
    for i, t in enumerate(TIMES):
        values = THREE["a"][i]
        mean = sum(values) / 3
        half = stats.t.ppf(0.975, 2) * stats.tstd(values) / math.sqrt(3)
        low, high = band[round(t, 6)]
        assert low == pytest.approx(100 * (mean - half))
        assert high == pytest.approx(100 * (mean + half))
    assert ax.get_ylabel() == "accuracy (%), higher is better"
    assert "band: 95 % t-interval of the mean over 3 repeats" in [
        text.get_text() for text in ax.get_legend().get_texts()]
    plt.close("all")


def test_one_repeat_draws_no_band_and_says_so():
    ax = plot_metric_vs_time(hand_made(ONE))
    assert not [c for c in ax.collections if len(c.get_paths()) and
                len(c.get_paths()[0].vertices)]
    assert "band: one repeat: no interval" in [t.get_text() for t in ax.get_legend().get_texts()]
    plt.close("all")


def test_the_figure_states_its_setting_and_its_sort_order(tmp_path):
    figure = plot_sweep(hand_made(THREE), tmp_path / "sweep.png")
    texts = [t.get_text() for t in figure.texts]
    for ax in figure.axes:
        texts += [ax.get_title(), ax.get_ylabel(), ax.get_xlabel()]
        texts += [t.get_text() for t in ax.get_xticklabels()]
    caption = " ".join(texts)
    for stated in ("noise model pcm", "global drift compensation", "scaling of quantized "
                   "tables: mse per channel", "per-column weight mapping", "ideal peripherals",
                   "per table, best first at 1 year", "95 % t-interval of the mean over 3"):
        assert stated in caption, stated
    assert "+-" not in caption and "uS" not in caption
    right = figure.axes[1]
    assert [t.get_text() for t in right.get_xticklabels()] == ["b", "a"]
    assert (tmp_path / "sweep.png").stat().st_size > 10_000
    plt.close("all")


def test_lower_is_better_metrics_sort_lowest_first():
    errors = {"a": [[0.01, 0.02, 0.03]] * 3, "b": [[0.05, 0.06, 0.07]] * 3}
    ax = plot_metric_at_times(hand_made(errors, metric="weight_rms_error"),
                              metric="weight_rms_error")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b"]
    assert ax.get_title() == "per table, best first at 1 year"
    plt.close("all")


def two_noise_models(metric="weight_rms_error"):
    """Tables a and b under the noise models none and pcm, one repeat: pcm is 10x worse
    everywhere, and b is better than a under none but worse under pcm."""
    values = {("a", "none"): [0.01, 0.02, 0.03], ("a", "pcm"): [0.10, 0.20, 0.30],
              ("b", "none"): [0.005, 0.01, 0.02], ("b", "pcm"): [0.20, 0.30, 0.40]}
    records = [dict(task="t", table=table, setting_id=f"id-{table}-{noise}", n_devices=4.0,
                    n_levels=7.0, scale="mse", per_channel=True, level_noise="",
                    noise_model=noise, compensation=True, peripherals="ideal",
                    mapping="column", t_inference=t, repeat=0, metric=metric, value=v)
               for (table, noise), by_time in values.items()
               for t, v in zip(TIMES, by_time)]
    return SweepResult(records, {}, "accuracy", "t", list(TIMES)), values


def test_each_noise_model_gets_its_own_labelled_line_and_column():
    result, values = two_noise_models()
    ax = plot_metric_vs_time(result, metric="weight_rms_error")
    drawn = {line.get_label(): [round(y, 9) for y in line.get_ydata()]
             for line in ax.get_lines() if not line.get_label().startswith("_")}
    assert drawn == {f"{table} (4 devices/weight), noise model {noise}":
                     [round(100 * v, 9) for v in by_time]
                     for (table, noise), by_time in values.items()}
    colours = [line.get_color() for line in ax.get_lines()[:4]]
    assert len(set(colours)) == 4
    plt.close("all")
    figure = plot_sweep(result, metric="weight_rms_error")
    right = figure.axes[1]
    assert right.get_title() == "per table and setting, best first at 1 year"
    ticks = [t.get_text() for t in right.get_xticklabels()]
    assert ticks == ["b (noise model none)", "a (noise model none)", "a (noise model pcm)",
                     "b (noise model pcm)"]  # ranked on each one's own value at 1 year
    one_year = right.containers[-1].lines[0].get_ydata()
    assert [round(y, 9) for y in one_year] == [2.0, 3.0, 30.0, 40.0]
    assert "noise models none, pcm (each its own line, labelled)" in figure.texts[0].get_text()
    plt.close("all")


def test_conductance_histograms_label_counts_and_microsiemens():
    from aihwkit.nn.conversion import convert_to_analog

    from aihwkit_slicing import make_rpu_config

    analog = convert_to_analog(torch.nn.Linear(16, 8), make_rpu_config("seed")).eval()
    analog.program_analog_weights()
    axes = plot_conductances(analog)
    assert axes[0][0].get_ylabel() == "devices (count, log)"
    assert axes[-1][0].get_xlabel() == "conductance (µS)"
    plt.close("all")


# ========================================================= results folders
def tiny_task():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3))
    inputs = torch.randn(16, 8)
    with torch.no_grad():
        target = model(inputs)

    def evaluate(net):
        with torch.no_grad():
            out = net(inputs)
        return {"cosine": float(torch.nn.functional.cosine_similarity(out, target).mean()),
                "mse": float((out - target).square().mean())}

    return Task("tiny", model, evaluate, "cosine", lower_is_better=("mse",))


def test_a_results_folder_reads_back_as_the_sweep_it_holds(tmp_path):
    result = run_sweep(tiny_task(), tables=["seed", "1x4lvl"], times=[1.0, 86400.0],
                       repeats=2, out=tmp_path, progress=False)
    again = read_sweep(tmp_path)
    assert (again.task, again.metric, again.times) == (result.task, result.metric, result.times)
    assert again.reference == result.reference
    assert again.lower_is_better == ["weight_rms_error", "weight_max_error", "mse"]
    assert not again.higher_is_better("mse") and again.higher_is_better("cosine")
    for metric in result.metrics():
        assert again.format_summary(metric=metric) == result.format_summary(metric=metric)
