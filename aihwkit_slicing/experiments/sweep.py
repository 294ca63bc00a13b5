"""Drift sweeps: a pretrained network x programming tables x noise models x times.

One call answers "which table keeps the network closest to floating point after an
hour, a day, a year of drift, under which noise model, with or without drift
compensation"::

    from aihwkit_slicing.experiments.sweep import run_sweep

    result = run_sweep("digits", tables=["aihwkit-1pair", "seed", "4x4lvl-base"],
                       times=[1, 3600, 86400], repeats=3, seed=0, out="results")
    print(result.format_summary())

How it runs:

* A *setting* is a table (a name, a :class:`~aihwkit_slicing.core.tables.ProgrammingTable`,
  a converter, or a :class:`~aihwkit_slicing.design.assignment.TableAssignment` of tables to
  layers), a noise model and drift compensation on or off. A *unit* is one setting and
  one repeat: the network is converted with aihwkit's ``convert_to_analog``, programmed
  once (``program_analog_weights``), drifted to every time (``drift_analog_weights``)
  and scored. Sweeps know converters only through aihwkit's rpu_config.
* Every unit draws its programming noise from a stream seeded by ``seed`` and the repeat,
  and every time its drift and read noise from a stream seeded also by the time itself
  (:func:`~aihwkit_slicing.integration.setting.stable_seed`): repeat ``r`` of every
  table starts from the same seed (common random numbers: differences between tables
  are paired), and adding or renaming a table or a time, or running units in another
  order or on other workers, never changes a record.
* Every record carries the :class:`~aihwkit_slicing.integration.setting.SimulatedSetting`
  that produced it (the task and a hash of its weights, the table's content, scaling,
  noise model, compensation, peripherals, mapping, rpu_config, seed) and its id.
* Units run in this process, or as tasks on a Dask cluster (``client=`` or ``workers=``,
  see :mod:`aihwkit_slicing.experiments.distributed`); workers load the task by name.
* With ``out=``, every finished unit is appended to ``out/results.csv`` at once and
  ``out/sweep.json`` describes the sweep; ``resume=True`` skips the units already there.

Defaults: quantized tables scale ``"mse"`` per output channel (the recommended rule;
the converter's own default is aihwkit's ``"max"`` per tensor); aihwkit's per-column
weight mapping (so that its continuous converters are not handicapped); ideal peripherals
(``forward.is_perfect = True``: only the weights are non-ideal); global drift
compensation on; each noise model's default times (:func:`default_times`).
"""

from __future__ import annotations

import json
import math
import numbers
import os
import warnings
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import torch

from aihwkit.simulator.parameters.base import RPUConfigBase

from aihwkit_slicing.design.assignment import TableAssignment
from aihwkit_slicing.digital.spec import NAME_PATTERN, DigitalSlicing
from aihwkit_slicing.integration.catalog import DEFAULT_SWEEP, make_converter, spec_name, table_of
from aihwkit_slicing.integration.measured_noise import check_table
from aihwkit_slicing.integration.noise_models import build_noise_model, check_times, default_times
from aihwkit_slicing.experiments.results import (
    WEIGHT_METRICS,
    ResultsFile,
    SweepResult,
    read_records,
)
from aihwkit_slicing.integration.rpu_configs import MAPPINGS, PERIPHERALS
from aihwkit_slicing.core.scaling import validate_rule
from aihwkit_slicing.experiments.sweep_plan import (
    DEFAULT_PER_CHANNEL,
    DEFAULT_SCALE,
    Setting,
    SweepPlan,
    SweepTable,
    complete_units,
    run_unit,
    unit_key,
)
from aihwkit_slicing.design.assignment import weight_layers
from aihwkit_slicing.experiments.tasks import Task, load_task
from aihwkit_slicing.integration.setting import SimulatedSetting, model_hash
from aihwkit_slicing.core.validation import validate_times


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


# ================================================================= arguments
def _named(specs: Any, what: str) -> Dict[str, Any]:
    if isinstance(specs, Mapping) and not isinstance(specs, TableAssignment):
        named = {name: _parsed(spec) for name, spec in specs.items()}
    else:
        named = {}
        for spec in (specs if isinstance(specs, (list, tuple)) else [specs]):
            if isinstance(spec, Mapping) and not isinstance(spec, TableAssignment):
                spec = TableAssignment(spec)
            spec = _parsed(spec)
            name = _display_name(spec)
            if name in named:
                raise ValueError(f"two {what}s are both called {name!r}; give them "
                                 f"different names")
            named[name] = spec
    if not named:
        raise ValueError(f"name at least one {what}")
    return named


