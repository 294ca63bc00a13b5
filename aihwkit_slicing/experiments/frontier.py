"""The frontier study: each way of slicing at each number of devices per weight.

Which way of slicing keeps a network most accurate over time for a given number of
devices per weight? :func:`run_frontier` sweeps one configuration per *family* and
device count, all in one sweep, so every configuration draws the same random numbers in
a repeat (common random numbers: differences between families are paired):

* analog summation in one unit cell, continuous (aihwkit's own converters):
  ``npair-equal`` (``NPairConductanceConverter``, ``P`` pairs of equal significance, the
  multi-device synapse) and ``npair-f2`` (significances 1, 2, 4, ...; 2 pairs is the dual
  pair with F = 2);
* analog summation, quantized (this package's tables, ``mse`` clip per channel,
  noise-aware at the study's times): ``equal`` (equal significance, encodings tuned
  for the noise model), ``base4`` (positional base 4 on 4-level devices),
  ``binary-tuned`` (significances 1, 2, 4, ... with the levels the table optimizer picks,
  encodings tuned; 2 to 4 pairs);
* digital summation, one tile per slice with its own peripherals (continuous pairs):
  ``digital-equal`` and ``digital-base4``;
* ``allocation``: a table per layer from the default candidates under the budget
  (:mod:`aihwkit_slicing.experiments.sensitivity`), one measurement for every budget.

A family has a point where it is defined (``npair-f2`` needs 2 pairs, ``binary-tuned``
2 to 4). :func:`frontier_rows` turns the sweep into a tidy table: per family, device
count, time and metric the mean over repeats, its Student-t confidence interval, and the
paired difference to a baseline configuration with its interval.
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from aihwkit.inference.converter.conductance import (
    NPairConductanceConverter,
    SinglePairConductanceConverter,
)

from aihwkit_slicing.core.builders import bit_sliced, equal_significance, single_pair
from aihwkit_slicing.design.allocation import allocate
from aihwkit_slicing.design.candidates import (
    CANDIDATES,
    DEFAULT_CANDIDATES,
    candidate_specs,
    default_candidates,
    tuned_table,
)
from aihwkit_slicing.digital.spec import DigitalSlicing
from aihwkit_slicing.experiments.paired import mean_interval, paired_differences
from aihwkit_slicing.experiments.results import SweepResult
from aihwkit_slicing.experiments.sensitivity import measure_sensitivities, measurement_for
from aihwkit_slicing.experiments.sweep import run_sweep
from aihwkit_slicing.experiments.tasks import Task, load_task

#: The families, in the order plots and tables list them, with a short description.
FAMILIES: Dict[str, str] = {
    "npair-equal": "continuous pairs, equal significance (aihwkit NPair)",
    "npair-f2": "continuous pairs, significance 1, 2, 4, ... (aihwkit NPair)",
    "equal": "quantized, equal significance, tuned encodings",
    "base4": "quantized, positional base 4 on 4-level devices",
    "binary-tuned": "quantized, significance 1, 2, 4, ..., tuned levels and encodings",
    "digital-equal": "digital summation of equal slices (continuous pairs)",
    "digital-base4": "digital summation of base-4 slices (continuous pairs)",
    "allocation": "a table per layer within the budget (default candidates)",
}
#: Device counts per weight of the full study.
DEFAULT_DEVICES: Tuple[int, ...] = (2, 4, 6, 8, 16)
#: Inference times of the full study (seconds): 1 day and 1 year.
DEFAULT_TIMES: Tuple[float, ...] = (86400.0, 31536000.0)
#: The configuration paired differences are taken to: aihwkit's 4 equal pairs.
DEFAULT_BASELINE = "npair-equal@8"
#: Device levels of the quantized equal-significance family.
EQUAL_LEVELS = 33
#: Levels per device of the binary family, by pairs (the table optimizer's picks).
BINARY_LEVELS = {pairs: levels for pairs, levels, kind in DEFAULT_CANDIDATES
                 if kind == "binary"}
#: Conductance range (microsiemens) of aihwkit's converters here, as in the catalog.
G_MAX = 25.0


def family_spec(family: str, devices: int, noise_model: Any = "pcm",
                times: Sequence[float] = DEFAULT_TIMES, tuned: bool = True) -> Any:
    """The configuration of ``family`` with ``devices`` devices per weight, or None
    where the family has none (an odd count, too few or too many pairs).

    Args:
        tuned: tune the encodings of the quantized families for ``noise_model`` at
            ``times`` (:func:`~aihwkit_slicing.design.candidates.tuned_table`, a Monte
            Carlo of seconds to minutes); False takes the plain tables (fast, for tests).
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; families: {', '.join(FAMILIES)}")
    if devices % 2 or devices < 2:
        return None
    pairs = devices // 2
    name = f"{family}@{devices}"
    if family == "npair-equal":
        if pairs == 1:
            return SinglePairConductanceConverter(g_max=G_MAX, g_min=0.0)
        return NPairConductanceConverter(f_lst=[1.0] * pairs, g_max=G_MAX, g_min=0.0)
    if family == "npair-f2":
        return None if pairs < 2 else NPairConductanceConverter(
            f_lst=[float(2**k) for k in range(pairs)], g_max=G_MAX, g_min=0.0)
    if family == "equal":
        if tuned:
            return tuned_table(pairs, noise_model, times, EQUAL_LEVELS).with_name(name)
        if pairs == 1:
            return single_pair(EQUAL_LEVELS, name=name)
        return equal_significance(pairs, EQUAL_LEVELS, columns="fill", name=name)
    if family == "base4":
        return bit_sliced(pairs, 4, name=name) if pairs <= 4 else None
    if family == "binary-tuned":
        if pairs not in BINARY_LEVELS:
            return None
        levels = BINARY_LEVELS[pairs]
        if tuned:
            return tuned_table(pairs, noise_model, times, levels,
                               significance="binary").with_name(name)
        return bit_sliced(pairs, levels, significance=[float(2**k) for k in range(pairs)],
                          name=name)
    if family == "digital-equal":
        return None if pairs < 2 else DigitalSlicing(pairs, "equal", name=name)
    if family == "digital-base4":
        return None if pairs < 2 else DigitalSlicing(pairs, "base", 4, name=name)
    return None  # the allocation: see allocation_specs


