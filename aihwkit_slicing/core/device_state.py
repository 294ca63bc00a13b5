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

from typing import Any, Callable, List, Optional

import torch
from torch import Tensor

#: Name of the tensor attribute that holds the :class:`DeviceState` of produced weights.
ATTRIBUTE = "_aihwkit_slicing_devices"
#: Entries of a produced tensor compared first when looking for a copy of it.
PROBE_SIZE = 16

Decoder = Callable[[List[Tensor], Tensor], Tensor]


class DeviceState:
    """Per-device conductances behind one produced weight tensor.

    Args:
        table_key: :attr:`ProgrammingTable.key` of the table the devices belong to.
        conductances: ``2P`` tensors in microsiemens (``gp0, gm0, gp1, ...``), the
            shape of the weights.
        scale: microsiemens per weight unit: 0-d, or per channel (``[C, 1, ...]``).
        clipped_fraction: fraction of the weights that saturated on the outermost
            level when these devices were programmed.
        weights: the weights the conductances produce (for the probe).
        t_inference: seconds after programming these conductances describe (None
            for the programmed state).

    Attributes:
        current: for a programmed state, the latest state drifted from it by an
            IR-drop tile, which that tile's forward pass converts; else None.
        drifted_to: for a programmed state, the inference time (seconds) of the
            latest drift from it by an aihwkit tile; None before any drift.
    """

    def __init__(self, table_key: Any, conductances: List[Tensor], scale: Tensor,
                 clipped_fraction: float, weights: Tensor,
                 t_inference: Optional[float] = None):
        self.table_key = table_key
        self.conductances = list(conductances)
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
    def shape(self) -> torch.Size:
        """Shape of the weights (and of every conductance tensor)."""
        return self.conductances[0].shape

    def describes(self, weights: Tensor) -> bool:
        """Whether ``weights`` has the layout (shape, dtype, device) of these devices."""
        g = self.conductances[0]
        return weights.shape == g.shape and weights.dtype == g.dtype and \
            weights.device == g.device

    def __repr__(self) -> str:
        when = "programmed" if self.t_inference is None else f"t = {self.t_inference:g} s"
        return (f"DeviceState({len(self.conductances)} devices x {tuple(self.shape)}, {when}, "
                f"clipped {self.clipped_fraction:.3g})")


# ============================================================ states on tensors
def attach(weights: Tensor, state: DeviceState) -> None:
    """Store ``state`` on ``weights`` (the tensor it produced)."""
    weights.__dict__[ATTRIBUTE] = state


def attached(weights: Tensor, table_key: Any, decode: Decoder) -> Optional[DeviceState]:
    """The state on ``weights`` if it belongs to ``table_key`` and still describes it.

    ``decode(conductances, scale)`` recomputes the weights from the devices; the state
    is used only if that reproduces every entry of ``weights`` exactly. (A version
    counter would be cheaper, but changes made through ``tensor.data`` do not move it.)
    """
    state = weights.__dict__.get(ATTRIBUTE)
    if not isinstance(state, DeviceState) or state.table_key != table_key:
        return None
    if not state.describes(weights):
        return None
    if not torch.equal(decode(state.conductances, state.scale), weights):
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
    g = state.conductances[0]
    if copy.dtype != g.dtype or copy.device != g.device:
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
    return torch.equal(decode(state.conductances, state.scale), body)


def laid_out_like_copy(state: DeviceState, height: int, padding: Tensor) -> List[Tensor]:
    """The conductances of ``state`` transposed and padded to ``height`` rows.

    Args:
        padding: per device, the conductance (microsiemens) of the padding rows: the
            encoding of a zero weight, as a fresh conversion would give them.
    """
    in_size = state.shape[1]
    top = padding_rows(height, in_size)
    laid_out = []
    for device, g in enumerate(state.conductances):
        full = padding[device].to(g.dtype).expand(height, g.shape[0]).clone()
        full[top:top + in_size] = g.T
        laid_out.append(full)
    return laid_out
