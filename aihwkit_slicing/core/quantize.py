"""Nearest-level lookup: weights in microsiemens to table columns to conductances.

This is the numeric core of the converter. Quantization is a lookup, not a search:
the sorted levels of a :class:`~aihwkit_slicing.core.tables.ProgrammingTable` give the
midpoints between neighbouring levels once, :func:`torch.bucketize` finds each
weight's level, and :func:`torch.index_select` copies that level's conductance into
each of the ``2P`` output tensors. The weights are walked in chunks, so the level
indices (int32) only ever exist for one chunk: memory stays ``O(devices x weights)``
and never ``O(weights x levels)``. The chunks are spread over torch's threads
(:func:`run_chunks`).

Rounding rule: a weight goes to the nearest level; a weight exactly halfway between
two levels goes to the one closer to zero. This keeps quantization symmetric
(``q(-w) == -q(w)``) for symmetric tables.

Speed: :func:`torch.bucketize` is a generic binary search (about 10 ns per weight on
one CPU core). Tables usually have evenly spaced levels, so the lookup first tries a
:class:`CellIndex`: a uniform grid of cells, each holding at most one boundary, which
gives the same index with a few elementwise operations and one comparison (exact, see
its docstring). Tables where no such grid of modest size exists use ``bucketize``.
"""

from __future__ import annotations

import itertools
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from aihwkit_slicing.core.cell_index import MAX_CELLS, CellIndex  # noqa: F401 (re-exported)
from aihwkit_slicing.core.tables import ProgrammingTable

#: Elements per chunk on the CPU: the chunk and its level indices stay in cache.
CPU_CHUNK = 2**16
#: Chunks below which the CPU walk stays in the calling thread.
MIN_PARALLEL_CHUNKS = 2
#: Elements per chunk on accelerators: few, large kernels.
ACCELERATOR_CHUNK = 2**24


_POOL_LOCK = threading.Lock()
_POOL: Dict[str, Any] = {"pid": None, "workers": 0, "executor": None}


def _serial_worker() -> None:
    """Thread-pool initializer: torch runs every operation of this thread in it alone
    (OpenMP's thread count is a per-thread setting; other threads keep theirs)."""
    torch.get_num_threads()  # torch's own set-up of this thread first: it would undo it
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1, user_api="openmp")
    except Exception:  # pragma: no cover - no threadpoolctl, or no OpenMP: operations
        pass  # may then split over threads again, which is slower, never different


def _executor(workers: int) -> ThreadPoolExecutor:
    """A pool of ``workers`` serial threads (:func:`_serial_worker`), made once per
    process (a forked child, such as a Dask worker, makes its own)."""
    with _POOL_LOCK:
        if _POOL["pid"] != os.getpid() or _POOL["workers"] < workers:
            if _POOL["executor"] is not None and _POOL["pid"] == os.getpid():
                _POOL["executor"].shutdown(wait=False)
            _POOL.update(pid=os.getpid(), workers=workers, executor=ThreadPoolExecutor(
                workers, thread_name_prefix="aihwkit-slicing", initializer=_serial_worker))
        return _POOL["executor"]


def run_chunks(n_chunks: int, work: Callable[[int, Any], None],
               buffers: Callable[[], Any], device: torch.device) -> None:
    """Call ``work(i, buffers)`` for every chunk ``i < n_chunks``.

    On the CPU, with more than one torch thread and at least
    :data:`MIN_PARALLEL_CHUNKS` chunks, the chunks are spread over
    ``torch.get_num_threads()`` threads of a pool, each with its own ``buffers()``,
    in which torch runs every operation alone: the threads never wait for each other
    between operations, only at the end. (Torch's own parallel operations wait for
    their slowest thread at every operation, which on a loaded machine is often
    descheduled: thousands of small ones took many times longer.) What a chunk
    computes does not depend on the thread that computes it.
    """
    workers = torch.get_num_threads() if device.type == "cpu" else 1
    workers = min(workers, n_chunks)
    if workers <= 1 or n_chunks < MIN_PARALLEL_CHUNKS:
        own = buffers()
        for i in range(n_chunks):
            work(i, own)
        return
    counter = itertools.count()  # next() on it is atomic under the GIL

    def worker() -> None:
        own = buffers()
        for i in counter:
            if i >= n_chunks:
                return
            work(i, own)

    executor = _executor(workers)
    futures = [executor.submit(worker) for _ in range(workers)]
    for future in futures:
        future.result()


