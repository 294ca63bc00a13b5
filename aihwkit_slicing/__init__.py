"""aihwkit-slicing: quantized synaptic weight slicing for IBM's aihwkit.

The pieces, one module each:

* :mod:`aihwkit_slicing.tables` -- :class:`ProgrammingTable` and the table builders;
* :mod:`aihwkit_slicing.converter` -- :class:`QuantizedSlicedConductanceConverter`,
  the aihwkit conductance converter;
* :mod:`aihwkit_slicing.scaling` -- how weights map onto a table (max, percentile, MSE);
* :mod:`aihwkit_slicing.quantize` -- the nearest-level lookup;
* :mod:`aihwkit_slicing.memory` -- how the converter recognizes weights it produced;
* :mod:`aihwkit_slicing.digital` -- the other way: every slice on its own analog tile,
  summed digitally (:class:`AnalogSlicedLinear`, :class:`AnalogSlicedConv2d`,
  :func:`convert_to_analog_sliced`);
* :mod:`aihwkit_slicing.checkpoint` -- a programmed chip saved and restored without
  pickle (:func:`save_programmed`, :func:`load_programmed`), for any analog model;
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
