"""aihwkit-slicing: quantized synaptic weight slicing for IBM's aihwkit.

The pieces, one concept per module (``docs/design.md`` shows how they depend on each
other):

* :mod:`aihwkit_slicing.tables` -- :class:`ProgrammingTable`, the builders, the JSON form;
* :mod:`aihwkit_slicing.converter` -- :class:`QuantizedSlicedConductanceConverter`,
  the aihwkit conductance converter;
* :mod:`aihwkit_slicing.quantize`, :mod:`aihwkit_slicing.scaling` -- the nearest-level
  lookup, and how weights map onto a table (max, percentile, MSE, per channel);
* :mod:`aihwkit_slicing.device_state`, :mod:`aihwkit_slicing.call_sites` -- the devices
  behind produced weights, and which aihwkit method is converting;
* :mod:`aihwkit_slicing.sweep` (with :mod:`~aihwkit_slicing.sweep_plan`,
  :mod:`~aihwkit_slicing.distributed`, :mod:`~aihwkit_slicing.results`,
  :mod:`~aihwkit_slicing.tasks`) -- drift sweeps, in-process or on Dask;
* :mod:`aihwkit_slicing.assignment`, :mod:`aihwkit_slicing.allocation` -- per-layer tables;
* :mod:`aihwkit_slicing.checkpoint` -- :func:`save_programmed`, :func:`load_programmed`;
* :mod:`aihwkit_slicing.digital` -- the other way: every slice on its own analog tile,
  summed digitally (:class:`AnalogSlicedLinear`, :class:`AnalogSlicedConv2d`,
  :func:`convert_to_analog_sliced`);
* :mod:`aihwkit_slicing.compat` -- which torch releases aihwkit's compiled tile works
  with (importing the package warns once where it does not).
"""

from aihwkit_slicing.compat import warn_if_compiled_tile_broken

# First, so that the fix is shown also where aihwkit cannot load with the installed torch.
warn_if_compiled_tile_broken()

from aihwkit_slicing.checkpoint import load_programmed, save_programmed
from aihwkit_slicing.converter import QuantizedSlicedConductanceConverter
from aihwkit_slicing.version import __version__
from aihwkit_slicing.digital import (
    AnalogSlicedConv2d,
    AnalogSlicedLinear,
    WeightSlicing,
    convert_to_analog_sliced,
    convert_to_digital_sliced,
)
from aihwkit_slicing.tables import (
    ProgrammingTable,
    bit_sliced,
    builtin_tables,
    equal_significance,
    from_device_levels,
    seed_table,
    single_pair,
)


__all__ = [
    "__version__",
    "AnalogSlicedConv2d",
    "AnalogSlicedLinear",
    "ProgrammingTable",
    "QuantizedSlicedConductanceConverter",
    "WeightSlicing",
    "bit_sliced",
    "builtin_tables",
    "convert_to_analog_sliced",
    "convert_to_digital_sliced",
    "equal_significance",
    "from_device_levels",
    "load_programmed",
    "save_programmed",
    "seed_table",
    "single_pair",
]
