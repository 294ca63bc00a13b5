"""Pictures: sweep results against time, and the conductances of programmed devices.

* :func:`plot_sweep` -- the main figure of a sweep, for any metric of its records: the
  metric against time (one line per table and setting: one colour per table and noise
  model (or other varying setting), solid with drift compensation, dashed without, a
  band of the 95 % t-interval of the mean over repeats) and the metric per table and
  setting at 1 day and 1 year, best first, with the same intervals as error bars; a
  caption states the noise model, drift compensation, scaling and mapping;
* :func:`plot_metric_vs_time` -- the first panel alone, on given axes;
* :func:`plot_metric_at_times` -- the second panel alone;
* :func:`plot_conductances` -- per device of the unit cell, the histogram of the
  programmed (or drifted) conductances of a model's tiles, with the table's levels.

Accuracies and weight errors are drawn in percent. Everything returns matplotlib
objects and writes a PNG when given a path.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from aihwkit_slicing.core.device_state import state_of
from aihwkit_slicing.experiments.results import (
    WEIGHT_METRICS,
    SweepResult,
    format_time,
    scaling_note,
    short_value,
    varying_fields,
)

#: Marked on the time axis, in seconds.
TIME_TICKS = [1.0, 3600.0, 86400.0, 2592000.0, 31536000.0, 315360000.0]
TIME_LABELS = ["1 s", "1 h", "1 day", "1 month", "1 year", "10 years"]
#: The times of the second panel (when swept), in seconds.
PANEL_TIMES = [86400.0, 31536000.0]
#: Confidence level of the bands and error bars: a t-interval of the mean over repeats.
LEVEL = 0.95


def _pyplot(path: Any, ax: Any) -> Any:
    import matplotlib

    if ax is None and path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def t_interval(row: Dict[str, Any], level: float = LEVEL) -> Optional[float]:
    """Half-width of the ``level`` t-interval of a summary row's mean over its repeats
    (Student's t with ``repeats - 1`` degrees of freedom); None for one repeat."""
    from scipy import stats

    n = int(row["repeats"])
    if n < 2:
        return None
    return float(stats.t.ppf(0.5 + level / 2, n - 1)) * row["value_std"] / math.sqrt(n)


def display_scale(metric: str) -> Tuple[float, str]:
    """The factor a metric is drawn with and its axis label: accuracies and the weight
    errors (fractions) in percent, anything else as recorded."""
    if metric in WEIGHT_METRICS:
        return 100.0, f"{metric.replace('_', ' ')} (% of max|w|)"
    if "accuracy" in metric:
        return 100.0, f"{metric} (%)"
    return 1.0, metric


def interval_note(result: SweepResult, metric: Optional[str] = None,
                  level: float = LEVEL) -> str:
    """What the bands and error bars are, e.g. ``"95 % t-interval of the mean over 3
    repeats"``."""
    counts = sorted({int(r["repeats"]) for r in result.summary(metric)})
    if not counts or counts[-1] < 2:
        return "one repeat: no interval"
    span = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]} to {counts[-1]}"
    return f"{100 * level:g} % t-interval of the mean over {span} repeats"


def setting_caption(result: SweepResult, metric: Optional[str] = None) -> str:
    """One line saying what was simulated: noise model, drift compensation, scaling of
    quantized tables, aihwkit's weight mapping and the peripherals."""
    rows = result.summary(metric)

    def values(key: str) -> List[Any]:
        return list(dict.fromkeys(r.get(key) for r in rows))

    noise_models = ", ".join(map(str, values("noise_model")))
    noise = (f"noise model {noise_models}" if len(values("noise_model")) < 2 else
             f"noise models {noise_models} (each its own line, labelled)")
    compensation = values("compensation")
    if len(compensation) > 1:
        drift = "global drift compensation (solid) and none (dashed)"
    else:
        drift = "global drift compensation" if compensation and compensation[0] else \
            "no drift compensation"
    mapping = ", ".join("per-column" if m == "column" else "per-tensor"
                        for m in values("mapping"))
    return (f"{noise}; {drift}; scaling of "
            f"quantized tables: {scaling_note(rows)}; {mapping} weight mapping; "
            f"{', '.join(map(str, values('peripherals')))} peripherals")


def _lines(result: SweepResult, metric: str) -> Dict[Tuple[str, str], List[Dict[str, Any]]]:
    """Summary rows grouped by (table, setting id): one line per table and setting
    (noise model, compensation, ...), in first-seen order."""
    lines: Dict[Tuple[str, str], List[Dict[str, Any]]] = {}
    for row in result.summary(metric):
        lines.setdefault((row["table"], row["setting_id"]), []).append(row)
    return lines


