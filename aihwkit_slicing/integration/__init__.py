"""aihwkit around the converter: compatible releases, noise models and rpu_configs,
named tables and baseline converters, and checkpoints of programmed chips.

Imports only :mod:`aihwkit_slicing.core` from this package.
"""
