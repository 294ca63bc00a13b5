"""Scaling rules: how trained weights are mapped onto a table's levels.

A scale ``s`` (microsiemens per weight unit) maps a weight ``w`` to ``w * s``, which
is then rounded to the nearest level. The rules differ in which weight lands on the
outermost level (the *clip*):

* ``"max"`` (default, aihwkit's convention): the largest ``|w|`` lands on the largest
  ``|level|``; nothing is clipped. For asymmetric tables the largest scale at which
  every weight still lies within ``[lowest level, highest level]``.
* ``"percentile"``: the given percentile of ``|w|`` lands on the outermost level;
  larger weights saturate there.
* ``"mse"``: the clip that minimizes the squared quantization error of the weights
  onto the levels, found by a vectorized coarse-to-fine grid search over clip ratios
  (every candidate evaluated on all weights at once, no Python loop over weights).

Each rule works per tensor or per output channel (``per_channel=True``: one scale per
row of the ``[out, in]`` weight aihwkit hands the converter, i.e. per index of the
first dimension).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from aihwkit_slicing.quantize import LevelQuantizer, compute_dtype

SCALE_RULES = ("max", "percentile", "mse")

#: Candidate clip ratios (of max|w|) of the first stage of the MSE search.
MSE_COARSE_STEPS = 32
#: Candidates per refinement stage, and the number of refinement stages.
MSE_FINE_STEPS = 16
MSE_REFINEMENTS = 2
#: Elements evaluated at once in the MSE search (weights x candidates).
MSE_BLOCK = 2**20


@dataclass
class Scaling:
    """Result of a scaling rule.

    Attributes:
        scale: microsiemens per weight unit; a 0-d tensor, or ``[C, 1, ...]`` per
            channel. In the compute dtype (float32, or float64 for float64 weights).
        clipped_fraction: fraction of the weights whose ``|w * scale|`` lies beyond
            the outermost level (they saturate on it).
    """

    scale: Tensor
    clipped_fraction: float


def validate_rule(rule: str, percentile: float) -> None:
    """Raise ``ValueError`` for an unknown rule or a percentile outside (0, 100]."""
    if rule not in SCALE_RULES:
        raise ValueError(f"scale must be one of {SCALE_RULES}, got {rule!r}")
    if (
        isinstance(percentile, bool)
        or not isinstance(percentile, numbers.Real)
        or not 0 < percentile <= 100
    ):
        raise ValueError(f"percentile must lie in (0, 100], got {percentile!r}")


def compute_scaling(
    weights: Tensor,
    quantizer: LevelQuantizer,
    rule: str = "max",
    per_channel: bool = False,
    percentile: float = 99.9,
) -> Scaling:
    """Compute the scale that maps ``weights`` onto the quantizer's levels.

    Args:
        weights: finite weights, any shape (non-empty).
        quantizer: the table's level lookup.
        rule: one of :data:`SCALE_RULES`.
        per_channel: one scale per index of the first dimension.
        percentile: percentile of ``|w|`` that lands on the outermost level (rule
            ``"percentile"`` only), in (0, 100].

    Raises:
        ValueError: if ``weights`` holds NaN or infinite values, or signs the table
            cannot represent.
    """
    cdtype = compute_dtype(weights.dtype)
    levels = quantizer.lookup_tensors(weights.dtype, weights.device)[1]
    top, bottom = float(levels[-1]), float(levels[0])
    w = weights.reshape(weights.shape[0], -1) if per_channel and weights.dim() > 0 else (
        weights.reshape(1, -1)
    )
    # (amin and amax separately: aminmax along a dimension is several times slower)
    w_min, w_max = w.amin(dim=1).to(cdtype), w.amax(dim=1).to(cdtype)
    low, high = float(w_min.min()), float(w_max.max())
    if not (math.isfinite(low) and math.isfinite(high)):
        raise_not_finite(weights)
    if bool((w_max > 0).any()) and top <= 0:
        raise ValueError(
            f"the table cannot represent positive weights: its highest level is {top:g} uS"
        )
    if bool((w_min < 0).any()) and bottom >= 0:
        raise ValueError(
            f"the table cannot represent negative weights: its lowest level is {bottom:g} uS"
        )
    inf = torch.tensor(float("inf"), dtype=cdtype, device=w.device)
    if rule == "max":
        up = torch.where(w_max > 0, top / w_max, inf)
        down = torch.where(w_min < 0, bottom / w_min, inf)
        scale = torch.minimum(up, down)  # inf for an all-zero row
        clipped = 0.0
    else:
        # A symmetric clip c on |w| lands on the outermost level of the side(s) in use.
        mixed = min(top, -bottom)
        reach = torch.where(
            w_min >= 0,
            torch.full_like(w_max, top),
            torch.where(w_max <= 0, torch.full_like(w_max, -bottom), torch.full_like(w_max, mixed)),
        )
        abs_max = torch.maximum(w_max.abs(), w_min.abs())
        if rule == "percentile":
            clip = _percentile_abs(w, percentile).to(cdtype)
        else:
            clip = _mse_clip(w, quantizer, reach, abs_max)
        scale = torch.where(clip > 0, reach / clip, inf)
    scale = torch.where(torch.isfinite(scale) & (scale > 0), scale, torch.ones_like(scale))
    if rule != "max":
        x_us = w.to(cdtype) * scale[:, None]
        clipped = float(((x_us > top) | (x_us < bottom)).sum()) / w.numel()
    if per_channel and weights.dim() > 0:
        scale = scale.reshape((weights.shape[0],) + (1,) * (weights.dim() - 1))
    else:
        scale = scale.reshape(())
    return Scaling(scale=scale, clipped_fraction=clipped)


def raise_not_finite(weights: Tensor) -> None:
    """Raise the ``ValueError`` for weights with NaN or infinite entries."""
    n_nan = int(torch.isnan(weights).sum())
    n_inf = int(torch.isinf(weights).sum())
    raise ValueError(
        f"weights must be finite, got {n_nan} NaN and {n_inf} infinite value(s) in a "
        f"tensor of shape {tuple(weights.shape)}"
    )


def _percentile_abs(w: Tensor, percentile: float) -> Tensor:
    """Per row of ``w``, the ``percentile``-th percentile of ``|w|`` (nearest rank)."""
    m = w.shape[1]
    k = min(m, max(1, math.ceil(percentile / 100.0 * m)))
    return torch.kthvalue(w.abs(), k, dim=1).values


def _mse_clip(w: Tensor, quantizer: LevelQuantizer, reach: Tensor, abs_max: Tensor) -> Tensor:
    """Per row of ``w``, the clip (weight units) minimizing the quantization MSE.

    Clip candidates are ratios of the row's ``max|w|``: a coarse grid on (0, 1], then
    ``MSE_REFINEMENTS`` finer grids around the best candidate so far. Every stage
    evaluates all candidates for all rows at once (in blocks of ``MSE_BLOCK``).
    """
    cdtype = reach.dtype
    lo = torch.zeros_like(abs_max)
    hi = torch.ones_like(abs_max)
    steps = MSE_COARSE_STEPS
    best_ratio = hi.clone()
    for stage in range(1 + MSE_REFINEMENTS):
        grid = torch.linspace(0, 1, steps + 1, dtype=cdtype, device=w.device)[1:]
        if stage > 0:
            grid = torch.linspace(0, 1, steps, dtype=cdtype, device=w.device)
        ratios = lo[:, None] + (hi - lo)[:, None] * grid[None, :]  # [C, K]
        ratios = ratios.clamp(min=1e-6)
        clips = ratios * abs_max.clamp(min=torch.finfo(cdtype).tiny)[:, None]
        errors = _quantization_errors(w, quantizer, reach[:, None] / clips)
        best = errors.argmin(dim=1)
        best_ratio = ratios.gather(1, best[:, None])[:, 0]
        step = (hi - lo) / (steps if stage == 0 else steps - 1)
        lo = (best_ratio - step).clamp(min=0)
        hi = (best_ratio + step).clamp(max=1)
        steps = MSE_FINE_STEPS
    return best_ratio * abs_max


def _quantization_errors(w: Tensor, quantizer: LevelQuantizer, scales: Tensor) -> Tensor:
    """Squared quantization error per row and candidate scale.

    Args:
        w: ``[C, m]`` weights.
        quantizer: the level lookup.
        scales: ``[C, K]`` candidate scales (microsiemens per weight unit).

    Returns:
        ``[C, K]`` sums over each row of ``(w - Q(w * s) / s) ** 2``.
    """
    cdtype = scales.dtype
    n_rows, m = w.shape
    k = scales.shape[1]
    errors = torch.zeros(n_rows, k, dtype=cdtype, device=w.device)
    cols = max(1, min(m, MSE_BLOCK // k))
    rows = max(1, MSE_BLOCK // (k * cols))
    for r0 in range(0, n_rows, rows):
        s = scales[r0:r0 + rows, None, :]  # [r, 1, K]
        for c0 in range(0, m, cols):
            x = w[r0:r0 + rows, c0:c0 + cols].to(cdtype)[:, :, None]  # [r, c, 1]
            x_us = x * s
            q = quantizer.nearest_levels(x_us)
            errors[r0:r0 + rows] += ((q - x_us) / s).square_().sum(dim=1)
    return errors
