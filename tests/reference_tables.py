"""REFERENCE implementation of programming-table building: frozen, slow, obviously correct.

This is a verbatim copy of the pure-Python logic of :mod:`aihwkit_slicing.core.tables` as it
was before the table building was vectorized (commit 2e686cf): the ``g_lst``
validation, the level grouping, the selection of one column per level by an encoding
rule, the check of explicit encodings and the signed-digit column generation of the
builders. The tests compare the fast implementation against it exactly (levels,
encodings, selected columns, column order and error messages), and
``benchmarks/bench_tables.py`` times it as the baseline.

Do not optimize or "fix" this module: its value is that it stays the old behaviour.
It is quadratic in the number of columns (one mask per level) and checks every
conductance in Python; keep it to tables of up to about 10**5 columns.
"""

from __future__ import annotations

import itertools
import math
import numbers
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np

#: Same values as in aihwkit_slicing.core.tables at the time of the copy.
MAX_COLUMNS = 2**20
ENCODING_RULES = ("min_total", "min_weighted", "first")
LEVEL_TOLERANCE = 1e-9


def _is_real_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def reference_as_rows(g_lst: Any) -> List[List[Any]]:
    """Turn ``g_lst`` (nested sequences, numpy array or tensor) into a list of rows."""
    if hasattr(g_lst, "tolist") and not isinstance(g_lst, (list, tuple)):
        g_lst = g_lst.tolist()
    if isinstance(g_lst, (str, bytes)) or not isinstance(g_lst, Sequence):
        raise ValueError(
            f"g_lst must be a sequence of rows (one per device), got {type(g_lst).__name__}"
        )
    rows = []
    for i, row in enumerate(g_lst):
        if hasattr(row, "tolist") and not isinstance(row, (list, tuple)):
            row = row.tolist()
        if isinstance(row, (str, bytes)) or not isinstance(row, Sequence):
            raise ValueError(
                f"g_lst row {i} must be a sequence of conductances, got {row!r}"
            )
        rows.append(list(row))
    return rows


def reference_validate_g_lst(g_lst: Any, n_pairs: int) -> np.ndarray:
    """The ``2P x L`` float64 conductances in microsiemens, or ValueError as before."""
    rows = reference_as_rows(g_lst)
    if len(rows) != 2 * n_pairs:
        raise ValueError(
            f"g_lst must have 2 rows per significance factor (2 * len(f_lst) = "
            f"{2 * n_pairs}), got {len(rows)} rows"
        )
    n_cols = len(rows[0])
    if n_cols == 0:
        raise ValueError("g_lst rows must not be empty, got row 0 = []")
    for i, row in enumerate(rows):
        if len(row) != n_cols:
            raise ValueError(
                f"g_lst is ragged: row 0 has {n_cols} columns but row {i} has {len(row)}"
            )
        for j, value in enumerate(row):
            if not _is_real_number(value):
                raise ValueError(
                    f"g_lst[{i}][{j}] must be a real number of microsiemens, got {value!r}"
                )
            if not math.isfinite(value):
                raise ValueError(f"g_lst[{i}][{j}] must be finite, got {value!r}")
            if value < 0:
                raise ValueError(
                    f"g_lst[{i}][{j}] is a negative conductance ({value!r} uS); "
                    "conductances must be >= 0"
                )
    return np.array(rows, dtype=np.float64) + 0.0  # + 0.0 turns -0.0 into 0.0


def reference_group_levels(
    u: np.ndarray,
) -> Tuple[int, np.ndarray, Tuple[Tuple[int, ...], ...]]:
    """Number of levels, level of every column, and the sorted columns of each level."""
    order = np.argsort(u, kind="stable")
    tol = LEVEL_TOLERANCE * max(float(np.abs(u).max()), np.finfo(float).tiny)
    new_group = np.empty(len(u), dtype=bool)
    new_group[0] = True
    new_group[1:] = np.diff(u[order]) > tol
    group_of_sorted = np.cumsum(new_group) - 1
    n_levels = int(group_of_sorted[-1]) + 1
    if n_levels < 2:
        raise ValueError(
            f"g_lst encodes fewer than two distinct levels (every column weighs "
            f"{u[0]!r} uS); a table needs at least two"
        )
    level_of_column = np.empty(len(u), dtype=np.int64)
    level_of_column[order] = group_of_sorted
    encodings = tuple(
        tuple(int(c) for c in np.sort(order[group_of_sorted == lv])) for lv in range(n_levels)
    )
    return n_levels, level_of_column, encodings


