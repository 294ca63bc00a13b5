"""The units of a sweep: what a setting is, how a unit is converted, seeded and scored.

:class:`SweepPlan` holds everything that defines a sweep's records except the task's
weights; :func:`run_unit` runs one setting for one repeat.
:mod:`aihwkit_slicing.experiments.sweep` runs the units in this process,
:mod:`aihwkit_slicing.experiments.distributed` on Dask workers. Every record carries
the :class:`~aihwkit_slicing.integration.setting.SimulatedSetting` that produced it
(:meth:`SweepPlan.describe`).

Seeds are *common random numbers*: a unit's programming noise is drawn from a stream
seeded by the sweep's seed and the repeat only, and its drift and read noise at each
time from one seeded also by the time (:meth:`SweepPlan.unit_seed`). Repeat ``r`` of
every table, noise model and setting starts from the same seed, so differences between
tables are paired; renaming a table, adding one, or running units in another order or
on other workers changes no record.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple, Union

import torch
from torch import nn

from aihwkit.inference.converter.base import BaseConductanceConverter
from aihwkit.nn.conversion import convert_to_analog
from aihwkit.simulator.parameters.base import RPUConfigBase

from aihwkit_slicing.design.assignment import ScalingRule, TableAssignment, is_weight_layer
from aihwkit_slicing.design.encodings import seeded_level_noise
from aihwkit_slicing.digital.conversion import convert_to_analog_sliced
from aihwkit_slicing.digital.spec import DigitalSlicing
from aihwkit_slicing.experiments.metrics import weight_errors
from aihwkit_slicing.experiments.tasks import Task
from aihwkit_slicing.integration.catalog import (  # noqa: F401  (DEFAULT_*: re-exported)
    DEFAULT_PER_CHANNEL,
    DEFAULT_SCALE,
    TableSpec,
    devices_per_weight,
    levels_per_weight,
    make_converter,
    spec_hash,
    spec_name,
    table_of,
)
from aihwkit_slicing.integration.measured_noise import follows_tables
from aihwkit_slicing.integration.noise_models import NoiseModelSpec, build_noise_model, check_times
from aihwkit_slicing.integration.rpu_configs import make_rpu_config
from aihwkit_slicing.integration.setting import (
    SimulatedSetting,
    noise_params,
    rpu_config_id,
    short_hash,
    stable_seed,
)
from aihwkit_slicing.version import __version__

SweepTable = Union[TableSpec, TableAssignment, DigitalSlicing, Mapping[str, TableSpec]]


# ====================================================================== plan
@dataclass(frozen=True)
class Setting:
    """One converted network of a sweep (by the display names of its parts)."""

    table: str
    noise_model: str
    compensation: bool


@dataclass
class SweepPlan:
    """Everything that defines a sweep's records, except the task's weights.

    Built by :func:`run_sweep` from its arguments; picklable, so that Dask workers
    run units from it. See :func:`run_sweep` for the fields.
    """

    task: str
    metric: str
    model_hash: str
    tables: Dict[str, SweepTable]
    noise_models: Dict[str, NoiseModelSpec]
    compensations: List[bool]
    times: List[float]
    repeats: int
    seed: int
    scale: str = DEFAULT_SCALE
    per_channel: bool = DEFAULT_PER_CHANNEL
    percentile: float = 99.9
    noise_aware: Optional[List[float]] = None
    peripherals: str = "ideal"
    mapping: str = "column"
    rpu_config: Optional[RPUConfigBase] = None
    device: str = "cpu"
    task_source: Optional[str] = None
    lower_is_better: List[str] = field(default_factory=list)
    _described: Dict[Setting, SimulatedSetting] = field(default_factory=dict, repr=False)
    _level_noise: Dict[Tuple[str, str, Tuple[float, ...], bool], Any] = field(
        default_factory=dict, repr=False)

    def settings(self) -> List[Setting]:
        """Every setting, tables outermost."""
        return [Setting(t, n, c) for t in self.tables for n in self.noise_models
                for c in self.compensations]

    def units(self) -> List[Tuple[Setting, int]]:
        """Every (setting, repeat)."""
        return [(s, r) for s in self.settings() for r in range(self.repeats)]

    # ------------------------------------------------------------- conversion
    def own_scaling_rule(self) -> ScalingRule:
        """The sweep's scaling of quantized tables."""
        return ScalingRule(self.scale, self.per_channel, self.percentile,
                           tuple(self.noise_aware) if self.noise_aware else None)

    def scaling_rule(self, spec: SweepTable) -> ScalingRule:
        """The scaling of ``spec``'s quantized tables: the rule an assignment records,
        else the sweep's own."""
        if isinstance(spec, TableAssignment) and spec.scale:
            return spec.scaling_rule()
        return self.own_scaling_rule()

    def converter(self, spec: TableSpec, noise_name: str, compensation: bool = True,
                  rule: Optional[ScalingRule] = None) -> BaseConductanceConverter:
        """A fresh converter for one table spec under one noise model and drift
        compensation, scaled by ``rule`` (default: :meth:`scaling_rule` of ``spec``)."""
        rule = rule or self.scaling_rule(spec)
        table = table_of(spec)
        level_noise = None
        if rule.noise_aware and table is not None and not isinstance(
                spec, BaseConductanceConverter):
            device = None if table.device is None else table.device.content_hash()
            key = (table.programmed_hash(), device, noise_name, rule.noise_aware, compensation)
            if key not in self._level_noise:  # Monte Carlo, seeded: the same every time
                self._level_noise[key] = seeded_level_noise(
                    table, self.noise_models[noise_name], rule.noise_aware, compensation)
            level_noise = self._level_noise[key]
        return make_converter(spec, scale=rule.scale, per_channel=rule.per_channel,
                              percentile=rule.percentile, level_noise=level_noise)

    def rpu_config_for(self, converter: BaseConductanceConverter, setting: Setting
                       ) -> RPUConfigBase:
        return make_rpu_config(converter, self.noise_models[setting.noise_model],
                               setting.compensation, self.peripherals, self.mapping,
                               base=self.rpu_config)

    def analog_model(self, model: nn.Module, setting: Setting) -> nn.Module:
        """``model`` converted for ``setting``, in eval mode, on :attr:`device`."""
        spec = self.tables[setting.table]
        if isinstance(spec, TableAssignment):
            rule = self.scaling_rule(spec)
            configs = {key: self.rpu_config_for(
                self.converter(s, setting.noise_model, setting.compensation, rule), setting)
                for key, s in spec.distinct_specs()}
            for config in configs.values():
                check_times(self.times, config.noise_model, setting.noise_model)

            def per_layer(layer_name: str, module: nn.Module, config: Any) -> Any:
                if not is_weight_layer(module):  # a Sequential: aihwkit ignores its config
                    return config
                return copy.deepcopy(configs[spec_hash(spec.spec_for(layer_name))])

            analog = convert_to_analog(model, next(iter(configs.values())),
                                       ensure_analog_root=True,
                                       specific_rpu_config_fun=per_layer)
        elif isinstance(spec, DigitalSlicing):  # one tile per slice, summed digitally
            config = self.rpu_config_for(self.converter(
                spec.slice_table, setting.noise_model, setting.compensation,
                self.own_scaling_rule()), setting)
            check_times(self.times, config.noise_model, setting.noise_model)
            analog = convert_to_analog_sliced(model, config, **spec.slicing_arguments(),
                                              ensure_analog_root=True)
        else:
            config = self.rpu_config_for(
                self.converter(spec, setting.noise_model, setting.compensation), setting)
            check_times(self.times, config.noise_model, setting.noise_model)
            analog = convert_to_analog(model, config, ensure_analog_root=True)
        return analog.to(torch.device(self.device)).eval()

    # ------------------------------------------------------------ description
    def describe(self, setting: Setting, model: Optional[nn.Module] = None
                 ) -> SimulatedSetting:
        """What ``setting`` simulates (:class:`SimulatedSetting`): the one description
        records, summaries, ``sweep.json`` and resumes use.

        ``model`` (the task's floating-point network) is needed once per assignment,
        to average devices per weight over its layers.
        """
        if setting in self._described:
            return self._described[setting]
        spec = self.tables[setting.table]
        noise_spec = self.noise_models[setting.noise_model]
        if isinstance(spec, TableAssignment):
            if model is None:
                raise ValueError("describing a per-layer assignment needs the task's model")
            specs = [s for _, s in spec.distinct_specs()]
            n_devices = spec.devices_per_weight(model)
            n_levels, table_hash = None, spec.content_hash()
        elif isinstance(spec, DigitalSlicing):
            specs = [spec.slice_table]
            n_devices = float(spec.devices_per_weight())
            n_levels, table_hash = spec.levels_per_weight(), spec.content_hash()
        else:
            specs = [spec]
            converter = make_converter(spec)
            n_devices = float(devices_per_weight(converter))
            levels = levels_per_weight(converter)
            n_levels = levels if math.isfinite(levels) else None
            table_hash = spec_hash(spec)
        scale, per_channel, percentile, level = self.applied_scaling(setting.table, spec,
                                                                     specs)
        probe = make_converter("aihwkit-1pair")
        noise_model = build_noise_model(noise_spec, probe)
        params = noise_params(noise_model)
        if follows_tables(noise_model):  # "measured": each table's own device model
            per_spec = list(dict.fromkeys(
                noise_params(build_noise_model(noise_spec, make_converter(s))) for s in specs))
            params = per_spec[0] if len(per_spec) == 1 else json.dumps(per_spec)
        described = SimulatedSetting(
            task=self.task, model_hash=self.model_hash, table=setting.table,
            table_hash=table_hash, n_devices=float(n_devices), n_levels=n_levels,
            scale=scale, per_channel=None if scale is None else bool(per_channel),
            percentile=float(percentile) if scale == "percentile" else None,
            level_noise=level, noise_model=setting.noise_model,
            noise_params=params,
            compensation=bool(setting.compensation), peripherals=self.peripherals,
            mapping=self.mapping, rpu_config=rpu_config_id(self.rpu_config_for(probe, setting)),
            seed=self.seed,
        )
        self._described[setting] = described
        return described

    def applied_scaling(self, name: str, spec: SweepTable, specs: List[TableSpec]
                        ) -> Tuple[Optional[str], Optional[bool], Optional[float], str]:
        """``(scale, per_channel, percentile, level_noise)`` the quantized tiles of the
        sweep's table ``name`` (``spec``, made of ``specs``) are scaled with, as a record
        states them; ``(None, None, None, "")`` where nothing is quantized.

        Our converters keep their own rule and level noise (:func:`make_converter`
        deep-copies them; no noise-aware level noise is drawn for them); tables get
        :meth:`scaling_rule`. A record states one rule, so a table whose quantized parts
        are scaled by different rules (converters of different settings, or a converter
        and a table scaled by the sweep's other rule) is refused.

        Raises:
            ValueError: one line naming ``name``, its tables and their rules.
        """
        rules: Dict[Tuple[Any, ...], List[str]] = {}
        for part in specs:
            if table_of(part) is None:  # continuous: no scaling
                continue
            if isinstance(part, BaseConductanceConverter):  # our converter, as given
                noise = part.level_noise
                level = "" if noise is None else "given:" + short_hash(
                    repr((noise.mean, noise.mean_square)), 12)
                applied = (part.scale, bool(part.per_channel), part.percentile, level)
                whose = "its converter"
            else:
                rule = self.scaling_rule(spec)
                applied = (rule.scale, bool(rule.per_channel), rule.percentile,
                           ",".join(f"{t:g}" for t in rule.noise_aware or ()))
                whose = ("the assignment's" if isinstance(spec, TableAssignment) and spec.scale
                         else "the sweep's")
            if applied[0] != "percentile":
                applied = applied[:2] + (None,) + applied[3:]
            rules.setdefault(applied, []).append(f"{spec_name(part)} ({whose})")
        if not rules:
            return None, None, None, ""
        if len(rules) > 1:
            raise ValueError(
                f"table {name!r} scales its quantized tables by different rules, which its "
                "records cannot state as one: " + "; ".join(
                    f"{', '.join(parts)}: {_rule_text(rule)}" for rule, parts in rules.items())
                + " (give its converters the same scaling, or tables instead)")
        return next(iter(rules))

    def unit_seed(self, repeat: int) -> int:
        """The seed of repeat ``repeat``'s programming: the sweep's seed and the repeat
        only (common random numbers, see the module docstring)."""
        return programming_seed(self.seed, repeat)

    def manifest(self, reference: Dict[str, float]) -> Dict[str, Any]:
        """The JSON description of the sweep written to ``sweep.json``."""
        return plain_json({
            "format": "aihwkit-slicing-sweep", "version": 2, "task": self.task,
            "model_hash": self.model_hash, "metric": self.metric, "reference": reference,
            "settings": [self.describe(s).to_json() for s in self.settings()],
            "times": self.times, "repeats": self.repeats, "seed": self.seed,
            "device": self.device, "lower_is_better": self.lower_is_better,
        })


