"""Drift sweeps: pretrained networks x programming tables x noise models x times.

One call answers "which table keeps accuracy highest after an hour, a day, a year of
drift, under which noise model, with or without drift compensation"::

    from aihwkit_slicing.evaluation import digits_task, run_sweep

    result = run_sweep(digits_task(), tables=["aihwkit-1pair", "seed", "4x4lvl-base"],
                       times=[1, 3600, 86400], repeats=3, seed=0)
    print(result.format_summary())
    result.write_csv("results.csv"); result.plot("accuracy_vs_time.png")

For every table, noise model and compensation setting the network is converted once
with aihwkit's ``convert_to_analog``; for every repeat it is programmed once
(``program_analog_weights``) and drifted to each time (``drift_analog_weights``), then
scored. Sweeps know converters only through aihwkit's rpu_config.

Defaults isolate the weights: ideal peripherals (``forward.is_perfect = True``) and
global drift compensation on; ``peripherals="realistic"`` keeps aihwkit's default
ADC/DAC and output noise instead.
"""

from __future__ import annotations

import copy
import csv
import math
import numbers
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from aihwkit.inference.compensation.drift import GlobalDriftCompensation
from aihwkit.inference.converter.base import BaseConductanceConverter
from aihwkit.inference.noise.base import BaseNoiseModel
from aihwkit.inference.noise.custom import StateIndependentNoiseModel
from aihwkit.inference.noise.hermes import HermesNoiseModel
from aihwkit.inference.noise.pcm import PCMLikeNoiseModel
from aihwkit.inference.noise.reram import ReRamWan2022NoiseModel
from aihwkit.nn.conversion import convert_to_analog
from aihwkit.simulator.configs import TorchInferenceRPUConfig

from aihwkit_slicing.catalog import (
    DEFAULT_SWEEP,
    TableSpec,
    devices_per_weight,
    levels_per_weight,
    make_converter,
)
from aihwkit_slicing.compat import check_compiled_tile

#: Inference times of the default sweep, in seconds: 1 s, 1 h, 1 day, 1 month, 1 year,
#: 10 years.
DEFAULT_TIMES: List[float] = [1.0, 3600.0, 86400.0, 2592000.0, 31536000.0, 315360000.0]

NoiseModelFactory = Callable[[BaseConductanceConverter], BaseNoiseModel]

#: Noise models by name; each factory takes the converter the noise model drives.
NOISE_MODELS: Dict[str, NoiseModelFactory] = {
    "pcm": lambda conv: PCMLikeNoiseModel(g_converter=conv),
    "hermes": lambda conv: HermesNoiseModel(g_converter=conv),
    "reram": lambda conv: ReRamWan2022NoiseModel(g_converter=conv),
    "state-independent": lambda conv: StateIndependentNoiseModel(g_converter=conv),
    "none": lambda conv: PCMLikeNoiseModel(
        g_converter=conv, prog_noise_scale=0.0, read_noise_scale=0.0, drift_scale=0.0
    ),
}

PERIPHERALS = ("ideal", "realistic")
MAPPINGS = ("tensor", "column")


# ====================================================================== tasks
@dataclass
class Task:
    """A pretrained floating-point model and how to score a copy of it.

    Attributes:
        name: short name (``"digits"``, ``"minilm"``).
        model: the floating-point model (left untouched by sweeps).
        evaluate: scores a model (floating point or analog): metric name -> value.
        metric: the main metric (higher is better), a key of ``evaluate``'s result.
    """

    name: str
    model: nn.Module
    evaluate: Callable[[nn.Module], Dict[str, float]]
    metric: str


def digits_task() -> Task:
    """The bundled digits CNN, scored by accuracy on the fixed held-out split."""
    from aihwkit_slicing.models.digits import accuracy, load_digits_model, load_digits_split

    _, _, x_test, y_test = load_digits_split()
    return Task(
        name="digits",
        model=load_digits_model(),
        evaluate=lambda model: {"accuracy": accuracy(model, x_test, y_test)},
        metric="accuracy",
    )


