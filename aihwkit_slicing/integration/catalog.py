"""Named tables and baseline converters: the one registry of names every command knows.

* :data:`TABLES`: our built-in programming tables (see
  :func:`aihwkit_slicing.core.builders.builtin_tables`);
* :data:`CANDIDATE_TABLES`: tables an allocation chooses from (see
  :func:`aihwkit_slicing.core.builders.candidate_tables`);
* :data:`NAMED_TABLES`: both; :data:`BASELINES`: aihwkit's own continuous converters,
  for comparison; :func:`known_names` lists every name, which ``sweep``, ``allocate``,
  ``tables``, assignments and :func:`make_converter` all accept;
* :data:`DEFAULT_SWEEP`: what ``aihwkit-slicing sweep`` runs when no table is named.

:func:`make_converter` turns a name, a :class:`ProgrammingTable` or a converter into a
fresh converter instance, scaled as sweeps scale (:data:`DEFAULT_SCALE` per channel).
"""

from __future__ import annotations

import copy
import json
from typing import Callable, Dict, List, Optional, Union

from aihwkit.inference.converter.base import BaseConductanceConverter
from aihwkit.inference.converter.conductance import (
    DualPairConductanceConverter,
    NPairConductanceConverter,
    SinglePairConductanceConverter,
)

from aihwkit_slicing.core.converter import QuantizedSlicedConductanceConverter
from aihwkit_slicing.core.quantize import LevelNoise
from aihwkit_slicing.core.builders import builtin_tables, candidate_tables
from aihwkit_slicing.core.tables import ProgrammingTable
from aihwkit_slicing.integration.setting import jsonable, short_hash

#: Default scaling of quantized tables (sweeps, assignments, allocation): the
#: MSE-optimal clip per output channel.
DEFAULT_SCALE = "mse"
DEFAULT_PER_CHANNEL = True

#: Our built-in programming tables by name.
TABLES: Dict[str, ProgrammingTable] = builtin_tables()
#: Named tables of 2 to 16 devices an allocation chooses from (``"3x17lvl-binary"``, ...).
CANDIDATE_TABLES: Dict[str, ProgrammingTable] = candidate_tables()
#: Every named table: :data:`TABLES` and :data:`CANDIDATE_TABLES`.
NAMED_TABLES: Dict[str, ProgrammingTable] = {**TABLES, **CANDIDATE_TABLES}

#: aihwkit's continuous converters (25 uS devices), by name.
BASELINES: Dict[str, Callable[[], BaseConductanceConverter]] = {
    "aihwkit-1pair": lambda: SinglePairConductanceConverter(g_max=25.0, g_min=0.0),
    "aihwkit-2pair-f13": lambda: DualPairConductanceConverter(f_lst=[1.0, 3.0], g_max=25.0,
                                                              g_min=0.0),
    "aihwkit-4pair-equal": lambda: NPairConductanceConverter(f_lst=[1.0, 1.0, 1.0, 1.0],
                                                             g_max=25.0, g_min=0.0),
}

#: The tables of the default sweep: aihwkit's single pair (continuous baseline), the
#: seed table, one multi-level pair, a 2-pair and a 4-pair bit-sliced table.
DEFAULT_SWEEP: List[str] = ["aihwkit-1pair", "seed", "1x16lvl", "2x4lvl-base", "4x4lvl-base"]

TableSpec = Union[str, ProgrammingTable, BaseConductanceConverter]


def table_of(spec: TableSpec) -> Optional[ProgrammingTable]:
    """The programming table behind a spec (a name, a table or our converter), or None
    for a continuous (aihwkit) converter."""
    if isinstance(spec, str):
        return NAMED_TABLES.get(spec)
    if isinstance(spec, ProgrammingTable):
        return spec
    return getattr(spec, "table", None) if isinstance(
        spec, QuantizedSlicedConductanceConverter) else None


def known_names() -> List[str]:
    """Every name :func:`make_converter` accepts (and with it sweeps, allocations,
    assignments and the command line): :data:`BASELINES` and :data:`NAMED_TABLES`."""
    return list(BASELINES) + list(NAMED_TABLES)