def allocation_specs(task: Task, devices: Sequence[int], noise_model: Any,
                     times: Sequence[float], seed: int, repeats: int, tuned: bool,
                     quiet: bool = True) -> Dict[str, Any]:
    """``{"allocation@D": assignment}`` for every budget ``D`` of ``devices``: one
    measurement of every layer's sensitivity to the default candidates (the plain named
    ones without ``tuned``), then one knapsack per budget. A budget below the cheapest
    candidates gets no allocation."""
    candidates = (default_candidates(noise_model, times, seed) if tuned else
                  [CANDIDATES["1x33lvl"], CANDIDATES["2x33lvl-binary"]])
    specs = candidate_specs(candidates)
    measured = measure_sensitivities(task.model, specs, noise_model, times,
                                     repeats=repeats, seed=seed, quiet=quiet,
                                     noise_aware=True, **measurement_for(task))
    cheapest = min(measured.devices)
    return {f"allocation@{d}": allocate(measured, specs, float(d),
                                        name=f"allocation@{d}").to_assignment()
            for d in devices if d >= cheapest}


@dataclass(frozen=True)
class FrontierRow:
    """One point of the frontier: a family at a device count and time.

    Attributes:
        family, devices: the family and the device count it was asked for.
        table: the configuration's display name (``family@devices``).
        n_devices: devices per weight it uses (weight-averaged for an allocation).
        t_inference: seconds after programming.
        metric: the metric.
        mean, low, high: mean over repeats and its confidence interval.
        diff, diff_low, diff_high: paired difference to the baseline and its interval
            (NaN for the baseline itself).
        baseline: the baseline's display name.
        repeats: repeats averaged.
        confidence: the intervals' confidence level.
    """

    family: str
    devices: int
    table: str
    n_devices: float
    t_inference: float
    metric: str
    mean: float
    low: float
    high: float
    diff: float
    diff_low: float
    diff_high: float
    baseline: str
    repeats: int
    confidence: float


def frontier_rows(result: SweepResult, baseline: str = DEFAULT_BASELINE,
                  metric: Optional[str] = None, confidence: float = 0.95
                  ) -> List[FrontierRow]:
    """The tidy frontier table of a frontier sweep (see the module docstring)."""
    metric = metric or result.metric
    records = result.of_metric(metric)
    tables = list(dict.fromkeys(r["table"] for r in records))
    diffs = {} if baseline not in tables else {
        (d.table, d.t_inference): d for d in paired_differences(result, baseline, metric,
                                                                 confidence)}
    rows = []
    for table in tables:
        family, _, devices = table.rpartition("@")
        for t in result.times:
            values = [r["value"] for r in records if r["table"] == table
                      and r["t_inference"] == t]
            if not values:
                continue
            mean, low, high = mean_interval(values, confidence)
            n_devices = next(r["n_devices"] for r in records if r["table"] == table)
            paired = diffs.get((table, t))
            nan = float("nan")
            rows.append(FrontierRow(
                family, int(devices), table, float(n_devices), float(t), metric, mean, low,
                high, paired.mean if paired else nan, paired.low if paired else nan,
                paired.high if paired else nan, baseline, len(values), confidence))
    return rows


