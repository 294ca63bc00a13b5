"""The converter core: programming tables, the nearest-level lookup, scaling rules,
which aihwkit call is converting, the devices behind produced weights, and
:class:`~aihwkit_slicing.core.converter.QuantizedSlicedConductanceConverter`.

Nothing here knows sweeps, tasks or the command line.
"""
