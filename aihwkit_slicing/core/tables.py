"""Programming tables: how the device pairs of one unit cell encode weight levels.

A unit cell stores one weight on ``P`` device pairs. Pair ``k`` is weighted by a
significance factor ``f_k`` and the pair currents add up in analog, so a cell whose
devices hold conductances ``gp_k, gm_k`` (microsiemens) represents the weight

    u = sum_k f_k * (gp_k - gm_k)        (microsiemens)

A :class:`ProgrammingTable` lists the states the cell can be programmed to:

* ``f_lst``: ``P`` significance factors, least significant pair first;
* ``g_lst``: ``2P`` rows (``gp0, gm0, gp1, gm1, ...``, the order aihwkit's converters
  use) by ``L`` columns; column ``j`` is one state of the whole cell, in microsiemens.

The table derives the column weights ``u_j``, the sorted distinct levels and, for each
level, the columns that encode it. When several columns encode the same level (a
redundant encoding), one is picked by a deterministic rule (see :data:`ENCODING_RULES`)
or explicitly with :meth:`ProgrammingTable.with_encodings`.

The builders at the bottom of this module (:func:`seed_table`, :func:`bit_sliced`,
:func:`equal_significance`, :func:`single_pair`, :func:`from_device_levels`) return
ready-made tables.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from aihwkit_slicing.core.validation import (
    check_count,
    check_device_range,
    check_fraction,
    is_real_number,
)

#: A builder refuses to produce a table with more columns than this.
MAX_COLUMNS = 2**20

#: Rules that pick one column among those encoding the same level.
#:
#: * ``"min_total"`` (default): the lowest total conductance ``sum(gp_k + gm_k)``, i.e.
#:   the least read current and, for PCM, the lowest programming noise.
#: * ``"min_weighted"``: the lowest significance-weighted conductance
#:   ``sum_k f_k (gp_k + gm_k)``; prefers putting the weight on less significant pairs,
#:   so device errors are amplified less.
#: * ``"first"``: the first such column in the table's own order.
#:
#: Ties in ``min_total`` and ``min_weighted`` go to the column whose pairs, from the
#: most significant down, hold the smaller ``|f_k (gp_k - gm_k)|`` (then the smaller
#: conductances), so a level and its negative use mirrored columns (``q(-w) == -q(w)``
#: for symmetric tables); remaining ties go to the lowest column index. Instead of a
#: rule, ``encoding`` may also list one column per level explicitly.
ENCODING_RULES = ("min_total", "min_weighted", "first")

#: ``format`` and ``version`` of a table's JSON form (:meth:`ProgrammingTable.to_dict`).
TABLE_FORMAT = "aihwkit-slicing-table"
TABLE_FORMAT_VERSION = 1
_TABLE_KEYS = {"format", "version", "name", "f_lst", "g_lst", "g_min", "g_max", "encoding"}

#: Column weights closer than this fraction of the largest ``|u_j|`` count as one level.
LEVEL_TOLERANCE = 1e-9

Number = Union[int, float]


def _as_rows(g_lst: Any) -> List[List[Any]]:
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


def _first_non_real(row: Sequence[Any]) -> Optional[int]:
    """Index of the first entry of ``row`` that is not a real number, or None.

    Checks each distinct type once (the common all-float row costs no Python loop over
    its entries); only a row holding a non-real type is searched entry by entry.
    """
    types = set(map(type, row))
    if all(issubclass(t, numbers.Real) and not issubclass(t, bool) for t in types):
        return None
    return next((j for j, value in enumerate(row) if not is_real_number(value)), None)


def _first_bad_conductance(values: np.ndarray) -> Optional[Tuple[int, ...]]:
    """Index of the first NaN, infinite or negative entry in row-major order, or None."""
    bad = ~np.isfinite(values)
    bad |= values < 0
    if not bad.any():
        return None
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), values.shape))


def _raise_bad_conductance(index: Tuple[int, int], value: Any) -> None:
    """Raise the ValueError for ``g_lst[i][j] = value`` (NaN, infinite or negative)."""
    i, j = index
    if not math.isfinite(value):
        raise ValueError(f"g_lst[{i}][{j}] must be finite, got {value!r}")
    raise ValueError(
        f"g_lst[{i}][{j}] is a negative conductance ({value!r} uS); conductances must be >= 0"
    )


def _check_row_count(n_rows: int, n_pairs: int) -> None:
    if n_rows != 2 * n_pairs:
        raise ValueError(
            f"g_lst must have 2 rows per significance factor (2 * len(f_lst) = "
            f"{2 * n_pairs}), got {n_rows} rows"
        )


def _validate_f_lst(f_lst: Any) -> Tuple[float, ...]:
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


class ProgrammingTable:
    """A device-programming table of one unit cell (see the module docstring).

    Args:
        f_lst: ``P`` positive significance factors, least significant pair first.
        g_lst: ``2P`` rows (``gp0, gm0, gp1, gm1, ...``) by ``L`` columns of
            conductances in microsiemens; column ``j`` is one programmable cell state.
        g_min: Lowest conductance of the devices in microsiemens. Defaults to the
            smallest entry of ``g_lst``. If given, every entry must be at least this.
        g_max: Highest conductance of the devices in microsiemens (the value noise
            models normalize by). Defaults to the largest entry of ``g_lst``. If
            given, every entry must be at most this.
        encoding: Rule picking one column per level among redundant encodings, one
            of :data:`ENCODING_RULES`, or one column index per level (ascending levels).
        name: Optional short name, used in reports and plots.

    Raises:
        ValueError: with the argument and the bad value named, for ragged or
            non-numeric rows, a row count that does not match ``f_lst``, NaN or
            infinite entries, negative conductances, entries outside
            ``[g_min, g_max]``, non-positive or non-finite significance factors,
            an unknown encoding rule, or fewer than two distinct levels.
    """

    def __init__(
        self,
        f_lst: Sequence[Number],
        g_lst: Sequence[Sequence[Number]],
        g_min: Optional[Number] = None,
        g_max: Optional[Number] = None,
        encoding: Union[str, Sequence[int]] = "min_total",
        name: Optional[str] = None,
    ):
        self._f = _validate_f_lst(f_lst)
        self._g = self._validate_g_lst(g_lst, len(self._f))
        g_min, g_max = check_device_range(g_min, g_max, required=False)
        self._check_range(g_min, g_max)
        self._g_min_given, self._g_max_given = g_min, g_max
        self.g_min = float(self._g.min()) if g_min is None else g_min
        self.g_max = float(self._g.max()) if g_max is None else g_max
        if self.g_max <= 0:
            raise ValueError("g_lst holds only zero conductances; the table encodes nothing")
        explicit = not isinstance(encoding, str)
        if not explicit and encoding not in ENCODING_RULES:
            raise ValueError(
                f"encoding must be one of {ENCODING_RULES} or a list of columns, got {encoding!r}"
            )
        self.name = name

        self._column_weights = np.asarray(self._f) @ (self._g[0::2] - self._g[1::2])
        by_level, level_starts = self._group_levels()
        if explicit:
            self._selected = self._check_columns(encoding, "encoding")
            self.encoding: Union[str, List[int]] = list(self._selected)
        else:
            self._selected = self._select_by_rule(encoding, by_level, level_starts)
            self.encoding = encoding
        self._g.setflags(write=False)

    # ------------------------------------------------------------------ validation
    @staticmethod
    def _validate_g_lst(g_lst: Any, n_pairs: int) -> np.ndarray:
        """The ``2P x L`` conductances as a fresh C-ordered float64 array (microsiemens).

        A 2-D numeric numpy array is checked as it is; anything else (nested
        sequences, tensors, arrays of other dtypes) goes through :func:`_as_rows`.
        Either way the first bad entry in row-major order is the one named.
        """
        # exactly ndarray: subclasses (masked arrays, matrices) convert through tolist()
        if type(g_lst) is np.ndarray and g_lst.ndim == 2 and g_lst.dtype.kind in "fiu":
            _check_row_count(g_lst.shape[0], n_pairs)
            if g_lst.shape[1] == 0:
                raise ValueError("g_lst rows must not be empty, got row 0 = []")
            g = np.array(g_lst, dtype=np.float64, order="C")
            bad = _first_bad_conductance(g)
            if bad is not None:
                _raise_bad_conductance(bad, g_lst[bad].item())
            g += 0.0  # turns -0.0 into 0.0
            return g

        rows = _as_rows(g_lst)
        _check_row_count(len(rows), n_pairs)
        n_cols = len(rows[0])
        if n_cols == 0:
            raise ValueError("g_lst rows must not be empty, got row 0 = []")
        # the rows up to the first ragged one, and in them up to the first non-number,
        # are numbers: convert them at once and look for the first bad value there
        ragged = next((i for i, row in enumerate(rows) if len(row) != n_cols), None)
        n_rows = len(rows) if ragged is None else ragged
        non_real = None
        for i in range(n_rows):
            j = _first_non_real(rows[i])
            if j is not None:
                non_real, n_rows = (i, j), i
                break
        g = np.array(rows[:n_rows], dtype=np.float64).reshape(n_rows, n_cols)
        bad = _first_bad_conductance(g)
        if bad is None and non_real is not None:
            i, j = non_real
            bad = _first_bad_conductance(np.array(rows[i][:j], dtype=np.float64))
            bad = None if bad is None else (i, bad[0])
        if bad is not None:
            _raise_bad_conductance(bad, rows[bad[0]][bad[1]])
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

    def _check_range(self, g_min: Optional[float], g_max: Optional[float]) -> None:
        for bound, name, bad in (
            (g_min, "g_min", lambda g: g < g_min),
            (g_max, "g_max", lambda g: g > g_max),
        ):
            if bound is None:
                continue
            mask = bad(self._g)
            if mask.any():
                i, j = (int(v) for v in np.argwhere(mask)[0])
                raise ValueError(
                    f"g_lst[{i}][{j}] = {self._g[i, j]!r} uS lies outside [g_min, g_max] = "
                    f"[{g_min}, {g_max}] ({name} = {bound})"
                )

    # --------------------------------------------------------------- level grouping
    def _group_levels(self) -> Tuple[np.ndarray, np.ndarray]:
        """Group the columns into levels with one sort of the column weights.

        Sets ``_n_levels`` and ``_level_of_column`` (the level of every column).

        Returns:
            All column indices ordered by level and, within a level, by index; and the
            position in that order where each level's columns start.
        """
        u = self._column_weights
        order = np.argsort(u, kind="stable")
        tol = LEVEL_TOLERANCE * max(float(np.abs(u).max()), np.finfo(float).tiny)
        new_group = np.empty(len(u), dtype=bool)
        new_group[0] = True
        new_group[1:] = np.diff(u[order]) > tol
        group_of_sorted = np.cumsum(new_group) - 1
        self._n_levels = int(group_of_sorted[-1]) + 1
        if self._n_levels < 2:
            raise ValueError(
                f"g_lst encodes fewer than two distinct levels (every column weighs "
                f"{u[0]!r} uS); a table needs at least two"
            )
        self._level_of_column = np.empty(len(u), dtype=np.int64)
        self._level_of_column[order] = group_of_sorted
        # The stable sort already lists equal weights by ascending column index; only a
        # level that merges weights closer than the tolerance may need re-sorting.
        same_level = ~new_group[1:]
        if np.all(order[1:][same_level] > order[:-1][same_level]):
            by_level = order
        else:
            by_level = order[np.lexsort((order, group_of_sorted))]
        return by_level, np.flatnonzero(new_group)

    def _select_by_rule(
        self, rule: str, by_level: np.ndarray, level_starts: np.ndarray
    ) -> Tuple[int, ...]:
        """One column per level: the smallest ``(cost, tie-break..., index)`` key.

        The key is the one :data:`ENCODING_RULES` documents. Its lexicographic minimum
        per level is found one component at a time: every level keeps the columns that
        reach the level's minimum of the component, until one column per level is left
        (exact float comparisons, as a comparison of key tuples would make).

        Args:
            rule: One of :data:`ENCODING_RULES`.
            by_level, level_starts: The columns ordered by level, then index, and
                where each level starts in that order (from :meth:`_group_levels`).
        """
        if rule == "first":
            return tuple(by_level[level_starts].tolist())
        plus, minus = self._g[0::2], self._g[1::2]
        # cost summed pair by pair in a fixed order from (larger, smaller) conductance:
        # a column and its mirror (plus and minus swapped) get bit-identical costs
        pair_cost = np.maximum(plus, minus) + np.minimum(plus, minus)
        weights = np.ones(len(self._f)) if rule == "min_total" else np.asarray(self._f)
        cost = np.zeros(self.n_columns)
        for k in range(len(self._f)):
            cost = cost + weights[k] * pair_cost[k]
        # mirror-invariant tie-break: pairs from the most significant down
        contribution = np.abs(np.asarray(self._f)[:, None] * (plus - minus))[::-1]
        high, low = np.maximum(plus, minus)[::-1], np.minimum(plus, minus)[::-1]

        # candidates stay ordered by level, then by column index
        candidates, starts = by_level, level_starts
        for key in (cost, *contribution, *high, *low):
            if len(candidates) == self._n_levels:
                break
            values = key[candidates]
            sizes = np.diff(starts, append=len(candidates))
            keep = values == np.repeat(np.minimum.reduceat(values, starts), sizes)
            kept = np.add.reduceat(keep, starts, dtype=np.int64)  # >= 1 per level
            candidates = candidates[keep]
            starts = np.cumsum(kept) - kept
        # remaining ties go to the lowest column index: the first candidate of each level
        return tuple(candidates[starts].tolist())

    def _check_columns(self, columns: Any, name: str = "columns") -> Tuple[int, ...]:
        if hasattr(columns, "tolist"):
            columns = columns.tolist()
        if isinstance(columns, (str, bytes)) or not isinstance(columns, Sequence):
            raise ValueError(f"{name} must be a sequence of column indices, got {columns!r}")
        if len(columns) != self.n_levels:
            raise ValueError(
                f"{name} must name one column per level ({self.n_levels}), got {len(columns)}"
            )
        level_of_column = self._level_of_column.tolist()
        checked = []
        for level_index, c in enumerate(columns):
            if isinstance(c, bool) or not isinstance(c, numbers.Integral):
                raise ValueError(f"{name}[{level_index}] must be an integer index, got {c!r}")
            index = int(c)
            if not 0 <= index < len(level_of_column) or level_of_column[index] != level_index:
                allowed = self.encodings[level_index]
                raise ValueError(
                    f"{name}[{level_index}] = {c} does not encode level {level_index} "
                    f"({self._column_weights[allowed[0]]:g} uS); its columns are {list(allowed)}"
                )
            checked.append(index)
        return tuple(checked)

    # ------------------------------------------------------------------ properties
    @property
    def f_lst(self) -> List[float]:
        """Significance factors, least significant pair first."""
        return list(self._f)

    @property
    def g_lst(self) -> List[List[float]]:
        """The ``2P x L`` conductance table in microsiemens (a copy, as nested lists)."""
        return self._g.tolist()

    @property
    def conductances(self) -> np.ndarray:
        """The ``2P x L`` conductance table in microsiemens (read-only array)."""
        return self._g

    @property
    def n_pairs(self) -> int:
        """Number of device pairs ``P``."""
        return len(self._f)

    @property
    def n_devices(self) -> int:
        """Number of devices per unit cell, ``2P``."""
        return 2 * len(self._f)

    @property
    def n_columns(self) -> int:
        """Number of programmable cell states ``L``."""
        return self._g.shape[1]

    @property
    def n_levels(self) -> int:
        """Number of distinct weight levels."""
        return self._n_levels

    @property
    def column_weights(self) -> np.ndarray:
        """Weight of every column, ``sum_k f_k (gp_k - gm_k)``, in microsiemens."""
        return self._column_weights.copy()

    @property
    def encodings(self) -> Tuple[Tuple[int, ...], ...]:
        """For each level (ascending), the indices of all columns that encode it.

        Built on first use and cached: for a table of 10**6 columns these tuples of
        Python ints take longer to make, and more memory, than the rest of the table.
        """
        encodings = self.__dict__.get("_encodings")
        if encodings is None:
            by_level = np.argsort(self._level_of_column, kind="stable").tolist()
            ends = np.cumsum(np.bincount(self._level_of_column, minlength=self._n_levels))
            starts = [0] + ends[:-1].tolist()
            encodings = tuple(
                tuple(by_level[start:end]) for start, end in zip(starts, ends.tolist())
            )
            self.__dict__["_encodings"] = encodings
        return encodings

    @property
    def selected_columns(self) -> Tuple[int, ...]:
        """For each level (ascending), the column that programming uses."""
        return self._selected

    @property
    def levels(self) -> np.ndarray:
        """Sorted distinct levels in microsiemens: the weight of each selected column."""
        return self._column_weights[list(self._selected)]

    @property
    def level_conductances(self) -> np.ndarray:
        """``2P x n_levels`` conductances (microsiemens) programmed for each level."""
        return self._g[:, list(self._selected)]

    @property
    def is_symmetric(self) -> bool:
        """Whether the levels are symmetric around zero (``-level`` is a level too)."""
        lv = self.levels
        tol = LEVEL_TOLERANCE * float(np.abs(lv).max())
        return bool(np.all(np.abs(lv + lv[::-1]) <= tol))

    # ------------------------------------------------------------------ variations
    def with_encodings(self, columns: Sequence[int]) -> "ProgrammingTable":
        """Return a copy that programs level ``i`` with column ``columns[i]``.

        Args:
            columns: One column index per level (ascending levels); each must be
                one of the columns that encode that level (see :attr:`encodings`).

        Raises:
            ValueError: if the count is wrong, an index is not an integer, or a column
                does not encode its level.
        """
        selected = self._check_columns(columns)
        table = self._copy()
        table._selected = selected
        table.encoding = list(selected)
        table.__dict__.pop("_key", None)
        return table

    def with_name(self, name: str) -> "ProgrammingTable":
        """Return a copy with another :attr:`name`."""
        table = self._copy()
        table.name = name
        return table

    def _copy(self) -> "ProgrammingTable":
        table = object.__new__(ProgrammingTable)
        table.__dict__.update(self.__dict__)
        return table

    # ------------------------------------------------------------------ reporting
    def describe(self, max_levels: int = 64) -> str:
        """A text report: devices, significances, levels and their encodings.

        Args:
            max_levels: Levels beyond this many are summarized, not listed.
        """
        lines = [
            f"table {self.name or '(unnamed)'}: {self.n_pairs} pair(s), "
            f"{self.n_devices} devices per weight, {self.n_columns} column(s), "
            f"{self.n_levels} levels",
            f"  significance factors f_lst = [{', '.join(_fmt(f) for f in self._f)}]",
            f"  device range [g_min, g_max] = [{_fmt(self.g_min)}, {_fmt(self.g_max)}] uS, "
            f"encoding rule '{self.encoding}'",
            "  level (uS)   column   " + "  ".join(
                f"{('gp' if d % 2 == 0 else 'gm')}{d // 2:<4d}" for d in range(self.n_devices)
            ) + "  redundant columns",
        ]
        levels = self.levels
        shown = range(self.n_levels)
        if self.n_levels > max_levels:
            half = max_levels // 2
            shown = list(range(half)) + [-1] + list(range(self.n_levels - half, self.n_levels))
        for lv in shown:
            if lv == -1:
                lines.append(f"  ... {self.n_levels - 2 * half} more levels ...")
                continue
            col = self._selected[lv]
            others = [c for c in self.encodings[lv] if c != col]
            devs = "  ".join(f"{_fmt(g):<6s}" for g in self._g[:, col])
            lines.append(
                f"  {_fmt(levels[lv]):>10s}   {col:>6d}   {devs}  "
                + (str(len(others)) if others else "-")
            )
        return "\n".join(lines)

    def to_dict(self) -> Dict[str, Any]:
        """The table's JSON form (``docs/tables.md``, "The JSON form"); ``from_dict``
        rebuilds it.

        Keys: ``format`` (``"aihwkit-slicing-table"``), ``version`` (1), ``name``,
        ``f_lst``, ``g_lst`` (microsiemens), ``g_min``, ``g_max`` and ``encoding`` (a
        rule name or one column index per level).
        """
        return {
            "format": TABLE_FORMAT,
            "version": TABLE_FORMAT_VERSION,
            "name": self.name,
            "f_lst": self.f_lst,
            "g_lst": self.g_lst,
            "g_min": self.g_min,
            "g_max": self.g_max,
            "encoding": self.encoding,
        }

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "ProgrammingTable":
        """Rebuild a table written by :meth:`to_dict`.

        ``format`` and ``version`` may be left out (tables written by hand); if given
        they must be this release's.

        Raises:
            ValueError: for a missing key, another format or version, or any value
                :class:`ProgrammingTable` refuses (naming it).
        """
        if not isinstance(data, dict):
            raise ValueError(f"a table must be a JSON object, got {type(data).__name__}")
        if data.get("format", TABLE_FORMAT) != TABLE_FORMAT:
            raise ValueError(f"\"format\" must be {TABLE_FORMAT!r}, got {data['format']!r}")
        if data.get("version", TABLE_FORMAT_VERSION) != TABLE_FORMAT_VERSION:
            raise ValueError(f"unsupported table version {data['version']!r} (this release "
                             f"reads version {TABLE_FORMAT_VERSION})")
        missing = [key for key in ("f_lst", "g_lst") if key not in data]
        if missing:
            raise ValueError(f"a table needs the key(s) {', '.join(missing)}")
        unknown = sorted(set(data) - _TABLE_KEYS)
        if unknown:
            raise ValueError(f"unknown key(s) {', '.join(unknown)}; a table has "
                             f"{', '.join(sorted(_TABLE_KEYS))}")
        return cls(
            data["f_lst"],
            data["g_lst"],
            g_min=data.get("g_min"),
            g_max=data.get("g_max"),
            encoding=data.get("encoding", "min_total"),
            name=data.get("name"),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ProgrammingTable):
            return NotImplemented
        return (
            self._f == other._f
            and self._g.shape == other._g.shape
            and bool(np.array_equal(self._g, other._g))
            and self.g_min == other.g_min
            and self.g_max == other.g_max
            and self._selected == other._selected
        )

    def __hash__(self) -> int:
        return hash(self.key)

    def content_hash(self) -> str:
        """12 hex digits that equal for equal tables (name left out): records say
        which table made them."""
        return hashlib.sha256(repr(self.key).encode()).hexdigest()[:12]

    @property
    def key(self) -> Tuple[Any, ...]:
        """A small value that equals for equal tables (cached; tables are immutable)."""
        key = self.__dict__.get("_key")
        if key is None:
            digest = hashlib.sha1(self._g.tobytes()).hexdigest()
            key = (self._f, self._g.shape, digest, self.g_min, self.g_max, self._selected)
            self.__dict__["_key"] = key
        return key

    def __repr__(self) -> str:
        if self.n_columns <= 32:
            g_repr = repr(self.g_lst)
        else:
            g_repr = f"<{self.n_devices} x {self.n_columns} table>"
        args = [f"f_lst={self.f_lst!r}", f"g_lst={g_repr}"]
        if self._g_min_given is not None:
            args.append(f"g_min={self.g_min!r}")
        if self._g_max_given is not None:
            args.append(f"g_max={self.g_max!r}")
        if self.encoding != "min_total":
            args.append(f"encoding={self.encoding!r}")
        if self.name is not None:
            args.append(f"name={self.name!r}")
        return f"ProgrammingTable({', '.join(args)})"

    def __getstate__(self) -> Dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_encodings", None)  # a cache, rebuilt on use; large for big tables
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._g.setflags(write=False)


def _fmt(value: float) -> str:
    return f"{value:.6g}"


# ====================================================================== builders
def seed_table(g_min: Number = 0.0, g_max: Number = 25.0) -> ProgrammingTable:
    """The 4-device example of docs/design.md: ``f_lst = [1, 2]``, 7 levels ``-3..3``.

    Entries 0 and 1 of the design's table stand for ``g_min`` and ``g_max``
    (microsiemens); levels are in units of ``g_max - g_min``.
    """
    pattern = [
        [0, 0, 0, 0, 1, 0, 1],  # gp0
        [1, 0, 1, 0, 0, 0, 0],  # gm0
        [0, 0, 0, 0, 0, 1, 1],  # gp1
        [1, 1, 0, 0, 0, 0, 0],  # gm1
    ]
    g_min, g_max = check_device_range(g_min, g_max)
    g_lst = [[g_max if v else g_min for v in row] for row in pattern]
    return ProgrammingTable([1, 2], g_lst, g_min=g_min, g_max=g_max, name="seed")


def _signed_digit_columns(
    f_lst: Sequence[float], pair_levels: Sequence[Sequence[float]]
) -> np.ndarray:
    """All cells where each pair has one device at its lowest level (signed digits).

    Args:
        f_lst: significance factors (only used to sort the columns by weight).
        pair_levels: for each pair, the two devices' sorted level sets
            ``(levels_plus, levels_minus)`` in microsiemens.

    Returns:
        ``2P x L`` conductances, columns sorted by weight, then total conductance.
    """
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
    # Every combination of pair states, pair 0 varying fastest (the order
    # itertools.product over the reversed pairs gave): a C-ordered array indexed
    # [state of pair P-1, ..., state of pair 0, device] gets each pair's states by
    # broadcasting along its axis.
    n_pairs = len(pair_states)
    cells = np.empty([len(states) for states in reversed(pair_states)] + [2 * n_pairs])
    for k, states in enumerate(pair_states):
        shape = [1] * n_pairs + [2]
        shape[n_pairs - 1 - k] = len(states)
        cells[..., 2 * k : 2 * k + 2] = np.reshape(np.asarray(states, dtype=np.float64), shape)
    cells = cells.reshape(n_columns, 2 * n_pairs)
    # Summed over the transposed L x 2P array as before: the same memory layout rounds
    # the weights and totals the same way, so ties sort as before.
    g = cells.T
    weights = np.asarray(f_lst) @ (g[0::2] - g[1::2])
    order = np.lexsort((g.sum(axis=0), weights))
    return np.take(cells, order, axis=0).T  # take: a faster row gather than cells[order]


def _significances(
    significance: Union[str, Sequence[Number]], n_pairs: int, levels_per_device: int
) -> List[float]:
    if isinstance(significance, str):
        if significance == "base":
            return [float(levels_per_device**k) for k in range(n_pairs)]
        if significance == "equal":
            return [1.0] * n_pairs
        raise ValueError(
            f"significance must be 'base', 'equal' or a list of factors, got {significance!r}"
        )
    try:
        factors = list(_validate_f_lst(significance))
    except ValueError as error:
        raise ValueError(str(error).replace("f_lst", "significance")) from None
    if len(factors) != n_pairs:
        raise ValueError(
            f"significance must list one factor per pair (n_pairs = {n_pairs}), "
            f"got {len(factors)}"
        )
    return factors


def bit_sliced(
    n_pairs: int,
    levels_per_device: int,
    significance: Union[str, Sequence[Number]] = "base",
    g_min: Number = 0.0,
    g_max: Number = 25.0,
    g_max_fraction: float = 1.0,
    encoding: str = "min_total",
    name: Optional[str] = None,
) -> ProgrammingTable:
    """Pairs of multi-level devices, each pair a signed digit.

    Every device has ``levels_per_device`` evenly spaced levels between ``g_min`` and
    ``g_min + g_max_fraction * (g_max - g_min)`` (microsiemens). A pair holds a signed
    digit ``d`` in ``-(n-1) .. n-1`` (``n = levels_per_device``): its plus device at
    level ``d`` and its minus device at the lowest level, or the other way round. The
    table has every combination of digits, ``(2n - 1) ** n_pairs`` columns.

    Args:
        n_pairs: Number of device pairs ``P`` (``2P`` devices per weight).
        levels_per_device: Number of conductance levels each device can hold (>= 2).
        significance: ``"base"``: pair ``k`` weighted ``levels_per_device ** k``
            (binary for two-level devices); ``"equal"``: all pairs weighted 1; or a
            list of ``P`` factors.
        g_min: Lowest device conductance in microsiemens.
        g_max: Highest device conductance in microsiemens.
        g_max_fraction: Fraction of ``g_max - g_min`` the levels span, in ``(0, 1]``.
        encoding: Rule for redundant columns, see :data:`ENCODING_RULES`.
        name: Optional table name.

    Raises:
        ValueError: for bad arguments, or if the table would exceed
            :data:`MAX_COLUMNS` columns (the message gives the count).
    """
    n_pairs = check_count("n_pairs", n_pairs, 1)
    n = check_count("levels_per_device", levels_per_device, 2)
    g_min, g_max = check_device_range(g_min, g_max)
    g_max_fraction = check_fraction("g_max_fraction", g_max_fraction)
    f_lst = _significances(significance, n_pairs, n)
    n_columns = (2 * n - 1) ** n_pairs
    if n_columns > MAX_COLUMNS:
        raise ValueError(
            f"bit_sliced({n_pairs}, {n}) would have (2*{n}-1)**{n_pairs} = {n_columns} "
            f"columns, more than the limit of {MAX_COLUMNS} (2**20)"
        )
    top = g_min + g_max_fraction * (g_max - g_min)
    device_levels = np.linspace(g_min, top, n).tolist()
    g = _signed_digit_columns(f_lst, [(device_levels, device_levels)] * n_pairs)
    if name is None:
        kind = significance if isinstance(significance, str) else "custom"
        name = f"{n_pairs}x{n}lvl-{kind}"
    return ProgrammingTable(f_lst, g, g_min=g_min, g_max=g_max, encoding=encoding, name=name)


#: Column sets of :func:`equal_significance`.
EQUAL_COLUMNS = ("all", "fill", "spread", "fill+spread")


def equal_significance(
    n_pairs: int, levels_per_device: int, columns: str = "all", **kwargs: Any
) -> ProgrammingTable:
    """Pairs of equal significance (all weighted 1): their noise averages out.

    With equal significance, the level ``D`` (in units of one device step) is the sum
    of the pairs' signed digits, and many digit combinations give the same level.

    Args:
        n_pairs, levels_per_device: as for :func:`bit_sliced`.
        columns: which combinations become columns:
            ``"all"``: every signed-digit combination, ``(2n - 1) ** n_pairs`` columns
            (see :func:`bit_sliced`);
            ``"fill"``: one column per level, pairs filled one after the other from
            pair 0 (like aihwkit's ``NPairConductanceConverter``);
            ``"spread"``: one column per level, the digits as equal as possible;
            ``"fill+spread"``: both, so :func:`aihwkit_slicing.design.encodings.optimize_encodings`
            can choose per level.
            The last three have ``2 * n_pairs * (n - 1) + 1`` levels at any
            ``levels_per_device`` and no column limit.
        **kwargs: ``g_min``, ``g_max``, ``g_max_fraction``, ``encoding``, ``name``.
    """
    if columns == "all":
        return bit_sliced(n_pairs, levels_per_device, significance="equal", **kwargs)
    if columns not in EQUAL_COLUMNS:
        raise ValueError(f"columns must be one of {EQUAL_COLUMNS}, got {columns!r}")
    n_pairs = check_count("n_pairs", n_pairs, 1)
    n = check_count("levels_per_device", levels_per_device, 2)
    g_min, g_max = check_device_range(kwargs.pop("g_min", 0.0), kwargs.pop("g_max", 25.0))
    fraction = check_fraction("g_max_fraction", kwargs.pop("g_max_fraction", 1.0))
    name = kwargs.pop("name", None) or f"{n_pairs}x{n}lvl-{columns}"
    device = np.linspace(g_min, g_min + fraction * (g_max - g_min), n)
    top = n_pairs * (n - 1)

    def fill(total: int) -> List[int]:
        return [min(n - 1, max(0, total - k * (n - 1))) for k in range(n_pairs)]

    def spread(total: int) -> List[int]:
        base, extra = divmod(total, n_pairs)
        return [base + (1 if k < extra else 0) for k in range(n_pairs)]

    strategies = {"fill": [fill], "spread": [spread], "fill+spread": [fill, spread]}[columns]
    cells = []
    for level in range(-top, top + 1):
        for strategy in strategies:
            digits = strategy(abs(level))
            column = []
            for d in digits:
                on, off = device[d], device[0]
                column += [on, off] if level >= 0 else [off, on]
            if column not in cells:
                cells.append(column)
    g = np.array(cells).T
    return ProgrammingTable([1.0] * n_pairs, g, g_min=g_min, g_max=g_max, name=name, **kwargs)


def single_pair(levels_per_device: int, **kwargs: Any) -> ProgrammingTable:
    """One pair of multi-level devices: the plain multi-level baseline.

    ``2 * levels_per_device - 1`` levels; keyword arguments as for :func:`bit_sliced`.
    """
    kwargs.setdefault("name", f"1x{levels_per_device}lvl")
    return bit_sliced(1, levels_per_device, **kwargs)


def from_device_levels(
    f_lst: Sequence[Number],
    device_levels: Sequence[Any],
    g_min: Optional[Number] = None,
    g_max: Optional[Number] = None,
    encoding: str = "min_total",
    name: Optional[str] = None,
) -> ProgrammingTable:
    """Signed-digit table from arbitrary (non-uniform) device level sets.

    Args:
        f_lst: ``P`` significance factors, least significant pair first.
        device_levels: the conductance levels (microsiemens) the devices can hold:
            one sequence shared by all devices, ``P`` sequences (one per pair, shared
            by its two devices) or ``2P`` sequences (one per device, in the order
            ``gp0, gm0, gp1, ...``). Each set is sorted; its lowest level is the
            "off" state of that device.
        g_min: Lowest device conductance (microsiemens); defaults to the lowest level.
        g_max: Highest device conductance (microsiemens); defaults to the highest.
        encoding: Rule for redundant columns, see :data:`ENCODING_RULES`.
        name: Optional table name.

    Raises:
        ValueError: for malformed level sets, or more than :data:`MAX_COLUMNS` columns.
    """
    factors = _validate_f_lst(f_lst)
    n_pairs = len(factors)
    if hasattr(device_levels, "tolist") and not isinstance(device_levels, (list, tuple)):
        device_levels = device_levels.tolist()
    sets = list(device_levels) if isinstance(device_levels, Sequence) else None
    if not sets:
        raise ValueError(f"device_levels must be a non-empty sequence, got {device_levels!r}")
    if all(is_real_number(v) for v in sets):
        sets = [sets] * (2 * n_pairs)
    elif len(sets) == n_pairs:
        sets = [s for s in sets for _ in range(2)]
    elif len(sets) != 2 * n_pairs:
        raise ValueError(
            f"device_levels must be one level set, one per pair ({n_pairs}) or one per "
            f"device ({2 * n_pairs}), got {len(sets)} sets"
        )
    cleaned = []
    for d, levels in enumerate(sets):
        if hasattr(levels, "tolist") and not isinstance(levels, (list, tuple)):
            levels = levels.tolist()
        if isinstance(levels, (str, bytes)) or not isinstance(levels, Sequence):
            raise ValueError(f"device_levels[{d}] must be a sequence of conductances")
        for v in levels:
            if not is_real_number(v) or not math.isfinite(v) or v < 0:
                raise ValueError(
                    f"device_levels[{d}] holds {v!r}; levels must be finite conductances >= 0"
                )
        unique = sorted(set(float(v) for v in levels))
        if len(unique) < 1:
            raise ValueError(f"device_levels[{d}] is empty")
        cleaned.append(unique)
    pairs = [(cleaned[2 * k], cleaned[2 * k + 1]) for k in range(n_pairs)]
    g = _signed_digit_columns(factors, pairs)
    return ProgrammingTable(factors, g, g_min=g_min, g_max=g_max, encoding=encoding, name=name)


def save_table(table: ProgrammingTable, path: Union[str, "os.PathLike[str]"]) -> None:
    """Write ``table`` as JSON (:meth:`ProgrammingTable.to_dict`) to ``path``."""
    with open(path, "w") as handle:
        json.dump(table.to_dict(), handle, indent=1)
        handle.write("\n")


def load_table(path: Union[str, "os.PathLike[str]"]) -> ProgrammingTable:
    """Read a table written by :func:`save_table` (or by hand, same keys).

    Its name is the file's ``name`` field, or else the file name without ``.json``.

    Raises:
        ValueError: one sentence naming the file and the problem (unreadable, not
            JSON, a missing or bad key).
    """
    try:
        with open(path) as handle:
            data = json.load(handle)
    except OSError as error:
        raise ValueError(f"{path}: cannot read it ({error.strerror or error})") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not JSON ({error.msg} at line {error.lineno})") from None
    try:
        table = ProgrammingTable.from_dict(data)
    except (ValueError, TypeError) as error:
        raise ValueError(f"{path}: {error}") from None
    if table.name is None:
        table = table.with_name(os.path.splitext(os.path.basename(path))[0])
    return table


def builtin_tables() -> Dict[str, ProgrammingTable]:
    """The named tables the command line and the default sweep know."""
    tables = [
        seed_table(),
        single_pair(4, name="1x4lvl"),
        single_pair(16, name="1x16lvl"),
        bit_sliced(2, 4, name="2x4lvl-base"),
        bit_sliced(4, 2, name="4x2lvl-base"),
        bit_sliced(4, 4, name="4x4lvl-base"),
        equal_significance(4, 4, name="4x4lvl-equal"),
        equal_significance(4, 16, columns="fill", name="4x16lvl-fill"),
    ]
    return {t.name: t for t in tables}