def write_rows(rows: Sequence[FrontierRow], path: Union[str, Path]) -> Path:
    """Write the frontier table as CSV; returns the path."""
    path = Path(path)
    fields = list(FrontierRow.__dataclass_fields__)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(asdict(row) for row in rows)
    return path


def run_frontier(
    task: Union[Task, str],
    devices: Sequence[int] = DEFAULT_DEVICES,
    families: Optional[Sequence[str]] = None,
    times: Sequence[float] = DEFAULT_TIMES,
    repeats: int = 3,
    seed: int = 0,
    noise_model: Any = "pcm",
    compensation: bool = True,
    tuned: bool = True,
    allocation_repeats: int = 1,
    out: Union[str, Path, None] = None,
    resume: bool = False,
    threads: Optional[int] = None,
    workers: Optional[int] = None,
    progress: bool = True,
) -> SweepResult:
    """Sweep every family at every device count (see the module docstring).

    Args:
        task: a task or a registered task's name.
        devices: devices per weight (even numbers; a family without a configuration at
            a count is left out there).
        families: names of :data:`FAMILIES` (default: all).
        times: inference times in seconds; quantized tables clip noise-aware for them.
        repeats: programmings per configuration, the same seeds for every one.
        tuned: tune the quantized families' encodings and the allocation's candidates
            for the noise model (False: plain tables, for quick runs).
        allocation_repeats: programmings per layer and candidate of the allocation's
            measurement (default 1: on MiniLM one is 37 layers x 6 candidates network
            evaluations per time).
        out, resume, threads, workers, progress: as for
            :func:`~aihwkit_slicing.experiments.sweep.run_sweep` (``out`` holds the
            sweep's records; :func:`frontier_rows` makes the frontier of them).

    Returns:
        The sweep's :class:`~aihwkit_slicing.experiments.results.SweepResult`; its tables
        are named ``family@devices``.

    Raises:
        ValueError: for an unknown family, an odd or non-positive device count, or any
            argument the sweep refuses.
    """
    if isinstance(task, str):
        task = load_task(task)
    families = list(FAMILIES) if families is None else list(families)
    for family in families:
        if family not in FAMILIES:
            raise ValueError(f"unknown family {family!r}; families: {', '.join(FAMILIES)}")
    for count in devices:
        if not isinstance(count, int) or isinstance(count, bool) or count < 2 or count % 2:
            raise ValueError(f"devices must be even integers >= 2 (devices per weight: "
                             f"pairs x 2), got {count!r}")
    specs: Dict[str, Any] = {}
    for family in families:
        if family == "allocation":
            continue
        for count in devices:
            spec = family_spec(family, count, noise_model, times, tuned)
            if spec is not None:
                specs[f"{family}@{count}"] = spec
    if "allocation" in families:
        specs.update(allocation_specs(task, devices, noise_model, times, seed,
                                      allocation_repeats, tuned, quiet=not progress))
    return run_sweep(task, tables=specs, noise_models={_noise_name(noise_model): noise_model},
                     times=list(times), repeats=repeats, seed=seed,
                     compensation=compensation, noise_aware=list(times), out=out,
                     resume=resume, threads=threads, workers=workers, progress=progress)


def _noise_name(noise_model: Any) -> str:
    if isinstance(noise_model, str):
        return noise_model
    return getattr(noise_model, "__name__", None) or type(noise_model).__name__


#: Paired differences within this many metric units (0.01 of a cosine, 1 percentage
#: point of an accuracy) are drawn on a linear scale, larger ones logarithmically (a
#: family far below the rest must not flatten the others).
DIFFERENCE_LINEAR_RANGE = 0.01


