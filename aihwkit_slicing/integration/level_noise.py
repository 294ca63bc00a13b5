"""Per-level error of a table under an aihwkit noise model, by Monte Carlo; the level
noise that noise-aware clipping uses.

Every column of a :class:`~aihwkit_slicing.core.tables.ProgrammingTable` is simulated by
Monte Carlo through an aihwkit noise model's *own* methods, device by device:

    g_prog = noise_model.apply_programming_noise_to_conductance(g_target)
    nu     = noise_model.generate_drift_coefficients(g_target)
    g_t    = noise_model.apply_drift_noise_to_conductance(g_prog, nu, t_inference)

so any aihwkit noise model works. The weight a cell then represents is
``sum_k f_k (gp_k - gm_k)`` (microsiemens). With ``compensation=True`` the drifted
weights are rescaled by one global factor, as aihwkit's ``GlobalDriftCompensation``
does on a tile (here: the factor that maps the mean ``|w|`` over all levels back to
its programmed value).

* :func:`simulate_columns`, :func:`column_errors` -- weights and error statistics of
  chosen columns;
* :func:`level_noise` -- the expected error of every level, averaged over inference
  times, for noise-aware clipping (``scale="mse"`` with ``level_noise``);
  :func:`seeded_level_noise` -- the same, seeded by the table and the noise model's name
  only: what sweeps, assignments and
  :func:`~aihwkit_slicing.integration.rpu_configs.make_rpu_config` use.

It lives in ``integration`` (it needs aihwkit's noise models, nothing above) so that
:func:`~aihwkit_slicing.integration.rpu_configs.make_rpu_config` builds noise-aware
converters as sweeps do; :mod:`aihwkit_slicing.design.encodings` re-exports it.
"""

from __future__ import annotations

import numbers
from typing import Any, Dict, List, Optional, Sequence, Union

import torch
from torch import Tensor

from aihwkit.inference.noise.base import BaseNoiseModel

from aihwkit_slicing.core.converter import QuantizedSlicedConductanceConverter
from aihwkit_slicing.core.quantize import LevelNoise
from aihwkit_slicing.core.tables import ProgrammingTable
from aihwkit_slicing.integration.noise_models import build_noise_model
from aihwkit_slicing.integration.setting import noise_params, stable_seed


def _noise_model_for(table: ProgrammingTable, noise_model: Any) -> BaseNoiseModel:
    """A noise model whose g_max is the table's (a name, factory or instance)."""
    return build_noise_model(noise_model, QuantizedSlicedConductanceConverter.from_table(table))


@torch.no_grad()
def simulate_columns(
    table: ProgrammingTable,
    noise_model: Any,
    t_inference: float,
    columns: Sequence[int],
    n_samples: int = 1000,
    seed: int = 0,
) -> Tensor:
    """Weights (microsiemens) of ``n_samples`` cells programmed to each column.

    Args:
        table: the programming table.
        noise_model: an aihwkit noise model, or a name / factory as accepted by
            :func:`aihwkit_slicing.integration.noise_models.build_noise_model`.
        t_inference: seconds after programming.
        columns: column indices to simulate.
        n_samples: cells per column.
        seed: seed of torch's global generator (aihwkit's noise models use it).

    Returns:
        ``[len(columns), n_samples]`` float64 weights in microsiemens.
    """
    model = _noise_model_for(table, noise_model)
    torch.manual_seed(seed)
    targets = torch.as_tensor(table.conductances[:, list(columns)], dtype=torch.float32)
    weights = torch.zeros(len(columns), n_samples, dtype=torch.float64)
    device_factors = [f for f in table.f_lst for _ in (0, 1)]  # f_k of gp_k and gm_k
    for device, f_k in enumerate(device_factors):
        # one tensor for both calls, as aihwkit's apply_programming_noise passes them (a
        # measured device model keeps its stuck draws on it for the drift coefficients)
        g_target = targets[device][:, None].expand(-1, n_samples).clone()
        g_prog = model.apply_programming_noise_to_conductance(g_target)
        nu = model.generate_drift_coefficients(g_target)
        g_final = model.apply_drift_noise_to_conductance(g_prog, nu, t_inference)
        sign = 1.0 if device % 2 == 0 else -1.0
        weights += sign * f_k * g_final.double()
    return weights


def _compensation_factor(simulated: Tensor, targets: Tensor) -> float:
    drifted = simulated.abs().mean()
    return float(targets.abs().mean() / drifted) if drifted > 0 else 1.0