def _parsed(spec: Any) -> Any:
    """A digital slicing's name (``"digital-2-equal"``) as its :class:`DigitalSlicing`."""
    if isinstance(spec, str) and NAME_PATTERN.match(spec):
        return DigitalSlicing.from_name(spec)
    return spec


def _display_name(spec: Any) -> str:
    if isinstance(spec, DigitalSlicing):
        return spec.display_name
    if isinstance(spec, TableAssignment):
        return spec.name
    if isinstance(spec, str) or table_of(spec) is not None:
        return spec_name(spec)
    name = getattr(spec, "name", None)
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


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C during a sweep; says how many units were kept (``kept`` of ``total``)."""

    def __init__(self, kept: int, total: int, path: Optional[Path]):
        super().__init__(f"interrupted: kept {kept} of {total} units"
                         + (f" in {path}" if path else ""))
        self.kept, self.total, self.path = kept, total, path


# ===================================================================== sweep
def run_sweep(
    task: Union[Task, str],
    tables: Union[Sequence[SweepTable], Mapping[str, SweepTable]] = tuple(DEFAULT_SWEEP),
    noise_models: Union[Sequence[Any], Mapping[str, Any]] = ("pcm",),
    times: Optional[Sequence[float]] = None,
    repeats: int = 3,
    seed: int = 0,
    compensation: Union[bool, Sequence[bool]] = True,
    peripherals: str = "ideal",
    mapping: str = "column",
    scale: str = DEFAULT_SCALE,
    per_channel: bool = DEFAULT_PER_CHANNEL,
    percentile: float = 99.9,
    noise_aware: Optional[Sequence[float]] = None,
    rpu_config: Optional[RPUConfigBase] = None,
    device: Union[str, torch.device] = "cpu",
    threads: Optional[int] = None,
    out: Union[str, Path, None] = None,
    resume: bool = False,
    client: Any = None,
    workers: Optional[int] = None,
    progress: bool = True,
) -> SweepResult:
    """Program and drift ``task``'s network with every table, noise model and setting.

    Args:
        task: a :class:`~aihwkit_slicing.experiments.tasks.Task` or its source: the
            name of a registered one (``"digits"``, ``"minilm"``, see
            :func:`~aihwkit_slicing.experiments.tasks.register_task`) or a factory of
            your own, ``"package.module:factory"`` or ``"path/to/file.py:factory"``
            (see :func:`~aihwkit_slicing.experiments.tasks.load_task`). Dask workers
            build it from its source and check they built the same weights.
        tables: table names, :class:`ProgrammingTable` objects, converters (used with
            their own settings), or per-layer assignments (a
            :class:`TableAssignment` or a ``{layer pattern: table}`` dict); a sequence
            (names taken from the tables) or a mapping of display name to table.
        noise_models: names from :data:`~aihwkit_slicing.integration.noise_models.NOISE_MODELS`,
            factories or noise model instances; a sequence or a mapping of display
            name to noise model.
        times: inference times in seconds after programming (default: the first noise
            model's :func:`~aihwkit_slicing.integration.noise_models.default_times`).
        repeats: programmings per setting (fresh programming noise each).
        seed: records depend on the seed and the settings only.
        compensation: global drift compensation on (``True``), off (``False``), or
            both (``[True, False]``).
        peripherals: ``"ideal"`` or ``"realistic"`` (see ``make_rpu_config``).
        mapping: ``"column"`` (default: aihwkit scales every output column to its full
            range before conversion, what a careful user of aihwkit's own converters
            does) or ``"tensor"`` (see ``make_rpu_config``).
        scale, per_channel, percentile: scaling of quantized tables (default: ``"mse"``
            per output channel); converters passed in keep their own, and so do
            assignments that record a rule (with a warning where it differs).
        noise_aware: inference times (seconds): quantized tables clip and assign levels
            knowing each level's expected device error at these times, simulated with
            each setting's drift compensation (needs ``scale="mse"``; see
            :func:`aihwkit_slicing.design.encodings.level_noise`).
        rpu_config: rpu_config to start from (default ``TorchInferenceRPUConfig()``;
            aihwkit's compiled ``InferenceRPUConfig`` works too).
        device: where the network, its tiles and the evaluation run (``"cpu"``,
            ``"cuda"``, ``"cuda:1"``).
        threads: torch threads per process (default: the cores available divided by
            the number of local worker processes).
        out: a folder: ``results.csv`` grows by each finished unit, ``sweep.json``
            describes the sweep.
        resume: skip the units already in ``out`` (refuses a folder holding a sweep
            with other settings).
        client: a ``dask.distributed.Client``: run the units on its cluster.
        workers: start a local Dask cluster of this many processes for the sweep.
        progress: show a progress bar.

    Returns:
        A :class:`~aihwkit_slicing.experiments.results.SweepResult` (records of the units run now
        and, when resuming, those found in ``out``).

    Raises:
        ValueError: for any bad argument (naming it), or a resume into another sweep.
        SweepInterrupted: on Ctrl-C, after the finished units were written.
    """
    from tqdm import tqdm

    if isinstance(task, str):
        task = load_task(task)
    if isinstance(repeats, bool) or not isinstance(repeats, numbers.Integral) or repeats < 1:
        raise ValueError(f"repeats must be an integer >= 1, got {repeats!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    validate_rule(scale, percentile)
    if peripherals not in PERIPHERALS:
        raise ValueError(f"peripherals must be one of {PERIPHERALS}, got {peripherals!r}")
    if mapping not in MAPPINGS:
        raise ValueError(f"mapping must be one of {MAPPINGS}, got {mapping!r}")
    noise_specs = _named(noise_models, "noise model")
    if times is None:
        times = default_times(next(iter(noise_specs.values())))
    noise_aware_times = validate_times(noise_aware) if noise_aware else None
    if noise_aware_times and scale != "mse":
        raise ValueError(f"noise_aware needs scale='mse', got scale={scale!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(
            workers, numbers.Integral) or workers < 1):
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(
            threads, numbers.Integral) or threads < 1):
        raise ValueError(f"threads must be an integer >= 1, got {threads!r}")
    compensations = _check_compensation(compensation)
    if not isinstance(task, Task):
        raise ValueError(f"task must be a Task or the name of a registered one, got "
                         f"{type(task).__name__}")
    if not any(True for _ in weight_layers(task.model)):
        raise ValueError(f"task {task.name!r}: its model has no Linear or Conv layer that "
                         "aihwkit converts; there is nothing to program")
    plan = SweepPlan(
        task=task.name, metric=task.metric, model_hash=model_hash(task.model),
        tables=_named(tables, "table"),
        noise_models=noise_specs, compensations=compensations,
        times=validate_times(times), repeats=int(repeats), seed=int(seed), scale=scale,
        per_channel=bool(per_channel), percentile=float(percentile),
        noise_aware=noise_aware_times, peripherals=peripherals, mapping=mapping,
        rpu_config=rpu_config, device=str(torch.device(device)), task_source=task.source,
        lower_is_better=list(dict.fromkeys(WEIGHT_METRICS + list(task.lower_is_better))),
    )
    _warn_of_recorded_rules(plan)
    for spec in plan.tables.values():  # fail early on unknown names and bad times
        if isinstance(spec, TableAssignment):
            for _, rule_spec in spec.rules:
                make_converter(rule_spec)
        elif not isinstance(spec, DigitalSlicing):  # (checked when made)
            make_converter(spec)
    for name, spec in plan.noise_models.items():
        noise_model = build_noise_model(spec, make_converter("aihwkit-1pair"))
        check_times(plan.times, noise_model, name)
        for table_name, table_spec in plan.tables.items():  # measured devices: levels known
            for where, s in _parts(table_name, table_spec):
                check_table(noise_model, table_of(s), where, name)
    for setting in plan.settings():
        plan.describe(setting, task.model)

    reference = _checked_metrics(task, task.evaluate(task.model))
    units = plan.units()
    done: List[Dict[str, Any]] = []
    results_file = None
    if out is not None:
        results_file, done, units = _prepare_folder(Path(out), plan, reference, units, resume)

    local_workers = workers or 1
    threads = threads or max(1, available_cores() // local_workers)
    records = list(done)
    bar = tqdm(total=len(units) * len(plan.times), disable=not progress,
               desc=f"sweep {task.name}", unit="eval")
    kept = len(plan.units()) - len(units)

    def finished(unit_records: List[Dict[str, Any]]) -> None:
        nonlocal kept
        if results_file is not None:
            results_file.append(unit_records)
        records.extend(unit_records)
        kept += 1
        bar.update(len(plan.times))

    try:
        if client is None and workers is None:
            previous = torch.get_num_threads()
            torch.set_num_threads(threads)
            try:
                for setting, repeat in units:
                    finished(run_unit(task, plan, setting, repeat))
            finally:
                torch.set_num_threads(previous)
        else:
            from aihwkit_slicing.experiments.distributed import run_units

            run_units(plan, units, finished, client=client, workers=workers, threads=threads)
    except KeyboardInterrupt:
        bar.close()
        raise SweepInterrupted(kept, len(plan.units()),
                               results_file.path if results_file else None) from None
    bar.close()
    return SweepResult(records=_sorted(records, plan), reference=reference,
                       metric=task.metric, task=task.name, times=plan.times,
                       lower_is_better=list(plan.lower_is_better))


def _warn_of_recorded_rules(plan: SweepPlan) -> None:
    """Warn once per assignment whose recorded scaling or setting differs from the
    sweep's: its row then measures another setting than it was chosen in."""
    own = plan.own_scaling_rule().describe()
    for name, spec in plan.tables.items():
        if not isinstance(spec, TableAssignment):
            continue
        if spec.scale:
            kept = spec.scaling_rule().describe()
            if kept != own:
                warnings.warn(f"assignment {name!r} keeps the scaling it records ({kept}); "
                              f"the sweep's ({own}) applies to tables without one",
                              stacklevel=3)
        sweep = {"noise_model": list(plan.noise_models), "compensation": plan.compensations,
                 "mapping": [plan.mapping], "peripherals": [plan.peripherals]}
        differ = [f"{key} {spec.recorded[key]!r} (this sweep: "
                  f"{', '.join(map(repr, values))})" for key, values in sweep.items()
                  if key in spec.recorded and spec.recorded[key] not in values]
        if differ:
            warnings.warn(f"assignment {name!r} was chosen with {'; '.join(differ)}: its "
                          "row measures it in another setting", stacklevel=3)


def _parts(name: str, spec: Any) -> List[Tuple[str, Any]]:
    """``(display name, table spec)`` of a sweep's table, of each table of an
    assignment, or of the table every slice of a digitally summed slicing stores."""
    if isinstance(spec, DigitalSlicing):
        return [(f"{name}: {spec_name(spec.slice_table)}", spec.slice_table)]
    if not isinstance(spec, TableAssignment):
        return [(name, spec)]
    return [(f"{name}: {spec_name(s)}", s) for _, s in spec.distinct_specs()]


def _check_compensation(compensation: Any) -> List[bool]:
    """``compensation`` as a list of bools (``ValueError`` naming a bad value)."""
    values = [compensation] if isinstance(compensation, bool) else compensation
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)) or not (
            values) or not all(isinstance(v, bool) for v in values):
        raise ValueError(f"compensation must be True, False or a list of them, got "
                         f"{compensation!r}")
    return list(values)


