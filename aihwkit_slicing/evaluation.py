"""Deprecated: the pieces of the former ``evaluation`` module, kept importable.

The sweep now lives in one module per concept: :mod:`aihwkit_slicing.tasks`,
:mod:`aihwkit_slicing.noise_models`, :mod:`aihwkit_slicing.rpu_configs`,
:mod:`aihwkit_slicing.metrics`, :mod:`aihwkit_slicing.results` and
:mod:`aihwkit_slicing.sweep`. Import from those; this module will go away.
"""

import warnings

from aihwkit_slicing.metrics import weight_errors
from aihwkit_slicing.noise_models import DEFAULT_TIMES, NOISE_MODELS, build_noise_model
from aihwkit_slicing.results import RECORD_FIELDS, SweepResult, format_time
from aihwkit_slicing.rpu_configs import MAPPINGS, PERIPHERALS, make_rpu_config
from aihwkit_slicing.sweep import iter_times, run_sweep
from aihwkit_slicing.tasks import TASKS, Task, digits_task, load_task, minilm_task

__all__ = [
    "DEFAULT_TIMES", "MAPPINGS", "NOISE_MODELS", "PERIPHERALS", "RECORD_FIELDS", "TASKS",
    "SweepResult", "Task", "build_noise_model", "digits_task", "format_time", "iter_times",
    "load_task", "make_rpu_config", "minilm_task", "run_sweep", "weight_errors",
]

warnings.warn("aihwkit_slicing.evaluation is deprecated: import from aihwkit_slicing.sweep, "
              ".tasks, .results, .noise_models, .rpu_configs or .metrics",
              DeprecationWarning, stacklevel=2)
