"""Which table for which layer: devices allocated under an average budget.

Given candidate tables with different device counts and a budget of ``D`` devices per
weight on average, :func:`allocate_tables` picks one candidate per analog layer so that
the weight-averaged devices per weight stay within ``D`` and the network stays as close
to floating point as possible at the given inference times::

    from aihwkit_slicing.design.allocation import allocate_tables
    from aihwkit_slicing.experiments.sweep import run_sweep
    from aihwkit_slicing.experiments.tasks import minilm_task

    task = minilm_task()
    times = [86400, 31536000]
    allocation = allocate_tables(task.model, None, devices_per_weight=6, noise_model="pcm",
                                 times=times, task=task, noise_aware=True)
    print(allocation.report())
    allocation.save("assignment.json")   # sweep --assignment assignment.json
    run_sweep(task, tables=[allocation.to_assignment()])  # with the allocation's scaling

How it decides:

1. **Measured sensitivity.** For every layer and every candidate, that layer alone is
   made analog (aihwkit's ``convert_to_analog`` of the layer, with the rpu_config a
   sweep gives it: the noise model, global drift compensation as configured, ideal
   peripherals, ``mse`` clipping per output channel), programmed, drifted to every
   time and the whole network scored; ``repeats`` programmings, with seeds of the
   allocation's own (:func:`~aihwkit_slicing.experiments.sweep_plan.stable_seed` of ``seed``,
   ``"allocation"``, the layer, the candidate and the repeat; a sweep's evaluation
   seeds are different). The sensitivity of a layer to a candidate is the fidelity
   lost: the drop of the task's metric from floating point (``task=``), or the
   squared error of the network's output relative to the floating-point output's
   (``inputs=``), averaged over the times and the repeats.
2. **Knapsack.** Small, independent errors of different layers add up: the output's
   error is, to first order, the sum of the errors each layer causes, and its
   expected square (and so ``1 - cosine``) the sum of their squares. The network's
   loss is therefore predicted by the sum of the chosen candidates' sensitivities.
   Choosing one candidate per layer to minimize that sum subject to
   ``sum(layer weights x devices per weight) <= D x all weights`` is a
   multiple-choice knapsack; :func:`solve_knapsack` solves it exactly by dynamic
   programming over each layer's cost above its cheapest candidate, in units of the
   greatest common divisor of those costs. Only if that would need more than
   :data:`MAX_DP_CELLS` table cells are the costs rounded *up* to a coarser unit: the
   budget still holds, the all-cheapest choice always fits, and the result is optimal
   for the rounded costs (``Allocation.exact`` is then False).

The result (:class:`Allocation`) reports per layer its weights, table, devices and
measured sensitivity, converts to a :class:`~aihwkit_slicing.design.assignment.TableAssignment`
(exact layer names as patterns) for :func:`~aihwkit_slicing.experiments.sweep.run_sweep` and to
the JSON ``aihwkit-slicing sweep --assignment`` reads, and gives aihwkit's
``convert_to_analog`` a ``specific_rpu_config_fun`` (:meth:`Allocation.rpu_config_fun`).
"""

from __future__ import annotations

import copy
import json
import math
import numbers

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from functools import reduce
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor, nn

from aihwkit.nn.conversion import convert_to_analog
from aihwkit.simulator.parameters.base import RPUConfigBase

from aihwkit_slicing.design.assignment import TableAssignment, shared_weight_layers, weight_layers
from aihwkit_slicing.integration.catalog import TableSpec, known_names, make_converter, table_of
from aihwkit_slicing.integration.catalog import devices_per_weight as devices_of
from aihwkit_slicing.design.encodings import column_errors
from aihwkit_slicing.integration.noise_models import build_noise_model, check_times
from aihwkit_slicing.integration.rpu_configs import make_rpu_config
from aihwkit_slicing.core.scaling import validate_rule
from aihwkit_slicing.experiments.sweep_plan import (
    DEFAULT_PER_CHANNEL,
    DEFAULT_SCALE,
    seeded_level_noise,
    stable_seed,
)
from aihwkit_slicing.core.tables import (
    ProgrammingTable,
    bit_sliced,
    equal_significance,
    single_pair,
)
from aihwkit_slicing.experiments.tasks import Task
from aihwkit_slicing.core.validation import is_integer, is_real_number, validate_times

#: Largest dynamic-programming table (layers x cost units) solved exactly.
MAX_DP_CELLS = 2**24

#: Inference times (seconds) allocations aim at by default: 1 day and 1 year.
DEFAULT_TIMES: Tuple[float, ...] = (86400.0, 31536000.0)


#: The default candidates: (pairs, levels per device, significance), 2 to 16 devices per
#: weight. Binary significance (F = 1, 2, 4, ...) with the levels the table optimizer
#: picks for MiniLM where it has a table of that size (2, 3 and 4 pairs), equal
#: significance beyond; every level encoded as errs least (:func:`tuned_table`). Measured
#: on MiniLM under PCM with noise-aware clipping, the binary tables beat equal
#: significance of the same devices at 1 s, 1 day and 1 year (6 devices, 1 day: 0.984
#: against 0.981).
DEFAULT_CANDIDATES: Tuple[Tuple[int, int, str], ...] = (
    (1, 33, "equal"), (2, 33, "binary"), (3, 17, "binary"), (4, 5, "binary"),
    (6, 33, "equal"), (8, 33, "equal"))
