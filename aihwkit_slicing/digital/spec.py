"""Digitally summed slicing as something a sweep runs: :class:`DigitalSlicing`.

A sweep's "table" says how every analog layer holds its weights. A
:class:`DigitalSlicing` says: split each weight into ``n_slices`` slices
(:class:`~aihwkit_slicing.digital.slicing.WeightSlicing`), give every slice an analog
tile of its own, with its own peripherals (ADC, output noise, drift compensation) as the
sweep's rpu_config sets them, and sum the slices' outputs digitally
(:func:`~aihwkit_slicing.digital.conversion.convert_to_analog_sliced`). Each slice's
tile stores its weight with ``slice_table`` (default: aihwkit's continuous single pair,
2 devices), so one weight costs ``n_slices x`` the slice table's devices.

Names, as the command line takes them (``sweep --tables``)::

    digital-2-equal            2 slices, equal significance, continuous pairs
    digital-2-base-4           2 slices, positional base 4 (f = 1, 4)
    digital-3-binary-2         3 slices of 2 bits each (f = 1, 4, 16)
    digital-2-equal@1x16lvl    2 slices, each on the quantized table 1x16lvl
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple, Union

from aihwkit.inference.converter.base import BaseConductanceConverter

from aihwkit_slicing.core.tables import ProgrammingTable
from aihwkit_slicing.digital.slicing import WeightSlicing
from aihwkit_slicing.integration.catalog import (
    devices_per_weight,
    make_converter,
    spec_hash,
    spec_name,
    table_of,
)
from aihwkit_slicing.integration.setting import short_hash

#: The table of every slice when none is named: aihwkit's continuous single pair.
DEFAULT_SLICE_TABLE = "aihwkit-1pair"
#: ``digital-<slices>-<significance>[-<levels or bits>][@<slice table>]``.
NAME_PATTERN = re.compile(r"^digital-(\d+)-(equal|base|binary)(?:-(\d+))?(?:@(.+))?$")

SliceTable = Union[str, ProgrammingTable, BaseConductanceConverter]


@dataclass(frozen=True, eq=False)
class DigitalSlicing:
    """Digitally summed slicing of every analog layer (see the module docstring).

    Args:
        n_slices: analog tiles per layer (one per slice), at least 1.
        significance: ``"equal"``, ``"base"`` or ``"binary"`` (see
            :class:`~aihwkit_slicing.digital.slicing.WeightSlicing`).
        levels: for ``"base"`` the levels of magnitude per slice (default 2), for
            ``"binary"`` the bits per slice (default 1); None for ``"equal"``. The
            identity (:meth:`content_hash`, :meth:`key`) uses the value the split uses
            (:attr:`levels_used`), so ``digital-2-base`` and ``digital-2-base-2`` are one
            setting.
        slice_table: how each slice's tile stores its weight: a table name, a
            :class:`ProgrammingTable` or an aihwkit converter (default
            :data:`DEFAULT_SLICE_TABLE`). Quantized tables are scaled as the sweep
            scales its tables.
        name: display name (default: :attr:`default_name`).

    Raises:
        ValueError: for an argument :class:`WeightSlicing` or the catalog refuses
            (naming it).
    """

    n_slices: int
    significance: str = "equal"
    levels: Optional[int] = None
    slice_table: SliceTable = DEFAULT_SLICE_TABLE
    name: Optional[str] = None

    def __post_init__(self) -> None:
        self.weight_slicing()  # checks the slicing arguments
        make_converter(self.slice_table)  # checks the table (unknown names, types)

    @classmethod
    def from_name(cls, name: str) -> "DigitalSlicing":
        """The slicing a name of :data:`NAME_PATTERN` describes (``ValueError`` for
        another)."""
        match = NAME_PATTERN.match(name)
        if match is None:
            raise ValueError(f"not a digital slicing name: {name!r} (expected "
                             "digital-<slices>-<equal|base|binary>[-<levels>][@<table>], "
                             "e.g. digital-2-equal, digital-2-base-4)")
        slices, significance, levels, table = match.groups()
        return cls(int(slices), significance, None if levels is None else int(levels),
                   table or DEFAULT_SLICE_TABLE, name=name)

    def weight_slicing(self) -> WeightSlicing:
        """The :class:`WeightSlicing` of every layer."""
        if self.significance == "binary":
            return WeightSlicing(self.n_slices, "binary", bits_per_slice=self.levels)
        if self.significance == "base":
            return WeightSlicing(self.n_slices, "base", levels_per_slice=self.levels)
        if self.levels is not None:
            raise ValueError(f"levels only apply to 'base' and 'binary' slicing, got "
                             f"levels={self.levels!r} with significance={self.significance!r}")
        return WeightSlicing(self.n_slices, self.significance)

    def slicing_arguments(self) -> Dict[str, Any]:
        """Keyword arguments of ``convert_to_analog_sliced``."""
        return self.weight_slicing().arguments()

    @property
    def default_name(self) -> str:
        """``digital-<slices>-<significance>[-<levels>][@<table>]``."""
        text = f"digital-{self.n_slices}-{self.significance}"
        if self.levels is not None:
            text += f"-{self.levels}"
        table = spec_name(self.slice_table)
        if table != DEFAULT_SLICE_TABLE:
            text += f"@{table}"
        return text

    @property
    def display_name(self) -> str:
        return self.name or self.default_name

    def devices_per_weight(self) -> int:
        """Devices one weight occupies: slices times the slice table's devices."""
        return self.n_slices * devices_per_weight(make_converter(self.slice_table))

    @property
    def levels_used(self) -> Optional[int]:
        """:attr:`levels` as the split uses it: the levels per slice of ``"base"``
        (default 2), the bits per slice of ``"binary"`` (default 1), None for
        ``"equal"``."""
        slicing = self.weight_slicing()
        if self.significance == "binary":
            return slicing.bits_per_slice
        return slicing.levels_per_slice

    def levels_per_weight(self) -> Optional[float]:
        """Distinct weight levels, as a table's ``n_levels`` counts them; None where
        nothing quantizes (``"equal"`` slices on a continuous slice table).

        * ``"equal"`` on a quantized slice table of ``T`` levels: ``T`` (every slice
          gets the same weight and scale, so all hold the same level);
        * ``"base"``/``"binary"``: the split leaves ``2 x L**n - 1`` levels (with
          sign); on a quantized slice table of ``T`` levels each tile re-quantizes its
          slice, which leaves at most ``T**n``: the smaller of the two (an upper bound
          where the table's levels miss some digits).
        """
        slicing = self.weight_slicing()
        table = table_of(self.slice_table)
        table_levels = None if table is None else table.n_levels
        if slicing.levels_per_slice is None:
            return None if table_levels is None else float(table_levels)
        split = 2 * slicing.levels_per_slice ** self.n_slices - 1
        if table_levels is None:
            return float(split)
        return float(min(split, table_levels ** self.n_slices))

    def content_hash(self) -> str:
        """16 hex digits of the slicing and what each slice programs (name left out;
        :attr:`levels_used`, so that a default spelled out is the same slicing)."""
        text = json.dumps([self.n_slices, self.significance, self.levels_used,
                           spec_hash(self.slice_table)])
        return short_hash("digital:" + text)

    def key(self) -> Tuple[Any, ...]:
        """What the slicing simulates (name left out)."""
        return (self.n_slices, self.significance, self.levels_used,
                spec_hash(self.slice_table))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DigitalSlicing):
            return NotImplemented
        return self.key() == other.key() and self.display_name == other.display_name

    def __hash__(self) -> int:
        return hash((self.key(), self.display_name))
