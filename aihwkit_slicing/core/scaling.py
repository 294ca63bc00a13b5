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
  clipping more weights. The search's error evaluators are in
  :mod:`aihwkit_slicing.core.mse_errors`; on the CPU, blocks of rows are searched on
  worker threads (:func:`aihwkit_slicing.core.quantize.run_chunks`), with the same
  result whatever the thread count.

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
from typing import Any, List, Optional, Tuple

import torch
from torch import Tensor

from aihwkit_slicing.core.mse_errors import ClipBounds, DirectErrors, SortedErrors, sort_rows
from aihwkit_slicing.core.quantize import LevelNoise, LevelQuantizer, compute_dtype, run_chunks

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
#: How much faster a weight-by-weight evaluation on evenly spaced levels is than a
#: step of the sorted search (measured on the CPU: about 4).
DIRECT_SPEEDUP = 4.0
#: ... and how much slower it is with level noise or uneven levels (gathers per weight).
DIRECT_SLOWDOWN = 1.0
#: On the CPU, the weight-by-weight search evaluates pieces of at most this many
#: (weight, candidate) pairs at a time, which stay in cache.
MSE_PIECE = 2**16
#: On the CPU, rows of at most this many weights are searched in blocks of rows spread
#: over threads (:func:`aihwkit_slicing.core.quantize.run_chunks`); longer rows one
#: block after another. Also the size of the blocks the clip counts are taken on.
MSE_TASK_WEIGHTS = 2**17
#: Weights per block of the threaded search, about (see :func:`row_blocks`). A block
#: costs a fixed price in Python and in small operations, which threads pay one at a
#: time (the interpreter lock): smaller blocks on 2 threads were slower than one thread
#: (1536 x 384 weights: 41 ms in blocks of 2**17 weights, 26 ms in one block; 3000 x
#: 5000: the scaling 1.7x faster in blocks of 2**20 than of 2**17). Rows are
#: independent: the clips do not depend on the blocks.
MSE_TASK_BLOCK_WEIGHTS = 2**20
#: Stages of the weight-by-weight search that bound candidates (:class:`ClipBounds`):
#: the coarse grid and the first refinement, where heavily clipped candidates can be
#: ruled out; later grids are too fine for the bounds to rule any out.
BOUND_STAGES = 2


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
    top, bottom = float(quantizer.host_levels[-1]), float(quantizer.host_levels[0])
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
    high, low = top * (1 + CLIP_TOLERANCE), bottom * (1 + CLIP_TOLERANCE)
    if w.device.type != "cpu":
        scaled = w.to(scale.dtype) * scale[:, None]
        beyond = ((scaled > high) | (scaled < low)).sum().double()
        return beyond, w.count_nonzero().double()
    # On the CPU, blocks of rows (or of a single long row) spread over threads: the
    # counts are integers, the same whatever the blocks.
    rows, m = w.shape
    size = MSE_TASK_WEIGHTS
    per = max(1, size // max(1, m))
    blocks = [(r0, min(rows, r0 + per), 0, m) for r0 in range(0, rows, per)] if m <= size \
        else [(r, r + 1, c0, min(m, c0 + size)) for r in range(rows)
              for c0 in range(0, m, size)]
    counts = torch.zeros(len(blocks), 2, dtype=torch.int64)
    size = max((r1 - r0) * (c1 - c0) for r0, r1, c0, c1 in blocks)

    def count(i: int, scratch: Tensor) -> None:
        r0, r1, c0, c1 = blocks[i]
        part = w[r0:r1, c0:c1]
        scaled = torch.mul(part, scale[r0:r1, None], out=scratch[:part.numel()].view(
            part.shape))  # (in the scale's dtype, as w.to(scale.dtype) * scale)
        counts[i, 0] = (scaled > high).sum() + (scaled < low).sum()  # (high > low)
        counts[i, 1] = part.count_nonzero()

    run_chunks(len(blocks), count, lambda: torch.empty(size, dtype=scale.dtype), w.device)
    totals = counts.sum(dim=0).double()
    return totals[0], totals[1]


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
    # (from the whole tensor's rows, before any block: the blocks do not change it, but
    # a row of a tensor with rows x levels above MSE_STAGE_WORK / MSE_COARSE_STEPS gets
    # a coarser first grid, and may get another clip, than the same row in a smaller one)
    coarse = max(MSE_FINE_STEPS, min(MSE_COARSE_STEPS,
                                     MSE_STAGE_WORK // (rows * quantizer.table.n_levels)))
    if w.device.type == "cpu" and m <= MSE_TASK_WEIGHTS:
        # Rows are independent, and so is every (row, candidate) error: the same
        # search on blocks of rows, spread over threads, gives the same clips.
        blocks = row_blocks(rows, m)
        result = torch.empty(rows, dtype=w.dtype)

        def search(i: int, _: Any) -> None:
            r0, r1 = blocks[i]
            block = w[r0:r1].nan_to_num(nan=0.0, posinf=0.0, neginf=0.0)
            if rule == "percentile":
                result[r0:r1] = _percentile_abs(block, percentile)
            else:
                result[r0:r1] = _mse_clip(block, quantizer, reach[r0:r1], abs_max[r0:r1],
                                          level_noise, coarse, piece=MSE_PIECE
                                          ).to(block.dtype)

        run_chunks(len(blocks), search, lambda: None, w.device)
        return result
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


def row_blocks(rows: int, m: int) -> List[Tuple[int, int]]:
    """The blocks ``(first row, end row)`` of the threaded clip search of ``rows`` rows
    of ``m`` weights: as many blocks as :data:`MSE_TASK_BLOCK_WEIGHTS` weights need,
    their number rounded up to a multiple of torch's threads (at most one per row), and
    rows shared out evenly (block sizes differ by at most one row), so every thread gets
    about the same work. A block holds at most one row more than
    :data:`MSE_TASK_BLOCK_WEIGHTS` weights; a layer of at most that many weights is one
    block."""
    if rows <= 0:
        return []
    threads = torch.get_num_threads()
    tasks = -(-(rows * max(1, m)) // MSE_TASK_BLOCK_WEIGHTS)
    if tasks > 1:
        tasks = min(rows, -(-tasks // threads) * threads)
    tasks = max(1, tasks)
    edges = [rows * i // tasks for i in range(tasks + 1)]
    return [(edges[i], edges[i + 1]) for i in range(tasks)]


def _percentile_abs(w: Tensor, percentile: float) -> Tensor:
    """Per row of ``w``, the ``percentile``-th percentile of the non-zero ``|w|``.

    Nearest rank; zeros are left out, so zero padding (the IR-drop tile pads the
    weights it converts) does not move the clip. A row of zeros gives 0.
    """
    a = w.abs()
    nonzero = (a > 0).sum(dim=1)
    rank = torch.ceil(nonzero.double() * (percentile / 100.0)).long().clamp(min=1)
    ascending = sort_rows(a).to(a.dtype)  # zeros first
    index = (w.shape[1] - nonzero + rank - 1).clamp(0, w.shape[1] - 1)
    value = ascending.gather(1, index[:, None])[:, 0]
    return torch.where(nonzero > 0, value, torch.zeros_like(value))


def _weight_by_weight(m: int, quantizer: LevelQuantizer,
                      level_noise: Optional[LevelNoise]) -> bool:
    """Whether the MSE search on rows of ``m`` weights evaluates candidates weight by
    weight (:class:`DirectErrors`) rather than on sorted rows (:class:`SortedErrors`),
    whichever costs less; both compute the same objective."""
    sorted_cost = quantizer.table.n_levels * max(1.0, math.log2(m))
    if quantizer.uniform_step is not None and level_noise is None:
        sorted_cost *= DIRECT_SPEEDUP
    else:
        sorted_cost /= DIRECT_SLOWDOWN
    return not m > sorted_cost  # (DIRECT_SPEEDUP read at call time: tests vary it)


def _mse_clip(w: Tensor, quantizer: LevelQuantizer, reach: Tensor, abs_max: Tensor,
              level_noise: Optional[LevelNoise] = None, coarse: int = MSE_COARSE_STEPS,
              piece: Optional[int] = None) -> Tensor:
    """Per row of ``w``, the clip (weight units) minimizing the quantization MSE.

    Clip candidates are ratios of the row's ``max|w|``: a grid of up to
    ``coarse`` (at most :data:`MSE_COARSE_STEPS`) on (0, 1], then :data:`MSE_REFINEMENTS` grids of
    :data:`MSE_FINE_STEPS` around the best candidate so far. All candidates of all
    rows are evaluated at once, by :class:`SortedErrors` (``O(levels x log m)`` per row
    and candidate) or :class:`DirectErrors` (``O(m)``), whichever costs less; both
    compute the same objective.

    With ``piece`` (see :class:`DirectErrors`), the weight-by-weight search skips
    work that cannot change the argmin:

    * a candidate ratio a row has already evaluated in an earlier stage is not
      evaluated again: its error is a function of the row and the ratio alone
      (refinement grids often repeat the neighbours of the best candidate exactly);
    * on evenly spaced levels with a zero level (no level noise), a candidate whose
      error provably exceeds another's is not evaluated (:class:`ClipBounds`: a lower
      bound from the clipped weights alone, an upper bound from the clipped weights
      plus at most half a step per other weight, both with a margin for the
      rounding of the evaluation), and a row with a single candidate left takes it
      unevaluated. Every candidate left out has an error above the minimum, so the
      argmin is the one of the full grid.
    """
    cdtype = reach.dtype
    if not _weight_by_weight(w.shape[1], quantizer, level_noise):
        errors: Any = SortedErrors(w, quantizer, level_noise)
    else:
        errors = DirectErrors(w, quantizer, level_noise, piece)
    lo = torch.zeros_like(abs_max, dtype=torch.float64)
    hi = torch.ones_like(abs_max, dtype=torch.float64)
    safe_max = abs_max.double().clamp(min=torch.finfo(torch.float64).tiny)
    reach = reach.double()
    best_ratio = hi.clone()
    skipping = piece is not None and isinstance(errors, DirectErrors)
    bounds = ClipBounds(w, quantizer) if skipping and ClipBounds.applies(
        quantizer, level_noise) else None
    if skipping:  # every ratio evaluated so far, and its error (NaN: not evaluated)
        total = coarse + MSE_REFINEMENTS * MSE_FINE_STEPS
        seen_ratios = torch.full((w.shape[0], total), float("nan"), dtype=torch.float64)
        seen_errors = torch.full_like(seen_ratios, float("nan"))
        n_seen = 0
    for stage in range(1 + MSE_REFINEMENTS):
        if stage == 0:
            grid = torch.linspace(0, 1, coarse + 1, dtype=torch.float64, device=w.device)[1:]
        else:
            grid = torch.linspace(0, 1, MSE_FINE_STEPS, dtype=torch.float64, device=w.device)
        ratios = (lo[:, None] + (hi - lo)[:, None] * grid[None, :]).clamp(min=1e-6)  # [C, K]
        scales = reach[:, None] / (ratios * safe_max[:, None])
        if not skipping:
            mse = errors(scales)
        else:
            k = ratios.shape[1]
            need = None
            if n_seen:
                # (NaN errors never match: a ratio not evaluated is not known)
                same = ratios[:, :, None] == seen_ratios[:, None, :n_seen]
                same &= seen_errors[:, None, :n_seen] == seen_errors[:, None, :n_seen]
                known = same.any(dim=2)
                need = ~known
            if bounds is not None and stage < BOUND_STAGES:
                lower, upper = bounds(scales)
                # (NaN bounds keep a candidate)
                plausible = ~(lower > upper.min(dim=1, keepdim=True).values)
                alone = plausible.sum(dim=1, keepdim=True) == 1
                kept = plausible & ~alone
                need = kept if need is None else need & kept
            mse = errors(scales, need=need)
            if n_seen:
                first = same.byte().argmax(dim=2)  # (any equal one: equal errors)
                mse = torch.where(known, seen_errors[:, :n_seen].gather(1, first), mse)
                if need is not None:
                    mse.masked_fill_(~(need | known), float("nan"))
            elif need is not None:
                mse.masked_fill_(~need, float("nan"))
            seen_ratios[:, n_seen:n_seen + k] = ratios
            seen_errors[:, n_seen:n_seen + k] = mse
            n_seen += k
            if bounds is not None and stage < BOUND_STAGES:
                # a candidate left out lies above the minimum; a lone one is the argmin
                mse = mse.masked_fill(~plausible, float("inf")).masked_fill_(
                    alone & plausible, 0.0)
        best_ratio = ratios.gather(1, mse.argmin(dim=1, keepdim=True))[:, 0]
        step = (hi - lo) / (len(grid) - (0 if stage == 0 else 1))
        lo = (best_ratio - step).clamp(min=0)
        hi = (best_ratio + step).clamp(max=1)
    return (best_ratio * safe_max).to(cdtype)