@torch.no_grad()
def column_errors(
    table: ProgrammingTable,
    noise_model: Any,
    t_inference: float,
    columns: Optional[Sequence[int]] = None,
    n_samples: int = 1000,
    seed: int = 0,
    compensation: bool = True,
) -> Dict[str, Tensor]:
    """Error statistics (microsiemens) of cells programmed to ``columns``.

    Args:
        columns: default: every column of the table.
        compensation: rescale by one global drift-compensation factor, computed over
            the table's *selected* columns (one per level), as a tile full of weights
            spread over all levels would.
        Other arguments as for :func:`simulate_columns`.

    Returns:
        ``columns``, ``target`` (weight of each column), ``mean_error``, ``std`` and
        ``mse`` (mean squared error) per column, and ``alpha`` (the factor applied).
    """
    columns = list(range(table.n_columns)) if columns is None else list(columns)
    weights = simulate_columns(table, noise_model, t_inference, columns, n_samples, seed)
    targets = torch.as_tensor(table.column_weights[columns], dtype=torch.float64)
    alpha = 1.0
    if compensation:
        selected = list(table.selected_columns)
        if selected == columns:
            reference, reference_targets = weights, targets
        else:
            reference = simulate_columns(table, noise_model, t_inference, selected, n_samples,
                                         seed + 1)
            reference_targets = torch.as_tensor(table.levels, dtype=torch.float64)
        alpha = _compensation_factor(reference, reference_targets[:, None])
    error = weights * alpha - targets[:, None]
    return {
        "columns": torch.tensor(columns),
        "target": targets,
        "mean_error": error.mean(dim=1),
        "std": error.std(dim=1),
        "mse": error.square().mean(dim=1),
        "alpha": torch.tensor(alpha),
    }


def per_time_noise(
    table: ProgrammingTable,
    noise_model: Any,
    times: Sequence[float],
    n_samples: int = 1000,
    seed: int = 0,
    compensation: bool = True,
) -> List[LevelNoise]:
    """Per inference time, the expected error of each (selected) level in microsiemens."""
    noise = []
    for index, t in enumerate(times):
        stats = column_errors(table, noise_model, float(t), list(table.selected_columns),
                              n_samples, seed + index, compensation)
        noise.append(LevelNoise(tuple(stats["mean_error"].tolist()),
                                tuple(stats["mse"].tolist()), f"t = {float(t):g} s"))
    return noise


def level_noise(
    table: ProgrammingTable,
    noise_model: Any = "pcm",
    times: Union[float, Sequence[float]] = 86400.0,
    n_samples: int = 2000,
    seed: int = 0,
    compensation: bool = True,
) -> LevelNoise:
    """Expected error of every level (microsiemens), averaged over inference times.

    Feeds noise-aware MSE clipping::

        noise = level_noise(table, "pcm", [86400.0, 31536000.0])
        converter = QuantizedSlicedConductanceConverter.from_table(
            table, scale="mse", per_channel=True, level_noise=noise)

    Args:
        times: one inference time or several (seconds); the statistics are averaged.
        Other arguments as for :func:`column_errors`.
    """
    times = [times] if isinstance(times, numbers.Real) else list(times)
    if not times:
        raise ValueError("times must name at least one inference time")
    per_time = per_time_noise(table, noise_model, times, n_samples, seed, compensation)
    name = noise_model if isinstance(noise_model, str) else type(noise_model).__name__
    return LevelNoise.average(
        per_time, f"{name} at t = {', '.join(f'{float(t):g}' for t in times)} s")


def seeded_level_noise(table: ProgrammingTable, noise_model: Any,
                       times: Sequence[float], compensation: bool) -> LevelNoise:
    """``table``'s :func:`level_noise` for noise-aware clipping, its Monte Carlo seeded by
    what the table programs (:meth:`ProgrammingTable.programmed_hash`: not its name, nor
    redundant columns) and what the noise model is (:func:`noise_model_identity`: its
    class and parameters, not the label a caller gives it).

    Level noise is a property of the table under a noise model (the expected error of
    each level), not a draw of an experiment: sweeps, allocations, assignments and
    :func:`~aihwkit_slicing.integration.rpu_configs.make_rpu_config` all call this, so a
    table gets the same clip whatever seed, name, label or JSON round trip it comes
    with. The caller's random state stays as it was."""
    with torch.random.fork_rng(devices=[]):
        return level_noise(table, noise_model, list(times), compensation=compensation,
                           seed=stable_seed("level noise", table.programmed_hash(),
                                            noise_model_identity(noise_model, table)))


def noise_model_identity(noise_model: Any, table: ProgrammingTable) -> str:
    """What a noise model is, as text: its class and the parameters
    :func:`~aihwkit_slicing.integration.setting.noise_params` records; for a spec (a
    registered name, a class, a factory) those of the model it builds for ``table``. The
    same model given as ``"pcm"``, as ``PCMLikeNoiseModel()`` or by a factory under any
    label has one identity."""
    built = _noise_model_for(table, noise_model)
    return f"{type(built).__module__}.{type(built).__qualname__}:{noise_params(built)}"
