"""Sweep results: tidy, self-describing records; summaries; CSV written as they come.

One record is one number: a setting (every field that changes the result), an
inference time, a repeat, a metric name and its value. :data:`RECORD_FIELDS` lists
the columns of ``results.csv``; the file is appended to one finished unit at a time
(:class:`ResultsFile`), so an interrupted sweep keeps what it finished.
:mod:`aihwkit_slicing.experiments.plotting` draws a :class:`SweepResult`.
"""

from __future__ import annotations

import csv
import math
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from aihwkit_slicing.integration.setting import SETTING_FIELDS

#: The columns of ``results.csv``, in order: the setting
#: (:data:`~aihwkit_slicing.integration.setting.SETTING_FIELDS`) and its id, the time
#: (seconds), the repeat, where and with which releases it ran, the metric and its value.
RECORD_FIELDS = list(SETTING_FIELDS) + [
    "setting_id", "t_inference", "repeat", "device", "aihwkit_slicing", "aihwkit", "torch",
    "metric", "value",
]
#: Metrics every sweep records besides the task's own: weight errors of the tiles
#: (relative to each tile's max|w|, see :func:`aihwkit_slicing.experiments.metrics.weight_errors`).
WEIGHT_METRICS = ["weight_rms_error", "weight_max_error"]

_FLOATS = {"n_devices", "t_inference", "value"}
#: Setting fields that are None where they do not apply (an empty CSV cell).
_OPTIONAL_FLOATS = {"n_levels", "percentile"}
_OPTIONAL_STRINGS = {"scale"}
_INTS = {"repeat", "seed"}
_BOOLS = {"per_channel", "compensation"}


