"""How a converter recognizes weights it produced itself (DESIGN.md, "The trap").

aihwkit converts weights to conductances more than once: ``drift_analog_weights``
hands the *programmed* weights back to ``convert_to_conductances``, and the IR-drop
tile hands it the tile's current weights on every forward pass. Those weights carry
programming noise and drift; quantizing them again would round the noise away and
re-scale the grid. Two mechanisms tell them from trained weights:

* **Device state on the tensor.** Every tensor returned by
  ``convert_back_to_weights`` carries, as a Python attribute, the conductances it
  was computed from and its params (:func:`attach_device_state`). Converting that
  tensor again gives back exactly those per-device conductances, so in
  ``apply_drift_noise(programmed_weights, ...)`` every device drifts from its own
  programmed conductance. The attribute travels with the tensor through
  ``copy.deepcopy`` and ``torch.save``/``torch.load`` of a whole model (pickle keeps
  a tensor's ``__dict__``), but not through ``clone()`` or a ``state_dict``, and it
  is ignored once the tensor was changed in place.
* **Fingerprint records for copies.** A bounded record of content fingerprints and
  scales (:class:`CopyRecords`). A fingerprint ignores element order and zero padding
  (min, max, sum and norms), so it recognizes a clone, the tile's own
  weights and the IR-drop tile's transposed, zero-padded copy. Such a tensor is
  decomposed into its nearest level plus the residual on the devices, with the
  original scale.

The records are shared by a converter and its deep copies: aihwkit 1.1.0's IR-drop
tile keeps the converter of the rpu_config it was *given*, while the tile programs
and drifts with its own deep copy, so the two must see the same records.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import Tensor

#: Name of the tensor attribute that holds the device state of produced weights.
STATE_ATTRIBUTE = "_aihwkit_slicing_device_state"
#: Fingerprint records kept per converter family (a few per tile is plenty).
MAX_RECORDS = 1024
#: Relative tolerance on the sums of a fingerprint (their rounding depends on element
#: order); min and max must match exactly.
FLOAT64_NORM_RTOL = 1e-10
NORM_RTOL = 1e-4

Fingerprint = Tuple[float, ...]


def _accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def fingerprint(weights: Tensor) -> Fingerprint:
    """Order- and zero-padding-independent summary of a tensor's entries.

    Returns:
        ``(min(min, 0), max(max, 0), sum, L1 norm)``, the sums in float32 (float64
        for float64 tensors). Zeros add nothing to any of them, so zero padding does
        not change the fingerprint. NaN or infinite entries show in the min or max.
        (No non-zero count: ``count_nonzero`` is slow on the many exact zeros of
        quantized weights.)
    """
    acc = _accumulation_dtype(weights.dtype)
    low, high = torch.aminmax(weights)
    stats = torch.stack(
        [
            low.clamp(max=0).to(acc),
            high.clamp(min=0).to(acc),
            weights.sum(dtype=acc),
            torch.linalg.vector_norm(weights, 1, dtype=acc),
        ]
    )
    return tuple(stats.tolist())


def same_content(a: Fingerprint, b: Fingerprint, dtype: torch.dtype) -> bool:
    """Whether two fingerprints of ``dtype`` tensors describe the same entries.

    Min and max must be equal; the sums may differ by rounding, relative to the L1
    norm (the scale of every rounding error in these sums).
    """
    if a[:2] != b[:2]:
        return False
    rtol = FLOAT64_NORM_RTOL if dtype == torch.float64 else NORM_RTOL
    tol = rtol * max(a[3], b[3])
    return all(abs(x - y) <= tol for x, y in zip(a[2:], b[2:]))


def _channel_norms(weights: Tensor, dim: int) -> Tensor:
    """L1 norm of each index along ``dim`` (reducing all other dimensions)."""
    acc = _accumulation_dtype(weights.dtype)
    moved = weights.movedim(dim, 0).reshape(weights.shape[dim], -1)
    return torch.linalg.vector_norm(moved, 1, dim=1, dtype=acc)


# ================================================================ device state
@dataclass
class DeviceState:
    """The per-device conductances a produced weight tensor was computed from."""

    table_key: Any
    conductances: List[Tensor]
    params: Dict[str, Any]
    fingerprint: Fingerprint
    version: int


def attach_device_state(
    weights: Tensor, table_key: Any, conductances: List[Tensor], params: Dict[str, Any],
    weights_fingerprint: Fingerprint,
) -> None:
    """Store the conductances and params ``weights`` was computed from on the tensor."""
    setattr(
        weights,
        STATE_ATTRIBUTE,
        DeviceState(table_key, list(conductances), dict(params), weights_fingerprint,
                    weights._version),
    )


def attached_device_state(
    weights: Tensor, table_key: Any
) -> Optional[Tuple[List[Tensor], Dict[str, Any]]]:
    """The conductances and params stored on ``weights`` by the same table, if valid.

    The state is valid while the tensor's in-place version counter is unchanged, or,
    for a deep copy or reloaded tensor (whose counter starts anew), while its content
    still has the stored fingerprint.
    """
    state = getattr(weights, STATE_ATTRIBUTE, None)
    if not isinstance(state, DeviceState) or state.table_key != table_key:
        return None
    if weights._version != state.version:
        if not same_content(fingerprint(weights), state.fingerprint, weights.dtype):
            return None
        state.version = weights._version
    if any(g.shape != weights.shape or g.device != weights.device for g in state.conductances):
        return None
    return state.conductances, state.params


# ============================================================ copy records
@dataclass
class CopyRecord:
    """What is remembered of one produced tensor by content.

    Attributes:
        fingerprint: see :func:`fingerprint`.
        dtype: dtype of the produced tensor.
        scale: the ``scale_ratio`` it was produced with: 0-d, or one value per
            channel (1-d).
        channel_dim: for a per-channel scale, the dimension it varied along.
        channel_norms: for a per-channel scale, the L1 norm of each channel, used to
            find the channel dimension of a copy (which may be transposed).
    """

    fingerprint: Fingerprint
    dtype: torch.dtype
    scale: Tensor
    channel_dim: Optional[int] = None
    channel_norms: Optional[Tensor] = None

    def scale_for(self, weights: Tensor) -> Optional[Tensor]:
        """The scale arranged to broadcast over ``weights``, or None if none fits.

        A per-channel scale is matched to the dimension of ``weights`` whose per-index
        norms equal the recorded channel norms; on the IR-drop tile's ``[in, out]``
        copy that is the last dimension, so the scale comes back as ``[1, out]``, which
        also broadcasts over the tile's output currents.
        """
        if self.channel_norms is None:
            return self.scale.to(weights.device)
        n_channels = self.channel_norms.numel()
        rtol = FLOAT64_NORM_RTOL if weights.dtype == torch.float64 else NORM_RTOL
        dims = [self.channel_dim] + [d for d in range(weights.dim()) if d != self.channel_dim]
        for dim in dims:
            if dim >= weights.dim() or weights.shape[dim] != n_channels:
                continue
            norms = _channel_norms(weights, dim).to(self.channel_norms)
            if torch.allclose(norms, self.channel_norms, rtol=rtol, atol=0.0):
                shape = [1] * weights.dim()
                shape[dim] = n_channels
                return self.scale.reshape(shape).to(weights.device)
        return None


class CopyRecords:
    """Bounded, least-recently-used record of produced tensors, by content.

    Args:
        max_records: how many fingerprints to keep.
    """

    def __init__(self, max_records: int = MAX_RECORDS):
        self.max_records = max_records
        self._records: "OrderedDict[Tuple, CopyRecord]" = OrderedDict()

    def add(self, weights: Tensor, weights_fingerprint: Fingerprint, scale: Any) -> None:
        """Record ``weights`` (just produced with ``scale``)."""
        scale = torch.as_tensor(scale).detach()
        record = CopyRecord(weights_fingerprint, weights.dtype, scale.reshape(()) if
                            scale.numel() == 1 else scale.reshape(-1))
        if scale.numel() > 1:
            dim = next(d for d, n in enumerate(scale.shape) if n == scale.numel())
            record.channel_dim = dim
            record.channel_norms = _channel_norms(weights, dim).cpu()
        key = (weights_fingerprint[:2], weights.dtype)
        self._records.pop(key, None)
        self._records[key] = record
        while len(self._records) > self.max_records:
            self._records.popitem(last=False)

    def scale_for(self, weights: Tensor, weights_fingerprint: Fingerprint) -> Optional[Tensor]:
        """The original scale if ``weights`` is a copy of a produced tensor, else None."""
        record = self._records.get((weights_fingerprint[:2], weights.dtype))
        if record is None or not same_content(weights_fingerprint, record.fingerprint,
                                              weights.dtype):
            return None
        return record.scale_for(weights)

    def __len__(self) -> int:
        return len(self._records)

    def clear(self) -> None:
        """Forget every record."""
        self._records.clear()

    def __repr__(self) -> str:
        return f"CopyRecords({len(self._records)} of at most {self.max_records})"