def make_converter(
    spec: TableSpec, scale: str = DEFAULT_SCALE, per_channel: bool = DEFAULT_PER_CHANNEL,
    percentile: float = 99.9, level_noise: Optional[LevelNoise] = None,
) -> BaseConductanceConverter:
    """A fresh converter for a table name, a :class:`ProgrammingTable` or a converter.

    Args:
        spec: a name from :func:`known_names`, a table, or any aihwkit converter
            (deep-copied).
        scale, per_channel, percentile, level_noise: scaling of our converter for tables
            (see :class:`QuantizedSlicedConductanceConverter`); ignored for converters.
            The default is the sweep's, :data:`DEFAULT_SCALE` per output channel (the
            converter class itself defaults to aihwkit's ``"max"`` per tensor).

    Raises:
        ValueError: for an unknown name (the message lists the known ones).
        TypeError: for anything else.
    """
    if isinstance(spec, str):
        if spec in BASELINES:
            return BASELINES[spec]()
        if spec in NAMED_TABLES:
            spec = NAMED_TABLES[spec]
        else:
            raise ValueError(
                f"unknown table {spec!r}; known tables: {', '.join(known_names())}"
            )
    if isinstance(spec, ProgrammingTable):
        return QuantizedSlicedConductanceConverter.from_table(
            spec, scale=scale, per_channel=per_channel, percentile=percentile,
            level_noise=level_noise,
        )
    if isinstance(spec, BaseConductanceConverter):
        return copy.deepcopy(spec)
    raise TypeError(
        f"a table must be a name, a ProgrammingTable or an aihwkit conductance converter, "
        f"got {type(spec).__name__}"
    )


def devices_per_weight(converter: BaseConductanceConverter) -> int:
    """How many devices one weight occupies with ``converter``."""
    if isinstance(converter, QuantizedSlicedConductanceConverter):
        return converter.n_devices
    if hasattr(converter, "g_lst"):
        return len(converter.g_lst)
    if hasattr(converter, "f_lst"):
        return 2 * len(converter.f_lst)
    if isinstance(converter, SinglePairConductanceConverter):
        return 2
    return 1


def levels_per_weight(converter: BaseConductanceConverter) -> float:
    """Distinct weight levels (``inf`` for a continuous converter)."""
    if isinstance(converter, QuantizedSlicedConductanceConverter):
        return float(converter.table.n_levels)
    return float("inf")


def spec_hash(spec: TableSpec) -> str:
    """What a table spec programs, as 16 hex digits; names are left out.

    A table (by name or as an object): :meth:`ProgrammingTable.programmed_hash`. Our
    converter: that of its table with its own scaling rule, level noise and
    ``compact_state`` (a converter keeps its settings in a sweep). Any other converter:
    its class and JSON-able settings.
    """
    if isinstance(spec, QuantizedSlicedConductanceConverter):
        noise = spec.level_noise
        parts = [spec.table.programmed_hash(), spec.scale, spec.per_channel, spec.percentile,
                 None if noise is None else [list(noise.mean), list(noise.mean_square)]]
        if getattr(spec, "compact_state", False):  # float16 devices drift otherwise
            parts.append("compact_state")
        return short_hash(json.dumps(parts))
    table = table_of(spec)
    if table is not None:
        return table.programmed_hash()
    converter = make_converter(spec)
    settings = {key: value for key, value in sorted(vars(converter).items())
                if jsonable(value)}
    return short_hash(type(converter).__name__ + json.dumps(settings, sort_keys=True))


def spec_name(spec: TableSpec) -> str:
    """The display name of a table spec: a name, a table's or converter's name, or for an
    unnamed table ``"table-<hash>"`` (two unnamed tables never share a name)."""
    if isinstance(spec, str):
        return spec
    name = getattr(spec, "name", None) or getattr(getattr(spec, "table", None), "name", None)
    if name:
        return name
    table = table_of(spec)
    if table is not None:
        return f"table-{table.programmed_hash()[:8]}"
    return type(spec).__name__
