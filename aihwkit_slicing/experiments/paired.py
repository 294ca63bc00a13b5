"""Paired differences between tables of one sweep, with confidence intervals.

A sweep seeds repeat ``r`` of every table alike (common random numbers, see
:mod:`aihwkit_slicing.experiments.sweep_plan`), so the difference between two tables in
one repeat carries only the noise in which they differ. :func:`paired_differences`
averages, per table, setting and time, ``value(table, r) - value(baseline, r)`` over the
repeats both ran, with a Student-t confidence interval of that mean.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from scipy import stats

from aihwkit_slicing.experiments.results import (
    SweepResult,
    format_time,
    short_value,
    varying_fields,
)


@dataclass(frozen=True)
class PairedDifference:
    """Mean paired difference of a table to the baseline at one setting and time.

    Attributes:
        table: the table's display name.
        baseline: the baseline's display name.
        noise_model, compensation: the setting both ran under.
        t_inference: seconds after programming.
        metric: the metric compared.
        mean: mean over repeats of ``value(table) - value(baseline)``.
        low, high: the confidence interval of ``mean`` (Student t over the repeats;
            NaN for a single repeat).
        repeats: how many repeats both ran.
        confidence: the interval's confidence level (0.95: 95 %).
    """

    table: str
    baseline: str
    noise_model: str
    compensation: bool
    t_inference: float
    metric: str
    mean: float
    low: float
    high: float
    repeats: int
    confidence: float


def mean_interval(values: Sequence[float], confidence: float = 0.95
                  ) -> Tuple[float, float, float]:
    """``(mean, low, high)``: the mean and its Student-t confidence interval (NaN bounds
    for fewer than two values)."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("mean_interval needs at least one value")
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + confidence / 2, len(values) - 1)) * statistics.stdev(
        values) / math.sqrt(len(values))
    return mean, mean - half, mean + half


def paired_differences(result: SweepResult, baseline: str, metric: Optional[str] = None,
                       confidence: float = 0.95) -> List[PairedDifference]:
    """Every other table's paired difference to ``baseline`` (see the module docstring).

    Args:
        result: a sweep's records.
        baseline: the display name of the table to compare with.
        metric: the metric (default: the sweep's main one).
        confidence: confidence level of the intervals, in (0, 1).

    Raises:
        ValueError: for a baseline the sweep did not run (naming the tables it ran) or a
            confidence outside (0, 1).
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence!r}")
    records = result.of_metric(metric)
    tables = list(dict.fromkeys(r["table"] for r in records))
    if baseline not in tables:
        raise ValueError(f"baseline {baseline!r} is not a table of this sweep (tables: "
                         f"{', '.join(map(repr, tables))})")
    base: Dict[Tuple[Any, ...], float] = {
        (r["noise_model"], r["compensation"], r["t_inference"], r["repeat"]): r["value"]
        for r in records if r["table"] == baseline}
    groups: Dict[Tuple[Any, ...], List[float]] = {}
    for r in records:
        if r["table"] == baseline:
            continue
        key = (r["noise_model"], r["compensation"], r["t_inference"], r["repeat"])
        if key in base:
            group = (r["table"], r["noise_model"], r["compensation"], r["t_inference"])
            groups.setdefault(group, []).append(r["value"] - base[key])
    rows = []
    for (table, noise, compensation, t), diffs in groups.items():
        mean, low, high = mean_interval(diffs, confidence)
        rows.append(PairedDifference(table, baseline, noise, compensation, t,
                                     metric or result.metric, mean, low, high, len(diffs),
                                     confidence))
    return rows


def format_paired(rows: Sequence[PairedDifference], times: Sequence[float]) -> str:
    """A text table: per table and setting, the mean paired difference and its interval
    at each time. The noise model and drift compensation get a column where they vary
    among the rows (as in :meth:`SweepResult.format_summary`), so that no two lines read
    alike."""
    if not rows:
        return "(no paired differences)"
    first = rows[0]
    varying = varying_fields([{"noise_model": r.noise_model, "compensation": r.compensation}
                              for r in rows])
    cells: Dict[Tuple[Any, ...], Dict[float, PairedDifference]] = {}
    for row in rows:
        cells.setdefault((row.table,) + tuple(getattr(row, k) for k in varying), {})[
            row.t_inference] = row
    width = max(20, *(len(key[0]) for key in cells))
    extra_width = [max(len(k), *(len(short_value(key[1 + i])) for key in cells))
                   for i, k in enumerate(varying)]
    head = f"{'table':<{width}s}" + "".join(
        f" {k:<{w}s}" for k, w in zip(varying, extra_width)) + "".join(
        f" {format_time(t):>24s}" for t in times)
    lines = [f"{first.metric} minus {first.baseline!r}, same repeats (common random "
             f"numbers): mean [{first.confidence:.0%} t-interval]", head, "-" * len(head)]
    for key, by_time in cells.items():
        text = "".join(f" {short_value(v):<{w}s}" for v, w in zip(key[1:], extra_width))
        for t in times:
            row = by_time.get(t)
            if row is None:
                text += f" {'-':>24s}"
            elif math.isnan(row.low):
                text += f" {row.mean:+.4f} (1 repeat)".rjust(25)
            else:
                text += f" {row.mean:+.4f} [{row.low:+.4f}, {row.high:+.4f}]".rjust(25)
        lines.append(f"{key[0]:<{width}s}{text}")
    return "\n".join(lines)
