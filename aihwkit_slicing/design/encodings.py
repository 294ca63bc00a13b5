"""Noise-aware encodings: per level, the expected error and the encoding of least error.

The Monte Carlo behind them (each column of a table programmed and drifted through an
aihwkit noise model's own methods, see :mod:`aihwkit_slicing.integration.level_noise`)
lives in ``integration``, so that ``make_rpu_config`` can build noise-aware converters;
its functions are re-exported here:

* :func:`column_errors` -- error statistics of chosen columns;
* :func:`level_error_report` -- per level: expected error and its spread (the numbers
  behind the per-level plots of the notebooks);
* :func:`optimize_encodings` -- per level, the encoding (among redundant columns) with
  the least expected squared weight error; also ``ProgrammingTable.optimize_encodings``;
* :func:`level_noise` -- the expected error of every level, averaged over inference
  times, for noise-aware clipping (``scale="mse"`` with ``level_noise``).
"""

from __future__ import annotations

from typing import Any, Dict, List

from aihwkit_slicing.core.tables import ProgrammingTable
from aihwkit_slicing.integration.level_noise import (  # noqa: F401  (re-exported)
    column_errors,
    level_noise,
    noise_model_identity,
    per_time_noise,
    seeded_level_noise,
    simulate_columns,
)


def level_error_report(
    table: ProgrammingTable,
    noise_model: Any = "pcm",
    t_inference: float = 0.0,
    n_samples: int = 1000,
    seed: int = 0,
    compensation: bool = True,
) -> List[Dict[str, float]]:
    """Per level: expected weight error and its spread after programming and drift.

    Errors are relative to the largest ``|level|`` (so 0.01 is 1 % of the weight
    range).

    Returns:
        One dict per level (ascending): ``level`` (relative), ``level_us``, ``column``,
        ``mean_error``, ``std``, ``rms`` (all relative).
    """
    stats = column_errors(table, noise_model, t_inference, list(table.selected_columns),
                          n_samples, seed, compensation)
    top = float(abs(table.levels).max())
    rows = []
    for i, column in enumerate(table.selected_columns):
        rows.append({
            "level": float(table.levels[i]) / top,
            "level_us": float(table.levels[i]),
            "column": int(column),
            "mean_error": float(stats["mean_error"][i]) / top,
            "std": float(stats["std"][i]) / top,
            "rms": float(stats["mse"][i].sqrt()) / top,
        })
    return rows


def optimize_encodings(
    table: ProgrammingTable,
    noise_model: Any = "pcm",
    t_inference: float = 86400.0,
    n_samples: int = 2000,
    seed: int = 0,
    compensation: bool = True,
) -> ProgrammingTable:
    """The table with, per level, the encoding of least expected squared error.

    Every column is simulated (Monte Carlo through the noise model, see the module
    docstring); for each level the column with the smallest mean squared weight error
    at ``t_inference`` is selected. Levels with a single encoding keep it.

    Returns:
        A copy of ``table`` whose ``encoding`` lists the chosen columns.
    """
    stats = column_errors(table, noise_model, t_inference, None, n_samples, seed,
                          compensation)
    mse = stats["mse"]
    chosen = [min(cols, key=lambda c: (float(mse[c]), c)) for cols in table.encodings]
    if tuple(chosen) == table.selected_columns:
        return table
    return table.with_encodings(chosen)