@dataclass(frozen=True)
class LevelNoise:
    """Expected device error of each level of a table (noise-aware quantization).

    Made by :func:`aihwkit_slicing.design.encodings.level_noise` from a noise model.

    Attributes:
        mean: per level (ascending), the mean error of the represented weight, in
            microsiemens (programmed or drifted cell minus its level).
        mean_square: per level, the mean squared error, in microsiemens squared.
        description: where the numbers come from (noise model, times).
    """

    mean: Tuple[float, ...]
    mean_square: Tuple[float, ...]
    description: str = ""

    def __post_init__(self) -> None:
        if len(self.mean) != len(self.mean_square):
            raise ValueError(
                f"level_noise needs as many mean as mean_square values, got "
                f"{len(self.mean)} and {len(self.mean_square)}"
            )
        if not all(math.isfinite(v) for v in self.mean + self.mean_square) or any(
            v < 0 for v in self.mean_square
        ):
            raise ValueError("level_noise values must be finite, mean_square >= 0")

    @classmethod
    def average(cls, noises: Sequence["LevelNoise"], description: str = "") -> "LevelNoise":
        """The mean of several level-noise statistics (for example over inference times)."""
        if not noises:
            raise ValueError("average needs at least one LevelNoise")
        mean = torch.tensor([n.mean for n in noises], dtype=torch.float64).mean(dim=0)
        square = torch.tensor([n.mean_square for n in noises], dtype=torch.float64).mean(dim=0)
        description = description or "average over " + ", ".join(
            n.description for n in noises)
        return cls(tuple(mean.tolist()), tuple(square.tolist()), description)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the lookup computes in: float64 for float64 weights, else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


class _IndexBuffers:
    """Work buffers of one encode: scaled weights, a scratch of the compute dtype, and
    two int32 index buffers, each ``n`` long (one chunk), reused chunk after chunk."""

    def __init__(self, n: int, dtype: torch.dtype, device: torch.device):
        self.values = torch.empty(n, dtype=dtype, device=device)
        self.scratch = torch.empty(n, dtype=dtype, device=device)
        self.cells = torch.empty(n, dtype=torch.int32, device=device)
        self.flags = torch.empty(n, dtype=torch.int32, device=device)