#: Pair counts of the default candidates: 2, 4, 6, 8, 12 and 16 devices per weight.
DEFAULT_PAIRS: Tuple[int, ...] = tuple(pairs for pairs, _, _ in DEFAULT_CANDIDATES)
#: Conductance levels a device offers in equal-significance candidates (as in the
#: fidelity benchmark's optimizer: 33 evenly spaced levels between g_min and g_max).
DEFAULT_DEVICE_LEVELS = 33


def _candidate_tables() -> Dict[str, ProgrammingTable]:
    """Plain candidate tables by name: equal significance (pairs filled one after the
    other) and binary significance, for 2 to 16 devices."""
    tables = [single_pair(33, name="1x33lvl")]
    tables += [equal_significance(p, 33, columns="fill", name=f"{p}x33lvl-fill")
               for p in DEFAULT_PAIRS[1:]]
    tables += [bit_sliced(2, 33, significance=[1, 2], name="2x33lvl-binary"),
               bit_sliced(3, 17, significance=[1, 2, 4], name="3x17lvl-binary"),
               bit_sliced(4, 5, significance=[1, 2, 4, 8], name="4x5lvl-binary")]
    return {table.name: table for table in tables}


#: Plain candidate tables by name (besides :data:`aihwkit_slicing.integration.catalog.TABLES`):
#: ``"1x33lvl"``, ``"<P>x33lvl-fill"`` (equal significance, P = 2, 3, 4, 6, 8) and the
#: table optimizer's binary-significance picks ``"2x33lvl-binary"``,
#: ``"3x17lvl-binary"``, ``"4x5lvl-binary"``.
CANDIDATES: Dict[str, ProgrammingTable] = _candidate_tables()


def tuned_table(n_pairs: int, noise_model: Any = "pcm", times: Sequence[float] = DEFAULT_TIMES,
                levels_per_device: int = DEFAULT_DEVICE_LEVELS, n_samples: int = 1000,
                seed: int = 0, significance: str = "equal") -> ProgrammingTable:
    """Sliced pairs, each level programmed the way that errs least.

    ``significance="equal"``: ``equal_significance(n_pairs, levels_per_device,
    columns="fill+spread")`` offers two encodings per level: pairs filled one after the
    other, or the level spread evenly over the pairs. ``"binary"``: ``bit_sliced`` with
    significances 1, 2, 4, ..., whose levels have many encodings. Per level, the
    encoding of least mean squared weight error after programming and drift to
    ``times`` (averaged over the times; Monte Carlo through the noise model, with global
    drift compensation, see :func:`aihwkit_slicing.design.encodings.column_errors`) is
    selected. One pair has one encoding per level:
    :func:`~aihwkit_slicing.core.tables.single_pair`.

    Args:
        n_pairs: device pairs (``2 * n_pairs`` devices per weight).
        noise_model: the noise model the encodings are chosen for.
        times: inference times in seconds.
        levels_per_device: conductance levels per device.
        n_samples: Monte Carlo cells per column and time.
        seed: seed of the Monte Carlo.
        significance: ``"equal"`` or ``"binary"``.

    Returns:
        The table, named ``"<n_pairs>x<levels>lvl-tuned"`` (equal) or
        ``"<n_pairs>x<levels>lvl-binary-tuned"``.
    """
    if significance not in ("equal", "binary"):
        raise ValueError(f"significance must be 'equal' or 'binary', got {significance!r}")
    kind = "" if significance == "equal" else "binary-"
    name = f"{n_pairs}x{levels_per_device}lvl-{kind}tuned"
    if n_pairs == 1:
        return single_pair(levels_per_device, name=name)
    if significance == "binary":
        table = bit_sliced(n_pairs, levels_per_device,
                           significance=[float(2**k) for k in range(n_pairs)], name=name)
    else:
        table = equal_significance(n_pairs, levels_per_device, columns="fill+spread",
                                   name=name)
    times = _check_times(times)
    with torch.random.fork_rng(devices=[]):  # the caller's random state stays as it was
        mse = sum(column_errors(table, noise_model, t, None, n_samples, seed + index)["mse"]
                  for index, t in enumerate(times))
    chosen = [min(columns, key=lambda c: (float(mse[c]), c)) for columns in table.encodings]
    return table.with_encodings(chosen)


def default_candidates(noise_model: Any = "pcm", times: Sequence[float] = DEFAULT_TIMES,
                       seed: int = 0, n_samples: int = 1000) -> List[ProgrammingTable]:
    """What :func:`allocate_tables` chooses from by default: :func:`tuned_table` for
    each of :data:`DEFAULT_CANDIDATES` (2 to 16 devices), tuned for ``noise_model`` at
    ``times`` with ``n_samples`` Monte Carlo cells per column and time."""
    return [tuned_table(pairs, noise_model, times, levels, n_samples, seed, kind)
            for pairs, levels, kind in DEFAULT_CANDIDATES]


Candidate = Union[str, ProgrammingTable, Any]  # Any: an optimizer's OptimizationResult