def _setting_parts(row: Dict[str, Any], varying: Sequence[str], short: bool = False
                   ) -> List[str]:
    """What tells ``row``'s setting apart from the others of its table: the fields of
    ``varying`` (:func:`~aihwkit_slicing.experiments.results.varying_fields`), e.g.
    ``["noise model pcm", "not compensated"]`` (``short``: ``"no comp."``)."""
    parts = []
    for key in varying:
        value = row.get(key)
        if key == "compensation":
            parts.append(("comp." if value else "no comp.") if short else
                         ("compensated" if value else "not compensated"))
        elif value is not None:  # the scaling fields of a continuous table: None
            parts.append(f"{key.replace('_', ' ')} {short_value(value) or 'none'}")
    return parts


def _colour_keys(rows: Sequence[Dict[str, Any]], varying: Sequence[str]
                 ) -> Dict[Tuple[Any, ...], str]:
    """A colour per table and varying setting but drift compensation (which the line
    style shows)."""
    keys = dict.fromkeys(_colour_key(r, varying) for r in rows)
    return {key: f"C{i % 10}" for i, key in enumerate(keys)}


def _colour_key(row: Dict[str, Any], varying: Sequence[str]) -> Tuple[Any, ...]:
    return (row["table"],) + tuple(row.get(k) for k in varying if k != "compensation")


def _devices(row: Dict[str, Any]) -> str:
    value = float(row["n_devices"])
    text = f"{value:g}" if value == int(value) else f"{value:.2f}"
    return f"{text} device{'s' if value != 1 else ''}/weight"


def plot_metric_vs_time(result: SweepResult, path: Union[str, Path, None] = None,
                        ax: Any = None, title: Optional[str] = None,
                        metric: Optional[str] = None, level: float = LEVEL) -> Any:
    """A metric (default: the main one) against time after programming (log axis), one
    line per table.

    One line per table and setting, labelled with the parts of the setting that vary
    (noise model, compensation, ...); one colour per table and varying setting but
    compensation; solid lines with drift compensation, dashed without; the
    shaded band is the ``level`` t-interval of the mean over repeats (none for one
    repeat); the dotted black line is the floating-point network. The legend gives
    each table's devices per weight; the title says what was simulated (noise model,
    compensation, scaling, mapping). Saves a PNG to ``path`` if given. Returns the
    axes.
    """
    metric = result.check_metric(metric)
    factor, label = display_scale(metric)
    plt = _pyplot(path, ax)
    own_figure = ax is None
    if own_figure:
        fig, ax = plt.subplots(figsize=(7.5, 5))
    lines = _lines(result, metric)
    varying = varying_fields(result.summary(metric))
    colours = _colour_keys([points[0] for points in lines.values()], varying)
    for (table, _), points in lines.items():
        points.sort(key=lambda r: r["t_inference"])
        t = [max(p["t_inference"], 0.1) for p in points]
        mean = [factor * p["value_mean"] for p in points]
        label_line = ", ".join([f"{table} ({_devices(points[0])})"]
                               + _setting_parts(points[0], varying))
        colour = colours[_colour_key(points[0], varying)]
        ax.plot(t, mean, marker="o", markersize=3, color=colour,
                linestyle="-" if points[0]["compensation"] else "--", label=label_line)
        half = [t_interval(p, level) for p in points]
        if all(h is not None for h in half):
            ax.fill_between(t, [m - factor * h for m, h in zip(mean, half)],
                            [m + factor * h for m, h in zip(mean, half)],
                            color=colour, alpha=0.15, linewidth=0)
    reference = result.reference.get(metric)
    if reference is not None:
        ax.axhline(factor * reference, color="black", linestyle=":", label="floating point")
    ax.fill_between([], [], [], color="grey", alpha=0.15,
                    label=f"band: {interval_note(result, metric, level)}")
    ax.set_xscale("log")
    shown = [i for i, tick in enumerate(TIME_TICKS)
             if min(result.times or [1.0]) / 3 <= tick <= max(result.times or [1.0]) * 3]
    ax.set_xticks([TIME_TICKS[i] for i in shown], [TIME_LABELS[i] for i in shown])
    ax.minorticks_off()
    ax.set_xlabel("time after programming")
    direction = "higher" if result.higher_is_better(metric) else "lower"
    ax.set_ylabel(f"{label}, {direction} is better")
    heading = title or f"{result.task}: {metric} under drift"
    if own_figure:
        heading += "\n" + _wrapped(setting_caption(result, metric), 90)
    ax.set_title(heading, fontsize="medium" if own_figure else None)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    if own_figure:
        _finish(plt, fig, path)
    return ax