def _rule_text(rule: Tuple[Any, ...]) -> str:
    scale, per_channel, percentile, level = rule
    text = scale + (f" {percentile:g}" if percentile is not None else "")
    text += " per channel" if per_channel else " per tensor"
    if level.startswith("given:"):
        return text + ", its own level noise"
    return text + (f", noise-aware at {level} s" if level else "")


# ====================================================================== units
def programming_seed(seed: int, repeat: int) -> int:
    """What a sweep of seed ``seed`` seeds torch with before programming repeat
    ``repeat`` (the same for every table and setting)."""
    return stable_seed(seed, "programming", repeat)


def drift_seed(seed: int, repeat: int, t_inference: float) -> int:
    """What a sweep of seed ``seed`` seeds torch with before drifting repeat ``repeat``
    to ``t_inference`` seconds. Seeding so by hand reproduces a sweep's record::

        torch.manual_seed(programming_seed(seed, repeat))
        analog.program_analog_weights()
        torch.manual_seed(drift_seed(seed, repeat, t_inference))
        analog.drift_analog_weights(t_inference)
    """
    return stable_seed(programming_seed(seed, repeat), float(t_inference))


def run_unit(task: Task, plan: SweepPlan, setting: Setting, repeat: int
             ) -> List[Dict[str, Any]]:
    """Convert, program and drift the task's network for one setting and repeat.

    Returns the unit's records: per time, the task's metrics and the weight errors.
    """
    import aihwkit

    analog = plan.analog_model(task.model, setting)
    base = plan.describe(setting, task.model).record()
    base.update(device=plan.device, aihwkit_slicing=__version__,
                aihwkit=aihwkit.__version__, torch=torch.__version__, repeat=repeat)
    torch.manual_seed(plan.unit_seed(repeat))
    analog.program_analog_weights()
    records = []
    for t in plan.times:
        torch.manual_seed(drift_seed(plan.seed, repeat, t))
        analog.drift_analog_weights(t)
        metrics = task.evaluate(analog)
        values = {task.metric: metrics[task.metric]}
        values.update((k, v) for k, v in metrics.items() if k != task.metric)
        values.update(weight_errors(analog))
        for name, value in values.items():
            records.append(dict(base, t_inference=float(t), metric=name, value=float(value)))
    return records