@dataclass
class SweepResult:
    """Records of a sweep.

    Attributes:
        records: tidy rows with the keys :data:`RECORD_FIELDS`.
        reference: the task's metrics for the floating-point model.
        metric: the main metric (higher is better).
        task: the task's name.
        times: the inference times swept, in seconds.
    """

    records: List[Dict[str, Any]]
    reference: Dict[str, float]
    metric: str
    task: str
    times: List[float] = field(default_factory=list)

    def of_metric(self, metric: Optional[str] = None) -> List[Dict[str, Any]]:
        """The records of one metric (default: the main one)."""
        metric = metric or self.metric
        return [r for r in self.records if r["metric"] == metric]

    def summary(self, metric: Optional[str] = None) -> List[Dict[str, Any]]:
        """Mean and standard deviation over repeats, per setting and time.

        Records group by table name, setting id
        (:attr:`~aihwkit_slicing.integration.setting.SimulatedSetting.setting_id`), time
        and metric: strings and numbers that compare equal however the records came
        (this process, a Dask worker, a CSV file read back).

        Returns:
            One dict per setting and time: the setting's fields, ``setting_id``,
            ``t_inference``, ``metric``, ``value_mean``, ``value_std`` (sample standard
            deviation, 0 for one repeat) and ``repeats``.
        """
        groups: Dict[Tuple, List[Dict[str, Any]]] = {}
        for record in self.of_metric(metric):
            key = (record["table"], record["setting_id"], record["t_inference"],
                   record["metric"])
            groups.setdefault(key, []).append(record)
        keys = list(SETTING_FIELDS) + ["setting_id", "t_inference", "metric"]
        rows = []
        for group in groups.values():
            values = [record["value"] for record in group]
            row = {k: group[0].get(k) for k in keys}
            row["value_mean"] = statistics.fmean(values)
            row["value_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
            row["repeats"] = len(values)
            rows.append(row)
        return rows

    def format_summary(self, times: Optional[Sequence[float]] = None) -> str:
        """A text table: one row per setting, mean +- std over repeats at each time."""
        times = list(times or self.times)
        rows = self.summary()
        quantized = [r for r in rows if r.get("scale")]
        varying = [k for k in ("noise_model", "compensation", "mapping", "peripherals")
                   if len({r.get(k) for r in rows}) > 1]
        varying += [k for k in ("scale", "per_channel", "level_noise")
                    if len({r.get(k) for r in quantized}) > 1]
        settings: Dict[Tuple, Dict[float, Dict[str, Any]]] = {}
        for row in rows:
            key = (row["table"], row["n_devices"]) + tuple(row.get(k) for k in varying)
            settings.setdefault(key, {})[row["t_inference"]] = row
        width = max([20] + [len(str(key[0])) for key in settings])
        extra_width = [max(len(k), *(len(_short(s[2 + i])) for s in settings))
                       for i, k in enumerate(varying)]
        head = f"{'table':<{width}s} {'dev':>4s}" + "".join(
            f" {k:<{w}s}" for k, w in zip(varying, extra_width)) + "".join(
            f" {format_time(t):>13s}" for t in times)
        reference = self.reference.get(self.metric, float("nan"))
        lines = [f"{self.task}: {self.metric} (floating point {reference:.4f}), mean +- std "
                 f"over repeats; scaling of quantized tables: {self._scaling_note(rows)}",
                 head, "-" * len(head)]
        for key, by_time in settings.items():
            table, n_dev = key[0], key[1]
            cells = "".join(
                f" {by_time[t]['value_mean']:6.4f}+-{by_time[t]['value_std']:.3f}"
                if t in by_time else f" {'-':>13s}" for t in times)
            extras = "".join(f" {_short(v):<{w}s}" for v, w in zip(key[2:], extra_width))
            lines.append(f"{table:<{width}s} {_devices(n_dev):>4s}{extras}{cells}")
        return "\n".join(lines)

    @staticmethod
    def _scaling_note(rows: List[Dict[str, Any]]) -> str:
        rules = sorted({(r.get("scale"), r.get("per_channel"), r.get("level_noise"))
                        for r in rows if r.get("scale")}, key=str)
        if not rules:
            return "none (continuous converters only)"
        return "; ".join(
            f"{scale}{' per channel' if per_channel else ' per tensor'}"
            f"{f', noise-aware at {noise} s' if noise else ''}"
            for scale, per_channel, noise in rules)

    def write_csv(self, path: Union[str, Path]) -> Path:
        """Write all records as CSV (:data:`RECORD_FIELDS`); returns the path."""
        path = Path(path)
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=RECORD_FIELDS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(self.records)
        return path

    def to_pandas(self) -> Any:
        """The records as a ``pandas.DataFrame`` (needs the optional extra ``pandas``)."""
        try:
            import pandas
        except ImportError as error:  # pragma: no cover - depends on the environment
            raise ImportError("to_pandas needs pandas: pip install 'aihwkit-slicing[pandas]'"
                              ) from error
        return pandas.DataFrame(self.records, columns=RECORD_FIELDS)


def _devices(n_devices: Any) -> str:
    value = float(n_devices)
    return f"{value:g}" if value == int(value) else f"{value:.2f}"


def _short(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


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


# ============================================================== results file
def parse_record(row: Dict[str, str]) -> Dict[str, Any]:
    """A CSV row (strings) back to typed values: the record as it was written."""
    record: Dict[str, Any] = {}
    for key, text in row.items():
        if key in _OPTIONAL_FLOATS:
            record[key] = float(text) if text != "" else None
        elif key in _OPTIONAL_STRINGS:
            record[key] = text or None
        elif key == "per_channel":
            record[key] = None if text == "" else text == "True"
        elif key in _FLOATS:
            record[key] = float(text) if text != "" else math.nan
        elif key in _INTS:
            record[key] = int(text)
        elif key in _BOOLS:
            record[key] = text == "True"
        else:
            record[key] = text
    return record


def read_records(path: Union[str, Path], strict: bool = True) -> List[Dict[str, Any]]:
    """The complete records of a ``results.csv`` (a torn last line is left out).

    Raises:
        ValueError: if the file's columns are not this release's (``strict=False``:
            no records instead).
    """
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text()
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]  # a line cut by an interruption
    lines = text.splitlines()
    if not lines:
        return []
    if lines[0].split(",") != RECORD_FIELDS:
        if not strict:
            return []
        raise ValueError(f"{path} is not a results file of this release (its columns differ)")
    return [parse_record(row) for row in csv.DictReader(lines)]


class ResultsFile:
    """``results.csv``, appended to one finished unit of records at a time.

    Each :meth:`append` writes its rows with one ``write`` call, then flushes and syncs
    the file, so an interruption loses at most the unit being written (whose torn rows
    :meth:`keep_only` drops on resume).
    """

    def __init__(self, path: Union[str, Path]):
        self.path = Path(path)
        if not self.path.exists() or self.path.stat().st_size == 0:
            self._write(_csv_text([], header=True), mode="w")

    def keep_only(self, records: Iterable[Dict[str, Any]]) -> None:
        """Rewrite the file with ``records`` only (complete units of a resumed sweep)."""
        self._write(_csv_text(list(records), header=True), mode="w")

    def append(self, records: List[Dict[str, Any]]) -> None:
        """Append one unit's records and make them durable."""
        self._write(_csv_text(records, header=False), mode="a")

    def _write(self, text: str, mode: str) -> None:
        with self.path.open(mode, newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())


def _csv_text(records: List[Dict[str, Any]], header: bool) -> str:
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=RECORD_FIELDS, extrasaction="ignore",
                            lineterminator="\n")
    if header:
        writer.writeheader()
    writer.writerows(records)
    return buffer.getvalue()
