"""The devices behind the weights a converter produced (see ``docs/design.md``).

aihwkit converts weights more than once: ``drift_analog_weights`` hands the tile's
*programmed* weights back to the converter, and the IR-drop tile hands it the tile's
current weights, transposed and zero-padded, on every forward pass. Those weights carry
programming noise and drift, and the converter must answer with the very devices they
came from, not with a new quantization. This module keeps that device state with what
it describes:

* Every weight tensor :meth:`convert_back_to_weights` returns carries a
  :class:`DeviceState` as a Python attribute (:data:`ATTRIBUTE`): its per-device
  conductances, scale and clip statistics. The state lives and dies with the tensor;
  aihwkit keeps a tile's programmed weights for the tile's lifetime, so their state
  lives exactly as long as the tile's programming. The attribute travels with the
  tensor through ``copy.deepcopy`` and whole-model ``torch.save``/``torch.load``, not
  through ``clone()``, arithmetic or a ``state_dict``.
* A drift that starts from a programmed state and comes from an IR-drop tile (whose
  forward pass needs the drifted devices) is kept on that programmed state as its
  :attr:`DeviceState.current`; other tiles never convert in their forward pass, so
  their drifted devices are not kept.
* The IR-drop forward pass receives a copy (transposed, padded), not the tensor. The
  converter finds the analog tile running that forward pass on the call stack
  (:mod:`aihwkit_slicing.core.call_sites`) and looks only at *that tile's* states: the
  one attached to its programmed weights and the drifted one kept on it. It uses one
  only if the copy reproduces its weights bit for bit (:func:`match_padded_transpose`;
  a few probe entries are compared first, then every entry; nothing is decided by a
  digest). No other tile's state is ever consulted, so a model's forward pass does not
  depend on which other models are alive.

Recognition is therefore by identity (the attribute on the very tensor, the tile on the
stack) and exact equality. A tensor is used with its attached state only while it is
unchanged (an exact recomputation from its devices proves it). Nothing is kept at
module level.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

import torch
from torch import Tensor

#: Name of the tensor attribute that holds the :class:`DeviceState` of produced weights.
ATTRIBUTE = "_aihwkit_slicing_devices"
#: Entries of a produced tensor compared first when looking for a copy of it.
PROBE_SIZE = 16

#: ``decode(conductances, scale, dtype)``: the weights the conductances produce, computed
#: as if the conductances were in ``dtype`` (the weights' dtype).
Decoder = Callable[[List[Tensor], Tensor, torch.dtype], Tensor]


class DeviceState:
    """Per-device conductances behind one produced weight tensor.

    Args:
        table_key: :attr:`ProgrammingTable.key` of the table the devices belong to.
        conductances: ``2P`` tensors in microsiemens (``gp0, gm0, gp1, ...``), the
            shape of the weights: in the weights' dtype, or stored compactly in
            float16 (see ``compact_state`` of
            :class:`~aihwkit_slicing.core.converter.QuantizedSlicedConductanceConverter`).
        scale: microsiemens per weight unit: 0-d, or per channel (``[C, 1, ...]``).
        clipped_fraction: fraction of the weights that saturated on the outermost
            level when these devices were programmed.
        weights: the weights the conductances produce (for the probe and the dtype).
        t_inference: seconds after programming these conductances describe (None
            for the programmed state).

    Attributes:
        dtype: the weights' dtype; :attr:`conductances` are in it.
        stored: the conductance tensors as stored (float16 when compact).
        current: for a programmed state, the latest state drifted from it by an
            IR-drop tile, which that tile's forward pass converts; else None.
        drifted_to: for a programmed state, the inference time (seconds) of the
            latest drift from it by an aihwkit tile; None before any drift.
    """

    def __init__(self, table_key: Any, conductances: List[Tensor], scale: Tensor,
                 clipped_fraction: float, weights: Tensor,
                 t_inference: Optional[float] = None):
        self.table_key = table_key
        self.stored = list(conductances)
        self.dtype = weights.dtype
        self.scale = scale
        self.clipped_fraction = float(clipped_fraction)
        self.t_inference = t_inference
        self.current: Optional[DeviceState] = None
        self.drifted_to: Optional[float] = None
        flat = weights.detach().reshape(-1)
        count = min(PROBE_SIZE, flat.numel())
        # evenly spaced entries, in integers: a float32 linspace rounds indices past
        # 2**24 up beyond the last entry
        self.probe_index = (torch.arange(count, device=flat.device) * (flat.numel() - 1)
                            // max(1, count - 1)) if count else None
        self.probe_values = flat[self.probe_index].clone() if count else None

    @property
    def conductances(self) -> List[Tensor]:
        """The ``2P`` conductance tensors in the weights' dtype (the stored ones, or
        copies of compactly stored ones, converted exactly)."""
        return [g if g.dtype == self.dtype else g.to(self.dtype) for g in self.stored]

    @property
    def compact(self) -> bool:
        """Whether the conductances are stored in a narrower dtype than the weights."""
        return self.stored[0].dtype != self.dtype

    def conductance_copies(self) -> List[Tensor]:
        """New tensors holding the conductances, in the weights' dtype."""
        return [g.clone() if g.dtype == self.dtype else g.to(self.dtype) for g in self.stored]

    def decoded(self, decode: Decoder) -> Tensor:
        """The weights these devices produce, recomputed by ``decode``."""
        return decode(self.stored, self.scale, self.dtype)

    @property
    def device(self) -> torch.device:
        """Where the conductances live."""
        return self.stored[0].device

    @property
    def shape(self) -> torch.Size:
        """Shape of the weights (and of every conductance tensor)."""
        return self.stored[0].shape

    def describes(self, weights: Tensor) -> bool:
        """Whether ``weights`` has the layout (shape, dtype, device) of these devices."""
        return weights.shape == self.shape and weights.dtype == self.dtype and \
            weights.device == self.device

    def __setstate__(self, state: Dict[str, Any]) -> None:
        """Restore a pickled or deep-copied state (also one pickled before the
        conductances could be stored compactly: those are exact)."""
        if "conductances" in state:
            state = dict(state)
            state["stored"] = state.pop("conductances")
            state.setdefault("dtype", state["stored"][0].dtype)
        self.__dict__.update(state)

    def __repr__(self) -> str:
        when = "programmed" if self.t_inference is None else f"t = {self.t_inference:g} s"
        stored = f", stored in {str(self.stored[0].dtype).replace('torch.', '')}" \
            if self.compact else ""
        return (f"DeviceState({len(self.stored)} devices x {tuple(self.shape)}, {when}, "
                f"clipped {self.clipped_fraction:.3g}{stored})")


