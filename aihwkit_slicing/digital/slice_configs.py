"""The rpu_config each slice of a digitally summed layer gets: a deep copy, mapped to the
tile's full conductance range; and the checks of the sliced layers' arguments.
"""

from __future__ import annotations

import copy
from typing import Any, Optional

import torch
from torch import Tensor
from torch.nn import Module

from aihwkit.simulator.configs import TorchInferenceRPUConfig
from aihwkit.simulator.parameters.base import RPUConfigBase

from aihwkit_slicing.core.scaling import ZERO_ROW_MAX
from aihwkit_slicing.integration.compat import check_compiled_tile


#: ``weight_scaling_omega`` every slice's copy of the rpu_config gets where the
#: given one has aihwkit's default 0 (no weight scaling), unless ``scale_slices=False``.
SLICE_WEIGHT_SCALING_OMEGA = 1.0


def check_rpu_config(rpu_config: Optional[RPUConfigBase]) -> RPUConfigBase:
    if rpu_config is None:
        return TorchInferenceRPUConfig()
    if not isinstance(rpu_config, RPUConfigBase):
        raise TypeError(
            f"rpu_config must be an aihwkit RPU config, got {type(rpu_config).__name__}"
        )
    check_compiled_tile(rpu_config)
    return rpu_config


def check_flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def slice_rpu_config(rpu_config: RPUConfigBase, scale_slices: bool = True) -> RPUConfigBase:
    """The rpu_config one slice gets: a deep copy, mapped to the tile's full range.

    A slice's weight ``W_k`` has a scale the split chose (for 4 ``"binary"`` slices of
    2 bits the largest ``|W_k|`` is ``3 / 255`` of ``max|W|``), not one the user
    chose. With aihwkit's default mapping (``weight_scaling_omega = 0``: no scaling,
    weights taken as conductances relative to a maximum of 1) such a slice would use
    a small fraction of the conductance range, and its outputs would drown in the
    output noise and round away in the ADC. So where
    ``rpu_config.mapping.weight_scaling_omega`` is 0 the copy gets
    :data:`SLICE_WEIGHT_SCALING_OMEGA` (1.0): aihwkit divides each slice by its own
    ``max|W_k|`` (per tensor, or per column with ``weight_scaling_columnwise``) and
    multiplies the slice's output by it digitally after the ADC, before the factor
    ``f_k``. A positive ``weight_scaling_omega`` is kept as it is.

    Args:
        rpu_config: The layer's rpu_config (not changed).
        scale_slices: ``False`` keeps ``rpu_config.mapping`` as given.

    Returns:
        A deep copy of ``rpu_config``.
    """
    config = copy.deepcopy(rpu_config)
    mapping = getattr(config, "mapping", None)
    if scale_slices and mapping is not None and not mapping.weight_scaling_omega:
        mapping.weight_scaling_omega = SLICE_WEIGHT_SCALING_OMEGA
    return config


@torch.no_grad()
def shrink_zero_row_scales(layer: Module) -> None:
    """Give the all-zero output rows of ``layer``'s tiles the median digital mapping scale
    of the tile's other rows, and an all-zero tile the scale
    :data:`~aihwkit_slicing.core.scaling.ZERO_ROW_MAX`.

    aihwkit maps such a row with a scale of 1 weight unit per normalized conductance, so
    its devices' programming noise (held at 0 uS, they still read about 1 % of the range)
    counts at full weight scale, and a slice's significance multiplies it: positional
    slices are all zero in many rows (the top base-4 digit of most weights is 0), and 8
    base-4 slices took the digits CNN to chance. At the scale of the slice's other rows
    a zero row's devices err as theirs do (a scale that vanished would also freeze the
    row in training); an all-zero tile holds nothing and programs to (near) zero
    weights. aihwkit's ``remap_weights`` sets the scales afresh, to 1 for zero rows.
    """
    for tile in layer.analog_tiles():
        scales = tile.get_mapping_scales()
        if not isinstance(scales, Tensor):
            continue
        zero = (tile.tile.get_weights().abs().amax(dim=1) == 0).to(scales.device)
        if scales.numel() == 1:
            zero = zero.all().reshape(1)
        elif scales.numel() != zero.numel():
            continue
        if not bool(zero.any()):
            continue
        if bool(zero.all()):
            replacement = torch.full_like(scales, ZERO_ROW_MAX)
        else:
            replacement = torch.full_like(scales, float(scales[~zero].median()))
        tile.set_mapping_scales(torch.where(zero, replacement, scales))
