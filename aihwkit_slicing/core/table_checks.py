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