def plot_metric_at_times(result: SweepResult, times: Sequence[float] = PANEL_TIMES,
                         ax: Any = None, path: Union[str, Path, None] = None,
                         metric: Optional[str] = None, level: float = LEVEL) -> Any:
    """A metric (default: the main one) per table and setting at a few times, with
    error bars of the ``level`` t-interval of the mean over repeats (none for one
    repeat).

    One column per table and setting (noise model, compensation, ...: each labelled with
    the parts that vary), sorted best first by the metric at the last of ``times``
    (highest first, lowest for lower-is-better metrics such as weight errors), as the
    title says. Times not in the sweep are left out (the last swept time stands in if
    none is there).
    """
    metric = result.check_metric(metric)
    factor, label = display_scale(metric)
    plt = _pyplot(path, ax)
    own_figure = ax is None
    if own_figure:
        fig, ax = plt.subplots(figsize=(6, 4.5))
    times = [t for t in times if t in result.times] or result.times[-1:]
    rows = [r for r in result.summary(metric) if r["t_inference"] in times]
    varying = varying_fields(result.summary(metric))
    first = {(r["table"], r["setting_id"]): r for r in reversed(rows)}
    labels = list(dict.fromkeys((r["table"], r["setting_id"]) for r in rows))
    last = {(r["table"], r["setting_id"]): r["value_mean"] for r in rows
            if r["t_inference"] == times[-1]}
    sign = -1.0 if result.higher_is_better(metric) else 1.0
    labels.sort(key=lambda key: sign * last.get(key, -sign * float("inf")))
    width = 0.8 / max(1, len(times))
    for i, t in enumerate(times):
        by_label = {(r["table"], r["setting_id"]): r for r in rows if r["t_inference"] == t}
        xs = [j + (i - (len(times) - 1) / 2) * width for j in range(len(labels))]
        half = [t_interval(by_label[k], level) if k in by_label else None for k in labels]
        ax.errorbar(xs, [factor * by_label[k]["value_mean"] if k in by_label else float("nan")
                         for k in labels],
                    yerr=[factor * h if h is not None else 0.0 for h in half],
                    fmt="o", capsize=3, label=f"after {format_time(t)}")
    parts = {key: _setting_parts(first[key], varying, short=True) for key in labels}
    names = [key[0] + (f" ({', '.join(parts[key])})" if parts[key] else "")
             for key in labels]
    ax.set_xticks(range(len(labels)), names, rotation=30, ha="right", fontsize="small")
    reference = result.reference.get(metric)
    if reference is not None:
        ax.axhline(factor * reference, color="black", linestyle=":", label="floating point")
    ax.set_ylabel(f"{label}\n(mean; bars: {interval_note(result, metric, level)})",
                  fontsize="small")
    per = "per table and setting" if varying else "per table"
    ax.set_title(f"{per}, best first at {format_time(times[-1])}")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize="small")
    if own_figure:
        _finish(plt, fig, path)
    return ax


def plot_sweep(result: SweepResult, path: Union[str, Path, None] = None,
               metric: Optional[str] = None, level: float = LEVEL) -> Any:
    """The sweep's figure for a metric (default: the main one): against time, and per
    table at 1 day and 1 year; a caption states the setting (noise model, drift
    compensation, scaling, mapping, peripherals) and what the intervals are.

    Saves a PNG to ``path`` if given. Returns the figure.
    """
    metric = result.check_metric(metric)
    plt = _pyplot(path, None)
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 5.6),
                                      gridspec_kw={"width_ratios": [1.5, 1]})
    plot_metric_vs_time(result, ax=left, metric=metric, level=level)
    plot_metric_at_times(result, ax=right, metric=metric, level=level)
    fig.text(0.01, 0.01, _wrapped(f"{setting_caption(result, metric)}; bands and bars: "
                                  f"{interval_note(result, metric, level)}", 170),
             fontsize="small", va="bottom")
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def _wrapped(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width))


def _finish(plt: Any, fig: Any, path: Union[str, Path, None], close: bool = True) -> None:
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
        if close:
            plt.close(fig)