def plot_frontier(rows: Sequence[FrontierRow], path: Union[str, Path],
                  title: Optional[str] = None, caption: Optional[str] = None) -> Path:
    """Save :func:`frontier_figure` of ``rows`` to ``path``; returns the path."""
    import matplotlib.pyplot as plt

    figure = frontier_figure(rows, title, caption)
    path = Path(path)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def frontier_figure(rows: Sequence[FrontierRow], title: Optional[str] = None,
                    caption: Optional[str] = None) -> Any:
    """Fidelity against devices per weight: one column of panels per time, one curve
    per family, error bars the confidence interval of the mean over repeats (none for
    one repeat). Where the rows hold paired differences, a second row of panels draws
    them (difference to the baseline, error bars their interval) on a scale linear
    within ±:data:`DIFFERENCE_LINEAR_RANGE` and logarithmic beyond, so that the
    families close to the baseline stay apart even next to one far below. Accuracies
    are drawn in percent. ``caption`` (the simulated setting, e.g.
    :func:`~aihwkit_slicing.experiments.plotting.setting_caption`) is wrapped under the
    title. Returns the matplotlib figure."""
    import math
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from aihwkit_slicing.experiments.plotting import display_scale
    from aihwkit_slicing.experiments.results import format_time

    times = sorted({row.t_inference for row in rows})
    if not times:
        raise ValueError("no frontier rows to plot")
    first = rows[0]
    factor, label = display_scale(first.metric)
    paired = any(math.isfinite(row.diff) for row in rows)
    width = 5.2 * len(times) + 1.6
    figure, axes = plt.subplots(2 if paired else 1, len(times),
                                figsize=(width, 8.4 if paired else 4.6), squeeze=False,
                                sharey="row", sharex=True)
    families = [f for f in FAMILIES if any(row.family == f for row in rows)]
    colors = plt.get_cmap("tab10")
    for column, t in enumerate(times):
        for index, family in enumerate(families):
            points = sorted((row for row in rows if row.family == family
                             and row.t_inference == t), key=lambda row: row.n_devices)
            if not points:
                continue
            # families side by side around each device count (a few % apart)
            shift = 1.0 + 0.025 * (index - (len(families) - 1) / 2)
            x = [row.n_devices * shift for row in points]
            style = "--" if family.startswith("digital") else "-"
            y = [factor * row.mean for row in points]
            below = [factor * (row.mean - row.low) if row.repeats > 1 else 0.0
                     for row in points]
            above = [factor * (row.high - row.mean) if row.repeats > 1 else 0.0
                     for row in points]
            axes[0][column].errorbar(x, y, yerr=[below, above], linestyle=style,
                                     marker="o", capsize=3, color=colors(index),
                                     label=family)
            if not paired:
                continue
            known = [row for row, xi in zip(points, x) if math.isfinite(row.diff)]
            xs = [xi for row, xi in zip(points, x) if math.isfinite(row.diff)]
            if known:
                axes[1][column].errorbar(
                    xs, [factor * row.diff for row in known],
                    yerr=[[factor * (row.diff - row.diff_low) for row in known],
                          [factor * (row.diff_high - row.diff) for row in known]],
                    linestyle=style, marker="o", capsize=3, color=colors(index),
                    label=family)
        axes[0][column].set_title(f"t = {format_time(t)}")
        if paired:
            panel = axes[1][column]
            panel.axhline(0.0, color="black", linewidth=0.8)
            panel.set_yscale("symlog", linthresh=factor * DIFFERENCE_LINEAR_RANGE)
    for panel in axes.flat:
        panel.set_xscale("log", base=2)
        panel.set_xticks(sorted({row.devices for row in rows}))
        panel.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        panel.grid(alpha=0.3)
    for panel in axes[-1]:
        panel.set_xlabel("devices per weight")
    repeats = sorted({row.repeats for row in rows})
    bars = ("no interval (one repeat)" if repeats[-1] < 2 else
            f"{first.confidence:.0%} t-interval of the mean over {repeats[0]}"
            f"{'' if len(repeats) == 1 else f' to {repeats[-1]}'} repeats")
    axes[0][0].set_ylabel(f"{label}, mean")
    if paired:
        unit = "percentage points, " if factor == 100 else ""
        axes[1][0].set_ylabel(f"paired difference to {first.baseline}\n({unit}linear "
                              f"within ±{factor * DIFFERENCE_LINEAR_RANGE:g}, log beyond)")
        if repeats[-1] >= 2:
            bars += " (differences: t-interval of the paired differences)"
    axes[0][-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    heading = title or f"{first.metric} against devices per weight, by family"
    characters = int(width * 14)  # about 14 characters of 8-point text per inch
    note = f"{caption}; error bars: {bars}" if caption else f"error bars: {bars}"
    figure.suptitle(heading + "\n" + "\n".join(textwrap.wrap(note, characters)),
                    fontsize=9)
    figure.tight_layout()
    return figure