def _checked_metrics(task: Task, metrics: Any) -> Dict[str, float]:
    """The task's metrics of the floating-point model, checked before anything is
    programmed: a mapping of names to numbers holding the task's main metric."""
    if not isinstance(metrics, Mapping):
        raise ValueError(f"task {task.name!r}: evaluate must return a dict of metric name "
                         f"-> number, got {type(metrics).__name__} {metrics!r}")
    if task.metric not in metrics:
        raise ValueError(f"task {task.name!r}: its metric {task.metric!r} is not among the "
                         f"metrics evaluate returns ({', '.join(map(repr, metrics))})")
    checked = {}
    for key, value in metrics.items():
        try:
            checked[str(key)] = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"task {task.name!r}: metric {key!r} must be a number, got "
                             f"{value!r}") from None
    return checked


def _sorted(records: List[Dict[str, Any]], plan: SweepPlan) -> List[Dict[str, Any]]:
    """Records in plan order (settings, repeats, times), whatever order units finished."""
    rank = {(s.table, s.noise_model, s.compensation): i for i, s in enumerate(plan.settings())}
    times = {t: i for i, t in enumerate(plan.times)}
    return sorted(records, key=lambda r: (rank.get((r["table"], r["noise_model"],
                                                    r["compensation"]), len(rank)),
                                          r["repeat"], times.get(r["t_inference"], 0)))


