"""How a converter recognizes weights it produced itself (DESIGN.md, "The trap").

aihwkit converts weights to conductances more than once: ``drift_analog_weights``
hands the *programmed* weights back to ``convert_to_conductances``, and the IR-drop
tile hands it the tile's current weights on every forward pass. Those weights carry
programming noise and drift; quantizing them again would round the noise away and
re-scale the grid. Two mechanisms tell them from trained weights:

* **Device state on the tensor.** Every tensor returned by
  ``convert_back_to_weights`` carries, as a Python attribute, the conductances it was
  computed from and its params (:func:`attach_device_state`). Converting that tensor
  again gives back exactly those per-device conductances, so in
  ``apply_drift_noise(programmed_weights, ...)`` every device drifts from its own
  programmed conductance. The attribute travels with the tensor through
  ``copy.deepcopy`` and ``torch.save``/``torch.load`` of a whole model (pickle keeps a
  tensor's ``__dict__``), not through ``clone()`` or a ``state_dict``. The converter
  uses it only while the stored conductances still reproduce the tensor exactly, so a
  tensor changed in place in any way is treated as new.
* **Fingerprint records for copies.** A bounded record of content fingerprints and
  scales (:class:`CopyRecords`). A fingerprint is exact but ignores element order and
  zero padding: min, max, and the wrap-around sum of the entries' bit patterns. It
  recognizes a clone, the tile's own weights and the IR-drop tile's transposed,
  zero-padded copy. Such a tensor is decomposed into its nearest level plus the
  residual on the devices, with the original scale.

The records are shared by every converter of the same programming table in the
process (:func:`shared_records`): aihwkit 1.1.0's IR-drop tile keeps the converter of
the rpu_config it was *given*, while the tile programs and drifts with its own deep
copy, and ``load_state_dict`` or ``program_analog_weights(noise_model=...)`` bring in
yet other, equal converters; all of them must see the same records. A record only
says which scale a produced tensor was made with, so sharing it is safe, and the
fingerprint is exact.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import Tensor

#: Name of the tensor attribute that holds the device state of produced weights.
STATE_ATTRIBUTE = "_aihwkit_slicing_device_state"
#: Fingerprint records kept per converter family (a few per tile is plenty).
MAX_RECORDS = 1024

Fingerprint = Tuple[float, float, int]

_BIT_VIEWS = {8: (torch.int64, torch.int64), 4: (torch.int32, torch.int32),
              2: (torch.int16, torch.int32)}


def bit_sum(weights: Tensor, dim: Optional[int] = None) -> Tensor:
    """Wrap-around sum of the entries' bit patterns (over ``dim``, or all).

    Integer addition modulo 2**32 (2**64 for float64) is exact, so the sum does not
    depend on element order, and ``+0.0`` (all bits zero) adds nothing, so zero
    padding does not change it either.
    """
    view_dtype, sum_dtype = _BIT_VIEWS[weights.element_size()]
    bits = weights.view(view_dtype)
    if dim is None:
        return bits.sum(dtype=sum_dtype)
    return bits.sum(dim=dim, dtype=sum_dtype)


def fingerprint(weights: Tensor) -> Fingerprint:
    """Exact, order- and zero-padding-independent summary of a tensor's entries.

    Returns:
        ``(min(min, 0), max(max, 0), bit_sum)``. NaN or infinite entries show in the
        min or max.
    """
    low, high = torch.aminmax(weights)
    extremes = torch.stack([low.clamp(max=0), high.clamp(min=0)]).double().tolist()
    return extremes[0], extremes[1], int(bit_sum(weights))


def _channel_bit_sums(weights: Tensor, dim: int) -> Tensor:
    """:func:`bit_sum` of each index along ``dim``."""
    moved = weights.movedim(dim, 0).reshape(weights.shape[dim], -1)
    return bit_sum(moved, dim=1)


# ================================================================ device state
@dataclass
class DeviceState:
    """The per-device conductances a produced weight tensor was computed from."""

    table_key: Any
    conductances: List[Tensor]
    params: Dict[str, Any]


def attach_device_state(
    weights: Tensor, table_key: Any, conductances: List[Tensor], params: Dict[str, Any]
) -> None:
    """Store the conductances and params ``weights`` was computed from on the tensor."""
    setattr(weights, STATE_ATTRIBUTE, DeviceState(table_key, list(conductances), dict(params)))


def attached_device_state(weights: Tensor, table_key: Any) -> Optional[DeviceState]:
    """The device state stored on ``weights`` by a converter of the same table.

    The caller must still check that the conductances reproduce ``weights``.
    """
    state = getattr(weights, STATE_ATTRIBUTE, None)
    if not isinstance(state, DeviceState) or state.table_key != table_key:
        return None
    if any(g.shape != weights.shape or g.device != weights.device or g.dtype != weights.dtype
           for g in state.conductances):
        return None
    return state


# ============================================================ copy records
@dataclass
class CopyRecord:
    """What is remembered of one produced tensor by content.

    Attributes:
        scale: the ``scale_ratio`` it was produced with: 0-d, or one value per
            channel (1-d).
        channel_dim: for a per-channel scale, the dimension it varied along.
        channel_bits: for a per-channel scale, the :func:`bit_sum` of each channel,
            used to find the channel dimension of a copy (which may be transposed).
    """

    scale: Tensor
    channel_dim: Optional[int] = None
    channel_bits: Optional[Tensor] = None

    def scale_for(self, weights: Tensor) -> Optional[Tensor]:
        """The scale arranged to broadcast over ``weights``, or None if none fits.

        A per-channel scale is matched to the dimension of ``weights`` whose
        per-index bit sums equal the recorded ones; on the IR-drop tile's ``[in, out]``
        copy that is the last dimension, so the scale comes back as ``[1, out]``,
        which also broadcasts over the tile's output currents.
        """
        if self.channel_bits is None:
            return self.scale.to(weights.device)
        n_channels = self.channel_bits.numel()
        dims = [self.channel_dim] + [d for d in range(weights.dim()) if d != self.channel_dim]
        for dim in dims:
            if dim >= weights.dim() or weights.shape[dim] != n_channels:
                continue
            if torch.equal(_channel_bit_sums(weights, dim).cpu(), self.channel_bits):
                shape = [1] * weights.dim()
                shape[dim] = n_channels
                return self.scale.reshape(shape).to(weights.device)
        return None


class CopyRecords:
    """Bounded, least-recently-used record of produced tensors, by fingerprint.

    Args:
        max_records: how many fingerprints to keep.
    """

    def __init__(self, max_records: int = MAX_RECORDS):
        self.max_records = max_records
        self._records: "OrderedDict[Tuple, CopyRecord]" = OrderedDict()

    def add(self, weights: Tensor, weights_fingerprint: Fingerprint, scale: Any) -> None:
        """Record ``weights`` (just produced with ``scale``)."""
        scale = torch.as_tensor(scale).detach()
        if scale.numel() == 1:
            record = CopyRecord(scale.reshape(()))
        else:
            dim = next(d for d, n in enumerate(scale.shape) if n == scale.numel())
            record = CopyRecord(scale.reshape(-1), dim, _channel_bit_sums(weights, dim).cpu())
        key = (weights_fingerprint, weights.dtype)
        self._records.pop(key, None)
        self._records[key] = record
        while len(self._records) > self.max_records:
            self._records.popitem(last=False)

    def scale_for(self, weights: Tensor, weights_fingerprint: Fingerprint) -> Optional[Tensor]:
        """The original scale if ``weights`` is a copy of a produced tensor, else None."""
        key = (weights_fingerprint, weights.dtype)
        record = self._records.get(key)
        if record is None:
            return None
        self._records.move_to_end(key)  # recently used
        return record.scale_for(weights)

    def items(self) -> List[Tuple[Tuple, CopyRecord]]:
        """The records, oldest first (for pickling)."""
        return list(self._records.items())

    def update(self, items: List[Tuple[Tuple, CopyRecord]]) -> None:
        """Add records (e.g. from a pickle), keeping the bound."""
        for key, record in items:
            self._records.pop(key, None)
            self._records[key] = record
        while len(self._records) > self.max_records:
            self._records.popitem(last=False)

    def __len__(self) -> int:
        return len(self._records)

    def clear(self) -> None:
        """Forget every record."""
        self._records.clear()

    def __repr__(self) -> str:
        return f"CopyRecords({len(self._records)} of at most {self.max_records})"


_SHARED: "weakref.WeakValueDictionary[Any, CopyRecords]" = weakref.WeakValueDictionary()


def shared_records(table_key: Any) -> CopyRecords:
    """The records shared by every live converter of the table with ``table_key``."""
    records = _SHARED.get(table_key)
    if records is None:
        records = CopyRecords()
        _SHARED[table_key] = records
    return records
