"""rpu_configs: an aihwkit inference configuration driven by a converter, as sweeps make it.

:func:`make_rpu_config` is what a sweep, an allocation and an assignment's
``rpu_config_fun`` build every layer's rpu_config with; a model converted with it by hand
is programmed as a sweep row of the same table is.
"""

from __future__ import annotations

import copy
from typing import Optional

from aihwkit.inference.compensation.drift import GlobalDriftCompensation
from aihwkit.inference.converter.base import BaseConductanceConverter
from aihwkit.simulator.configs import TorchInferenceRPUConfig
from aihwkit.simulator.parameters.base import RPUConfigBase

from aihwkit_slicing.integration.compat import check_compiled_tile
from aihwkit_slicing.integration.noise_models import NoiseModelSpec, build_noise_model

PERIPHERALS = ("ideal", "realistic")
MAPPINGS = ("tensor", "column")


def make_rpu_config(
    converter: BaseConductanceConverter,
    noise_model: NoiseModelSpec = "pcm",
    compensation: bool = True,
    peripherals: str = "ideal",
    mapping: str = "column",
    base: Optional[RPUConfigBase] = None,
) -> RPUConfigBase:
    """An inference rpu_config whose noise model is driven by ``converter``.

    Args:
        converter: the conductance converter (ours or aihwkit's).
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
    """
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
