"""Checks of a programming table's arguments: the significance factors, the conductance rows
(microsiemens), their count; each refusal is a ``ValueError`` naming the argument and the
entry.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from aihwkit_slicing.core.validation import (
    is_real_number,
)


def as_rows(g_lst: Any) -> List[List[Any]]:
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


def first_non_real(row: Sequence[Any]) -> Optional[int]:
    """Index of the first entry of ``row`` that is not a real number, or None.

    Checks each distinct type once (the common all-float row costs no Python loop over
    its entries); only a row holding a non-real type is searched entry by entry.
    """
    types = set(map(type, row))
    if all(issubclass(t, numbers.Real) and not issubclass(t, bool) for t in types):
        return None
    return next((j for j, value in enumerate(row) if not is_real_number(value)), None)


def first_bad_conductance(values: np.ndarray) -> Optional[Tuple[int, ...]]:
    """Index of the first NaN, infinite or negative entry in row-major order, or None."""
    bad = ~np.isfinite(values)
    bad |= values < 0
    if not bad.any():
        return None
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), values.shape))


def raise_bad_conductance(index: Tuple[int, int], value: Any) -> None:
    """Raise the ValueError for ``g_lst[i][j] = value`` (NaN, infinite or negative)."""
    i, j = index
    if not math.isfinite(value):
        raise ValueError(f"g_lst[{i}][{j}] must be finite, got {value!r}")
    raise ValueError(
        f"g_lst[{i}][{j}] is a negative conductance ({value!r} uS); conductances must be >= 0"
    )


def check_row_count(n_rows: int, n_pairs: int) -> None:
    if n_rows != 2 * n_pairs:
        raise ValueError(
            f"g_lst must have 2 rows per significance factor (2 * len(f_lst) = "
            f"{2 * n_pairs}), got {n_rows} rows"
        )


def validate_f_lst(f_lst: Any) -> Tuple[float, ...]:
    if hasattr(f_lst, "tolist") and not isinstance(f_lst, (list, tuple)):
        f_lst = f_lst.tolist()
    if isinstance(f_lst, (str, bytes)) or not isinstance(f_lst, Sequence):
        raise ValueError(
            f"f_lst must be a sequence of significance factors, got {type(f_lst).__name__}"
        )
    if len(f_lst) == 0:
        raise ValueError("f_lst must hold at least one significance factor, got []")
    for k, f in enumerate(f_lst):
        if not is_real_number(f):
            raise ValueError(f"f_lst[{k}] must be a real number, got {f!r}")
        if not math.isfinite(f) or f <= 0:
            raise ValueError(f"f_lst[{k}] must be a positive finite number, got {f!r}")
    return tuple(float(f) for f in f_lst)


def validate_g_lst(g_lst: Any, n_pairs: int) -> np.ndarray:
    """The ``2P x L`` conductances as a fresh C-ordered float64 array (microsiemens).

    A 2-D numeric numpy array is checked as it is; anything else (nested
    sequences, tensors, arrays of other dtypes) goes through :func:`as_rows`.
    Either way the first bad entry in row-major order is the one named.
    """
    # exactly ndarray: subclasses (masked arrays, matrices) convert through tolist()
    if type(g_lst) is np.ndarray and g_lst.ndim == 2 and g_lst.dtype.kind in "fiu":
        check_row_count(g_lst.shape[0], n_pairs)
        if g_lst.shape[1] == 0:
            raise ValueError("g_lst rows must not be empty, got row 0 = []")
        g = np.array(g_lst, dtype=np.float64, order="C")
        bad = first_bad_conductance(g)
        if bad is not None:
            raise_bad_conductance(bad, g_lst[bad].item())
        g += 0.0  # turns -0.0 into 0.0
        return g

    rows = as_rows(g_lst)
    check_row_count(len(rows), n_pairs)
    n_cols = len(rows[0])
    if n_cols == 0:
        raise ValueError("g_lst rows must not be empty, got row 0 = []")
    # the rows up to the first ragged one, and in them up to the first non-number,
    # are numbers: convert them at once and look for the first bad value there
    ragged = next((i for i, row in enumerate(rows) if len(row) != n_cols), None)
    n_rows = len(rows) if ragged is None else ragged
    non_real = None
    for i in range(n_rows):
        j = first_non_real(rows[i])
        if j is not None:
            non_real, n_rows = (i, j), i
            break
    g = np.array(rows[:n_rows], dtype=np.float64).reshape(n_rows, n_cols)
    bad = first_bad_conductance(g)
    if bad is None and non_real is not None:
        i, j = non_real
        bad = first_bad_conductance(np.array(rows[i][:j], dtype=np.float64))
        bad = None if bad is None else (i, bad[0])
    if bad is not None:
        raise_bad_conductance(bad, rows[bad[0]][bad[1]])
    if non_real is not None:
        i, j = non_real
        raise ValueError(
            f"g_lst[{i}][{j}] must be a real number of microsiemens, got {rows[i][j]!r}"
        )
    if ragged is not None:
        raise ValueError(
            f"g_lst is ragged: row 0 has {n_cols} columns but row {ragged} has "
            f"{len(rows[ragged])}"
        )
    g += 0.0  # turns -0.0 into 0.0
    return g
