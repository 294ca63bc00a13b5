"""Builders of common programming tables: the seed table, bit-sliced (positional) tables,
equal significance, a single multi-level pair, and tables from measured device levels
(microsiemens); :func:`builtin_tables` and :func:`candidate_tables` name the ones the
command line knows.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from aihwkit_slicing.core.device_model import DeviceModel
from aihwkit_slicing.core.table_checks import validate_f_lst
from aihwkit_slicing.core.tables import MAX_COLUMNS, Number, ProgrammingTable
from aihwkit_slicing.core.validation import (
    check_count,
    check_device_range,
    check_fraction,
    is_real_number,
)


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
        factors = list(validate_f_lst(significance))
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
    factors = validate_f_lst(f_lst)
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


def on_device(table: ProgrammingTable, device: DeviceModel,
              name: Optional[str] = None) -> ProgrammingTable:
    """``table`` scaled onto ``device``'s range, carrying ``device``.

    Every conductance is multiplied by ``device.levels[-1] / table.g_max`` (the table's
    ``g_max`` lands on the device's highest level) and must then be one of the device's
    levels, to which it is set exactly. The structure is kept: the significances, the
    columns, and the column each level is programmed with (where rounding of the scaled
    conductances breaks a tie of the encoding rule differently, the copy lists the
    original's columns explicitly). ``on_device(single_pair(16), pcm)`` is a 16-level
    pair on a device characterised at 16 evenly spaced levels.

    Raises:
        ValueError: naming the first scaled conductance that is not a device level.
    """
    if not isinstance(device, DeviceModel):
        raise TypeError(f"device must be a DeviceModel, got {type(device).__name__}")
    factor = device.levels[-1] / table.g_max
    scaled = table.conductances * factor
    device.check_conductances(scaled, name=f"g_lst of {table.name or 'the table'} x {factor:g}")
    levels = np.asarray(device.levels)
    snapped = levels[np.abs(scaled[..., None] - levels).argmin(axis=-1)]
    encoding = table.encoding if isinstance(table.encoding, str) else list(table.encoding)
    scaled_table = ProgrammingTable(table.f_lst, snapped, g_min=table.g_min * factor,
                                    g_max=device.levels[-1], encoding=encoding,
                                    name=name or table.name, device=device)
    if scaled_table.selected_columns != table.selected_columns:
        scaled_table = scaled_table.with_encodings(table.selected_columns)
    return scaled_table


def builtin_tables() -> Dict[str, ProgrammingTable]:
    """The named tables of the README and the default sweep (small: tests run every one)."""
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


def candidate_tables() -> Dict[str, ProgrammingTable]:
    """Named tables of 2 to 16 devices an allocation chooses from, besides
    :func:`builtin_tables` (the plain forms of the allocation's default candidates).

    ``"1x33lvl"`` (one pair of 33 levels), ``"<P>x33lvl-fill"`` (equal significance,
    pairs filled one after the other, P = 2, 3, 4, 6, 8) and the table optimizer's
    binary-significance picks ``"2x33lvl-binary"``, ``"3x17lvl-binary"`` (the README's
    best uniform table of 6 devices) and ``"4x5lvl-binary"``.
    """
    tables = [single_pair(33, name="1x33lvl")]
    tables += [equal_significance(p, 33, columns="fill", name=f"{p}x33lvl-fill")
               for p in (2, 3, 4, 6, 8)]
    tables += [bit_sliced(2, 33, significance=[1, 2], name="2x33lvl-binary"),
               bit_sliced(3, 17, significance=[1, 2, 4], name="3x17lvl-binary"),
               bit_sliced(4, 5, significance=[1, 2, 4, 8], name="4x5lvl-binary")]
    return {table.name: table for table in tables}