# ============================================================ states on tensors
def attach(weights: Tensor, state: DeviceState) -> None:
    """Store ``state`` on ``weights`` (the tensor it produced)."""
    weights.__dict__[ATTRIBUTE] = state


def attached(weights: Tensor, table_key: Any, decode: Decoder) -> Optional[DeviceState]:
    """The state on ``weights`` if it belongs to ``table_key`` and still describes it.

    ``decode(conductances, scale, dtype)`` recomputes the weights from the devices; the state
    is used only if that reproduces every entry of ``weights`` exactly. (A version
    counter would be cheaper, but changes made through ``tensor.data`` do not move it.)
    """
    state = weights.__dict__.get(ATTRIBUTE)
    if not isinstance(state, DeviceState) or state.table_key != table_key:
        return None
    if not state.describes(weights):
        return None
    if not torch.equal(state.decoded(decode), weights):
        return None
    return state


def restore(weights: Tensor, state: DeviceState) -> None:
    """Give restored programmed ``weights`` their devices back (for checkpoints): attach
    ``state`` (:func:`attach`). Recognition is unchanged: the converter uses the state
    only while ``weights`` is exactly what its conductances decode to."""
    attach(weights, state)


def state_of(weights: Tensor) -> Optional[DeviceState]:
    """The state attached to ``weights`` by any converter, unchecked (for reports)."""
    state = getattr(weights, "__dict__", {}).get(ATTRIBUTE)
    return state if isinstance(state, DeviceState) else None


def tile_states(tile: Any, table_key: Any) -> List[DeviceState]:
    """The states an analog ``tile``'s IR-drop forward pass may be converting, latest
    first: the drifted state kept on its programmed state, then the programmed state
    (attached to ``tile.programmed_weights``), if they belong to ``table_key``."""
    programmed = getattr(tile, "programmed_weights", None)
    state = state_of(programmed) if isinstance(programmed, Tensor) else None
    if state is None or state.table_key != table_key:
        return []
    return [s for s in (state.current, state) if s is not None]


# =============================================================== copy matching
def padding_rows(height: int, rows: int) -> int:
    """Zero rows aihwkit's IR-drop tile puts above ``rows`` weight rows in ``height``."""
    return (height - rows) // 2


def match_padded_transpose(copy: Tensor, state: DeviceState, decode: Decoder,
                           transposed: bool = True) -> bool:
    """Whether ``copy`` is exactly the weights of ``state`` laid out as aihwkit does.

    With ``transposed``, the IR-drop forward pass's layout: ``weights.T`` (``[in,
    out]``) with :func:`padding_rows` zero rows above and the rest below, up to
    ``copy``'s height. Without, the weights themselves.
    """
    if copy.dim() != 2 or len(state.shape) != 2:
        return False
    if copy.dtype != state.dtype or copy.device != state.device:
        return False
    out_size, in_size = state.shape
    if transposed:
        if copy.shape[1] != out_size or copy.shape[0] < in_size:
            return False
        top = padding_rows(copy.shape[0], in_size)
        body = copy[top:top + in_size].T
    else:
        if copy.shape != state.shape:
            return False
        top, body = 0, copy
    if state.probe_index is not None:
        rows, cols = state.probe_index // in_size, state.probe_index % in_size
        if not torch.equal(body[rows, cols], state.probe_values):
            return False
    if transposed and (copy[:top].any() or copy[top + in_size:].any()):
        return False
    return torch.equal(state.decoded(decode), body)


def laid_out_like_copy(state: DeviceState, height: int, padding: Tensor) -> List[Tensor]:
    """The conductances of ``state`` transposed and padded to ``height`` rows.

    Args:
        padding: per device, the conductance (microsiemens) of the padding rows: the
            encoding of a zero weight, as a fresh conversion would give them.
    """
    in_size = state.shape[1]
    top = padding_rows(height, in_size)
    laid_out = []
    for device, g in enumerate(state.stored):
        full = padding[device].to(state.dtype).expand(height, g.shape[0]).clone()
        full[top:top + in_size] = g.T  # (converted to the weights' dtype, exactly)
        laid_out.append(full)
    return laid_out