# ============================================================ conductances
@torch.no_grad()
def device_conductances(model_or_tile: nn.Module, state: str = "programmed",
                        t: Optional[float] = None, seed: int = 0
                        ) -> Tuple[List[torch.Tensor], Any]:
    """Per device of the unit cell, the conductances (µS) of all programmed tiles.

    Args:
        model_or_tile: an analog model or one analog tile programmed with
            :class:`~aihwkit_slicing.core.converter.QuantizedSlicedConductanceConverter`.
        state: ``"programmed"`` or ``"drifted"``.
        t: for ``"drifted"``, seconds after programming: the tiles' devices are drifted
            from their programmed conductances with their own drift coefficients and
            their noise model (a fresh draw of read noise, seeded by ``seed``). Without
            ``t``, the drifted devices an IR-drop tile keeps are used.
        seed: seed of the drift draw.

    Returns:
        ``2P`` flat tensors (device ``d`` of every weight of every tile) and the table.

    Raises:
        ValueError: if no tile is programmed with our converter, tiles use different
            tables, ``state`` is unknown, or the drifted state is not known.
    """
    if state not in ("programmed", "drifted"):
        raise ValueError(f"state must be 'programmed' or 'drifted', got {state!r}")
    tiles = list(model_or_tile.analog_tiles()) if hasattr(model_or_tile, "analog_tiles") \
        else [model_or_tile]
    per_device: List[List[torch.Tensor]] = []
    table = None
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        for tile in tiles:
            programmed = getattr(tile, "programmed_weights", None)
            devices = state_of(programmed) if programmed is not None else None
            if devices is None:
                continue
            converter = tile.rpu_config.noise_model.g_converter
            if table is None:
                table = converter.table
            elif converter.table != table:
                raise ValueError("the tiles use different tables; plot them one by one")
            if state == "programmed":
                conductances = devices.conductances
            elif t is not None:
                noise_model = tile.rpu_config.noise_model
                conductances = [noise_model.apply_drift_noise_to_conductance(g.clone(), nu, t)
                                for g, nu in zip(devices.conductances,
                                                 tile.drift_noise_parameters)]
            elif devices.current is not None:
                conductances = devices.current.conductances
            else:
                raise ValueError("the drifted devices of this tile are not kept (only IR-drop "
                                 "tiles keep them); pass t= to drift its programmed devices")
            if not per_device:
                per_device = [[] for _ in conductances]
            for d, g in enumerate(conductances):
                per_device[d].append(g.detach().reshape(-1).float().cpu())
    finally:
        torch.random.set_rng_state(generator_state)
    if table is None:
        raise ValueError("no tile is programmed with QuantizedSlicedConductanceConverter; "
                         "call program_analog_weights() first")
    return [torch.cat(parts) for parts in per_device], table


def plot_conductances(model_or_tile: nn.Module, state: str = "programmed",
                      t: Optional[float] = None, path: Union[str, Path, None] = None,
                      bins: int = 120, seed: int = 0, axes: Any = None) -> Any:
    """Histograms of every device's conductance, one panel per device of the cell.

    The table's target conductances of each device are marked with vertical lines;
    counts are on a log axis so that rare states show. See
    :func:`device_conductances` for ``state``, ``t`` and ``seed``. Saves a PNG to
    ``path`` if given. Returns the axes.
    """
    conductances, table = device_conductances(model_or_tile, state, t, seed)
    plt = _pyplot(path, axes)
    n = len(conductances)
    own_figure = axes is None
    if own_figure:
        columns = 2
        fig, axes = plt.subplots(n // columns, columns, figsize=(10, 1.9 * n // columns + 0.6),
                                 sharex=True, squeeze=False)
    flat_axes = list(axes.flat) if hasattr(axes, "flat") else list(axes)
    top = max(float(g.max()) for g in conductances)
    low = min(0.0, min(float(g.min()) for g in conductances))
    edges = torch.linspace(low, max(top, table.g_max) * 1.02, bins + 1).tolist()
    targets = table.conductances
    when = "programmed" if state == "programmed" else (
        f"drifted to {format_time(t)}" if t is not None else "drifted")
    for d, (ax, g) in enumerate(zip(flat_axes, conductances)):
        pair, side = divmod(d, 2)
        ax.hist(g.numpy(), bins=edges, color=f"C{pair}", alpha=0.8)
        for level in sorted(set(targets[d].tolist())):
            ax.axvline(level, color="black", linewidth=0.6, linestyle=":")
        ax.set_yscale("log")
        ax.set_title(f"{'gp' if side == 0 else 'gm'}{pair} (f = {table.f_lst[pair]:g})",
                     fontsize="small")
    for ax in flat_axes[::2]:
        ax.set_ylabel("devices (count, log)", fontsize="small")
    for ax in flat_axes[-2:]:
        ax.set_xlabel("conductance (µS)")
    if own_figure:
        fig.suptitle(f"{table.name or 'table'}: device conductances, {when} "
                     "(dotted: programming targets)")
        _finish(plt, fig, path)
    return axes