def minilm_task() -> Task:
    """The MiniLM sentence encoder, scored by cosine similarity to floating point.

    Needs the optional extra ``minilm`` (raises ``ImportError`` otherwise).
    """
    from aihwkit_slicing.models.minilm import MiniLMScorer, load_minilm

    model = load_minilm()
    return Task(name="minilm", model=model, evaluate=MiniLMScorer(model), metric="cosine")


TASKS: Dict[str, Callable[[], Task]] = {"digits": digits_task, "minilm": minilm_task}


def load_task(name: str) -> Task:
    """A bundled task by name (see :data:`TASKS`)."""
    if name not in TASKS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(TASKS)}")
    return TASKS[name]()


# ================================================================= rpu config
def make_rpu_config(
    converter: BaseConductanceConverter,
    noise_model: Union[str, NoiseModelFactory, BaseNoiseModel] = "pcm",
    compensation: bool = True,
    peripherals: str = "ideal",
    mapping: str = "tensor",
    base: Optional[TorchInferenceRPUConfig] = None,
) -> TorchInferenceRPUConfig:
    """An inference rpu_config whose noise model is driven by ``converter``.

    Args:
        converter: the conductance converter (ours or aihwkit's).
        noise_model: a name from :data:`NOISE_MODELS`, a factory taking the converter,
            or a noise model instance (copied, its converter replaced).
        compensation: global drift compensation on or off.
        peripherals: ``"ideal"`` (``forward.is_perfect = True``: only weight noise
            counts) or ``"realistic"`` (aihwkit's default forward: DAC/ADC
            quantization, output noise, bounds).
        mapping: ``"tensor"`` (one scale per weight tensor, aihwkit's default
            ``weight_scaling_omega = 0``) or ``"column"`` (aihwkit scales every output
            column to max 1 before conversion: ``weight_scaling_omega = 1``,
            ``weight_scaling_columnwise = True``).
        base: rpu_config to start from (copied); default ``TorchInferenceRPUConfig()``.
    """
    if peripherals not in PERIPHERALS:
        raise ValueError(f"peripherals must be one of {PERIPHERALS}, got {peripherals!r}")
    if mapping not in MAPPINGS:
        raise ValueError(f"mapping must be one of {MAPPINGS}, got {mapping!r}")
    check_compiled_tile(base)
    rpu_config = copy.deepcopy(base) if base is not None else TorchInferenceRPUConfig()
    rpu_config.noise_model = build_noise_model(noise_model, converter)
    rpu_config.drift_compensation = GlobalDriftCompensation() if compensation else None
    if peripherals == "ideal":
        rpu_config.forward.is_perfect = True
    if mapping == "column":
        rpu_config.mapping.weight_scaling_omega = 1.0
        rpu_config.mapping.weight_scaling_columnwise = True
    return rpu_config


def build_noise_model(
    spec: Union[str, NoiseModelFactory, BaseNoiseModel], converter: BaseConductanceConverter
) -> BaseNoiseModel:
    """A noise model driven by ``converter``: from a name in :data:`NOISE_MODELS`, a
    noise model class, a factory taking the converter, or an instance (deep-copied,
    its converter replaced and its ``g_max`` taken from the converter)."""
    if isinstance(spec, str):
        if spec not in NOISE_MODELS:
            raise ValueError(
                f"unknown noise model {spec!r}; known noise models: {', '.join(NOISE_MODELS)}"
            )
        return NOISE_MODELS[spec](converter)
    if isinstance(spec, type) and issubclass(spec, BaseNoiseModel):
        return spec(g_converter=converter)
    if isinstance(spec, BaseNoiseModel):
        model = copy.deepcopy(spec)
        model.g_converter = copy.deepcopy(converter)
        if hasattr(model, "g_max"):
            model.g_max = converter.g_max
        return model
    if callable(spec):
        return spec(converter)
    raise TypeError(f"noise_model must be a name, a factory or a noise model, got {spec!r}")


