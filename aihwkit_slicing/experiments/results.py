"""Sweep results: tidy, self-describing records; summaries; CSV written as they come.

One record is one number: a setting (every field that changes the result), an
inference time, a repeat, a metric name and its value. :data:`RECORD_FIELDS` lists
the columns of ``results.csv``; the file is appended to one finished unit at a time
(:class:`ResultsFile`), so an interrupted sweep keeps what it finished, and
:func:`read_sweep` reads a results folder back (``results.csv`` and ``sweep.json``).
:mod:`aihwkit_slicing.experiments.plotting` draws a :class:`SweepResult`.
"""

from __future__ import annotations

import csv
import json
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
        lower_is_better: metrics for which lower is better (the weight errors, and
            those the task names).
    """

    records: List[Dict[str, Any]]
    reference: Dict[str, float]
    metric: str
    task: str
    times: List[float] = field(default_factory=list)
    lower_is_better: List[str] = field(default_factory=lambda: list(WEIGHT_METRICS))

    def of_metric(self, metric: Optional[str] = None) -> List[Dict[str, Any]]:
        """The records of one metric (default: the main one)."""
        metric = metric or self.metric
        return [r for r in self.records if r["metric"] == metric]

    def metrics(self) -> List[str]:
        """The metrics the records hold, the main one first."""
        return list(dict.fromkeys([self.metric] + [r["metric"] for r in self.records]))

    def higher_is_better(self, metric: Optional[str] = None) -> bool:
        """Whether a higher value of ``metric`` (default: the main one) is better."""
        return (metric or self.metric) not in self.lower_is_better

    def check_metric(self, metric: Optional[str]) -> str:
        """``metric`` (default: the main one) if the records hold it.

        Raises:
            ValueError: naming the metric and those the records hold.
        """
        metric = metric or self.metric
        if metric not in self.metrics() or not self.of_metric(metric):
            raise ValueError(f"no records of the metric {metric!r}; the records hold "
                             f"{', '.join(m for m in self.metrics() if self.of_metric(m))}")
        return metric

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

    def format_summary(self, times: Optional[Sequence[float]] = None,
                       metric: Optional[str] = None, digits: int = 4) -> str:
        """A text table: one row per setting, the mean over repeats at each time and
        ``± std`` (sample standard deviation, as many decimals as the mean; none for a
        single repeat).

        Args:
            times: the columns (default: every time swept).
            metric: any metric of the records (default: the main one).
            digits: decimals of means and standard deviations.
        """
        times = list(times or self.times)
        metric = self.check_metric(metric)
        rows = self.summary(metric)
        varying = varying_fields(rows)
        settings: Dict[Tuple, Dict[float, Dict[str, Any]]] = {}
        for row in rows:
            key = (row["table"], row["n_devices"]) + tuple(row.get(k) for k in varying)
            settings.setdefault(key, {})[row["t_inference"]] = row
        cells = {key: [format_mean(by_time[t], digits) if t in by_time else "-"
                       for t in times] for key, by_time in settings.items()}
        cell_width = max([13] + [len(c) for row in cells.values() for c in row])
        width = max([20] + [len(str(key[0])) for key in settings])
        extra_width = [max(len(k), *(len(short_value(s[2 + i])) for s in settings))
                       for i, k in enumerate(varying)]
        head = f"{'table':<{width}s} {'dev':>4s}" + "".join(
            f" {k:<{w}s}" for k, w in zip(varying, extra_width)) + "".join(
            f" {format_time(t):>{cell_width}s}" for t in times)
        reference = self.reference.get(metric)
        direction = "higher" if self.higher_is_better(metric) else "lower"
        floating = "" if reference is None else f", floating point {reference:.{digits}f}"
        lines = [f"{self.task}: {metric} ({direction} is better{floating}), "
                 f"{repeats_note(rows)}; scaling of quantized tables: "
                 f"{scaling_note(rows)}", head, "-" * len(head)]
        for key, row_cells in cells.items():
            table, n_dev = key[0], key[1]
            extras = "".join(f" {short_value(v):<{w}s}" for v, w in zip(key[2:], extra_width))
            lines.append(f"{table:<{width}s} {_devices(n_dev):>4s}{extras}" + "".join(
                f" {cell:>{cell_width}s}" for cell in row_cells))
        return "\n".join(lines)

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


def scaling_note(rows: Sequence[Dict[str, Any]]) -> str:
    """The scaling rules of the quantized tables among summary rows or records, e.g.
    ``"mse per channel"``."""
    rules = sorted({(r.get("scale"), r.get("per_channel"), r.get("level_noise"))
                    for r in rows if r.get("scale")}, key=str)
    if not rules:
        return "none (continuous converters only)"
    return "; ".join(
        f"{scale}{' per channel' if per_channel else ' per tensor'}"
        f"{f', noise-aware at {noise} s' if noise else ''}"
        for scale, per_channel, noise in rules)


def format_mean(row: Dict[str, Any], digits: int = 4) -> str:
    """A summary row's ``mean ± std`` (the std with the mean's decimals), or the mean
    alone for one repeat."""
    if row["repeats"] < 2:
        return f"{row['value_mean']:.{digits}f}"
    return f"{row['value_mean']:.{digits}f} ± {row['value_std']:.{digits}f}"


def repeats_note(rows: Sequence[Dict[str, Any]]) -> str:
    """What the numbers of summary rows are: ``"mean ± std over 3 repeats"``, or
    ``"one repeat (no spread)"``."""
    counts = sorted({int(r["repeats"]) for r in rows})
    if not counts or counts == [1]:
        return "one repeat (no spread)"
    span = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]} to {counts[-1]}"
    return f"mean ± std over {span} repeats"


def _devices(n_devices: Any) -> str:
    value = float(n_devices)
    return f"{value:g}" if value == int(value) else f"{value:.2f}"


#: Setting fields that tell apart rows of one table (besides its devices), in the order
#: summaries show them; the last three only among quantized tables.
SETTING_PARTS = ("noise_model", "compensation", "mapping", "peripherals", "scale",
                 "per_channel", "level_noise")


def varying_fields(rows: Sequence[Dict[str, Any]]) -> List[str]:
    """The fields of :data:`SETTING_PARTS` whose values differ among summary rows or
    records (the scaling fields among those of quantized tables only): what a row's
    label must show besides its table to tell it apart."""
    quantized = [r for r in rows if r.get("scale")]
    varying = [k for k in SETTING_PARTS[:4] if len({r.get(k) for r in rows}) > 1]
    return varying + [k for k in SETTING_PARTS[4:] if len({r.get(k) for r in quantized}) > 1]


def short_value(value: Any) -> str:
    """A setting value as summaries print it: booleans as ``on``/``off``."""
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


# ============================================================ results folder
def read_sweep(folder: Union[str, Path]) -> SweepResult:
    """The sweep in a results folder: its ``results.csv`` and ``sweep.json``.

    Raises:
        ValueError: one sentence naming the file that is missing or unreadable.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder (give the folder a sweep wrote, with "
                         "results.csv and sweep.json)")
    manifest_path, results_path = folder / "sweep.json", folder / "results.csv"
    for path in (manifest_path, results_path):
        if not path.is_file():
            raise ValueError(f"{folder} holds no {path.name} (a sweep's --out folder has "
                             "results.csv and sweep.json)")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"{manifest_path}: not a readable sweep description ({error})"
                         ) from None
    if not isinstance(manifest, dict) or manifest.get("format") != "aihwkit-slicing-sweep":
        raise ValueError(f"{manifest_path} is not a sweep description of aihwkit-slicing")
    records = read_records(results_path)
    if not records:
        raise ValueError(f"{results_path} holds no records yet")
    return SweepResult(
        records=records, reference=dict(manifest.get("reference") or {}),
        metric=str(manifest["metric"]), task=str(manifest["task"]),
        times=[float(t) for t in manifest.get("times", [])],
        lower_is_better=list(manifest.get("lower_is_better", WEIGHT_METRICS)))


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
