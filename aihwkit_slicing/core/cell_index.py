"""Exact ``torch.bucketize`` by a uniform grid of cells (:class:`CellIndex`).

The nearest-level lookup of the converter (:mod:`aihwkit_slicing.core.quantize`) and the
level lookup of a measured device model (:mod:`aihwkit_slicing.core.device_model`) use
it: tables and devices usually have evenly spaced levels, where a grid finds each
value's bucket with a few elementwise operations instead of a binary search.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

#: Largest grid a CellIndex may use; beyond it the lookup falls back to bucketize.
MAX_CELLS = 2**16


class CellIndex:
    """``torch.bucketize(x, boundaries)`` for sorted boundaries, by a uniform grid.

    The real line is cut into cells of width ``h`` starting at ``x0``; the cell of
    ``x`` is ``clamp(floor((x - x0) / h), 0, n - 1)``, computed by the same torch
    operations for the boundaries and for ``x``. If every cell holds at most one
    boundary, then ``#{b < x} = count[cell(x)] + (x > bound[cell(x)])``, where
    ``count[c]`` is the number of boundaries in lower cells and ``bound[c]`` the
    boundary in cell ``c`` (or ``+inf``). This is exact, whatever the rounding:
    ``cell`` is monotone, so a boundary in a lower cell is below ``x``, one in a
    higher cell above it, and the one in the same cell is compared directly.

    Use :meth:`build`, which returns None if no grid of at most :data:`MAX_CELLS`
    cells puts the boundaries in separate cells.
    """

    def __init__(self, x0: Tensor, inv_h: Tensor, n_cells: int, count: Tensor, bound: Tensor):
        self.x0, self.inv_h, self.n_cells = x0, inv_h, n_cells
        self.count, self.bound = count, bound

    @property
    def count32(self) -> Optional[Tensor]:
        """``count`` as int32 (the encoder's index dtype), or None."""
        if self.count is None:
            return None
        if "_count32" not in self.__dict__:
            self._count32 = self.count.int()
        return self._count32

    def cell(self, x: Tensor) -> Tensor:
        """The cell (int64) of every element of ``x``."""
        # clamp before the integer conversion, which truncates: on [0, n - 1] that is
        # floor, and the whole map stays monotone in x.
        return (x - self.x0).mul_(self.inv_h).clamp_(0, self.n_cells - 1).long()

    def __call__(self, x: Tensor) -> Tensor:
        # index_select, not advanced indexing: several times faster for small tables
        c = self.cell(x).reshape(-1)
        # comparing straight into an int64 tensor avoids a slow bool -> int64 cast
        above = torch.gt(x.reshape(-1), torch.index_select(self.bound, 0, c),
                         out=torch.empty_like(c))
        if self.count is None:  # cell c holds boundary c: count[c] == c
            return c.add_(above).reshape(x.shape)
        return torch.index_select(self.count, 0, c).add_(above).reshape(x.shape)

    def index_into(self, x: Tensor, scratch: Tensor, cells: Tensor, flags: Tensor) -> Tensor:
        """:meth:`__call__` for a flat ``x``, as int32 and with no allocation but where
        the cells need ``count``: ``scratch`` (the dtype of ``x``), ``cells`` and
        ``flags`` (int32) are work buffers of the length of ``x``. The same operations
        as :meth:`cell` on the same values give the same cells; int32 indices and
        reused buffers make it several times faster than int64 temporaries. Returns
        the index (one of the buffers, or a new tensor)."""
        torch.sub(x, self.x0, out=scratch).mul_(self.inv_h).clamp_(0, self.n_cells - 1)
        cells.copy_(scratch)  # truncates, like long(): on [0, n - 1] that is floor
        torch.gt(x, torch.index_select(self.bound, 0, cells, out=scratch), out=flags)
        if self.count is None:  # cell c holds boundary c: count[c] == c
            return cells.add_(flags)
        return torch.index_select(self.count32, 0, cells).add_(flags)

    @classmethod
    def build(cls, boundaries: Tensor) -> Optional["CellIndex"]:
        """A cell index for ``boundaries`` (sorted, 1-d), or None."""
        if boundaries.numel() == 0:
            return None
        b = boundaries
        gaps = torch.diff(b.double())
        h = float(gaps.min()) if gaps.numel() else 1.0
        span = float(b[-1].double() - b[0].double())
        while h > 0 and span / h + 2 <= MAX_CELLS:
            x0 = b[0].double() - h / 2
            n_cells = int(span / h) + 2
            index = cls(x0.to(b.dtype), torch.tensor(1.0 / h, dtype=b.dtype), n_cells,
                        torch.empty(0), torch.empty(0))
            cells = index.cell(b.clone())
            if torch.all(cells[1:] > cells[:-1]):
                count = torch.zeros(n_cells, dtype=torch.long)
                count.index_add_(0, cells, torch.ones_like(cells))
                index.count = torch.cumsum(count, 0) - count
                if torch.equal(index.count, torch.arange(n_cells)):
                    index.count = None
                index.bound = torch.full((n_cells,), float("inf"), dtype=b.dtype)
                index.bound[cells] = b
                return index
            h /= 2
        return None

    def to(self, device: torch.device) -> "CellIndex":
        """This index with its tensors on ``device``."""
        count = None if self.count is None else self.count.to(device)
        return CellIndex(self.x0.to(device), self.inv_h.to(device), self.n_cells, count,
                         self.bound.to(device))
