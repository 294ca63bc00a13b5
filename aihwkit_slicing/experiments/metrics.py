"""What programming and drift did to an analog model's weights.

* :func:`weight_errors` -- how far every tile's effective weights are from the weights
  it was programmed from;
* :func:`clipped_fractions` -- per tile, the fraction of weights that saturated on an
  outermost level when it was programmed with
  :class:`~aihwkit_slicing.core.converter.QuantizedSlicedConductanceConverter`.
"""

from __future__ import annotations

import math
from typing import Dict

import torch
from torch import nn

from aihwkit_slicing.core.device_state import state_of
from aihwkit_slicing.digital.layers import AnalogSlicedBase


@torch.no_grad()
def weight_errors(analog_model: nn.Module) -> Dict[str, float]:
    """How far the analog weights are from the floating-point ones.

    For every analog tile, the effective weights (current tile weights times the drift
    compensation factor ``alpha``) are compared with the weights the tile was
    programmed from, relative to that tile's ``max|w|`` (in the tile's units: with
    per-column mapping, ``weight_scaling_columnwise``, every output's weights are
    scaled to the same maximum, so the error is relative to that output's ``max|w|``).
    A digitally summed layer (:class:`~aihwkit_slicing.digital.layers.AnalogSlicedBase`)
    counts as one: the sum of its slices' effective weights against the floating-point
    weight it was given, relative to the same maximum (per output where its slices map
    per column), so the rounding of the split counts and a low-significance slice
    weighs what it contributes; one equal slice gives the numbers of its tile where
    the layer fits one tile (a layer wider than ``max_input_size`` is a grid of tiles,
    each scaling its own block of an output: there the sliced layer's error, per whole
    output, differs). A sliced layer loaded from a state dict, which does not know that
    weight, is left out.

    Returns:
        ``weight_rms_error``: root mean square of the relative error over all weights;
        ``weight_max_error``: the largest relative error (both NaN if nothing counts).
    """
    squares, count, worst = 0.0, 0, 0.0
    sliced_tiles = set()
    pairs = []
    for module in analog_model.modules():
        if isinstance(module, AnalogSlicedBase):
            sliced_tiles.update(id(tile) for tile in module.analog_tiles())
            if module.reference_weight is not None:
                weights = module.get_weights(drift_compensation=True)[0]
                reference = module.reference_weight.to(weights.device)
                rows = (reference.shape[0], -1)
                pairs.append((weights.reshape(rows), reference.reshape(rows),
                              _columnwise(module)))
    for tile in analog_model.analog_tiles():
        reference = getattr(tile, "reference_combined_weights", None)
        if reference is None or id(tile) in sliced_tiles:
            continue
        weights = tile.tile.get_weights().to(reference.device)
        alpha = getattr(tile, "alpha", None)
        if alpha is not None:  # one factor per tile, or one per output (row of [out, in])
            alpha = alpha.to(weights)
            weights = weights * (alpha.reshape(-1, 1) if alpha.numel() > 1 else alpha)
        pairs.append((weights, reference, False))
    for weights, reference, per_output in pairs:
        weights = weights.to(reference.device)
        largest = reference.abs().max()
        if per_output:  # an all-zero output is measured against the layer's max|w|
            rows = reference.abs().amax(dim=1, keepdim=True)
            largest = torch.where(rows > 0, rows, largest)
        scale = largest.clamp(min=torch.finfo(reference.dtype).tiny)
        error = ((weights - reference) / scale).double()
        squares += float(error.square().sum())
        count += error.numel()
        worst = max(worst, float(error.abs().max()))
    rms = math.sqrt(squares / count) if count else float("nan")
    return {"weight_rms_error": rms, "weight_max_error": worst if count else float("nan")}


def _columnwise(layer: nn.Module) -> bool:
    """Whether ``layer``'s tiles scale every output's weights apart (per-column
    mapping: ``weight_scaling_omega > 0`` and ``weight_scaling_columnwise``)."""
    tile = next(layer.analog_tiles(), None)
    mapping = getattr(getattr(tile, "rpu_config", None), "mapping", None)
    return bool(getattr(mapping, "weight_scaling_columnwise", False)) and bool(
        getattr(mapping, "weight_scaling_omega", 0) or 0)


def clipped_fractions(analog_model: nn.Module) -> Dict[str, float]:
    """Per programmed tile, the fraction of its non-zero weights that saturated.

    aihwkit deep-copies the converter into every tile, so the converter object a user
    built never sees these numbers; they are kept with each tile's programmed devices.

    Returns:
        ``{tile name: fraction}`` for every tile programmed with our converter (tile
        names as in ``named_analog_tiles()``, e.g. ``"0.analog_tile"``); tiles that are
        not programmed or use another converter are left out.
    """
    fractions = {}
    for name, tile in _named_analog_tiles(analog_model):
        programmed = getattr(tile, "programmed_weights", None)
        state = state_of(programmed) if programmed is not None else None
        if state is not None:
            fractions[name] = state.clipped_fraction
    return fractions


def _named_analog_tiles(model: nn.Module):
    named = getattr(model, "named_analog_tiles", None)
    if named is not None:
        yield from named()
        return
    for index, tile in enumerate(model.analog_tiles()):
        yield str(index), tile