# ================================================================ candidates
def candidate_specs(candidates: Union[None, Sequence[Candidate], Mapping[str, Candidate]]
                    ) -> Dict[str, TableSpec]:
    """Display name -> table spec for the candidates of an allocation.

    Args:
        candidates: table names (:func:`aihwkit_slicing.integration.catalog.known_names` or
            :data:`CANDIDATES`), :class:`ProgrammingTable` objects, or results of
            :func:`aihwkit_slicing.design.optimizer.optimize_table` (their table is used,
            with the allocation's scaling); a sequence (names taken from the tables) or
            a mapping of display name to candidate; None for :func:`default_candidates`
            (for PCM at the default times).

    Raises:
        ValueError: for no candidate, an unknown name or two candidates of one name.
        TypeError: for anything else.
    """
    if candidates is None:
        candidates = default_candidates()
    if isinstance(candidates, (str, ProgrammingTable)):
        candidates = [candidates]
    named = candidates.items() if isinstance(candidates, Mapping) else [
        (None, c) for c in candidates]
    specs: Dict[str, TableSpec] = {}
    for given_name, candidate in named:
        spec = _spec_of(candidate)
        name = given_name or (spec if isinstance(spec, str) else
                              spec.name or f"table-{spec.content_hash()}")
        if isinstance(spec, ProgrammingTable) and spec.name != name:
            spec = spec.with_name(name)  # the name reports and the JSON form show
        if name in specs:
            raise ValueError(f"candidates name the table {name!r} twice; give each its own "
                             "name (ProgrammingTable.with_name)")
        specs[name] = spec
    if not specs:
        raise ValueError("candidates must name at least one table")
    return specs


def _spec_of(candidate: Candidate) -> TableSpec:
    """The spec of one candidate: a known name, or a table."""
    if isinstance(candidate, str):
        if candidate in known_names():
            return candidate
        if candidate in CANDIDATES:
            return CANDIDATES[candidate]
        raise ValueError(f"candidates: unknown table {candidate!r}; known tables: "
                         f"{', '.join(known_names() + list(CANDIDATES))}")
    if isinstance(candidate, ProgrammingTable):
        return candidate
    if isinstance(getattr(candidate, "table", None), ProgrammingTable):  # OptimizationResult
        return candidate.table
    raise TypeError("candidates must be table names, ProgrammingTables or results of "
                    f"optimize_table, got {type(candidate).__name__}")


def selected_only(table: ProgrammingTable) -> ProgrammingTable:
    """``table`` reduced to the column it programs for each level.

    A converter never uses the other (redundant) columns, so the reduced table
    quantizes and programs every weight exactly as ``table`` does; its JSON form is
    much smaller (a 4-pair bit-sliced table of 6561 columns keeps 121).
    """
    columns = list(table.selected_columns)
    if len(columns) == table.n_columns:
        return table
    return ProgrammingTable(table.f_lst, table.conductances[:, columns], g_min=table.g_min,
                            g_max=table.g_max, encoding="first", name=table.name)


# ============================================================== measurement
@dataclass
class Sensitivities:
    """Measured loss of fidelity of the network, one layer and one candidate at a time.

    Attributes:
        layers: layer names (as in ``model.named_modules()``).
        weights: weight count of each layer.
        candidates: candidate names.
        devices: devices per weight of each candidate.
        values: ``[layers, candidates, times]`` fidelity lost, mean over the repeats,
            in the unit of ``measure``: the task metric's own (``"cosine drop"``: cosine
            similarity, ``"accuracy drop"``: a fraction of the examples), or for
            ``"relative squared output error"`` ``|y - y_fp|^2 / |y_fp|^2`` (no unit;
            its square root is the RMS error relative to the floating-point output).
        spread: the same shape: standard deviation over the repeats (0 for one).
        times: inference times in seconds.
        measure: what was measured (e.g. ``"cosine drop"``).
        repeats: programmings per layer and candidate.
        seed: seed of the measurement.
        seconds: wall time of the measurement.
        noise_model: the noise model measured under (a name, class, factory or
            instance, as given).
        compensation: whether global drift compensation was on.
        scale, per_channel: the scaling of quantized tables measured with.
        noise_aware: inference times (seconds) the clip of quantized tables was chosen
            for (noise-aware ``mse``), or None for plain ``mse``.
    """

    layers: List[str]
    weights: List[int]
    candidates: List[str]
    devices: List[int]
    values: Tensor
    spread: Tensor
    times: List[float]
    measure: str
    repeats: int
    seed: int
    seconds: float = 0.0
    noise_model: Any = "pcm"
    compensation: bool = True
    scale: str = DEFAULT_SCALE
    per_channel: bool = DEFAULT_PER_CHANNEL
    noise_aware: Optional[List[float]] = None

    @property
    def mean(self) -> Tensor:
        """``[layers, candidates]``: fidelity lost, averaged over times and repeats."""
        return self.values.mean(dim=2)

    def ranking(self, candidate: Optional[str] = None) -> List[str]:
        """Layer names, most sensitive first (for ``candidate``, default: the one with
        the fewest devices, where sensitivities are largest)."""
        if candidate is None:
            k = int(np.argmin(self.devices))
        else:
            k = self.candidates.index(candidate)
        order = torch.argsort(self.mean[:, k], descending=True, stable=True)
        return [self.layers[int(i)] for i in order]