def unit_key(record: Mapping[str, Any]) -> Tuple[str, str, int]:
    """What identifies a record's unit: its table's display name, its setting's id and
    its repeat (strings and an int: equal after a CSV round trip)."""
    return (str(record["table"]), str(record["setting_id"]), int(record["repeat"]))


def complete_units(records: Iterable[Dict[str, Any]], plan: SweepPlan
                   ) -> Tuple[Dict[Tuple, List[Dict[str, Any]]], List[Dict[str, Any]]]:
    """The finished units among ``records`` of a results file, and their records.

    A unit is finished when it has a record of every metric it reports at every time.
    """
    by_unit: Dict[Tuple, List[Dict[str, Any]]] = {}
    for record in records:
        by_unit.setdefault(unit_key(record), []).append(record)
    finished, kept = {}, []
    for key, rows in by_unit.items():
        metrics = {r["metric"] for r in rows}
        if plan.metric in metrics and len(rows) == len(metrics) * len(plan.times) and \
                {r["t_inference"] for r in rows} == set(plan.times):
            finished[key] = rows
            kept.extend(rows)
    return finished, kept


def plain_json(value: Any) -> Any:
    """``value`` with NaN and infinities as None and strings (standard JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, Mapping):
        return {k: plain_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_json(v) for v in value]
    return value
