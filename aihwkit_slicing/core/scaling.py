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
  Given a :class:`LevelNoise` (the expected device error of every level, see
  :func:`aihwkit_slicing.design.encodings.level_noise`), the clip minimizes quantization
  error *plus* expected device error: device noise is fixed in microsiemens, so a
  smaller clip (a larger scale) makes it smaller in weight units, at the price of
  clipping more weights.

Each rule works per tensor or per output channel (``per_channel=True``: one scale per
row of the ``[out, in]`` weight aihwkit hands the converter, i.e. per index of the
first dimension).

A row (or tensor) of zeros has no scale of its own. As aihwkit's converters do, it is
scaled as if its largest ``|w|`` were :data:`ZERO_ROW_MAX`: its devices hold the level
nearest zero and read back, noise included, as weights of the order of
``ZERO_ROW_MAX x noise / level range``, i.e. zero. (A scale of 1 uS per weight unit would
read their programming noise in microsiemens as weights.)
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Optional, Tuple

import torch
from torch import Tensor

from aihwkit_slicing.core.quantize import LevelNoise, LevelQuantizer, compute_dtype

__all__ = ["SCALE_RULES", "LevelNoise", "Scaling", "compute_scaling", "raise_not_finite",
           "validate_rule"]

SCALE_RULES = ("max", "percentile", "mse")

#: The largest ``|w|`` (weight units) a row of zeros is scaled as if it had (aihwkit's
#: converters clip ``max|w|`` at the same value).
ZERO_ROW_MAX = 1e-7

#: Relative distance beyond an outermost level below which a weight counts as on it
#: (not clipped): covers the rounding of ``clip * (level / clip)``.
CLIP_TOLERANCE = 1e-6

#: Candidate clip ratios (of max|w|) of the first stage of the MSE search (fewer for
#: tables with many levels, down to MSE_FINE_STEPS, to bound the work).
MSE_COARSE_STEPS = 8
#: Candidates per refinement stage, and the number of refinement stages.
MSE_FINE_STEPS = 5
MSE_REFINEMENTS = 4
#: Rows x candidates x levels of work per search stage the coarse grid aims at.
MSE_STAGE_WORK = 2**24
#: Weights per block of rows whose clips are searched together (the search's
#: temporaries are a few times this, not a few times the weights).
CLIP_BLOCK_WEIGHTS = 2**20
#: Rows x candidates x levels evaluated at once in the MSE search.
MSE_BLOCK = 2**22
#: How much faster a weight-by-weight evaluation on evenly spaced levels is than a
#: step of the sorted search (measured on the CPU: about 4).
DIRECT_SPEEDUP = 4.0
#: ... and how much slower it is with level noise or uneven levels (gathers per weight).
DIRECT_SLOWDOWN = 1.0
#: Weights per row (or per tensor) the MSE search looks at; longer rows are
#: subsampled evenly (the clip of 2**20 samples is as good as that of all).
MSE_MAX_SAMPLES = 2**20


