"""rpu_configs: an aihwkit inference configuration driven by a table, as sweeps make it.

:func:`make_rpu_config` is what a sweep, an allocation and an assignment's
``rpu_config_fun`` build every layer's rpu_config with. Given a table (a name or a
:class:`~aihwkit_slicing.core.tables.ProgrammingTable`), it builds the converter with the
sweep's defaults too (``"mse"`` clip per output channel), so a model converted with
``make_rpu_config("seed")`` by hand is programmed exactly as a sweep row of ``"seed"``
is (seeded as the sweep seeds a unit, it gives the very same numbers; see
docs/sweeps.md). A row of a ``noise_aware`` sweep takes the same ``noise_aware`` times:
the level noise is then the sweep's
(:func:`~aihwkit_slicing.integration.level_noise.seeded_level_noise`).
"""

from __future__ import annotations

import copy
from typing import Optional, Sequence

from aihwkit.inference.compensation.drift import GlobalDriftCompensation
from aihwkit.inference.converter.base import BaseConductanceConverter
from aihwkit.simulator.configs import TorchInferenceRPUConfig
from aihwkit.simulator.parameters.base import RPUConfigBase

from aihwkit_slicing.integration.catalog import (
    DEFAULT_PER_CHANNEL,
    DEFAULT_SCALE,
    TableSpec,
    make_converter,
    table_of,
)
from aihwkit_slicing.core.validation import validate_times
from aihwkit_slicing.integration.compat import check_compiled_tile
from aihwkit_slicing.integration.level_noise import seeded_level_noise
from aihwkit_slicing.integration.noise_models import NoiseModelSpec, build_noise_model

PERIPHERALS = ("ideal", "realistic")
MAPPINGS = ("tensor", "column")


def make_rpu_config(
    converter: TableSpec,
    noise_model: NoiseModelSpec = "pcm",
    compensation: bool = True,
    peripherals: str = "ideal",
    mapping: str = "column",
    base: Optional[RPUConfigBase] = None,
    scale: str = DEFAULT_SCALE,
    per_channel: bool = DEFAULT_PER_CHANNEL,
    percentile: float = 99.9,
    noise_aware: Optional[Sequence[float]] = None,
) -> RPUConfigBase:
    """An inference rpu_config whose noise model is driven by a table or a converter.

    Every default is a sweep's: a model converted with ``make_rpu_config(table)`` is
    programmed as the sweep row of ``table`` is.

    Args:
        converter: a table name (see ``aihwkit-slicing tables``), a
            :class:`~aihwkit_slicing.core.tables.ProgrammingTable` (both converted with
            ``scale``, ``per_channel``, ``percentile``), or a conductance converter,
            ours or aihwkit's, used as it is.
        noise_model: a name from :data:`NOISE_MODELS`, a factory taking the converter,
            or a noise model instance (copied, its converter replaced).
        compensation: global drift compensation on or off.
        peripherals: ``"ideal"`` (``forward.is_perfect = True``: only weight noise
            counts) or ``"realistic"`` (aihwkit's default forward: DAC/ADC
            quantization, output noise, bounds).
        mapping: ``"column"`` (default, as in sweeps: aihwkit scales every output column
            to max 1 before conversion, ``weight_scaling_omega = 1``,
            ``weight_scaling_columnwise = True``) or ``"tensor"`` (one scale per weight
            tensor, aihwkit's own default ``weight_scaling_omega = 0``).
        base: rpu_config to start from (copied); default ``TorchInferenceRPUConfig()``.
        scale, per_channel, percentile: the scaling rule of a table given by name or
            as a table (default: the sweep's, ``"mse"`` per output channel; the
            converter class's own default is aihwkit's ``"max"`` per tensor).
        noise_aware: inference times in seconds, as ``run_sweep(noise_aware=...)``
            takes them: a table's ``"mse"`` clip then weighs each level's expected error
            under ``noise_model`` at those times, with the level noise a sweep draws
            (the same seeded Monte Carlo), so the rpu_config is that of the sweep's row.
            Ignored, as in a sweep, for converters (they keep their own level noise)
            and continuous tables.

    Raises:
        ValueError: for an unknown table name, peripherals or mapping (naming it), bad
            ``noise_aware`` times, or ``noise_aware`` with a scale other than ``"mse"``.
    """
    if not isinstance(converter, BaseConductanceConverter):
        level_noise = None
        table = table_of(converter)
        if noise_aware:
            times = validate_times(noise_aware)
            if scale != "mse":
                raise ValueError(f"noise_aware needs scale='mse', got scale={scale!r}")
            if table is not None:
                level_noise = seeded_level_noise(table, noise_model, times, compensation)
        converter = make_converter(converter, scale=scale, per_channel=per_channel,
                                   percentile=percentile, level_noise=level_noise)
    if peripherals not in PERIPHERALS:
        raise ValueError(f"peripherals must be one of {PERIPHERALS}, got {peripherals!r}")
    if mapping not in MAPPINGS:
        raise ValueError(f"mapping must be one of {MAPPINGS}, got {mapping!r}")
    check_compiled_tile(base)
    rpu_config = copy.deepcopy(base) if base is not None else TorchInferenceRPUConfig()
    rpu_config.noise_model = build_noise_model(noise_model, converter)
    rpu_config.drift_compensation = GlobalDriftCompensation() if compensation else None
    if peripherals == "ideal":
        rpu_config.forward.is_perfect = True
    if mapping == "column":
        rpu_config.mapping.weight_scaling_omega = 1.0
        rpu_config.mapping.weight_scaling_columnwise = True
    return rpu_config
