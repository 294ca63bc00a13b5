"""The MSE clip search's error evaluators: the squared quantization error of every row
of a weight matrix for many candidate scales at once.

:func:`aihwkit_slicing.core.scaling.compute_scaling` searches the clip of the ``"mse"``
rule over grids of candidates; each grid is evaluated by one of these:

* :class:`SortedErrors`: rows sorted once, with prefix sums; ``O(levels x log m)`` per
  row and candidate;
* :class:`DirectErrors`: weight by weight, ``O(m)`` per row and candidate, on
  cache-sized pieces where the search skips candidates;
* :class:`ClipBounds`: cheap lower and upper bounds on :class:`DirectErrors`' error,
  with which the search leaves out candidates that provably cannot be the argmin.

All three compute (or bound) the same objective; :func:`sort_rows` is the values-only
row sort they and the percentile rule share.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from aihwkit_slicing.core.quantize import LevelNoise, LevelQuantizer, compute_dtype

__all__ = ["ClipBounds", "DirectErrors", "SortedErrors", "sort_rows"]

#: Rows x candidates x levels evaluated at once in the MSE search.
MSE_BLOCK = 2**22
#: Weights per row (or per tensor) the MSE search looks at; longer rows are
#: subsampled evenly (the clip of 2**20 samples is as good as that of all).
MSE_MAX_SAMPLES = 2**20
#: Largest and smallest weights of each row the bounds look at.
CLIP_BOUND_TAIL = 64


def sort_rows(w: Tensor) -> Tensor:
    """Every row of the 2-d ``w`` sorted ascending (the values only).

    On the CPU, numpy's sort (SIMD, values only): many times faster than
    :func:`torch.sort`, which also sorts indices. The same values in the same order
    (only equal values may swap places, which are equal but for the sign of zero), in
    the weights' dtype, or float32 for half-precision weights (converted exactly).
    """
    if w.device.type == "cpu" and w.dtype in (torch.float16, torch.bfloat16,
                                              torch.float32, torch.float64):
        values = w.detach()
        if values.dtype not in (torch.float32, torch.float64):
            values = values.float()
        # (a view of the CPU tensor through DLPack: no copy, no read by the host)
        return torch.from_numpy(np.sort(np.ascontiguousarray(np.from_dlpack(values)), axis=1))
    return torch.sort(w, dim=1).values


class ClipBounds:
    """Bounds on :class:`DirectErrors`' error of every row and candidate scale that
    cost ``O(log t)`` each, from the ``t`` (:data:`CLIP_BOUND_TAIL`) largest and the
    ``t`` smallest weights of each row and their prefix sums (float64): for evenly
    spaced levels with a zero level and no level noise.

    For a scale ``s``, the weights beyond the outermost levels (``w s > top`` or
    ``< bottom``) are clipped: the squared error ``C`` (weight units) of those among
    the tails follows from three prefix sums. Every other weight lies within half a
    step of a level, and a zero weight on the zero level. So, in exact arithmetic, the
    summed error is at least ``C``, and where no clipped weight lies outside the
    tails, at most ``C + m (h / 2s)**2`` (``h`` the step); the mean is over the
    non-zero weights. The evaluation rounds: its ``x = w s`` and levels carry an
    absolute error below ``eps = 8 u (|x| + 3 max|level|)`` (``u`` the unit roundoff
    of its dtype, a few roundings of magnitudes up to these), which may also send a
    weight within ``eps`` of a midpoint to the other level, and its sum of ``m`` terms
    a relative error below ``m u``; the prefix sums and their differences round in
    float64. The bounds returned include all of it with room to spare: the lower
    bound is half of ``C`` less the rounding, the upper one adds 2 % (infinite where
    clipped weights may lie outside the tails).
    """

    @staticmethod
    def applies(quantizer: LevelQuantizer, level_noise: Optional[LevelNoise]) -> bool:
        levels = quantizer.host_levels
        return (level_noise is None and quantizer.uniform_step is not None
                and float(abs(levels).min()) == 0.0)

    def __init__(self, w: Tensor, quantizer: LevelQuantizer):
        rows, m = w.shape
        self.m = m
        ordered = sort_rows(w)
        t = self.t = min(m, CLIP_BOUND_TAIL)
        # the t largest (ascending) and the t smallest (ascending)
        self.upper_tail = ordered[:, m - t:].double().contiguous()
        self.lower_tail = ordered[:, :t].double().contiguous()
        zero = torch.zeros(rows, 1, dtype=torch.float64, device=w.device)
        outside_in = self.upper_tail.flip(1)  # sums of the j largest, of the j smallest
        self.top_s1 = torch.cat([zero, torch.cumsum(outside_in, dim=1)], dim=1)
        self.top_s2 = torch.cat([zero, torch.cumsum(outside_in.square(), dim=1)], dim=1)
        self.bottom_s1 = torch.cat([zero, torch.cumsum(self.lower_tail, dim=1)], dim=1)
        self.bottom_s2 = torch.cat([zero, torch.cumsum(self.lower_tail.square(), dim=1)],
                                   dim=1)
        # the error is a mean over the non-zero weights, as in DirectErrors
        origin = torch.zeros(rows, 1, dtype=ordered.dtype, device=w.device)
        zeros = (torch.searchsorted(ordered, origin, right=True)
                 - torch.searchsorted(ordered, origin))
        self.nonzero = (m - zeros).clamp(min=1).double()
        # (for the rounding of the prefix sums and of the cancellation between them)
        self.square_total = self.top_s2[:, -1:] + self.bottom_s2[:, -1:]
        self.abs_total = self.upper_tail.abs().sum(dim=1, keepdim=True) + \
            self.lower_tail.abs().sum(dim=1, keepdim=True)
        levels = quantizer.host_levels
        self.top, self.bottom = float(levels[-1]), float(levels[0])
        self.step = float(quantizer.uniform_step)
        self.u = float(torch.finfo(compute_dtype(w.dtype)).eps) / 2
        self.level_max = float(abs(levels).max())

    def __call__(self, scales: Tensor) -> Tuple[Tensor, Tensor]:
        """``[C, K]`` scales -> (lower, upper) bounds of the mean squared error."""
        m, t, u = self.m, self.t, self.u
        high = self.top / scales  # weight units
        low = self.bottom / scales
        n_above = t - torch.searchsorted(self.upper_tail, high.contiguous(), right=True)
        n_below = torch.searchsorted(self.lower_tail, low.contiguous())
        sum_above, square_above = self.top_s1.gather(1, n_above), self.top_s2.gather(1, n_above)
        sum_below = self.bottom_s1.gather(1, n_below)
        square_below = self.bottom_s2.gather(1, n_below)
        clipped = ((square_above - 2 * high * sum_above + n_above * high.square())
                   + (square_below - 2 * low * sum_below + n_below * low.square())
                   ).clamp(min=0)  # exact arithmetic, up to float64 rounding
        # the prefix sums and the differences above round in float64
        u64 = float(torch.finfo(torch.float64).eps) / 2
        prefix = (2 * t + 8) * u64 * (2 * self.square_total + 2 * (high.abs() + low.abs())
                                      * self.abs_total + n_above * high.square()
                                      + n_below * low.square())
        # rounding of the evaluation, in weight units (x in uS is w * s)
        eps_in = 8 * u * (4 * self.level_max + self.step) / scales
        eps_clip = 8 * u * 4 * self.level_max / scales  # (plus 8 u of each |d|)
        n_clip = n_above + n_below
        sum_error = m * u
        lower = (1 - sum_error) * (0.5 * (1 - 8 * u) ** 2 * (clipped - prefix)
                                   - n_clip * eps_clip.square())
        upper = (1 + sum_error) * (1.01 * (1 + 8 * u) ** 2 * (clipped + prefix)
                                   + 101 * n_clip * eps_clip.square()
                                   + m * (self.step / (2 * scales) + 3 * eps_in).square())
        if t < m:  # clipped weights beyond a tail: the upper bound does not hold
            upper = upper.masked_fill((n_above == t) | (n_below == t), float("inf"))
        return lower / self.nonzero, 1.02 * upper / self.nonzero


class DirectErrors:
    """Squared quantization error of every row of ``w`` for many candidate scales,
    weight by weight: for short rows and tables with many levels.

    For a scale ``s`` every weight is rounded to its level and its error
    ``(w s - l)**2 / s**2`` summed, plus the :class:`LevelNoise` terms (see
    :class:`SortedErrors`). A candidate costs ``O(m)`` per row, against
    ``O(levels x log m)`` for the sorted search. On evenly spaced levels without level
    noise the level is ``round((x - l_0) / step)``, a few float operations; otherwise
    :meth:`LevelQuantizer.level_index`, the converter's own assignment. (The two differ
    only for weights exactly halfway between levels, which does not move the clip.)
    Exact zeros are left out.
    """

    def __init__(self, w: Tensor, quantizer: LevelQuantizer,
                 level_noise: Optional[LevelNoise] = None, piece: Optional[int] = None):
        self.quantizer = quantizer
        self.piece = piece
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
        host_levels = quantizer.host_levels  # (host values: no device synchronisation)
        zero_index = int(abs(host_levels).argmin())
        zero = float(host_levels[zero_index])
        self.low = float(host_levels[0])
        self.zero_error = zero**2 + (0.0 if level_noise is None else
                                     2 * zero * level_noise.mean[zero_index]
                                     + level_noise.mean_square[zero_index])

    def __call__(self, scales: Tensor, need: Optional[Tensor] = None) -> Tensor:
        """``[C, K]`` candidate scales (uS per weight unit) -> ``[C, K]`` mean squared errors.

        Every (row, candidate) error is computed on its own (elementwise, then a sum
        over the row), so the pieces the work is cut into do not change it: blocks of
        rows of about :data:`MSE_BLOCK` pairs, or with ``piece``, pieces of at most
        ``piece`` (weight, candidate) pairs in reused buffers, where ``need`` (``[C,
        K]`` bool, piece only) may leave pairs out (their entries are then undefined).
        """
        rows, k = scales.shape
        m = self.w.shape[1]
        out = torch.empty(rows, k, dtype=torch.float64, device=scales.device)
        if self.piece is None:
            block = max(1, MSE_BLOCK // (k * m))
            for r0 in range(0, rows, block):
                r1 = min(rows, r0 + block)
                # (the scales of an all-zero row are huge: keep them finite, 0 * s = 0)
                s = scales[r0:r1].clamp(max=torch.finfo(self.w.dtype).max).to(self.w.dtype)
                x = self.w[r0:r1, None, :] * s[:, :, None]  # [n, K, m] in uS
                total = self._row_sums(x, None).double()
                # a zero weight lands on the level nearest zero: leave it out
                total -= self.zeros[r0:r1, None] * self.zero_error
                out[r0:r1] = total / scales[r0:r1].double().square()
            return out.clamp_(min=0) / self.nonzero[:, None]
        pairs = (need if need is not None else torch.ones_like(scales, dtype=torch.bool)
                 ).reshape(-1).nonzero()[:, 0]
        if pairs.numel() == 0:
            return out
        if pairs.numel() == 1:
            # (a sum with one output may be split along the row over torch's threads,
            # which rounds differently: evaluate the pair twice, like any other pair)
            pairs = pairs.repeat(2)
        # (at least two pairs per piece, for the same reason)
        per = max(2, self.piece // m)
        size = min(per, pairs.numel()) * m
        buffers = (torch.empty(size, dtype=self.w.dtype, device=self.w.device),
                   torch.empty(size, dtype=self.w.dtype, device=self.w.device))
        row_of = torch.div(pairs, k, rounding_mode="floor")
        scale = scales.reshape(-1).index_select(0, pairs)
        # (the scales of an all-zero row are huge: keep them finite, 0 * s = 0)
        factor = scale.clamp(max=torch.finfo(self.w.dtype).max).to(self.w.dtype)[:, None]
        sums = torch.empty(pairs.numel(), dtype=self.w.dtype, device=self.w.device)
        for p0 in range(0, pairs.numel(), per):
            n = min(per, pairs.numel() - p0)
            if n == 1:  # (the last piece takes one pair of the one before)
                p0, n = p0 - 1, 2
            x = torch.index_select(self.w, 0, row_of[p0:p0 + n],
                                   out=buffers[0][:n * m].view(n, m))
            x.mul_(factor[p0:p0 + n])  # in uS, as w * s
            self._row_sums(x, buffers[1][:n * m].view(n, m), out=sums[p0:p0 + n])
        total = sums.double()
        total -= self.zeros.index_select(0, row_of) * self.zero_error
        out.view(-1)[pairs] = total / scale.square()
        return out.clamp_(min=0) / self.nonzero[:, None]

    def _row_sums(self, x: Tensor, buffer: Optional[Tensor],
                  out: Optional[Tensor] = None) -> Tensor:
        """The squared error (plus level noise) of every weight of ``x`` (in uS, the
        last dimension a row), summed over the last dimension in ``x``'s dtype."""
        if self.midpoints:
            low, step = self.low, self.step
            diff = x.sub(low) if buffer is None else torch.sub(x, low, out=buffer)
            diff = diff.div_(step).round_().clamp_(0, len(self.levels) - 1)
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
        # (sums of <= 2**20 terms: float32 will do)
        return error.sum(dim=-1) if out is None else torch.sum(error, dim=-1, out=out)


class SortedErrors:
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
        self.sorted = sort_rows(w).double().contiguous()
        zero = torch.zeros(rows, 1, dtype=torch.float64, device=w.device)
        self.s1 = torch.cat([zero, torch.cumsum(self.sorted, dim=1)], dim=1)
        self.s2 = torch.cat([zero, torch.cumsum(self.sorted.square(), dim=1)], dim=1)
        self.mids, levels = quantizer.lookup_tensors(torch.float64, w.device)[:2]
        self.levels = levels
        self.weight_count = w.shape[1]
        self.zeros = (self.sorted == 0).sum(dim=1).double()
        self.nonzero = (self.weight_count - self.zeros).clamp(min=1)
        zero_index = int(abs(quantizer.host_levels).argmin())  # host values: no sync
        self.zero_level = float(quantizer.host_levels[zero_index])
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
