"""Table optimizer: which programming table serves given weights best under device noise.

Given the number of device pairs, the conductance levels a device offers and the
weights to serve (a tensor, several, or a model), :func:`optimize_table` searches

* significance factors: equal (noise averages), powers of the level count ("base"),
  powers of two, and optionally a continuous geometric ratio (scipy);
* the subset of device levels used (every level, every other one, ...);
* the clipping (noise-aware MSE clipping per output channel, see
  :mod:`aihwkit_slicing.core.scaling`);
* the encodings of redundant levels (Monte Carlo, :mod:`aihwkit_slicing.design.encodings`),

to minimize the expected weight error at one or more inference times under a noise
model. The objective is aihwkit's *time-averaged normalized mean squared error*
(TNMSE, the loss of ``aihwkit.inference.converter.wpo``): the mean over times and
weights of ``(10 * (w_eff - w) / max|w|)**2``, where ``w_eff`` is the drift-compensated
analog weight. During the search it is computed analytically from per-level error
statistics (:func:`expected_tnmse`); the result and any baseline converter are then
measured the same way aihwkit's optimizer measures them, by programming and drifting
analog layers (:func:`simulated_tnmse`).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from aihwkit.inference.converter.base import BaseConductanceConverter
from aihwkit.nn import AnalogLinear
from aihwkit.simulator.configs import TorchInferenceRPUConfig

from aihwkit_slicing.core.converter import QuantizedSlicedConductanceConverter
from aihwkit_slicing.design.encodings import optimize_encodings, per_time_noise
from aihwkit_slicing.core.quantize import LevelNoise
from aihwkit_slicing.core.scaling import compute_scaling
from aihwkit_slicing.core.validation import check_count
from aihwkit_slicing.core.builders import bit_sliced, equal_significance
from aihwkit_slicing.core.tables import ProgrammingTable

#: aihwkit's WPO amplifies weight errors by 10 before squaring; so do we, so that the
#: numbers compare directly.
ERROR_AMPLIFICATION = 10.0
#: Rows sampled per weight tensor for the analytical objective.
MAX_ROWS = 64
#: Largest column count of a candidate table (larger ones are skipped).
MAX_CANDIDATE_COLUMNS = 2**16


def weight_matrices(weights: Union[Tensor, Sequence[Tensor], nn.Module]) -> List[Tensor]:
    """The 2-d ``[out, in]`` weight matrices of a tensor, a list or a model's
    ``Linear``/``Conv`` layers (float32, CPU, detached)."""
    if isinstance(weights, nn.Module):
        tensors = [m.weight for m in weights.modules()
                   if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)) and m.weight is not None]
    elif isinstance(weights, Tensor):
        tensors = [weights]
    else:
        tensors = list(weights)
    if not tensors:
        raise ValueError("weights holds no weight matrix")
    out = []
    for w in tensors:
        w = w.detach().float().cpu()
        out.append(w.reshape(w.shape[0], -1) if w.dim() > 1 else w.reshape(1, -1))
    return out


def _sample_rows(matrices: List[Tensor], max_rows: int, seed: int) -> List[Tensor]:
    generator = torch.Generator().manual_seed(seed)
    sampled = []
    for w in matrices:
        if w.shape[0] > max_rows:
            w = w[torch.randperm(w.shape[0], generator=generator)[:max_rows]]
        sampled.append(w)
    return sampled


def average_noise(noise: Sequence[LevelNoise]) -> LevelNoise:
    """The time average of per-time level noise (see :meth:`LevelNoise.average`)."""
    return LevelNoise.average(noise)


@torch.no_grad()
def expected_tnmse(converter: QuantizedSlicedConductanceConverter, matrices: List[Tensor],
                   noise: Sequence[LevelNoise]) -> float:
    """TNMSE expected for ``converter`` on ``matrices`` (see the module docstring).

    Each weight is scaled and assigned to a level exactly as the converter does; its
    expected squared error at time ``t`` is ``(x - l)**2 - 2 (x - l) mean + mean_square``
    (microsiemens, divided by the scale squared), with the per-level statistics of
    ``noise`` for that time.
    """
    quantizer = converter.quantizer
    levels = torch.as_tensor(converter.table.levels, dtype=torch.float64)
    total, count = 0.0, 0
    for w in matrices:
        scaling = compute_scaling(w, quantizer, converter.scale, converter.per_channel,
                                  converter.percentile, converter.level_noise)
        scale = scaling.scale.double()
        x = w.double() * scale
        index = quantizer.level_index(x.float()).reshape(x.shape)
        residual = x - levels[index]
        norm = float(w.abs().max()) ** 2 or 1.0
        for stats in noise:
            mean = torch.as_tensor(stats.mean, dtype=torch.float64)[index]
            square = torch.as_tensor(stats.mean_square, dtype=torch.float64)[index]
            error = (residual.square() - 2 * residual * mean + square) / scale.square()
            total += float(error.sum()) / norm
        count += w.numel() * len(noise)
    return ERROR_AMPLIFICATION**2 * total / count


def _rpu_config(converter: BaseConductanceConverter, noise_model: Any) -> TorchInferenceRPUConfig:
    from aihwkit_slicing.integration.rpu_configs import make_rpu_config

    # per tensor: the effective weights are then alpha times the tile's weights
    config = make_rpu_config(converter, noise_model, compensation=True, peripherals="ideal",
                             mapping="tensor")
    config.mapping.max_input_size = 0  # one tile per matrix, whatever its size
    config.mapping.max_output_size = 0
    return config


@torch.no_grad()
def simulated_tnmse(converter: BaseConductanceConverter,
                    weights: Union[Tensor, Sequence[Tensor], nn.Module],
                    noise_model: Any = "pcm", times: Sequence[float] = (86400.0,),
                    repeats: int = 3, seed: int = 0, max_rows: int = MAX_ROWS) -> float:
    """TNMSE measured by programming and drifting aihwkit analog layers.

    Every weight matrix (rows sampled as in the search) goes into an ``AnalogLinear``
    with ``converter``, ideal peripherals and global drift compensation; for each
    repeat it is programmed, drifted to each time, and the effective weights
    ``alpha * W`` are compared with the targets, as aihwkit's WPO loss does.
    """
    matrices = _sample_rows(weight_matrices(weights), max_rows, seed)
    config = _rpu_config(converter, noise_model)
    total, count = 0.0, 0
    for index, w in enumerate(matrices):
        layer = AnalogLinear(w.shape[1], w.shape[0], bias=False, rpu_config=config).eval()
        layer.set_weights(w)
        norm = float(w.abs().max()) or 1.0
        for repeat in range(repeats):
            torch.manual_seed(seed * 1009 + repeat * 101 + index)
            layer.program_analog_weights()
            for t in times:
                layer.drift_analog_weights(t)
                (tile,) = layer.analog_tiles()
                effective = tile.alpha * tile.tile.get_weights()
                error = ERROR_AMPLIFICATION * (effective - w) / norm
                total += float(error.square().sum())
                count += w.numel()
    return total / count


@dataclass
class OptimizationResult:
    """What :func:`optimize_table` found.

    Attributes:
        table: the best table (with optimized encodings).
        converter: a converter for it (noise-aware MSE clipping).
        objective: its expected TNMSE (analytical).
        candidates: every candidate's name and expected TNMSE, best first.
        simulated: the best converter's TNMSE measured on analog layers.
        baselines: name -> TNMSE measured the same way for the given baselines.
        seconds: wall time of the search (without the simulated measurements).
    """

    table: ProgrammingTable
    converter: QuantizedSlicedConductanceConverter
    objective: float
    candidates: List[Tuple[str, float]]
    simulated: Optional[float] = None
    baselines: Dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def report(self) -> str:
        """A text summary: candidates, best, baselines."""
        lines = [f"table optimizer: {len(self.candidates)} candidates in {self.seconds:.1f} s"]
        for name, value in self.candidates[:10]:
            lines.append(f"  {name:<36s} expected TNMSE {value:.5f}")
        lines.append(f"best: {self.table.name} ({self.table.n_devices} devices, "
                     f"{self.table.n_levels} levels), expected {self.objective:.5f}"
                     + (f", simulated {self.simulated:.5f}" if self.simulated is not None else ""))
        for name, value in self.baselines.items():
            lines.append(f"  baseline {name:<27s} simulated TNMSE {value:.5f}")
        return "\n".join(lines)


def _subsets(device_levels: int) -> List[int]:
    """Level counts reachable by using every k-th of ``device_levels`` evenly spaced levels."""
    sizes = sorted({(device_levels - 1) // k + 1 for k in range(1, device_levels)
                    if (device_levels - 1) % k == 0}, reverse=True)
    return [m for m in sizes if m >= 2]


def candidate_tables(n_pairs: int, device_levels: int,
                     significances: Sequence[Any] = ("equal", "base", "binary"),
                     g_min: float = 0.0, g_max: float = 25.0) -> Dict[str, ProgrammingTable]:
    """The discrete candidates: significance schemes x subsets of the device levels."""
    tables: Dict[str, ProgrammingTable] = {}
    for m in _subsets(device_levels):
        for significance in significances:
            if significance == "equal":
                table = equal_significance(n_pairs, m, columns="fill+spread", g_min=g_min,
                                           g_max=g_max)
                name = f"{n_pairs}x{m}lvl-equal"
            else:
                if (2 * m - 1) ** n_pairs > MAX_CANDIDATE_COLUMNS:
                    continue
                if significance == "base":
                    factors, label = "base", "base"
                elif significance == "binary":
                    factors, label = [2.0**k for k in range(n_pairs)], "binary"
                else:
                    factors = [float(f) for f in significance]
                    label = "f" + "-".join(f"{f:g}" for f in factors)
                table = bit_sliced(n_pairs, m, significance=factors, g_min=g_min, g_max=g_max)
                name = f"{n_pairs}x{m}lvl-{label}"
            tables[name] = table.with_name(name)
    return tables


def _score(table: ProgrammingTable, matrices: List[Tensor], noise_model: Any,
           times: Sequence[float], n_samples: int, seed: int
           ) -> Tuple[float, ProgrammingTable, QuantizedSlicedConductanceConverter]:
    if any(len(columns) > 1 for columns in table.encodings):
        middle = sorted(times)[len(times) // 2]
        table = optimize_encodings(table, noise_model, middle, n_samples, seed)
    noise = per_time_noise(table, noise_model, times, n_samples, seed)
    converter = QuantizedSlicedConductanceConverter.from_table(
        table, scale="mse", per_channel=True, level_noise=average_noise(noise))
    return expected_tnmse(converter, matrices, noise), table, converter


def optimize_table(
    weights: Union[Tensor, Sequence[Tensor], nn.Module],
    n_pairs: int = 4,
    device_levels: int = 32,
    noise_model: Any = "pcm",
    times: Sequence[float] = (86400.0, 31536000.0),
    significances: Sequence[Any] = ("equal", "base", "binary"),
    search_ratio: bool = False,
    baselines: Optional[Dict[str, BaseConductanceConverter]] = None,
    simulate: bool = True,
    n_samples: int = 1000,
    repeats: int = 3,
    seed: int = 0,
    g_min: float = 0.0,
    g_max: float = 25.0,
) -> OptimizationResult:
    """Search the table that minimizes the expected weight error (TNMSE).

    Args:
        weights: the weights to serve: a tensor, a list of tensors or a model.
        n_pairs: device pairs per weight (``2 * n_pairs`` devices).
        device_levels: how many evenly spaced conductance levels a device offers
            between ``g_min`` and ``g_max``; subsets using every k-th are tried.
        noise_model: an aihwkit noise model, or a name of
            :data:`aihwkit_slicing.integration.noise_models.NOISE_MODELS`.
        times: inference times (seconds) the error is averaged over.
        significances: schemes to try: ``"equal"``, ``"base"``, ``"binary"`` or
            explicit factor lists.
        search_ratio: also search a continuous geometric significance ratio
            ``f_k = r**k`` with scipy (on the smallest level subset, to bound cost).
        baselines: converters (e.g. aihwkit's) to measure with :func:`simulated_tnmse`.
        simulate: measure the best converter with :func:`simulated_tnmse` too.
        n_samples: Monte Carlo cells per level and time.
        repeats: programmings per simulated measurement.
        seed: everything is reproducible for a seed.
        g_min, g_max: device conductance range in microsiemens.

    Returns:
        An :class:`OptimizationResult`.
    """
    if not times:
        raise ValueError("times must name at least one inference time")
    n_pairs = check_count("n_pairs", n_pairs, 1)
    device_levels = check_count("device_levels", device_levels, 2)
    start = time.perf_counter()
    matrices = _sample_rows(weight_matrices(weights), MAX_ROWS, seed)
    scored: List[Tuple[float, str, ProgrammingTable, QuantizedSlicedConductanceConverter]] = []
    for name, table in candidate_tables(n_pairs, device_levels, significances,
                                        g_min, g_max).items():
        value, table, converter = _score(table, matrices, noise_model, times, n_samples, seed)
        scored.append((value, name, table, converter))
    if search_ratio and n_pairs > 1:
        scored.append(_search_ratio(n_pairs, device_levels, matrices, noise_model, times,
                                    n_samples, seed, g_min, g_max))
    scored.sort(key=lambda item: item[0])
    objective, _, table, converter = scored[0]
    result = OptimizationResult(
        table=table, converter=converter, objective=objective,
        candidates=[(name, value) for value, name, _, _ in scored],
        seconds=time.perf_counter() - start,
    )
    if simulate:
        result.simulated = simulated_tnmse(converter, matrices, noise_model, times, repeats, seed)
    for name, baseline in (baselines or {}).items():
        result.baselines[name] = simulated_tnmse(copy.deepcopy(baseline), matrices, noise_model,
                                                 times, repeats, seed)
    return result


def _search_ratio(n_pairs: int, device_levels: int, matrices: List[Tensor], noise_model: Any,
                  times: Sequence[float], n_samples: int, seed: int, g_min: float, g_max: float
                  ) -> Tuple[float, str, ProgrammingTable, QuantizedSlicedConductanceConverter]:
    """Continuous geometric significance ratio ``f_k = r**k``, bounded scalar search."""
    from scipy.optimize import minimize_scalar

    levels = min(_subsets(device_levels), key=lambda m: abs((2 * m - 1) ** n_pairs - 4096))
    found: Dict[float, Tuple[float, ProgrammingTable, QuantizedSlicedConductanceConverter]] = {}

    def objective(log_ratio: float) -> float:
        ratio = math.exp(log_ratio)
        table = bit_sliced(n_pairs, levels, significance=[ratio**k for k in range(n_pairs)],
                           g_min=g_min, g_max=g_max, name=f"{n_pairs}x{levels}lvl-r{ratio:.3g}")
        value, table, converter = _score(table, matrices, noise_model, times, n_samples, seed)
        found[log_ratio] = (value, table, converter)
        return value

    minimize_scalar(objective, bounds=(0.0, math.log(2 * levels - 1)), method="bounded",
                    options={"maxiter": 12, "xatol": 0.02})
    best = min(found, key=lambda k: found[k][0])
    value, table, converter = found[best]
    return value, table.name, table, converter