def _check_times(times: Sequence[float], noise_model: BaseNoiseModel, name: str) -> None:
    if isinstance(noise_model, ReRamWan2022NoiseModel):
        allowed = sorted(noise_model.coeff_dic)
        bad = [t for t in times if t not in noise_model.coeff_dic]
        if bad:
            raise ValueError(
                f"noise model {name!r} only knows the times {allowed} s, got {bad}"
            )


# ============================================================= weight errors
@torch.no_grad()
def weight_errors(analog_model: nn.Module) -> Dict[str, float]:
    """How far the analog weights are from the floating-point ones.

    For every analog tile, the effective weights (current tile weights times the drift
    compensation factor ``alpha``) are compared with the weights the tile was
    programmed from, relative to that tile's ``max|w|``.

    Returns:
        ``weight_rms_error``: root mean square of the relative error over all weights;
        ``weight_max_error``: the largest relative error.
    """
    squares, count, worst = 0.0, 0, 0.0
    for tile in analog_model.analog_tiles():
        reference = getattr(tile, "reference_combined_weights", None)
        if reference is None:
            continue
        weights = tile.tile.get_weights().to(reference.device)
        alpha = getattr(tile, "alpha", None)
        if alpha is not None:
            weights = weights * alpha.to(weights)
        scale = reference.abs().max().clamp(min=torch.finfo(reference.dtype).tiny)
        error = ((weights - reference) / scale).double()
        squares += float(error.square().sum())
        count += error.numel()
        worst = max(worst, float(error.abs().max()))
    rms = math.sqrt(squares / count) if count else float("nan")
    return {"weight_rms_error": rms, "weight_max_error": worst if count else float("nan")}


# ==================================================================== sweep
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

    def plot(self, path: Union[str, Path, None] = None, ax: Any = None) -> Any:
        """Main metric against inference time (log scale), one line per table.

        The band shows the spread (mean +- std) over repeats; the dotted line is the
        floating-point model. Writes a PNG if ``path`` is given; returns the axes.
        """
        from aihwkit_slicing.plotting import plot_metric_vs_time

        return plot_metric_vs_time(self, path=path, ax=ax)


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


def _validate_sweep_args(times: Sequence[float], repeats: int) -> List[float]:
    if isinstance(repeats, bool) or not isinstance(repeats, numbers.Integral) or repeats < 1:
        raise ValueError(f"repeats must be an integer >= 1, got {repeats!r}")
    checked = []
    for t in list(times):
        if (isinstance(t, bool) or not isinstance(t, numbers.Real) or not math.isfinite(t)
                or t < 0):
            raise ValueError(f"times must be finite numbers of seconds >= 0, got {t!r}")
        checked.append(float(t))
    if not checked:
        raise ValueError("times must name at least one inference time")
    return checked


def _seed(*parts: int) -> int:
    value = 0
    for part in parts:
        value = (value * 1_000_003 + int(part)) % (2**63 - 1)
    return value


