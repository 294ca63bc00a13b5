"""aihwkit-slicing: quantized synaptic weight slicing for IBM's aihwkit.

The pieces, one concept per module (``docs/design.md`` shows how they depend on each
other):

* :mod:`aihwkit_slicing.core.tables` -- :class:`ProgrammingTable`, the builders, the JSON form;
* :mod:`aihwkit_slicing.core.converter` -- :class:`QuantizedSlicedConductanceConverter`,
  the aihwkit conductance converter;
* :mod:`aihwkit_slicing.core.quantize`, :mod:`aihwkit_slicing.core.scaling` -- the nearest-level
  lookup, and how weights map onto a table (max, percentile, MSE, per channel);
* :mod:`aihwkit_slicing.core.device_state`, :mod:`aihwkit_slicing.core.call_sites` -- the devices
  behind produced weights, and which aihwkit method is converting;
* :mod:`aihwkit_slicing.experiments.sweep` (with :mod:`~aihwkit_slicing.experiments.sweep_plan`,
  :mod:`~aihwkit_slicing.experiments.distributed`, :mod:`~aihwkit_slicing.experiments.results`,
  :mod:`~aihwkit_slicing.experiments.tasks`) -- drift sweeps, in-process or on Dask;
* :mod:`aihwkit_slicing.design.assignment`, :mod:`aihwkit_slicing.design.allocation` -- per-layer tables;
* :mod:`aihwkit_slicing.integration.checkpoint` -- :func:`save_programmed`, :func:`load_programmed`;
* :mod:`aihwkit_slicing.digital.slicing_all` -- the other way: every slice on its own analog tile,
  summed digitally (:class:`AnalogSlicedLinear`, :class:`AnalogSlicedConv2d`,
  :func:`convert_to_analog_sliced`);
* :mod:`aihwkit_slicing.integration.compat` -- which torch releases aihwkit's compiled tile works
  with (importing the package warns once where it does not).
"""

from aihwkit_slicing.integration.compat import warn_if_compiled_tile_broken

# First, so that the fix is shown also where aihwkit cannot load with the installed torch.
warn_if_compiled_tile_broken()

from aihwkit_slicing.integration.checkpoint import load_programmed, save_programmed
from aihwkit_slicing.core.converter import QuantizedSlicedConductanceConverter
from aihwkit_slicing.version import __version__
from aihwkit_slicing.digital.slicing_all import (
    AnalogSlicedConv2d,
    AnalogSlicedLinear,
    WeightSlicing,
    convert_to_analog_sliced,
    convert_to_digital_sliced,
)
from aihwkit_slicing.core.tables import (
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