def measure_sensitivities(
    model: nn.Module,
    candidates: Union[None, Sequence[Candidate], Mapping[str, Candidate]] = None,
    noise_model: Any = "pcm",
    times: Sequence[float] = DEFAULT_TIMES,
    task: Optional[Task] = None,
    inputs: Any = None,
    repeats: int = 2,
    seed: int = 0,
    compensation: bool = True,
    scale: str = DEFAULT_SCALE,
    per_channel: bool = DEFAULT_PER_CHANNEL,
    rpu_config: Optional[RPUConfigBase] = None,
    quiet: bool = False,
    threads: Optional[int] = None,
    noise_aware: bool = False,
) -> Sensitivities:
    """How much fidelity the network loses when one layer at a time gets a candidate.

    See the module docstring for the method; arguments as for :func:`allocate_tables`.

    Raises:
        ValueError: for a bad argument (naming it).
    """
    from tqdm import tqdm

    times = _check_times(times)
    repeats = _check_int("repeats", repeats, 1)
    seed = _check_int("seed", seed, 0)
    _check_noise_times(noise_model, times)
    specs = candidate_specs(default_candidates(noise_model, times, seed)
                            if candidates is None else candidates)
    validate_rule(scale, 99.9)
    threads = None if threads is None else _check_int("threads", threads, 1)
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if task is None and inputs is None:
        raise ValueError("task and inputs are both None: give task= (its metric is "
                         "measured) or inputs= (the output error on them is measured)")
    if task is not None and not isinstance(task, Task):
        raise ValueError(f"task must be an aihwkit_slicing.experiments.tasks.Task, got "
                         f"{type(task).__name__}")
    layers = list(weight_layers(model))
    if not layers:
        raise ValueError("model has no Linear or Conv layer to allocate tables to")
    _check_not_shared(model)

    if noise_aware and scale != "mse":
        raise ValueError(f"noise_aware needs scale='mse', got scale={scale!r}")
    configs = {}
    for name, spec in specs.items():
        table = table_of(spec)
        level_noise = None
        if noise_aware and table is not None:
            level_noise = seeded_level_noise(table, noise_model, _noise_name(noise_model),
                                             times, compensation, seed)
        converter = make_converter(spec, scale=scale, per_channel=per_channel,
                                   level_noise=level_noise)
        configs[name] = make_rpu_config(converter, noise_model, compensation, "ideal",
                                        "tensor", base=rpu_config)
        check_times(times, configs[name].noise_model, _noise_name(noise_model))
    score, measure = _scorer(task, inputs)

    start = time.perf_counter()
    work = copy.deepcopy(model).eval()
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    values = torch.zeros(len(layers), len(specs), len(times), repeats, dtype=torch.float64)
    bar = tqdm(total=len(layers) * len(specs) * repeats, disable=quiet, desc="allocate",
               unit="programming")
    random_state = torch.random.get_rng_state()  # restored: the caller's stays as it was
    try:
        with torch.no_grad():
            reference = score(work, None)
        for i, (layer_name, module) in enumerate(layers):
            for k, (candidate, config) in enumerate(configs.items()):
                analog = convert_to_analog(module, config, ensure_analog_root=False).eval()
                with _swapped(work, layer_name, analog) as network, torch.no_grad():
                    for r in range(repeats):
                        unit_seed = stable_seed(seed, "allocation", layer_name, candidate, r)
                        torch.manual_seed(unit_seed)
                        analog.program_analog_weights()
                        for j, t in enumerate(times):
                            torch.manual_seed(stable_seed(unit_seed, t))
                            analog.drift_analog_weights(t)
                            values[i, k, j, r] = score(network, reference)
                        bar.update(1)
    finally:
        bar.close()
        torch.set_num_threads(previous_threads)
        torch.random.set_rng_state(random_state)
    return Sensitivities(
        layers=[name for name, _ in layers],
        weights=[int(module.weight.numel()) for _, module in layers],
        candidates=list(specs),
        devices=[devices_of(config.noise_model.g_converter) for config in configs.values()],
        values=values.mean(dim=3),
        spread=values.std(dim=3) if repeats > 1 else torch.zeros(values.shape[:3],
                                                                  dtype=torch.float64),
        times=times, measure=measure, repeats=repeats, seed=seed,
        seconds=time.perf_counter() - start, noise_model=noise_model,
        compensation=bool(compensation), scale=scale, per_channel=bool(per_channel),
        noise_aware=list(times) if noise_aware else None,
    )


def _scorer(task: Optional[Task], inputs: Any
            ) -> Tuple[Callable[[nn.Module, Any], Any], str]:
    """``score(network, reference)`` and what it measures.

    ``score(network, None)`` gives the floating-point reference, ``score(network,
    reference)`` the fidelity lost against it.
    """
    if task is not None:
        def metric_drop(network: nn.Module, reference: Any) -> Any:
            value = float(task.evaluate(network)[task.metric])
            return value if reference is None else reference - value

        return metric_drop, f"{task.metric} drop"

    def output_error(network: nn.Module, reference: Any) -> Any:
        if isinstance(inputs, Mapping):
            output = network(**inputs)
        elif isinstance(inputs, tuple):
            output = network(*inputs)
        else:
            output = network(inputs)
        output = _flat_output(output)
        if reference is None:
            return output
        norm = float(reference.square().sum()) or 1.0
        return float((output - reference).square().sum()) / norm

    return output_error, "relative squared output error"


def _flat_output(output: Any) -> Tensor:
    """A model's output (a tensor, or tensors in tuples, lists or dicts) as one
    float64 vector."""
    if isinstance(output, Tensor):
        return output.detach().double().reshape(-1)
    if isinstance(output, Mapping):
        output = list(output.values())
    if isinstance(output, (list, tuple)):
        parts = [_flat_output(o) for o in output if isinstance(o, (Tensor, Mapping, list,
                                                                   tuple))]
        if parts:
            return torch.cat(parts)
    raise ValueError(f"inputs: the model's output ({type(output).__name__}) holds no tensor")


