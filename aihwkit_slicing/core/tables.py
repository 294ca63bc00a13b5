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

:mod:`aihwkit_slicing.core.builders` makes the common tables (:func:`seed_table`,
:func:`bit_sliced`, :func:`equal_significance`, :func:`single_pair`,
:func:`from_device_levels`); :mod:`aihwkit_slicing.core.table_files` writes and reads
the JSON form.
"""

from __future__ import annotations

import hashlib
import numbers
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from aihwkit_slicing.core.device_model import DeviceModel
from aihwkit_slicing.core.table_checks import validate_f_lst, validate_g_lst
from aihwkit_slicing.core.validation import (
    check_device_range,
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
_TABLE_KEYS = {"format", "version", "name", "f_lst", "g_lst", "g_min", "g_max", "encoding",
               "device"}

#: The smallest device range (``g_max``, microsiemens) a table may have: below it the
#: conductances were almost surely given in siemens.
MIN_G_MAX = 0.01

#: Column weights closer than this fraction of the largest ``|u_j|`` count as one level.
LEVEL_TOLERANCE = 1e-9

Number = Union[int, float]


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
        device: Optional measured device model (per-level programming error, drift and
            read noise, :class:`~aihwkit_slicing.core.device_model.DeviceModel`); every
            conductance of ``g_lst`` must be one of its levels. It describes the devices,
            not what the table programs: :meth:`programmed_hash` leaves it out.

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
        device: Optional[DeviceModel] = None,
    ):
        self._f = validate_f_lst(f_lst)
        self._g = validate_g_lst(g_lst, len(self._f))
        g_min, g_max = check_device_range(g_min, g_max, required=False)
        self._check_range(g_min, g_max)
        self._g_min_given, self._g_max_given = g_min, g_max
        self.g_min = float(self._g.min()) if g_min is None else g_min
        self.g_max = float(self._g.max()) if g_max is None else g_max
        if self.g_max <= 0:
            raise ValueError("g_lst holds only zero conductances; the table encodes nothing")
        if self.g_max < MIN_G_MAX:
            raise ValueError(
                f"g_max = {self.g_max:g} uS: conductances are in microsiemens (25 uS is 25, "
                f"not 2.5e-05); a device range below {MIN_G_MAX:g} uS is not one aihwkit's "
                "noise models describe")
        explicit = not isinstance(encoding, str)
        if not explicit and encoding not in ENCODING_RULES:
            raise ValueError(
                f"encoding must be one of {ENCODING_RULES} or a list of columns, got {encoding!r}"
            )
        self.name = name
        self.device = self._check_device(device)

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
                side = "below g_min" if name == "g_min" else "above g_max"
                raise ValueError(f"g_lst[{i}][{j}] = {float(self._g[i, j]):g} uS lies {side} = "
                                 f"{float(bound):g} uS")

    def _check_device(self, device: Any) -> Optional[DeviceModel]:
        if device is not None:
            if not isinstance(device, DeviceModel):
                raise TypeError(f"device must be a DeviceModel, got {type(device).__name__}")
            device.check_conductances(self._g)
        return device

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
        table.__dict__.pop("_programmed_hash", None)
        return table

    def with_name(self, name: str) -> "ProgrammingTable":
        """Return a copy with another :attr:`name`."""
        table = self._copy()
        table.name = name
        return table

    def with_device(self, device: Optional[DeviceModel]) -> "ProgrammingTable":
        """Return a copy carrying ``device`` (None: no device model); what it programs
        (:meth:`programmed_hash`) is unchanged.

        Raises:
            ValueError: naming the first conductance that is not one of its levels.
        """
        table = self._copy()
        table.device = table._check_device(device)
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
        ``f_lst``, ``g_lst`` (microsiemens), ``g_min``, ``g_max``, ``encoding`` (a
        rule name or one column index per level) and, for a table with a device model,
        ``device`` (``docs/devices.md``).
        """
        data = {
            "format": TABLE_FORMAT,
            "version": TABLE_FORMAT_VERSION,
            "name": self.name,
            "f_lst": self.f_lst,
            "g_lst": self.g_lst,
            "g_min": self.g_min,
            "g_max": self.g_max,
            "encoding": self.encoding,
        }
        if self.device is not None:
            data["device"] = self.device.to_dict()
        return data

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
            device=None if data.get("device") is None else DeviceModel.from_dict(data["device"]),
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
            and self.device == other.device
        )

    def __hash__(self) -> int:
        return hash(self.key)

    def content_hash(self) -> str:
        """12 hex digits that equal for equal tables (name and device model left out):
        records say which table made them."""
        return hashlib.sha256(repr(self.key).encode()).hexdigest()[:12]

    def programmed_hash(self) -> str:
        """16 hex digits that equal for tables that program every weight alike: the
        significances, the device range and the column each level is programmed with
        (name, order of the columns and redundant columns left out). A table and its
        reduction to the selected columns share it; seeds and records use it."""
        key = self.__dict__.get("_programmed_hash")
        if key is None:
            levels = np.ascontiguousarray(self.level_conductances, dtype=np.float64)
            text = repr((self._f, levels.shape, self.g_min, self.g_max)) + \
                hashlib.sha256(levels.tobytes()).hexdigest()
            key = hashlib.sha256(text.encode()).hexdigest()[:16]
            self.__dict__["_programmed_hash"] = key
        return key

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
        if self.device is not None:
            args.append(f"device=<{self.device.n_levels} levels: {self.device.name or '...'}>")
        return f"ProgrammingTable({', '.join(args)})"

    def __getstate__(self) -> Dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_encodings", None)  # a cache, rebuilt on use; large for big tables
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        state.setdefault("device", None)  # pickles of earlier versions
        self.__dict__.update(state)
        self._g.setflags(write=False)


def _fmt(value: float) -> str:
    return f"{value:.6g}"
