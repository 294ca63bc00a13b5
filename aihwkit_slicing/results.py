"""Sweep results: tidy records, summaries, CSV.

A :class:`SweepResult` holds one record per setting, time, repeat and metric value;
:mod:`aihwkit_slicing.plotting` draws them.
"""

from __future__ import annotations

import csv
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union


RECORD_FIELDS = [
    "task", "table", "n_devices", "n_levels", "noise_model", "compensation", "peripherals",
    "mapping", "t_inference", "repeat", "metric", "value", "weight_rms_error",
    "weight_max_error",
]


@dataclass
class SweepResult:
    """Records of a sweep (one per table, noise model, compensation, time, repeat).

    Attributes:
        records: tidy rows; keys :data:`RECORD_FIELDS` plus any further metrics of
            the task (by name).
        reference: the task's metrics for the floating-point model.
        metric: the main metric.
        task: the task's name.
    """

    records: List[Dict[str, Any]]
    reference: Dict[str, float]
    metric: str
    task: str
    times: List[float] = field(default_factory=list)

    def summary(self) -> List[Dict[str, Any]]:
        """Mean and standard deviation over repeats, per table, noise model,
        compensation, peripherals, mapping and time."""
        groups: Dict[tuple, List[Dict[str, Any]]] = {}
        keys = ["task", "table", "n_devices", "n_levels", "noise_model", "compensation",
                "peripherals", "mapping", "t_inference", "metric"]
        for record in self.records:
            groups.setdefault(tuple(record[k] for k in keys), []).append(record)
        rows = []
        for group_key, members in groups.items():
            row = dict(zip(keys, group_key))
            for name in ("value", "weight_rms_error"):
                values = [m[name] for m in members]
                row[f"{name}_mean"] = statistics.fmean(values)
                row[f"{name}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
            row["repeats"] = len(members)
            rows.append(row)
        return rows

    def format_summary(self, times: Optional[Sequence[float]] = None) -> str:
        """A text table: one row per table (and setting), mean +- std at each time."""
        times = list(times or self.times)
        rows = self.summary()
        settings: Dict[tuple, Dict[float, Dict[str, Any]]] = {}
        for row in rows:
            key = (row["table"], row["n_devices"], row["noise_model"], row["compensation"])
            settings.setdefault(key, {})[row["t_inference"]] = row
        width = max([20] + [len(key[0]) for key in settings])
        head = f"{'table':<{width}s} {'dev':>3s} {'noise':<8s} {'comp':<4s}" + "".join(
            f" {format_time(t):>13s}" for t in times
        )
        lines = [f"{self.task}: {self.metric} (floating point "
                 f"{self.reference.get(self.metric, float('nan')):.4f}), mean +- std over "
                 f"repeats", head, "-" * len(head)]
        for (table, n_dev, noise, comp), by_time in settings.items():
            cells = []
            for t in times:
                row = by_time.get(t)
                cells.append(f" {row['value_mean']:6.4f}+-{row['value_std']:.3f}" if row
                             else f" {'-':>13s}")
            lines.append(f"{table:<{width}s} {n_dev:>3d} {noise:<8s} "
                         f"{'on' if comp else 'off':<4s}" + "".join(cells))
        return "\n".join(lines)

    def write_csv(self, path: Union[str, Path]) -> Path:
        """Write the records as CSV (one row per record); returns the path."""
        path = Path(path)
        extra = sorted({k for r in self.records for k in r} - set(RECORD_FIELDS))
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=RECORD_FIELDS + extra)
            writer.writeheader()
            writer.writerows(self.records)
        return path


def format_time(seconds: float) -> str:
    """``3600`` -> ``'1 h'``, ``31536000`` -> ``'1 year'``, and so on."""
    units = [(315360000.0, "10 years"), (31536000.0, "year"), (2592000.0, "month"),
             (86400.0, "day"), (3600.0, "h"), (60.0, "min"), (1.0, "s")]
    for size, name in units:
        if seconds >= size:
            value = seconds / size
            if name == "10 years":
                value, name = seconds / 31536000.0, "years"
            text = f"{value:g}"
            plural = name in ("year", "month", "day") and value != 1
            return f"{text} {name}{'s' if plural else ''}"
    return f"{seconds:g} s"
