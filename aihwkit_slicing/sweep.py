"""Drift sweeps: pretrained networks x programming tables x noise models x times.

One call answers "which table keeps accuracy highest after an hour, a day, a year of
drift, under which noise model, with or without drift compensation"::

    from aihwkit_slicing.sweep import run_sweep
    from aihwkit_slicing.tasks import digits_task

    result = run_sweep(digits_task(), tables=["aihwkit-1pair", "seed", "4x4lvl-base"],
                       times=[1, 3600, 86400], repeats=3, seed=0)
    print(result.format_summary())
    result.write_csv("results.csv")

For every table, noise model and compensation setting the network is converted once
with aihwkit's ``convert_to_analog``; for every repeat it is programmed once
(``program_analog_weights``) and drifted to each time (``drift_analog_weights``), then
scored. Sweeps know converters only through aihwkit's rpu_config.

Defaults isolate the weights: ideal peripherals (``forward.is_perfect = True``) and
global drift compensation on; ``peripherals="realistic"`` keeps aihwkit's default
ADC/DAC and output noise instead.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Union

import torch

from aihwkit.nn.conversion import convert_to_analog
from aihwkit.simulator.parameters.base import RPUConfigBase

from aihwkit_slicing.catalog import (
    DEFAULT_SWEEP,
    TableSpec,
    devices_per_weight,
    levels_per_weight,
    make_converter,
)
from aihwkit_slicing.metrics import weight_errors
from aihwkit_slicing.noise_models import DEFAULT_TIMES, check_times
from aihwkit_slicing.results import SweepResult
from aihwkit_slicing.rpu_configs import make_rpu_config
from aihwkit_slicing.tasks import Task


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
    rpu_config: Optional[RPUConfigBase] = None,
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
                check_times(times, config.noise_model, noise_name)
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