def _prepare_folder(out: Path, plan: SweepPlan, reference: Dict[str, float],
                    units: List[Tuple[Setting, int]], resume: bool
                    ) -> Tuple[ResultsFile, List[Dict[str, Any]], List[Tuple[Setting, int]]]:
    """Create or resume ``out``: the results file, records kept, units still to run."""
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / "sweep.json"
    manifest = plan.manifest(reference)
    results_path = out / "results.csv"
    done: List[Dict[str, Any]] = []
    if resume and manifest_path.exists():
        _check_resumable(manifest_path, manifest, plan)
        try:
            records = read_records(results_path)
        except ValueError as error:
            raise ValueError(f"cannot resume: {error}") from None
        finished, done = complete_units(records, plan)
        units = [(s, r) for s, r in units if unit_key(
            {"table": s.table, "setting_id": plan.describe(s).setting_id, "repeat": r})
            not in finished]
    elif resume and results_path.exists():
        raise ValueError(f"cannot resume: {results_path} has no {manifest_path.name} beside "
                         "it to say what it holds; move it away, or run without resume")
    elif results_path.exists():
        kept = len(read_records(results_path, strict=False))
        warnings.warn(f"replacing {results_path} ({kept} records of an earlier sweep); "
                      "resume=True (--resume) continues a sweep instead", stacklevel=3)
        results_path.unlink()
    manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    results_file = ResultsFile(results_path)
    if resume:
        results_file.keep_only(done)
    return results_file, done, units


