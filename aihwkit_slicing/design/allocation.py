"""Which table for which layer: the choice under an average device budget, and its result.

Given each layer's measured sensitivity to each candidate table (:class:`Sensitivities`,
measured by :func:`aihwkit_slicing.experiments.sensitivity.measure_sensitivities`),
:func:`allocate` picks one candidate per layer.

Small, independent errors of different layers add up: the output's error is, to first
order, the sum of the errors each layer causes, and its expected square (and so ``1 -
cosine``) the sum of their squares. The network's loss is therefore predicted by the sum
of the chosen candidates' sensitivities. Choosing one candidate per layer to minimize
that sum subject to ``sum(layer weights x devices per weight) <= D x all weights`` is a
multiple-choice knapsack; :func:`solve_knapsack` solves it exactly by dynamic
programming over each layer's cost above its cheapest candidate, in units of the
greatest common divisor of those costs (:func:`choose_tables`). Only if that would need
more than :data:`MAX_DP_CELLS` table cells are the costs rounded *up* to a coarser unit:
the budget still holds, the all-cheapest choice always fits, and the result is optimal
for the rounded costs (``Allocation.exact`` is then False).

The result, an :class:`Allocation`, reports per layer its weights, table, devices and
sensitivity, and converts to a :class:`~aihwkit_slicing.design.assignment.TableAssignment`,
to the JSON ``aihwkit-slicing sweep --assignment`` reads, and to aihwkit's
``specific_rpu_config_fun``. Candidate tables are in :mod:`aihwkit_slicing.design.candidates`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from fractions import Fraction
from functools import reduce
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor, nn

from aihwkit.simulator.parameters.base import RPUConfigBase

from aihwkit_slicing.design.assignment import TableAssignment
from aihwkit_slicing.integration.catalog import (
    DEFAULT_PER_CHANNEL,
    DEFAULT_SCALE,
    TableSpec,
    make_converter,
)
from aihwkit_slicing.integration.noise_models import build_noise_model
from aihwkit_slicing.integration.setting import noise_params
from aihwkit_slicing.core.tables import ProgrammingTable
from aihwkit_slicing.core.validation import is_integer, is_real_number
from aihwkit_slicing.design.candidates import selected_only


#: Largest dynamic-programming table (layers x cost units) solved exactly.
MAX_DP_CELLS = 2**24


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
        mapping: aihwkit's weight mapping measured with (``"column"`` or ``"tensor"``).
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
    mapping: str = "column"

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
    capacity = check_int("capacity", capacity, 0)
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
    budget = check_budget(budget)
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
    """The tables chosen per layer, with what was measured
    (:func:`~aihwkit_slicing.experiments.sensitivity.allocate_tables`).

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
            compact: tables reduced to the columns they program
                (:func:`~aihwkit_slicing.design.candidates.selected_only`), as in the JSON
                form.

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
                                     scale=self.scale, recorded=self.recorded())
        for layer in self.layers:  # the ordering above guarantees this
            assert assignment.spec_for(layer.name) is specs[layer.table], layer.name
        return assignment

    def recorded(self) -> Dict[str, Any]:
        """The setting the allocation was measured in, as an assignment records it
        (:data:`~aihwkit_slicing.design.assignment.RECORDED_KEYS`)."""
        return {"noise_model": noise_name(self.noise_model),
                "noise_params": noise_params_of(self.noise_model),
                "compensation": self.compensation, "mapping": self.sensitivities.mapping,
                "peripherals": "ideal", "seed": self.sensitivities.seed}

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
            "measure": self.sensitivities.measure,
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
            self.compensation if compensation is None else compensation, peripherals,
            self.sensitivities.mapping)

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
        sensitivities: from
            :func:`~aihwkit_slicing.experiments.sensitivity.measure_sensitivities` (or
            ``Allocation.sensitivities``).
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


# ============================================================== validation
def check_budget(value: Any) -> float:
    if not is_real_number(value) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"devices_per_weight must be a finite number > 0, got {value!r}")
    return float(value)


def _scale_rule(sensitivities: Sensitivities) -> Dict[str, Any]:
    """The scaling rule an allocation records (and its JSON form holds)."""
    rule: Dict[str, Any] = {"scale": sensitivities.scale,
                            "per_channel": sensitivities.per_channel}
    if sensitivities.noise_aware:
        rule["noise_aware"] = list(sensitivities.noise_aware)
    return rule


def noise_name(noise_model: Any) -> str:
    if isinstance(noise_model, str):
        return noise_model
    if isinstance(noise_model, type):
        return noise_model.__name__
    return type(noise_model).__name__

def check_int(name: str, value: Any, minimum: int) -> int:
    if not is_integer(value) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def noise_params_of(noise_model: Any) -> str:
    """The non-default parameters (JSON) of a noise model given as a name, class,
    factory or instance (:func:`aihwkit_slicing.integration.setting.noise_params`)."""
    return noise_params(build_noise_model(noise_model, make_converter("aihwkit-1pair")))