@contextmanager
def _swapped(model: nn.Module, layer_name: str, replacement: nn.Module
             ) -> Iterator[nn.Module]:
    """``model`` with the layer ``layer_name`` replaced, restored afterwards (the
    replacement itself for the root, ``layer_name == ""``)."""
    if not layer_name:
        yield replacement
        return
    parent_name, _, attribute = layer_name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    original = getattr(parent, attribute)
    setattr(parent, attribute, replacement)
    try:
        yield model
    finally:
        setattr(parent, attribute, original)


def _digits_training_images() -> Tensor:
    from aihwkit_slicing.experiments.models.digits import load_digits_split

    return load_digits_split()[0]


#: Tasks whose sensitivities are measured as the output error on inputs of their own,
#: not by their metric: task name -> function returning the inputs. The digits CNN's
#: accuracy on its 540 held-out images moves in steps of one image, too coarse to rank
#: single layers (and those images are for the evaluation): its logits' error on the
#: 1257 training images is measured instead.
PROBE_INPUTS: Dict[str, Callable[[], Any]] = {"digits": _digits_training_images}


def measurement_for(task: Task) -> Dict[str, Any]:
    """The keyword arguments of :func:`allocate_tables` that say how to measure ``task``:
    ``{"inputs": ...}`` for tasks of :data:`PROBE_INPUTS`, else ``{"task": task}``."""
    if task.name in PROBE_INPUTS:
        return {"inputs": PROBE_INPUTS[task.name]()}
    return {"task": task}


# ================================================================= knapsack
def solve_knapsack(costs: Sequence[Sequence[int]], values: Sequence[Sequence[float]],
                   capacity: int) -> List[int]:
    """Exact multiple-choice knapsack: one option per group, least total value.

    Dynamic programming over the total cost (0 .. ``capacity``): after group ``g``,
    ``best[c]`` is the least value of a choice for groups ``0..g`` costing exactly
    ``c``. Of equal values the cheaper choice wins, then the lower option index.

    Args:
        costs: ``costs[g][k]``: integer cost (>= 0) of option ``k`` of group ``g``.
        values: ``values[g][k]``: its value (to minimize; any finite number).
        capacity: the most the chosen options may cost together.

    Returns:
        The chosen option of every group.

    Raises:
        ValueError: if no choice fits ``capacity``, or for malformed arguments.
    """
    capacity = _check_int("capacity", capacity, 0)
    if len(costs) != len(values) or not costs:
        raise ValueError(f"costs and values must list the same number (>= 1) of groups, "
                         f"got {len(costs)} and {len(values)}")
    best = np.full(capacity + 1, np.inf)
    best[0] = 0.0
    choices = np.full((len(costs), capacity + 1), -1, dtype=np.int32)
    for g, (group_costs, group_values) in enumerate(zip(costs, values)):
        if len(group_costs) != len(group_values) or not group_costs:
            raise ValueError(f"group {g}: costs and values must list the same number "
                             f"(>= 1) of options")
        new = np.full(capacity + 1, np.inf)
        for k, (cost, value) in enumerate(zip(group_costs, group_values)):
            if not is_integer(cost) or cost < 0:
                raise ValueError(f"costs[{g}][{k}] must be an integer >= 0, got {cost!r}")
            if not is_real_number(value) or not math.isfinite(value):
                raise ValueError(f"values[{g}][{k}] must be a finite number, got {value!r}")
            cost = int(cost)
            if cost > capacity:
                continue
            candidate = np.full(capacity + 1, np.inf)
            candidate[cost:] = best[:capacity + 1 - cost] + float(value)
            better = candidate < new
            new[better] = candidate[better]
            choices[g, better] = k
        best = new
    if not np.isfinite(best).any():
        raise ValueError(f"no choice fits the capacity {capacity}: even the cheapest options "
                         f"cost {sum(min(int(c) for c in group) for group in costs)}")
    cost = int(np.argmin(best))  # the first minimum: the cheapest of equal values
    chosen = [0] * len(costs)
    for g in range(len(costs) - 1, -1, -1):
        k = int(choices[g, cost])
        chosen[g] = k
        cost -= int(costs[g][k])
    return chosen


