"""Which aihwkit method is asking the converter to convert (see ``docs/design.md``).

aihwkit calls a conductance converter from four places, and each needs something
different from :class:`~aihwkit_slicing.core.converter.QuantizedSlicedConductanceConverter`:

* :data:`PROGRAMMING` -- ``BaseNoiseModel.apply_programming_noise`` (from a tile's
  ``program_weights``): the weights are a new target and are always quantized;
* :data:`DRIFT` -- ``BaseNoiseModel.apply_drift_noise`` (from a tile's
  ``drift_weights``): the weights are the tile's programmed weights, whose devices
  the converter knows;
* :data:`IRDROP_FORWARD` -- ``AnalogMVMIRDropT._matmul_irdrop`` (the IR-drop tile's
  forward pass): the tile's current weights, transposed to ``[in, out]`` and
  zero-padded to the physical tile height;
* :data:`XDEP_READ_NOISE` -- ``AnalogMVMIRDropT._apply_xdep_pcm_read_noise``: the
  tile's current weights ``[out, in]``, of which aihwkit then reads pair 0 only.

Anything else (a user's own call, ``BaseNoiseModel.apply_noise``) is :data:`OTHER`.

aihwkit does not pass this information, so :func:`call_site` reads it off the Python
call stack: it compares the *code objects* of the calling frames with those of the
aihwkit functions above. This is exact (a function is identified by its code, not by
its name) and costs a few attribute reads per conversion. It holds for aihwkit 1.1.0
and 1.2.0, whose call sites the tests exercise; a future aihwkit that moved these
calls would make them fall back to :data:`OTHER`, which the tests would show.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from types import CodeType, FrameType
from typing import Any, Dict, Optional

from aihwkit.inference.noise.base import BaseNoiseModel
from aihwkit.simulator.tiles.analog_mvm_irdrop_t import AnalogMVMIRDropT
from aihwkit.simulator.tiles.inference import InferenceTileWithPeriphery
from aihwkit.simulator.tiles.torch_tile_irdrop_t import TorchSimulatorTileIRDropT

PROGRAMMING = "programming"
DRIFT = "drift"
IRDROP_FORWARD = "irdrop_forward"
XDEP_READ_NOISE = "xdep_read_noise"
OTHER = "other"

#: Frames looked at above the converter method (decorators such as ``no_grad`` add
#: a frame each).
MAX_DEPTH = 8


def _code(function: Any) -> CodeType:
    function = getattr(function, "__func__", function)  # classmethods
    while hasattr(function, "__wrapped__"):  # functools.wraps, e.g. torch's no_grad
        function = function.__wrapped__
    return function.__code__


_SITES: Dict[CodeType, str] = {
    _code(BaseNoiseModel.apply_programming_noise): PROGRAMMING,
    _code(BaseNoiseModel.apply_drift_noise): DRIFT,
    _code(AnalogMVMIRDropT._matmul_irdrop): IRDROP_FORWARD,
    _code(AnalogMVMIRDropT._apply_xdep_pcm_read_noise): XDEP_READ_NOISE,
}
_DRIFT_WEIGHTS = _code(InferenceTileWithPeriphery.drift_weights)
_IRDROP_TILE_FORWARD = _code(TorchSimulatorTileIRDropT.forward)


@dataclass(frozen=True)
class CallSite:
    """Where a conversion comes from.

    Attributes:
        kind: one of :data:`PROGRAMMING`, :data:`DRIFT`, :data:`IRDROP_FORWARD`,
            :data:`XDEP_READ_NOISE`, :data:`OTHER`.
        tile: the analog tile converting: for :data:`DRIFT` called from an aihwkit
            tile's ``drift_weights``, that tile; for :data:`IRDROP_FORWARD`, the analog
            tile whose simulator tile runs the forward pass (found on the call stack);
            else None.
        t_inference: for :data:`DRIFT`, the inference time in seconds; else None.
    """

    kind: str
    tile: Any = None
    t_inference: Optional[float] = None


def call_site() -> CallSite:
    """The aihwkit method that called the calling converter method (see the module doc)."""
    frame: Optional[FrameType] = sys._getframe(1)
    for _ in range(MAX_DEPTH):
        if frame is None:
            break
        kind = _SITES.get(frame.f_code)
        if kind == DRIFT:
            t_inference = frame.f_locals.get("t_inference")
            return CallSite(DRIFT, _drifting_tile(frame.f_back), t_inference)
        if kind == IRDROP_FORWARD:
            return CallSite(IRDROP_FORWARD, _forward_tile(frame.f_back))
        if kind is not None:
            return CallSite(kind)
        frame = frame.f_back
    return CallSite(OTHER)


def _drifting_tile(frame: Optional[FrameType]) -> Any:
    """The analog tile whose ``drift_weights`` is on the stack just above ``frame``."""
    for _ in range(MAX_DEPTH):
        if frame is None:
            return None
        if frame.f_code is _DRIFT_WEIGHTS:
            return frame.f_locals.get("self")
        frame = frame.f_back
    return None


def _forward_tile(frame: Optional[FrameType]) -> Any:
    """The analog tile whose IR-drop simulator tile runs its forward pass above
    ``frame``: the caller (``joint_forward``, or the drift-compensation readout) of
    ``TorchSimulatorTileIRDropT.forward``, whose ``tile`` is that simulator tile."""
    simulator = None
    for _ in range(2 * MAX_DEPTH):
        if frame is None:
            return None
        owner = frame.f_locals.get("self")
        if simulator is None:
            if frame.f_code is _IRDROP_TILE_FORWARD:
                simulator = owner
        elif owner is not None and getattr(owner, "tile", None) is simulator:
            return owner
        frame = frame.f_back
    return None


def converts_in_forward(tile: Any) -> bool:
    """Whether ``tile``'s simulator converts its weights in every forward pass.

    aihwkit's IR-drop simulator tile (``TorchSimulatorTileIRDropT``) keeps a converter
    as ``_g_converter`` for that; no other tile does.
    """
    return getattr(getattr(tile, "tile", None), "_g_converter", None) is not None