def reference_select_by_rule(
    f: Sequence[float],
    g: np.ndarray,
    encodings: Tuple[Tuple[int, ...], ...],
    rule: str,
) -> Tuple[int, ...]:
    """One column per level by ``rule`` (``f``: factors, ``g``: ``2P x L`` in uS)."""
    if rule == "first":
        return tuple(columns[0] for columns in encodings)
    plus, minus = g[0::2], g[1::2]
    pair_cost = np.maximum(plus, minus) + np.minimum(plus, minus)
    weights = np.ones(len(f)) if rule == "min_total" else np.asarray(f)
    cost = np.zeros(g.shape[1])
    for k in range(len(f)):
        cost = cost + weights[k] * pair_cost[k]
    contribution = np.abs(np.asarray(f)[:, None] * (plus - minus))[::-1]
    high, low = np.maximum(plus, minus)[::-1], np.minimum(plus, minus)[::-1]

    def key(c: int) -> Tuple[Any, ...]:
        return (cost[c], tuple(contribution[:, c]), tuple(high[:, c]), tuple(low[:, c]), c)

    return tuple(min(columns, key=key) for columns in encodings)


def reference_check_columns(
    columns: Any,
    encodings: Tuple[Tuple[int, ...], ...],
    column_weights: np.ndarray,
    name: str = "columns",
) -> Tuple[int, ...]:
    """Explicit encodings: one column per level, each encoding its level, or ValueError."""
    n_levels = len(encodings)
    if hasattr(columns, "tolist"):
        columns = columns.tolist()
    if isinstance(columns, (str, bytes)) or not isinstance(columns, Sequence):
        raise ValueError(f"{name} must be a sequence of column indices, got {columns!r}")
    if len(columns) != n_levels:
        raise ValueError(
            f"{name} must name one column per level ({n_levels}), got {len(columns)}"
        )
    checked = []
    for level_index, (c, allowed) in enumerate(zip(columns, encodings)):
        if isinstance(c, bool) or not isinstance(c, numbers.Integral):
            raise ValueError(f"{name}[{level_index}] must be an integer index, got {c!r}")
        if int(c) not in allowed:
            raise ValueError(
                f"{name}[{level_index}] = {c} does not encode level {level_index} "
                f"({column_weights[allowed[0]]:g} uS); its columns are {list(allowed)}"
            )
        checked.append(int(c))
    return tuple(checked)


def reference_signed_digit_columns(
    f_lst: Sequence[float], pair_levels: Sequence[Sequence[float]]
) -> np.ndarray:
    """All signed-digit cells, ``2P x L`` in uS, sorted by weight, then total conductance."""
    pair_states = []
    for levels_p, levels_m in pair_levels:
        states = [(levels_p[0], g) for g in reversed(levels_m[1:])]
        states.append((levels_p[0], levels_m[0]))
        states.extend((g, levels_m[0]) for g in levels_p[1:])
        pair_states.append(states)
    n_columns = math.prod(len(s) for s in pair_states)
    if n_columns > MAX_COLUMNS:
        raise ValueError(
            f"this table would have {n_columns} columns, more than the limit of "
            f"{MAX_COLUMNS} (2**20); use fewer pairs or fewer levels per device"
        )
    combos = itertools.product(*reversed(pair_states))
    g = np.array([[v for pair in reversed(c) for v in pair] for c in combos]).T
    weights = np.asarray(f_lst) @ (g[0::2] - g[1::2])
    order = np.lexsort((g.sum(axis=0), weights))
    return g[:, order]


def reference_uniform_pair_levels(
    n_pairs: int, levels_per_device: int, g_min: float = 0.0, g_max: float = 25.0,
    g_max_fraction: float = 1.0,
) -> List[Tuple[List[float], List[float]]]:
    """The device level sets ``bit_sliced`` hands to the column generation."""
    top = g_min + g_max_fraction * (g_max - g_min)
    device_levels = np.linspace(g_min, top, levels_per_device).tolist()
    return [(device_levels, device_levels)] * n_pairs


@dataclass
class ReferenceTable:
    """What the old ``ProgrammingTable`` constructor derived from its arguments."""

    g: np.ndarray
    column_weights: np.ndarray
    n_levels: int
    level_of_column: np.ndarray
    encodings: Tuple[Tuple[int, ...], ...]
    selected_columns: Tuple[int, ...]

    @property
    def levels(self) -> np.ndarray:
        return self.column_weights[list(self.selected_columns)]


def reference_table(
    f_lst: Sequence[float],
    g_lst: Any,
    encoding: Union[str, Sequence[int]] = "min_total",
    g_min: Optional[float] = None,
    g_max: Optional[float] = None,
) -> ReferenceTable:
    """Build a table the old way (``f_lst`` must be valid; bounds are not checked).

    ``g_min``/``g_max`` are accepted for call compatibility only; the old range
    check was vectorized already and is not part of this reference.
    """
    f = tuple(float(v) for v in f_lst)
    g = reference_validate_g_lst(g_lst, len(f))
    column_weights = np.asarray(f) @ (g[0::2] - g[1::2])
    n_levels, level_of_column, encodings = reference_group_levels(column_weights)
    if isinstance(encoding, str):
        selected = reference_select_by_rule(f, g, encodings, encoding)
    else:
        selected = reference_check_columns(encoding, encodings, column_weights, "encoding")
    return ReferenceTable(g, column_weights, n_levels, level_of_column, encodings, selected)