def choose_tables(weights: Sequence[int], devices: Sequence[int],
                  values: Union[Tensor, Sequence[Sequence[float]]],
                  budget: float) -> Tuple[List[int], bool]:
    """One candidate per layer: least total value, weight-averaged devices <= budget.

    Args:
        weights: weight count of each layer.
        devices: devices per weight of each candidate.
        values: ``values[layer][candidate]`` to minimize (e.g. measured sensitivity).
        budget: average devices per weight allowed.

    Returns:
        ``(choices, exact)``: the chosen candidate of every layer and whether the
        solution is exactly optimal (False when costs had to be rounded up to fit
        :data:`MAX_DP_CELLS`; the budget holds either way).

    Raises:
        ValueError: for a bad budget (naming ``devices_per_weight``) or one that even the
            cheapest candidates exceed.
    """
    budget = _check_budget(budget)
    values = [[float(v) for v in row] for row in (values.tolist() if isinstance(
        values, Tensor) else values)]
    costs = [[int(n) * int(d) for d in devices] for n in weights]
    total_weights = sum(int(n) for n in weights)
    # the budget as the decimal it was written as (2.3, not the float just below it)
    allowed = math.floor(Fraction(repr(budget)) * total_weights)  # devices in all
    cheapest = sum(min(row) for row in costs)
    if cheapest > allowed:
        raise ValueError(f"devices_per_weight={budget:g} is below what the cheapest "
                         f"candidates need ({cheapest / total_weights:g} devices per weight)")
    # The knapsack runs over the cost above each layer's cheapest candidate: the
    # all-cheapest choice always fits, also where costs are rounded to a coarser grid.
    extra = [[c - min(row) for c in row] for row in costs]
    spare = min(allowed - cheapest, sum(max(row) for row in extra))
    unit = reduce(math.gcd, (c for row in extra for c in row), 0) or 1
    exact = True
    if (spare // unit + 1) * len(costs) > MAX_DP_CELLS:
        unit = -(-spare // (MAX_DP_CELLS // len(costs) - 1))  # rounded up: a coarser grid
        exact = False
    units = [[-(-c // unit) for c in row] for row in extra]  # rounded up: the budget holds
    return solve_knapsack(units, values, spare // unit), exact


# =============================================================== allocation
@dataclass
class LayerAllocation:
    """One layer of an :class:`Allocation`.

    Attributes:
        name: the layer's name in ``model.named_modules()``.
        weights: its weight count.
        table: the chosen candidate's name.
        devices: the candidate's devices per weight.
        sensitivity: measured fidelity lost with this candidate (mean over times).
        sensitivities: candidate name -> measured fidelity lost.
    """

    name: str
    weights: int
    table: str
    devices: int
    sensitivity: float
    sensitivities: Dict[str, float] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """The layer's type: its name after the last block number
        (``"encoder.layer.3.output.dense"`` -> ``"output.dense"``), or without numbers
        if it ends in one (``"features.0"`` -> ``"features"``)."""
        parts = self.name.split(".")
        numbers_at = [i for i, part in enumerate(parts) if part.isdigit()]
        if numbers_at and numbers_at[-1] < len(parts) - 1:
            return ".".join(parts[numbers_at[-1] + 1:])
        return ".".join(part for part in parts if not part.isdigit()) or self.name


@dataclass
class Allocation:
    """The tables chosen per layer, with what was measured (:func:`allocate_tables`).

    Attributes:
        layers: one :class:`LayerAllocation` per analog layer, in model order.
        candidates: candidate name -> table spec.
        budget: the average devices per weight allowed.
        sensitivities: the measurement the choice was made from.
        exact: whether the knapsack was solved exactly (see :func:`choose_tables`).
        scale: the scaling of quantized tables (``{"scale": ..., "per_channel": ...}``).
        noise_model: the noise model measured under (a name, class, factory or instance,
            as given; the JSON form holds its name).
        compensation: global drift compensation on or off.
        name: display name (reports, sweep rows).
    """

    layers: List[LayerAllocation]
    candidates: Dict[str, TableSpec]
    budget: float
    sensitivities: Sensitivities
    exact: bool = True
    scale: Dict[str, Any] = field(default_factory=dict)
    noise_model: Any = "pcm"
    compensation: bool = True
    name: Optional[str] = None

    @property
    def devices_per_weight(self) -> float:
        """Devices per weight, averaged over all weights of the analog layers."""
        weights = sum(layer.weights for layer in self.layers)
        return sum(layer.weights * layer.devices for layer in self.layers) / weights

    @property
    def predicted_loss(self) -> float:
        """Sum of the chosen candidates' sensitivities: the fidelity the network is
        predicted to lose (mean over the times)."""
        return float(sum(layer.sensitivity for layer in self.layers))

    @property
    def tables(self) -> Dict[str, str]:
        """``{layer name: table name}``."""
        return {layer.name: layer.table for layer in self.layers}

    # ------------------------------------------------------------ conversion
    def to_assignment(self, name: Optional[str] = None,
                      compact: bool = False) -> TableAssignment:
        """A :class:`TableAssignment` with one rule per layer, its exact name as pattern.

        Patterns without wildcards match names that contain them, first match wins:
        the rules are ordered longest name first, so a layer whose name contains
        another's (``"fc.1"`` in ``"fc.10"``) never takes the other's rule. A model that
        is itself a layer (name ``""``) gets the rule ``"*"``.

        Args:
            name: the assignment's display name (default: this allocation's).
            compact: tables reduced to the columns they program (:func:`selected_only`),
                as in the JSON form.

        Raises:
            ValueError: for a layer name holding a wildcard (``*?[``).
        """
        specs = {key: selected_only(spec) if compact and isinstance(spec, ProgrammingTable)
                 else spec for key, spec in self.candidates.items()}
        rules = []
        for layer in sorted(self.layers, key=lambda item: -len(item.name)):
            if set("*?[") & set(layer.name):
                raise ValueError(f"layer name {layer.name!r} holds a wildcard character; "
                                 "it cannot be a pattern of its own")
            rules.append((layer.name or "*", specs[layer.table]))
        assignment = TableAssignment(rules, name=name or self.name or self.default_name(),
                                     scale=self.scale)
        for layer in self.layers:  # the ordering above guarantees this
            assert assignment.spec_for(layer.name) is specs[layer.table], layer.name
        return assignment

    def default_name(self) -> str:
        """``"allocation-<budget>dev"``."""
        return f"allocation-{self.budget:g}dev"

    def to_dict(self) -> Dict[str, Any]:
        """The JSON form ``aihwkit-slicing sweep --assignment`` reads.

        :meth:`TableAssignment.to_dict`'s keys (rules ``layer name -> table``, tables by
        name when built in, else as reduced table dicts; the scaling rule), plus
        ``devices_per_weight`` (weight-averaged), ``budget``, ``times`` (seconds),
        ``noise_model``, ``compensation``, ``measure``, ``seed``, ``repeats``,
        ``exact``, ``candidates`` (name -> devices per weight), ``predicted_loss`` and
        per layer ``weights``, ``table``, ``devices`` and ``sensitivity``.
        """
        data = self.to_assignment(compact=True).to_dict()
        data.update({
            "devices_per_weight": self.devices_per_weight,
            "budget": self.budget,
            "times": list(self.sensitivities.times),
            "noise_model": _noise_name(self.noise_model),
            "compensation": self.compensation,
            "measure": self.sensitivities.measure,
            "seed": self.sensitivities.seed,
            "repeats": self.sensitivities.repeats,
            "exact": self.exact,
            "candidates": dict(zip(self.sensitivities.candidates, self.sensitivities.devices)),
            "predicted_loss": self.predicted_loss,
            "layers": [{"name": layer.name, "weights": layer.weights, "table": layer.table,
                        "devices": layer.devices, "sensitivity": layer.sensitivity}
                       for layer in self.layers],
        })
        return data

    def save(self, path: Union[str, Path]) -> Path:
        """Write :meth:`to_dict` as JSON to ``path``."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        return path

    def rpu_config_fun(self, base_rpu_config: Optional[RPUConfigBase] = None,
                       noise_model: Any = None, compensation: Optional[bool] = None,
                       peripherals: str = "ideal") -> Callable[[str, nn.Module, Any], Any]:
        """aihwkit's ``specific_rpu_config_fun`` giving every layer its table::

            analog = convert_to_analog(model, TorchInferenceRPUConfig(),
                                       specific_rpu_config_fun=allocation.rpu_config_fun())

        Defaults: this allocation's noise model and drift compensation. See
        :meth:`TableAssignment.rpu_config_fun`.
        """
        return self.to_assignment().rpu_config_fun(
            base_rpu_config, self.noise_model if noise_model is None else noise_model,
            self.compensation if compensation is None else compensation, peripherals)

    # -------------------------------------------------------------- reports
    def by_kind(self) -> Dict[str, Dict[str, int]]:
        """Layer type -> {table: number of layers} (see :attr:`LayerAllocation.kind`)."""
        kinds: Dict[str, Dict[str, int]] = {}
        for layer in self.layers:
            counts = kinds.setdefault(layer.kind, {})
            counts[layer.table] = counts.get(layer.table, 0) + 1
        return kinds

    def report(self, per_layer: bool = True) -> str:
        """A text report: the budget met, and per layer the table and sensitivity."""
        measured = self.sensitivities
        lines = [f"allocation for {self.budget:g} devices per weight: "
                 f"{self.devices_per_weight:.3f} used on average over "
                 f"{sum(layer.weights for layer in self.layers)} weights "
                 f"({'exact' if self.exact else 'rounded costs'}); predicted "
                 f"{measured.measure} {self.predicted_loss:.4g} (sum over layers, mean over "
                 f"t = {', '.join(f'{t:g}' for t in measured.times)} s)"]
        if per_layer:
            width = max(len(layer.name) for layer in self.layers)
            lines.append(f"  {'layer':<{width}s} {'weights':>9s} {'devices':>7s} "
                         f"{'sensitivity':>11s}  table")
            for layer in self.layers:
                lines.append(f"  {layer.name or '(model)':<{width}s} {layer.weights:>9d} "
                             f"{layer.devices:>7d} {layer.sensitivity:>11.3g}  {layer.table}")
        lines.append("by layer type: " + "; ".join(
            f"{kind}: " + ", ".join(f"{count} x {table}" for table, count in counts.items())
            for kind, counts in self.by_kind().items()))
        return "\n".join(lines)


def allocate(sensitivities: Sensitivities, candidates: Mapping[str, TableSpec],
             devices_per_weight: float, name: Optional[str] = None) -> Allocation:
    """The best allocation for a budget from an existing measurement (no new one).

    The noise model, drift compensation and scaling are those the sensitivities were
    measured with.

    Args:
        sensitivities: from :func:`measure_sensitivities` (or ``Allocation.sensitivities``).
        candidates: name -> spec of the measured candidates (``Allocation.candidates``).
        devices_per_weight: the budget, average devices per weight.
        name: the result's display name.
    """
    missing = [c for c in sensitivities.candidates if c not in candidates]
    if missing:
        raise ValueError(f"candidates lacks the measured table(s) {', '.join(missing)}")
    mean = sensitivities.mean
    choices, exact = choose_tables(sensitivities.weights, sensitivities.devices, mean,
                                   devices_per_weight)
    layers = []
    for i, k in enumerate(choices):
        layers.append(LayerAllocation(
            name=sensitivities.layers[i], weights=sensitivities.weights[i],
            table=sensitivities.candidates[k], devices=sensitivities.devices[k],
            sensitivity=float(mean[i, k]),
            sensitivities={c: float(mean[i, j]) for j, c in
                           enumerate(sensitivities.candidates)}))
    return Allocation(layers=layers,
                      candidates={c: candidates[c] for c in sensitivities.candidates},
                      budget=float(devices_per_weight), sensitivities=sensitivities,
                      exact=exact, scale=_scale_rule(sensitivities),
                      noise_model=sensitivities.noise_model,
                      compensation=sensitivities.compensation, name=name)


def allocate_tables(
    model: nn.Module,
    candidates: Union[None, Sequence[Candidate], Mapping[str, Candidate]] = None,
    devices_per_weight: float = 6.0,
    noise_model: Any = "pcm",
    times: Sequence[float] = DEFAULT_TIMES,
    task: Optional[Task] = None,
    inputs: Any = None,
    repeats: int = 2,
    seed: int = 0,
    compensation: bool = True,
    scale: str = DEFAULT_SCALE,
    per_channel: bool = DEFAULT_PER_CHANNEL,
    rpu_config: Optional[RPUConfigBase] = None,
    quiet: bool = False,
    name: Optional[str] = None,
    threads: Optional[int] = None,
    noise_aware: bool = False,
) -> Allocation:
    """Choose a table per layer: best fidelity at ``times`` within a device budget.

    Measures every layer's sensitivity to every candidate, then solves the knapsack
    (see the module docstring).

    Args:
        model: the floating-point network (left untouched); its ``Linear`` and ``Conv``
            layers become analog.
        candidates: table names, :class:`ProgrammingTable` objects or results of
            :func:`~aihwkit_slicing.design.optimizer.optimize_table`; default
            :func:`default_candidates` for ``noise_model`` and ``times`` (2 to 16 devices:
            binary significance up to 4 pairs, equal beyond).
        devices_per_weight: the budget: devices per weight, averaged over all weights
            of the analog layers (weight counts, not layers).
        noise_model: a name of :data:`~aihwkit_slicing.integration.noise_models.NOISE_MODELS`, a
            factory or a noise model instance.
        times: inference times in seconds after programming to aim at.
        task: scores the network; the drop of ``task.metric`` from floating point is
            measured (the task's ``evaluate`` runs ``len(layers) x len(candidates) x
            repeats x len(times)`` times).
        inputs: instead of ``task``: a batch for ``model`` (a tensor, a tuple of
            positional or a dict of keyword arguments); the squared error of the output
            relative to the floating-point output's is measured.
        repeats: programmings per layer and candidate.
        seed: the measurement depends on the seed only (its own seeds; a sweep's
            evaluation with the same ``seed`` uses different ones).
        compensation: global drift compensation on or off.
        scale, per_channel: scaling of quantized tables (the sweep's default: ``"mse"``
            per output channel).
        rpu_config: rpu_config to start from (default ``TorchInferenceRPUConfig()``);
            peripherals are made ideal (``forward.is_perfect = True``).
        quiet: no progress bar.
        name: the result's display name (default ``"allocation-<budget>dev"``).
        threads: torch threads during the measurement (default: leave as set). One
            thread per process is fastest where other jobs share the cores.
        noise_aware: choose the ``mse`` clip of quantized tables for the error after
            programming and drift at ``times`` (each candidate's level noise simulated
            under ``noise_model``), as ``run_sweep(noise_aware=times)`` does; recorded
            in the result's scaling rule, which a sweep of the assignment applies.

    Returns:
        An :class:`Allocation`.

    Raises:
        ValueError: for a bad argument (naming it), or a budget below the cheapest
            candidates.
    """
    budget = _check_budget(devices_per_weight)
    _check_noise_times(noise_model, _check_times(times))
    if candidates is None:
        candidates = default_candidates(noise_model, _check_times(times),
                                        _check_int("seed", seed, 0))
    specs = candidate_specs(candidates)
    layers = list(weight_layers(model)) if isinstance(model, nn.Module) else []
    if layers:  # a budget no allocation can meet fails before the measurement
        choose_tables([m.weight.numel() for _, m in layers],
                      [devices_of(make_converter(s)) for s in specs.values()],
                      [[0.0] * len(specs)] * len(layers), budget)
    measured = measure_sensitivities(model, specs, noise_model, times, task, inputs, repeats,
                                     seed, compensation, scale, per_channel, rpu_config, quiet,
                                     threads, noise_aware)
    return allocate(measured, specs, budget, name=name)


# ============================================================== validation
def _check_budget(value: Any) -> float:
    if not is_real_number(value) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"devices_per_weight must be a finite number > 0, got {value!r}")
    return float(value)


def _check_int(name: str, value: Any, minimum: int) -> int:
    if not is_integer(value) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_times(times: Any) -> List[float]:
    if isinstance(times, numbers.Real):
        times = [times]
    return validate_times(list(times))


def _scale_rule(sensitivities: Sensitivities) -> Dict[str, Any]:
    """The scaling rule an allocation records (and its JSON form holds)."""
    rule: Dict[str, Any] = {"scale": sensitivities.scale,
                            "per_channel": sensitivities.per_channel}
    if sensitivities.noise_aware:
        rule["noise_aware"] = list(sensitivities.noise_aware)
    return rule


def _check_noise_times(noise_model: Any, times: List[float]) -> None:
    """Raise ``ValueError`` if the noise model does not know one of ``times``."""
    probe = build_noise_model(noise_model, make_converter("aihwkit-1pair"))
    check_times(times, probe, _noise_name(noise_model))


def _check_not_shared(model: nn.Module) -> None:
    shared = shared_weight_layers(model)
    if shared:
        first, names = next(iter(shared.items()))
        raise ValueError(f"layer {first!r} is the same module as {', '.join(map(repr, names[1:]))}"
                         ": aihwkit converts each name into a layer of its own, which an "
                         "allocation by layer cannot give tables to; give each its own module")


def _noise_name(noise_model: Any) -> str:
    if isinstance(noise_model, str):
        return noise_model
    if isinstance(noise_model, type):
        return noise_model.__name__
    return type(noise_model).__name__