@dataclass
class Scaling:
    """Result of a scaling rule.

    Attributes:
        scale: microsiemens per weight unit; a 0-d tensor, or ``[C, 1, ...]`` per
            channel. In the compute dtype (float32, or float64 for float64 weights).
        clipped_fraction: fraction of the non-zero weights whose ``w * scale`` lies
            beyond the highest or below the lowest level (they saturate there).
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
    level_noise: Optional[LevelNoise] = None,
) -> Scaling:
    """Compute the scale that maps ``weights`` onto the quantizer's levels.

    Args:
        weights: finite weights, any shape (non-empty).
        quantizer: the table's level lookup.
        rule: one of :data:`SCALE_RULES`.
        per_channel: one scale per index of the first dimension.
        percentile: percentile of ``|w|`` that lands on the outermost level (rule
            ``"percentile"`` only), in (0, 100].
        level_noise: expected device error per level (rule ``"mse"`` only): the clip
            then minimizes quantization plus device error.

    Raises:
        ValueError: if ``weights`` holds NaN or infinite values, or signs the table
            cannot represent.
    """
    cdtype = compute_dtype(weights.dtype)
    top, bottom = float(quantizer.table.levels[-1]), float(quantizer.table.levels[0])
    w = weights.reshape(weights.shape[0], -1) if per_channel and weights.dim() > 0 else (
        weights.reshape(1, -1)
    )
    # (amin and amax separately: aminmax along a dimension is several times slower)
    w_min, w_max = w.amin(dim=1).to(cdtype), w.amax(dim=1).to(cdtype)
    inf = torch.tensor(float("inf"), dtype=cdtype, device=w.device)
    if rule == "max":
        up = torch.where(w_max > 0, top / w_max, inf)
        down = torch.where(w_min < 0, bottom / w_min, inf)
        scale = torch.minimum(up, down)  # inf for an all-zero row
    else:
        # A symmetric clip c on |w| lands on the outermost level of the side(s) in use.
        mixed = min(top, -bottom)
        reach = torch.where(
            w_min >= 0,
            torch.full_like(w_max, top),
            torch.where(w_max <= 0, torch.full_like(w_max, -bottom), torch.full_like(w_max, mixed)),
        )
        abs_max = torch.maximum(w_max.abs(), w_min.abs()).nan_to_num(nan=0.0, posinf=0.0)
        clip = _clips_by_row_block(w, rule, quantizer, reach, abs_max, percentile,
                                   level_noise).to(cdtype)
        scale = torch.where(clip > 0, reach / clip, inf)
    # a row of zeros (or of nothing the rule could see): see ZERO_ROW_MAX
    zero_row_scale = max(top, -bottom) / ZERO_ROW_MAX
    scale = torch.where(torch.isfinite(scale) & (scale > 0), scale,
                        torch.full_like(scale, zero_row_scale))
    # Everything the host needs, in one transfer (one synchronisation on a GPU): the
    # extremes (finite?), the signs in use, and the clip counts.
    checks = [w_min.min().double(), w_max.max().double(), (w_max > 0).any().double(),
              (w_min < 0).any().double()]
    if rule != "max":
        checks += list(_clip_counts(w, scale, bottom, top))
    values = torch.stack(checks).tolist()
    low, high, positive, negative = values[:4]
    if not (math.isfinite(low) and math.isfinite(high)):
        raise_not_finite(weights)
    if positive and top <= 0:
        raise ValueError(
            f"the table cannot represent positive weights: its highest level is {top:g} uS"
        )
    if negative and bottom >= 0:
        raise ValueError(
            f"the table cannot represent negative weights: its lowest level is {bottom:g} uS"
        )
    clipped = 0.0 if rule == "max" else values[4] / max(1.0, values[5])
    if per_channel and weights.dim() > 0:
        scale = scale.reshape((weights.shape[0],) + (1,) * (weights.dim() - 1))
    else:
        scale = scale.reshape(())
    return Scaling(scale=scale, clipped_fraction=clipped)


def _clip_counts(w: Tensor, scale: Tensor, bottom: float, top: float) -> Tuple[Tensor, Tensor]:
    """How many non-zero entries of ``w`` (rows scaled by ``scale``, in uS) lie above the
    highest level ``top`` or below the lowest level ``bottom``, and how many are non-zero
    (0-d tensors on ``w``'s device: the caller fetches them with its other checks).

    Zeros are left out, like the clip itself: zero padding must not change it. A weight
    within a relative :data:`CLIP_TOLERANCE` of an outermost level lands on that level
    (the clip itself maps there, up to rounding).
    """
    scaled = w.to(scale.dtype) * scale[:, None]
    high, low = top * (1 + CLIP_TOLERANCE), bottom * (1 + CLIP_TOLERANCE)
    beyond = ((scaled > high) | (scaled < low)).sum().double()
    return beyond, w.count_nonzero().double()


def raise_not_finite(weights: Tensor) -> None:
    """Raise the ``ValueError`` for weights with NaN or infinite entries."""
    n_nan = int(torch.isnan(weights).sum())
    n_inf = int(torch.isinf(weights).sum())
    raise ValueError(
        f"weights must be finite, got {n_nan} NaN and {n_inf} infinite value(s) in a "
        f"tensor of shape {tuple(weights.shape)}"
    )


def _clips_by_row_block(w: Tensor, rule: str, quantizer: LevelQuantizer, reach: Tensor,
                        abs_max: Tensor, percentile: float,
                        level_noise: Optional[LevelNoise]) -> Tensor:
    """The clip of every row, computed on blocks of rows of about
    :data:`CLIP_BLOCK_WEIGHTS` weights, so that the search's temporaries (sorted copies,
    prefix sums) stay small next to the weights. Rows are independent: the result does
    not depend on the blocks. Non-finite weights count as zero here; they raise once
    the host sees them (see :func:`compute_scaling`)."""
    rows, m = w.shape
    per_block = max(1, CLIP_BLOCK_WEIGHTS // max(1, m))
    coarse = max(MSE_FINE_STEPS, min(MSE_COARSE_STEPS,
                                     MSE_STAGE_WORK // (rows * quantizer.table.n_levels)))
    clips = []
    for r0 in range(0, rows, per_block):
        r1 = min(rows, r0 + per_block)
        block = w[r0:r1].nan_to_num(nan=0.0, posinf=0.0, neginf=0.0)
        if rule == "percentile":
            clips.append(_percentile_abs(block, percentile))
        else:
            clips.append(_mse_clip(block, quantizer, reach[r0:r1], abs_max[r0:r1],
                                   level_noise, coarse).to(block.dtype))
    return torch.cat(clips)


def _percentile_abs(w: Tensor, percentile: float) -> Tensor:
    """Per row of ``w``, the ``percentile``-th percentile of the non-zero ``|w|``.

    Nearest rank; zeros are left out, so zero padding (the IR-drop tile pads the
    weights it converts) does not move the clip. A row of zeros gives 0.
    """
    a = w.abs()
    nonzero = (a > 0).sum(dim=1)
    rank = torch.ceil(nonzero.double() * (percentile / 100.0)).long().clamp(min=1)
    ascending = torch.sort(a, dim=1).values  # zeros first
    index = (w.shape[1] - nonzero + rank - 1).clamp(0, w.shape[1] - 1)
    value = ascending.gather(1, index[:, None])[:, 0]
    return torch.where(nonzero > 0, value, torch.zeros_like(value))


def _mse_clip(w: Tensor, quantizer: LevelQuantizer, reach: Tensor, abs_max: Tensor,
              level_noise: Optional[LevelNoise] = None, coarse: int = MSE_COARSE_STEPS
              ) -> Tensor:
    """Per row of ``w``, the clip (weight units) minimizing the quantization MSE.

    Clip candidates are ratios of the row's ``max|w|``: a grid of up to
    ``coarse`` (at most :data:`MSE_COARSE_STEPS`) on (0, 1], then :data:`MSE_REFINEMENTS` grids of
    :data:`MSE_FINE_STEPS` around the best candidate so far. All candidates of all
    rows are evaluated at once, by :class:`_SortedErrors` (``O(levels x log m)`` per row
    and candidate) or :class:`_DirectErrors` (``O(m)``), whichever costs less; both
    compute the same objective.
    """
    cdtype = reach.dtype
    sorted_cost = quantizer.table.n_levels * max(1.0, math.log2(w.shape[1]))
    if quantizer.uniform_step is not None and level_noise is None:
        sorted_cost *= DIRECT_SPEEDUP
    else:
        sorted_cost /= DIRECT_SLOWDOWN
    if w.shape[1] > sorted_cost:  # (DIRECT_SPEEDUP read at call time: tests vary it)
        errors: Any = _SortedErrors(w, quantizer, level_noise)
    else:
        errors = _DirectErrors(w, quantizer, level_noise)
    lo = torch.zeros_like(abs_max, dtype=torch.float64)
    hi = torch.ones_like(abs_max, dtype=torch.float64)
    safe_max = abs_max.double().clamp(min=torch.finfo(torch.float64).tiny)
    reach = reach.double()
    best_ratio = hi.clone()
    for stage in range(1 + MSE_REFINEMENTS):
        if stage == 0:
            grid = torch.linspace(0, 1, coarse + 1, dtype=torch.float64, device=w.device)[1:]
        else:
            grid = torch.linspace(0, 1, MSE_FINE_STEPS, dtype=torch.float64, device=w.device)
        ratios = (lo[:, None] + (hi - lo)[:, None] * grid[None, :]).clamp(min=1e-6)  # [C, K]
        mse = errors(reach[:, None] / (ratios * safe_max[:, None]))
        best_ratio = ratios.gather(1, mse.argmin(dim=1, keepdim=True))[:, 0]
        step = (hi - lo) / (len(grid) - (0 if stage == 0 else 1))
        lo = (best_ratio - step).clamp(min=0)
        hi = (best_ratio + step).clamp(max=1)
    return (best_ratio * safe_max).to(cdtype)


class _DirectErrors:
    """Squared quantization error of every row of ``w`` for many candidate scales,
    weight by weight: for short rows and tables with many levels.

    For a scale ``s`` every weight is rounded to its level and its error
    ``(w s - l)**2 / s**2`` summed, plus the :class:`LevelNoise` terms (see
    :class:`_SortedErrors`). A candidate costs ``O(m)`` per row, against
    ``O(levels x log m)`` for the sorted search. On evenly spaced levels without level
    noise the level is ``round((x - l_0) / step)``, a few float operations; otherwise
    :meth:`LevelQuantizer.level_index`, the converter's own assignment. (The two differ
    only for weights exactly halfway between levels, which does not move the clip.)
    Exact zeros are left out.
    """

    def __init__(self, w: Tensor, quantizer: LevelQuantizer,
                 level_noise: Optional[LevelNoise] = None):
        self.quantizer = quantizer
        cdtype = compute_dtype(w.dtype)
        self.w = w.to(cdtype)
        self.zeros = (self.w == 0).sum(dim=1, dtype=torch.float64)
        self.nonzero = (self.w.shape[1] - self.zeros).clamp(min=1)
        levels = quantizer.lookup_tensors(self.w.dtype, w.device)[1]
        self.levels = levels
        n_levels = levels.numel()
        if level_noise is not None and len(level_noise.mean) != n_levels:
            raise ValueError(
                f"level_noise has {len(level_noise.mean)} levels, the table {n_levels}")
        noise = quantizer.noise_tensors(level_noise, cdtype, w.device)
        self.mu, self.msq = noise if noise is not None else (None, None)
        # evenly spaced levels: round (midpoint boundaries) or floor and compare with
        # the one boundary between the two neighbouring levels (noise-aware ones)
        self.step = quantizer.level_step
        self.midpoints = level_noise is None and quantizer.uniform_step is not None
        self.boundaries = quantizer.lookup_tensors(self.w.dtype, w.device)[0]
        host_levels = quantizer.table.levels  # (host values: no device synchronisation)
        zero_index = int(abs(host_levels).argmin())
        zero = float(host_levels[zero_index])
        self.low = float(host_levels[0])
        self.zero_error = zero**2 + (0.0 if level_noise is None else
                                     2 * zero * level_noise.mean[zero_index]
                                     + level_noise.mean_square[zero_index])

    def __call__(self, scales: Tensor) -> Tensor:
        """``[C, K]`` candidate scales (uS per weight unit) -> ``[C, K]`` mean squared errors."""
        rows, k = scales.shape
        m = self.w.shape[1]
        out = torch.empty(rows, k, dtype=torch.float64, device=scales.device)
        block = max(1, MSE_BLOCK // (k * m))
        for r0 in range(0, rows, block):
            r1 = min(rows, r0 + block)
            # (the scales of an all-zero row are huge: keep them finite, 0 * s = 0)
            s = scales[r0:r1].clamp(max=torch.finfo(self.w.dtype).max).to(self.w.dtype)
            x = self.w[r0:r1, None, :] * s[:, :, None]  # [n, K, m] in uS
            if self.midpoints:
                low, step = self.low, self.step
                diff = x.sub(low).div_(step).round_().clamp_(0, len(self.levels) - 1)
                diff = diff.mul_(-step).add_(x).sub_(low)  # x - level
                error = diff.square_()
            else:
                # (index_select on a flat index: several times faster than x[index])
                if self.step is not None:
                    low = self.low
                    index = x.sub(low).div_(self.step).floor_().clamp_(
                        0, len(self.levels) - 2).int().reshape(-1)
                    index += x.reshape(-1) > self.boundaries.index_select(0, index)
                else:
                    index = self.quantizer.level_index(x).reshape(-1)
                diff = x - self.levels.index_select(0, index).reshape(x.shape)
                if self.mu is not None:
                    mu = self.mu.index_select(0, index).reshape(x.shape)
                    msq = self.msq.index_select(0, index).reshape(x.shape)
                    error = diff.sub(mu, alpha=2).mul_(diff).add_(msq)
                else:
                    error = diff.square_()
            total = error.sum(dim=2).double()  # (sums of <= 2**20 terms: float32 will do)
            # a zero weight lands on the level nearest zero: leave it out
            total -= self.zeros[r0:r1, None] * self.zero_error
            out[r0:r1] = total / scales[r0:r1].double().square()
        return out.clamp_(min=0) / self.nonzero[:, None]


class _SortedErrors:
    """Squared quantization error of every row of ``w`` for many candidate scales.

    The weights of each row are sorted once, with prefix sums of ``w`` and ``w**2``
    (float64). For a scale ``s`` the weights that round to level ``l_j`` form one
    contiguous run of the sorted row (between the midpoints divided by ``s``, found by
    ``searchsorted``), so their squared error ``sum (w - l_j / s)**2`` follows from
    three prefix-sum differences. A candidate costs ``O(levels x log m)`` per row
    instead of a pass over the row; rows longer than :data:`MSE_MAX_SAMPLES` are
    subsampled evenly. Exact zeros are left out of the error (as zero padding must
    not move the clip): their contribution, the level nearest zero, is subtracted.

    With a :class:`LevelNoise`, a weight ``w`` on level ``l_j`` is represented by
    ``(l_j + e) / s`` with ``E[e] = mean_j`` and ``E[e**2] = mean_square_j``, and the
    expected squared error adds ``-2 mean_j / s * (w - l_j / s) + mean_square_j / s**2``.
    """

    def __init__(self, w: Tensor, quantizer: LevelQuantizer,
                 level_noise: Optional[LevelNoise] = None):
        rows, m = w.shape
        if m > MSE_MAX_SAMPLES:
            stride = -(-m // MSE_MAX_SAMPLES)
            w = w[:, ::stride]
        # sort in the weights' own dtype (exact: float64 keeps every value and the order)
        self.sorted = torch.sort(w, dim=1).values.double().contiguous()
        zero = torch.zeros(rows, 1, dtype=torch.float64, device=w.device)
        self.s1 = torch.cat([zero, torch.cumsum(self.sorted, dim=1)], dim=1)
        self.s2 = torch.cat([zero, torch.cumsum(self.sorted.square(), dim=1)], dim=1)
        self.mids, levels = quantizer.lookup_tensors(torch.float64, w.device)[:2]
        self.levels = levels
        self.weight_count = w.shape[1]
        self.zeros = (self.sorted == 0).sum(dim=1).double()
        self.nonzero = (self.weight_count - self.zeros).clamp(min=1)
        zero_index = int(abs(quantizer.table.levels).argmin())  # host values: no sync
        self.zero_level = float(quantizer.table.levels[zero_index])
        n_levels = levels.numel()
        if level_noise is not None and len(level_noise.mean) != n_levels:
            raise ValueError(
                f"level_noise has {len(level_noise.mean)} levels, the table {n_levels}"
            )
        noise = quantizer.noise_tensors(level_noise, torch.float64, w.device)
        zeros = torch.zeros_like(levels)
        self.mu, self.msq = noise if noise is not None else (zeros, zeros)
        self.zero_mu = level_noise.mean[zero_index] if level_noise else 0.0
        self.zero_msq = level_noise.mean_square[zero_index] if level_noise else 0.0

    def __call__(self, scales: Tensor) -> Tensor:
        """``[C, K]`` candidate scales (uS per weight unit) -> ``[C, K]`` mean squared errors."""
        rows, k = scales.shape
        n_levels = self.levels.numel()
        out = torch.empty(rows, k, dtype=torch.float64, device=scales.device)
        block = max(1, MSE_BLOCK // (k * n_levels))
        for r0 in range(0, rows, block):
            r1 = min(rows, r0 + block)
            s = scales[r0:r1]
            n = r1 - r0
            bounds = (self.mids[None, None, :] / s[:, :, None]).reshape(n, -1)
            cut = torch.searchsorted(self.sorted[r0:r1], bounds).reshape(n, k, n_levels - 1)
            edges = torch.cat([
                torch.zeros(n, k, 1, dtype=cut.dtype, device=cut.device), cut,
                torch.full((n, k, 1), self.weight_count, dtype=cut.dtype, device=cut.device),
            ], dim=2)
            flat = edges.reshape(n, -1)
            s1 = self.s1[r0:r1].gather(1, flat).reshape(n, k, n_levels + 1)
            s2 = self.s2[r0:r1].gather(1, flat).reshape(n, k, n_levels + 1)
            seg1 = s1[..., 1:] - s1[..., :-1]
            seg2 = s2[..., 1:] - s2[..., :-1]
            count = (edges[..., 1:] - edges[..., :-1]).double()
            q = self.levels[None, None, :] / s[:, :, None]
            mu = self.mu[None, None, :] / s[:, :, None]
            msq = self.msq[None, None, :] / s[:, :, None].square()
            total = (seg2 - 2 * q * seg1 + count * q.square()
                     - 2 * mu * (seg1 - count * q) + count * msq).sum(dim=2)
            q0, mu0 = self.zero_level / s, self.zero_mu / s
            total -= self.zeros[r0:r1, None] * (q0.square() + 2 * mu0 * q0
                                                + self.zero_msq / s.square())
            out[r0:r1] = total
        return out.clamp_(min=0) / self.nonzero[:, None]