def _same_reference(before: Any, now: Any) -> bool:
    """Whether two ``sweep.json`` reference dicts score the same evaluation (equal keys,
    values equal to a relative 1e-6)."""
    if not isinstance(before, dict) or not isinstance(now, dict) or set(before) != set(now):
        return False
    try:
        return all(math.isclose(float(before[k]), float(now[k]), rel_tol=1e-6, abs_tol=1e-9)
                   or (math.isnan(float(before[k])) and math.isnan(float(now[k])))
                   for k in now)
    except (TypeError, ValueError):
        return False


def _device_type(device: Any) -> str:
    """``"cuda"`` for ``"cuda:1"``, ``"cpu"`` for ``"cpu"`` (what draws the numbers)."""
    return str(device).split(":", 1)[0]


def _check_resumable(path: Path, manifest: Dict[str, Any], plan: SweepPlan) -> None:
    """Raise ``ValueError`` unless ``path`` describes the sweep ``plan`` is (naming the
    first setting field, or sweep field, that differs)."""
    try:
        previous = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot resume: {path} is not a readable sweep description "
                         f"({error}); move the folder away or choose another output "
                         "folder") from None
    if not isinstance(previous, dict) or previous.get("format") != manifest["format"] or \
            previous.get("version") != manifest["version"]:
        raise ValueError(f"cannot resume: {path} was written by another release of "
                         "aihwkit-slicing or is not a sweep description; choose another "
                         "output folder")
    differing = [k for k in ("task", "model_hash", "metric", "times", "repeats", "seed")
                 if json.dumps(previous.get(k)) != json.dumps(manifest.get(k))]
    # the same network scored by another evaluation (other samples, another metric
    # function) reports other reference values; threads may move them by a rounding
    if not _same_reference(previous.get("reference"), manifest.get("reference")):
        differing.append("reference")
    # another device type draws other random numbers for the same seeds: its repeats
    # would neither pair with these nor average with them
    if _device_type(previous.get("device")) != _device_type(manifest.get("device")):
        differing.append("device")
    if differing:
        key = differing[0]
        raise ValueError(f"cannot resume: {path.parent} holds a sweep with other "
                         f"{', '.join(differing)} ({key}: {previous.get(key)!r} there, "
                         f"{manifest.get(key)!r} now); resume it with the same settings "
                         "or choose another output folder")
    before = {s.get("table"): s for s in previous.get("settings", []) if isinstance(s, dict)}
    for setting in plan.settings():
        mine = plan.describe(setting)
        theirs = [s for s in previous.get("settings", []) if isinstance(s, dict)
                  and s.get("table") == mine.table and s.get("noise_model") == mine.noise_model
                  and s.get("compensation") == mine.compensation]
        if not theirs:
            if mine.table not in before:
                raise ValueError(f"cannot resume: {path.parent} holds no table "
                                 f"{mine.table!r}; resume with the tables it holds or "
                                 "choose another output folder")
            raise ValueError(f"cannot resume: {path.parent} holds table {mine.table!r} with "
                             "another noise model or drift compensation")
        try:
            other = SimulatedSetting.from_json(theirs[0])
        except (TypeError, ValueError) as error:
            raise ValueError(f"cannot resume: {path}: {error}") from None
        differences = other.differences(mine)
        if differences:
            raise ValueError(f"cannot resume: {path.parent} holds table {mine.table!r} "
                             f"simulated differently ({'; '.join(differences)}: there != "
                             "now); choose another output folder")
    if len(previous.get("settings", [])) != len(plan.settings()):
        raise ValueError(f"cannot resume: {path.parent} holds "
                         f"{len(previous.get('settings', []))} settings, this sweep has "
                         f"{len(plan.settings())}")
