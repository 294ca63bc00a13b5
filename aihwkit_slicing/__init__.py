"""aihwkit-slicing: quantized synaptic weight slicing for IBM's aihwkit.

The package is layered; each folder imports only the folders below it:

* :mod:`aihwkit_slicing.cli` -- the ``aihwkit-slicing`` command;
* :mod:`aihwkit_slicing.experiments` -- tasks and bundled models, drift sweeps (in-process
  or on Dask), records, metrics, plots, measured layer sensitivities;
* :mod:`aihwkit_slicing.design` -- per-level errors and encodings, the table optimizer,
  per-layer assignments, allocation under a device budget;
* :mod:`aihwkit_slicing.digital` -- digitally summed slicing: one analog tile per slice;
* :mod:`aihwkit_slicing.integration` -- aihwkit around the converter: compatible releases,
  noise models, rpu_configs, named tables, checkpoints;
* :mod:`aihwkit_slicing.core` -- programming tables, the level lookup, scaling rules, the
  converter and the devices behind the weights it produced.

The names below are the public API; importing the package warns once where the
installed torch cannot run aihwkit's compiled tile.
"""

from aihwkit_slicing.integration.compat import warn_if_compiled_tile_broken

# First, so that the fix is shown also where aihwkit cannot load with the installed torch.
warn_if_compiled_tile_broken()

from aihwkit_slicing.core.builders import (  # noqa: E402
    bit_sliced,
    builtin_tables,
    equal_significance,
    from_device_levels,
    on_device,
    seed_table,
    single_pair,
)
from aihwkit_slicing.core.converter import QuantizedSlicedConductanceConverter  # noqa: E402
from aihwkit_slicing.core.device_model import DeviceModel, load_device_model  # noqa: E402
from aihwkit_slicing.core.table_files import load_table, save_table
from aihwkit_slicing.core.tables import ProgrammingTable  # noqa: E402
from aihwkit_slicing.digital.conversion import (  # noqa: E402
    convert_to_analog_sliced,
    convert_to_digital_sliced,
)
from aihwkit_slicing.digital.layers import AnalogSlicedConv2d, AnalogSlicedLinear  # noqa: E402
from aihwkit_slicing.digital.slicing import WeightSlicing  # noqa: E402
from aihwkit_slicing.integration.checkpoint import save_programmed  # noqa: E402
from aihwkit_slicing.integration.checkpoint_load import load_programmed  # noqa: E402
from aihwkit_slicing.integration.rpu_configs import make_rpu_config  # noqa: E402
from aihwkit_slicing.integration.measured_noise import MeasuredNoiseModel  # noqa: E402
from aihwkit_slicing.version import __version__  # noqa: E402

__all__ = [
    "__version__",
    "AnalogSlicedConv2d",
    "AnalogSlicedLinear",
    "DeviceModel",
    "MeasuredNoiseModel",
    "ProgrammingTable",
    "QuantizedSlicedConductanceConverter",
    "WeightSlicing",
    "bit_sliced",
    "builtin_tables",
    "convert_to_analog_sliced",
    "convert_to_digital_sliced",
    "equal_significance",
    "from_device_levels",
    "on_device",
    "load_device_model",
    "load_programmed",
    "load_table",
    "make_rpu_config",
    "save_programmed",
    "save_table",
    "seed_table",
    "single_pair",
]