def run_sweep(
    task: Task,
    tables: Union[Sequence[TableSpec], Mapping[str, TableSpec]] = tuple(DEFAULT_SWEEP),
    noise_models: Union[Sequence[Any], Mapping[str, Any]] = ("pcm",),
    times: Sequence[float] = tuple(DEFAULT_TIMES),
    repeats: int = 3,
    seed: int = 0,
    compensation: Union[bool, Sequence[bool]] = True,
    peripherals: str = "ideal",
    mapping: str = "tensor",
    scale: str = "max",
    per_channel: bool = False,
    rpu_config: Optional[TorchInferenceRPUConfig] = None,
    progress: bool = True,
) -> SweepResult:
    """Program and drift ``task.model`` with every table, noise model and setting.

    Args:
        task: the model and its scoring (see :func:`digits_task`, :func:`minilm_task`).
        tables: table names, :class:`ProgrammingTable` objects or aihwkit converters
            (baselines); a sequence (names taken from the tables) or a mapping of
            display name to spec.
        noise_models: names from :data:`NOISE_MODELS`, factories or noise model
            instances; a sequence or a mapping of display name to spec.
        times: inference times in seconds after programming.
        repeats: programmings per setting (fresh programming noise each).
        seed: results are the same for the same seed.
        compensation: global drift compensation on, off, or both (``[True, False]``).
        peripherals: ``"ideal"`` or ``"realistic"`` (see :func:`make_rpu_config`).
        mapping: ``"tensor"`` or ``"column"`` (see :func:`make_rpu_config`).
        scale, per_channel: scaling of our converters (ignored by aihwkit's).
        rpu_config: rpu_config to start from (default ``TorchInferenceRPUConfig()``).
        progress: show a tqdm progress bar.

    Returns:
        A :class:`SweepResult`.
    """
    from tqdm import tqdm

    times = _validate_sweep_args(times, repeats)
    table_specs = _named(tables, "table")
    noise_specs = _named(noise_models, "noise model")
    compensations = [compensation] if isinstance(compensation, bool) else list(compensation)
    converters = {name: make_converter(spec, scale=scale, per_channel=per_channel)
                  for name, spec in table_specs.items()}
    reference = task.evaluate(task.model)
    records: List[Dict[str, Any]] = []
    total = len(converters) * len(noise_specs) * len(compensations) * repeats * len(times)
    bar = tqdm(total=total, disable=not progress, desc=f"sweep {task.name}", unit="eval")
    for table_name, converter in converters.items():
        for noise_name, noise_spec in noise_specs.items():
            for comp in compensations:
                config = make_rpu_config(converter, noise_spec, comp, peripherals, mapping,
                                         base=rpu_config)
                _check_times(times, config.noise_model, noise_name)
                analog = convert_to_analog(task.model, config, ensure_analog_root=True).eval()
                for repeat in range(repeats):
                    torch.manual_seed(_seed(seed, repeat, 0))
                    analog.program_analog_weights()
                    for t_index, t in enumerate(times):
                        torch.manual_seed(_seed(seed, repeat, t_index + 1))
                        analog.drift_analog_weights(t)
                        metrics = task.evaluate(analog)
                        record = {
                            "task": task.name, "table": table_name,
                            "n_devices": devices_per_weight(converter),
                            "n_levels": levels_per_weight(converter),
                            "noise_model": noise_name, "compensation": comp,
                            "peripherals": peripherals, "mapping": mapping,
                            "t_inference": t, "repeat": repeat, "metric": task.metric,
                            "value": metrics[task.metric],
                        }
                        record.update(weight_errors(analog))
                        record.update({k: v for k, v in metrics.items() if k != task.metric})
                        records.append(record)
                        bar.update(1)
                del analog
    bar.close()
    return SweepResult(records=records, reference=reference, metric=task.metric,
                       task=task.name, times=times)


def _named(specs: Union[Sequence[Any], Mapping[str, Any]], what: str) -> Dict[str, Any]:
    if isinstance(specs, Mapping):
        named = dict(specs)
    else:
        named = {}
        for spec in (specs if isinstance(specs, (list, tuple)) else [specs]):
            name = _display_name(spec)
            if name in named:
                raise ValueError(
                    f"two {what}s are both called {name!r}; pass a mapping of names to "
                    f"{what}s instead"
                )
            named[name] = spec
    if not named:
        raise ValueError(f"name at least one {what}")
    return named


def _display_name(spec: Any) -> str:
    if isinstance(spec, str):
        return spec
    name = getattr(spec, "name", None) or getattr(getattr(spec, "table", None), "name", None)
    return name or type(spec).__name__


def iter_times(text: str) -> Iterable[float]:
    """Parse ``"1,3600,86400"`` into floats (raises ``ValueError`` naming the bad item)."""
    for item in text.split(","):
        item = item.strip()
        try:
            value = float(item)
        except ValueError:
            raise ValueError(f"times must be numbers of seconds, got {item!r}") from None
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"times must be finite numbers of seconds >= 0, got {item!r}")
        yield value