class LevelQuantizer:
    """Maps weights (already scaled to microsiemens) onto a table's levels.

    Args:
        table: the programming table; its selected encodings decide the conductances.
        level_noise: optional expected device error of every level
            (:class:`~aihwkit_slicing.core.scaling.LevelNoise`). A weight then goes to the
            level whose *expected read-back* is nearest: the boundary between levels
            ``j`` and ``j + 1`` is where ``(x - m_j)**2 + v_j`` equals
            ``(x - m_{j+1})**2 + v_{j+1}`` (``m`` mean read-back, ``v`` its variance),
            kept between the two levels. Without it, boundaries are the midpoints.

    The small lookup tensors (boundaries, levels, conductances per level) are made
    once per dtype and device and cached.
    """

    def __init__(self, table: ProgrammingTable, level_noise: Optional[LevelNoise] = None):
        self.table = table
        #: The table's levels (microsiemens, ascending) as a host array, read once.
        self.host_levels = table.levels
        self._levels = torch.as_tensor(self.host_levels, dtype=torch.float64)
        self.boundaries_us = self._boundaries(level_noise)
        self._conductances = torch.as_tensor(table.level_conductances, dtype=torch.float64)
        self._cache: Dict[Tuple[torch.dtype, torch.dtype, torch.device], Tuple[Tensor, ...]] = {}
        self._cell_index: Dict[Tuple[torch.dtype, torch.dtype, torch.device],
                               Optional[CellIndex]] = {}
        self._noise_cache: Dict[Tuple, Tuple[LevelNoise, Tuple[Tensor, Tensor]]] = {}

    def _boundaries(self, level_noise: Optional[LevelNoise]) -> Tensor:
        """Decision boundaries between neighbouring levels (microsiemens, float64)."""
        low, high = self._levels[:-1], self._levels[1:]
        if level_noise is None:
            return (low + high) / 2
        mean = self._levels + torch.as_tensor(level_noise.mean, dtype=torch.float64)
        var = (torch.as_tensor(level_noise.mean_square, dtype=torch.float64)
               - torch.as_tensor(level_noise.mean, dtype=torch.float64).square()).clamp(min=0)
        gap = mean[1:] - mean[:-1]
        equal_cost = (mean[1:].square() - mean[:-1].square() + var[1:] - var[:-1]) / (2 * gap)
        equal_cost = torch.where(gap > 0, equal_cost, (low + high) / 2)
        return torch.minimum(torch.maximum(equal_cost, low), high)

    @property
    def level_step(self) -> Optional[float]:
        """The spacing of the levels (microsiemens) if they are evenly spaced, else None."""
        if "_level_step" not in self.__dict__:
            gaps = torch.diff(self._levels)
            step = float(gaps.mean())
            even = bool(torch.all((gaps - step).abs() <= 1e-9 * step))
            self._level_step = step if even else None
        return self._level_step

    @property
    def uniform_step(self) -> Optional[float]:
        """The spacing of the levels (microsiemens) if they are evenly spaced and the
        boundaries are their midpoints, else None."""
        if "_uniform_step" not in self.__dict__:
            midpoints = torch.equal(self.boundaries_us, (self._levels[:-1] + self._levels[1:]) / 2)
            self._uniform_step = self.level_step if midpoints else None
        return self._uniform_step

    def lookup_tensors(
        self, out_dtype: torch.dtype, device: torch.device
    ) -> Tuple[Tensor, Tensor, Tensor]:
        """``(boundaries, levels, conductances)`` for weights of ``out_dtype`` on ``device``.

        ``boundaries`` and ``levels`` are in the compute dtype, ``conductances``
        (``2P x n_levels``, microsiemens) in ``out_dtype``.
        """
        key = (out_dtype, compute_dtype(out_dtype), torch.device(device))
        if key not in self._cache:
            cdtype = key[1]
            levels = self._levels.to(cdtype)
            mids = self.boundaries_us.to(cdtype)
            # bucketize sends x == boundary to the lower level. For negative midpoints
            # the level closer to zero is the upper one, so move those boundaries down
            # by one ulp: ties then round toward zero on both sides.
            mids = torch.where(
                mids < 0, torch.nextafter(mids, torch.full_like(mids, -float("inf"))), mids
            )
            cells = CellIndex.build(mids)
            # (the cell index first: a thread that finds the key in the cache finds it)
            self._cell_index[key] = None if cells is None else cells.to(device)
            self._cache[key] = (
                mids.to(device),
                levels.to(device),
                self._conductances.to(out_dtype).to(device),
            )
        return self._cache[key]

    def noise_tensors(self, level_noise: Optional[LevelNoise], dtype: torch.dtype,
                      device: torch.device) -> Optional[Tuple[Tensor, Tensor]]:
        """``(mean, mean_square)`` of ``level_noise`` per level as tensors on ``device``
        (cached: copied to the device once), or None without level noise."""
        if level_noise is None:
            return None
        key = (id(level_noise), dtype, torch.device(device))
        cached = self._noise_cache.get(key)
        if cached is None or cached[0] is not level_noise:
            tensors = tuple(torch.as_tensor(values, dtype=dtype).to(device) for values in
                            (level_noise.mean, level_noise.mean_square))
            cached = (level_noise, tensors)
            self._noise_cache[key] = cached
        return cached[1]

    def level_index(self, x_us: Tensor) -> Tensor:
        """Index (int64) of the nearest level of each of ``x_us`` (compute dtype, uS)."""
        boundaries = self.lookup_tensors(x_us.dtype, x_us.device)[0]
        cells = self._cell_index[(x_us.dtype, compute_dtype(x_us.dtype), x_us.device)]
        if cells is None:
            return torch.bucketize(x_us, boundaries)
        return cells(x_us)

    def encode(
        self,
        weights: Tensor,
        scale: Optional[Tensor] = None,
        chunk: Optional[int] = None,
    ) -> Tensor:
        """Conductances of the nearest level for every weight.

        Args:
            weights: weights of any shape; floating point.
            scale: multiplies ``weights`` into microsiemens; a 0-d tensor, a tensor
                broadcastable to ``weights`` or ``None`` (weights already in uS).
            chunk: elements per chunk (default: :data:`CPU_CHUNK` on the CPU,
                :data:`ACCELERATOR_CHUNK` elsewhere).

        Returns:
            A ``(2P, *weights.shape)`` tensor of conductances in microsiemens, in the
            dtype and on the device of ``weights``; row ``d`` is device ``d``.
        """
        n_devices = self.table.n_devices
        out = torch.empty((n_devices,) + tuple(weights.shape), dtype=weights.dtype,
                          device=weights.device)
        if weights.numel() == 0:
            return out
        cdtype = compute_dtype(weights.dtype)
        conductances = self.lookup_tensors(weights.dtype, weights.device)[2]
        self.lookup_tensors(cdtype, weights.device)  # the index's, before any thread needs it
        if chunk is None:
            chunk = CPU_CHUNK if weights.device.type == "cpu" else ACCELERATOR_CHUNK
        flat_out = out.view(n_devices, -1)
        scalar_scale = scale is None or scale.dim() == 0 or scale.numel() == 1
        per_row = (not scalar_scale and weights.dim() > 0 and scale.numel() == weights.shape[0]
                   and scale.shape[0] == weights.shape[0])
        if scalar_scale or per_row:
            # walk the weights in chunks of whole rows (per row: one scale each), so no
            # weights-sized temporary is ever made
            rows = weights.reshape(weights.shape[0] if per_row else 1, -1)
            factors = None if scale is None else scale.reshape(-1, 1).to(cdtype)
            row_len = rows.shape[1]
            if per_row and row_len < chunk:
                steps = [(r0, min(rows.shape[0], r0 + chunk // row_len), 0, row_len)
                         for r0 in range(0, rows.shape[0], max(1, chunk // row_len))]
            else:
                steps = [(r, r + 1, c0, min(row_len, c0 + chunk))
                         for r in range(rows.shape[0]) for c0 in range(0, row_len, chunk)]
            size = max((r1 - r0) * (c1 - c0) for r0, r1, c0, c1 in steps)

            def encode_step(i: int, work: _IndexBuffers) -> None:
                r0, r1, c0, c1 = steps[i]
                part = rows[r0:r1, c0:c1]
                n = part.numel()
                if factors is not None:
                    # (weights of a narrower dtype are converted to the compute dtype
                    # and multiplied in it, as x.to(cdtype) * factor would)
                    x = work.values[:n].view(part.shape)
                    torch.mul(part, factors[r0:r1] if per_row else factors[0], out=x)
                else:
                    x = part.to(cdtype)
                index = self._index_into(x.reshape(-1), work, n)
                start = r0 * row_len + c0
                self._lookup_into(flat_out[:, start:start + n], conductances, index)

            run_chunks(len(steps), encode_step,
                       lambda: _IndexBuffers(size, cdtype, weights.device), weights.device)
            return out
        # any other broadcastable scale (e.g. one per output column, [1, out]): scale
        # the whole tensor once, then walk it flat
        source = (weights.to(cdtype) * scale.to(cdtype)).reshape(-1)
        starts = range(0, source.numel(), chunk)

        def encode_flat(i: int, work: _IndexBuffers) -> None:
            x = source[starts[i]:starts[i] + chunk]
            index = self._index_into(x, work, x.numel())
            self._lookup_into(flat_out[:, starts[i]:starts[i] + x.numel()], conductances,
                              index)

        run_chunks(len(starts), encode_flat,
                   lambda: _IndexBuffers(min(chunk, source.numel()), cdtype, weights.device),
                   weights.device)
        return out

    def _index_into(self, x: Tensor, work: "_IndexBuffers", n: int) -> Tensor:
        """:meth:`level_index` of a flat ``x`` (compute dtype) as int32, using ``work``'s
        first ``n`` entries."""
        boundaries = self.lookup_tensors(x.dtype, x.device)[0]
        cells = self._cell_index[(x.dtype, compute_dtype(x.dtype), x.device)]
        if cells is None:
            return torch.bucketize(x, boundaries, out_int32=True, out=work.cells[:n])
        return cells.index_into(x, work.scratch[:n], work.cells[:n], work.flags[:n])

    @staticmethod
    def _lookup_into(dst: Tensor, conductances: Tensor, index: Tensor) -> None:
        """``dst[d] = conductances[d, index]`` for every device ``d``: one
        ``index_select`` per device (a 1-d lookup is several times faster than a
        ``gather`` along dimension 1 of all devices at once)."""
        for d in range(conductances.shape[0]):
            torch.index_select(conductances[d], 0, index, out=dst[d])

    def decode(self, conductances: Sequence[Tensor], scale: Union[Tensor, float],
               dtype: Optional[torch.dtype] = None) -> Tensor:
        """Weights from device conductances: ``sum_k f_k (gp_k - gm_k) / scale``.

        Args:
            conductances: ``2P`` tensors in microsiemens (``gp0, gm0, gp1, ...``).
            scale: microsiemens per weight unit, 0-d or broadcastable to the weights.
            dtype: the weights' dtype (default: the conductances'). Conductances
                stored in a narrower dtype are converted to it chunk by chunk: the
                result is that of the converted conductances, exactly.

        Returns:
            The weights in ``dtype`` and on the device of the conductances, computed
            in the compute dtype. Each pair's difference is formed first, so swapping
            every pair's plus and minus device negates the result exactly
            (``q(-w) == -q(w)``). The sum runs in chunks, so the pair differences
            never need a weights-sized temporary.
        """
        first = conductances[0]
        dtype = first.dtype if dtype is None else dtype
        cdtype = compute_dtype(dtype)
        f_lst = self.table.f_lst
        scale = torch.as_tensor(scale, device=first.device).to(cdtype)
        shape = first.shape
        total = torch.empty(shape, dtype=cdtype, device=first.device)
        flat_total = total.view(-1)
        flat = [g.reshape(-1) for g in conductances]
        chunk = CPU_CHUNK if total.device.type == "cpu" else ACCELERATOR_CHUNK
        starts = range(0, flat_total.numel(), chunk)
        widen = any(g.dtype != dtype for g in conductances)

        def device_chunk(d: int, start: int, n: int, work: List[Tensor], slot: int) -> Tensor:
            if not widen:
                return flat[d][start:start + n]
            return work[slot][:n].copy_(flat[d][start:start + n])  # (exact)

        def decode_step(i: int, work: List[Tensor]) -> None:
            start = starts[i]
            part = flat_total[start:start + chunk]
            n = part.numel()
            torch.sub(device_chunk(0, start, n, work, 1), device_chunk(1, start, n, work, 2),
                      out=part)
            if f_lst[0] != 1.0:
                part.mul_(f_lst[0])
            for k in range(1, len(f_lst)):
                plus = device_chunk(2 * k, start, n, work, 1)
                minus = device_chunk(2 * k + 1, start, n, work, 2)
                difference = work[0]
                if difference.dtype == difference_dtypes[k]:  # (as torch.sub gives it)
                    pair = torch.sub(plus, minus, out=difference[:n])
                else:
                    pair = torch.sub(plus, minus)
                part.add_(pair, alpha=f_lst[k])

        difference_dtypes = [dtype if widen else torch.result_type(flat[2 * k], flat[2 * k + 1])
                             for k in range(len(f_lst))]
        size = min(chunk, flat_total.numel())
        run_chunks(len(starts), decode_step,
                   lambda: [torch.empty(size, dtype=difference_dtypes[-1], device=first.device)]
                   + ([torch.empty(size, dtype=dtype, device=first.device) for _ in range(2)]
                      if widen else []), first.device)
        if scale.dim() == 0 or torch.broadcast_shapes(scale.shape, shape) == shape:
            total.div_(scale)
        else:
            total = total / scale
        return total.to(dtype)

    def zero_conductances(self, dtype: torch.dtype, device: torch.device) -> Tensor:
        """Per device, the conductance (microsiemens) encoding a zero weight."""
        return self.encode(torch.zeros(1, dtype=dtype, device=device))[:, 0]

    def nearest_levels(self, x_us: Tensor) -> Tensor:
        """The level (microsiemens, compute dtype) nearest to each of ``x_us``."""
        levels = self.lookup_tensors(x_us.dtype, x_us.device)[1]
        index = self.level_index(x_us.to(levels.dtype))
        return torch.index_select(levels, 0, index.reshape(-1)).reshape(index.shape)
