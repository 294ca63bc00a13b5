"""Save a programmed analog chip and restore it into a freshly converted model.

aihwkit's ``state_dict`` keeps neither a tile's programmed weights nor its drift
coefficients (nor, for :class:`~aihwkit_slicing.core.converter.QuantizedSlicedConductanceConverter`,
the per-device conductances), so a model loaded from it is programmed afresh, with new
programming noise, at its first drift. Pickling a whole model fails for every model
that is not an ``nn.Sequential`` (aihwkit's ``AnalogWrapper`` classes are made on the
fly) and is unsafe to load anyway. :func:`save_programmed` writes, instead, one file
of tensors and plain values that ``torch.load(path, weights_only=True)`` reads, and
:func:`load_programmed` puts it back into a model of the same architecture and
``rpu_config``, bit for bit, so that drifting the restored model gives what the
original would have given.

Per analog tile (``model.named_analog_tiles()``) the file holds:

* the tile's current weights (they include the last drift), its reference weights
  (the target of programming), its programmed weights and its drift coefficients
  (``drift_noise_parameters``);
* the drift compensation state: ``alpha``, ``drift_baseline``, ``drift_readout_tensor``
  (the identity matrix that aihwkit's global and per-column compensation read out with
  is stored as its size: ``in_size**2`` floats would outweigh many layers' weights);
* for our converter, the devices behind the programmed weights (``2P`` conductance
  tensors in microsiemens and the scale, microsiemens per weight unit), the time
  (seconds) they were last drifted to and, for IR-drop tiles, the drifted devices
  their forward pass converts;
* as JSON metadata: the tile's layer, tile and noise-model classes, the noise model's
  non-default parameters, the drift compensation, a hash of every other field of the
  rpu_config (mapping, forward, ...), the converter (for ours its table, scale rule,
  per-channel flag and percentile; for aihwkit's its class and JSON-able settings) and
  the compiled tile's extra simulator state (e.g. the output offsets it draws per tile
  for ``forward.v_offset_std``).

Plus every tensor of the model's ordinary ``state_dict()`` (biases, mapping scales,
digital layers, ...) and its JSON-able extra states (e.g. the slicing of
:class:`~aihwkit_slicing.digital.layers.AnalogSlicedLinear`), except each tile's
``analog_ctx``: aihwkit's :class:`~aihwkit.optim.context.AnalogContext` holds no state
of its own. In aihwkit 1.1.0 it is a constant 0-d tensor of ones; in aihwkit 1.2.0 it
is a view of the tile's raw weights (the tile record holds them) in "placeholder
mode", which refuses to be read or written (``RuntimeError: AnalogContext data is in
placeholder mode``) and whose ``detach()`` is uninitialized memory of its shape.
aihwkit's own ``load_state_dict`` skips it as well. Files that hold it (written before,
with aihwkit 1.1.0) still load: the entry is ignored.

:func:`~aihwkit_slicing.integration.checkpoint_load.load_programmed` restores it, after
checking everything (format, tile names and count, shapes, dtypes, tile and converter
classes, programming table, state_dict keys); a mismatch raises ``ValueError`` naming
the file and what differs.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Set, Tuple, Union

import torch
from torch import Tensor
from torch.nn import Module

import aihwkit
from aihwkit.optim.context import AnalogContext
from aihwkit.simulator.tiles.base import AnalogTileStateNames
from aihwkit.simulator.tiles.inference import InferenceTileWithPeriphery

from aihwkit_slicing.core import device_state
from aihwkit_slicing.core.call_sites import converts_in_forward
from aihwkit_slicing.core.converter import QuantizedSlicedConductanceConverter
from aihwkit_slicing.integration.setting import noise_params, rpu_config_parts

#: Value of the file's ``"format"`` entry.
FORMAT = "aihwkit-slicing programmed chip"
#: Version of the file layout this module writes and reads.
FORMAT_VERSION = 1

PathLike = Union[str, "os.PathLike[str]"]


# ==================================================================== saving
def save_programmed(model: Module, path: PathLike) -> None:
    """Write the programmed state of every analog tile of ``model`` to ``path``.

    The file is a ``torch.save`` of a dict that holds only tensors, lists, dicts and
    plain values, so it loads with ``torch.load(path, weights_only=True)``; see the
    module docstring for what it holds. It is written next to ``path`` first and then
    moved into place, so an interrupted save leaves no partial file at ``path``.

    Args:
        model: an aihwkit analog model (``convert_to_analog``,
            ``convert_to_analog_sliced``, ``AnalogSequential``, ...), programmed or
            not, drifted or not.
        path: the file to write.

    Raises:
        ValueError: if ``model`` has no analog inference tiles, or holds state that
            cannot be stored without pickle (the message names it).
    """
    tiles = named_tiles(model, str(path))
    tile_metadata = []
    tile_tensors: Dict[str, Dict[str, Any]] = {}
    for name, tile in tiles:
        entry, tensors = _tile_record(name, tile)
        entry["layer_class"] = type(layer_of(model, name)).__name__
        tile_metadata.append(entry)
        tile_tensors[name] = tensors
    state_tensors, extra_states = _ordinary_state(model)
    converters: List[Dict[str, Any]] = []  # each once: a table can be large
    for entry in tile_metadata:
        if entry["converter"] not in converters:
            converters.append(entry["converter"])
        entry["converter"] = converters.index(entry["converter"])

    metadata = {
        "model_class": type(model).__name__,
        "versions": {"aihwkit": aihwkit.__version__, "torch": torch.__version__},
        "converters": converters,
        "tiles": tile_metadata,
        "extra_states": extra_states,
    }
    checkpoint = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "metadata": json.dumps(metadata, sort_keys=True),
        "state_dict": state_tensors,
        "tiles": tile_tensors,
    }
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    try:
        torch.save(checkpoint, partial)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, path)


def layer_of(model: Module, tile_name: str) -> Module:
    """The layer holding the tile ``tile_name`` (``"0.analog_module"`` -> ``model[0]``;
    the model itself for a tile of its own)."""
    layer_name = tile_name.rpartition(".")[0]
    return model.get_submodule(layer_name) if layer_name else model


def named_tiles(model: Module, path: str) -> List[Tuple[str, InferenceTileWithPeriphery]]:
    """The analog tiles of ``model``, named as ``named_analog_tiles()`` names them."""
    named = getattr(model, "named_analog_tiles", None)
    if named is None:
        raise ValueError(
            f"{path}: {type(model).__name__} is not an aihwkit analog model (it has no "
            "named_analog_tiles()); convert it with convert_to_analog(...) or "
            "convert_to_analog_sliced(...)"
        )
    tiles = list(named())
    if not tiles:
        raise ValueError(f"{path}: {type(model).__name__} has no analog tiles")
    for name, tile in tiles:
        if not isinstance(tile, InferenceTileWithPeriphery):
            raise ValueError(
                f"{path}: tile {name!r} is a {type(tile).__name__}, not an inference tile "
                "(InferenceRPUConfig, TorchInferenceRPUConfig, ...): it has no programmed "
                "state"
            )
    return tiles


def _tile_record(name: str, tile: InferenceTileWithPeriphery) -> Tuple[Dict, Dict]:
    """``(metadata, tensors)`` of one tile (see the module docstring)."""
    noise_model = tile.rpu_config.noise_model
    converter = getattr(noise_model, "g_converter", None)
    compensation = getattr(tile.rpu_config, "drift_compensation", None)
    current = tile.tile.get_weights()
    programmed = tile.programmed_weights
    parameters = tile.drift_noise_parameters
    tensors: Dict[str, Any] = {
        "current": _plain(current),
        "reference": _tensor_or_none(name, "reference_combined_weights",
                                     tile.reference_combined_weights),
        "programmed": _tensor_or_none(name, "programmed_weights", programmed),
        "drift_noise_parameters": None if parameters is None else [
            _tensor_or_none(name, f"drift_noise_parameters[{i}]", p)
            for i, p in enumerate(parameters)],
        "alpha": _tensor_or_none(name, "alpha", tile.alpha),
        "drift_baseline": _tensor_or_none(name, "drift_baseline", tile.drift_baseline),
        "drift_readout_tensor": None,
        "devices": None,
        "drifted_devices": None,
    }
    metadata: Dict[str, Any] = {
        "name": name,
        "tile_class": type(tile).__name__,
        "simulator_class": type(tile.tile).__name__,
        "weight_shape": list(current.shape),
        "dtype": dtype_name(current.dtype),
        "noise_model": type(noise_model).__name__,
        "noise_params": noise_params(noise_model),
        "drift_compensation": None if compensation is None else type(compensation).__name__,
        "rpu_config": rpu_config_parts(tile.rpu_config),
        "converter": _converter_record(converter),
        "simulator_extra": simulator_extra(name, tile),
        "drift_readout_identity": None,
        "devices": None,
        "drifted_devices": None,
    }
    readout = _tensor_or_none(name, "drift_readout_tensor", tile.drift_readout_tensor)
    if readout is not None and _is_identity(readout):
        metadata["drift_readout_identity"] = {"size": readout.shape[0],
                                              "dtype": dtype_name(readout.dtype)}
    else:
        tensors["drift_readout_tensor"] = readout
    if isinstance(converter, QuantizedSlicedConductanceConverter) and programmed is not None:
        state = device_state.attached(programmed, converter.table.key,
                                      converter.quantizer.decode)
        if state is not None:
            tensors["devices"] = _devices_tensors(state)
            metadata["devices"] = {"clipped_fraction": state.clipped_fraction,
                                   "drifted_to": _seconds(state.drifted_to)}
            if state.current is not None and converts_in_forward(tile):
                tensors["drifted_devices"] = _devices_tensors(state.current)
                metadata["drifted_devices"] = {
                    "clipped_fraction": state.current.clipped_fraction,
                    "t_inference": _seconds(state.current.t_inference),
                }
    return metadata, tensors


def _is_identity(tensor: Tensor) -> bool:
    return (tensor.dim() == 2 and tensor.shape[0] == tensor.shape[1]
            and torch.equal(tensor, torch.eye(tensor.shape[0], dtype=tensor.dtype,
                                              device=tensor.device)))


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _seconds(value: Any) -> Optional[float]:
    """A time in seconds as a JSON number (aihwkit passes on whatever it was given)."""
    return None if value is None else float(value)


def _plain(tensor: Tensor) -> Tensor:
    """``tensor`` as a plain tensor sharing its memory, without Python attributes.

    ``torch.save`` pickles a tensor's ``__dict__`` too: the programmed weights of our
    converter carry their :class:`DeviceState` there, which ``weights_only`` loading
    refuses. (Subclasses such as aihwkit's ``AnalogContext`` are refused likewise.)
    """
    return tensor.detach().as_subclass(Tensor)


def _tensor_or_none(tile_name: str, attribute: str, value: Any) -> Optional[Tensor]:
    if value is None:
        return None
    if isinstance(value, Tensor):
        return _plain(value)
    raise ValueError(
        f"tile {tile_name!r}: {attribute} is a {type(value).__name__}, not a tensor; it "
        "cannot be stored without pickle"
    )


def _devices_tensors(state: device_state.DeviceState) -> Dict[str, Any]:
    return {"conductances": [_plain(g) for g in state.conductances],
            "scale": _plain(state.scale)}


def _converter_record(converter: Any) -> Dict[str, Any]:
    """The converter as JSON: enough to check ours, the settings of aihwkit's."""
    if isinstance(converter, QuantizedSlicedConductanceConverter):
        level_noise = converter.level_noise
        return {
            "class": type(converter).__name__,
            "table": converter.table.to_dict(),
            "scale": converter.scale,
            "per_channel": converter.per_channel,
            "percentile": converter.percentile,
            "level_noise": None if level_noise is None else dataclasses.asdict(level_noise),
            "compact_state": bool(getattr(converter, "compact_state", False)),
        }
    settings = {key: value for key, value in vars(converter).items()
                if not key.startswith("_") and json_able(value)} if converter is not None else {}
    return {"class": type(converter).__name__, "settings": settings}


def simulator_extra(tile_name: str, tile: InferenceTileWithPeriphery) -> Optional[Dict]:
    """The compiled tile's extra simulator state (periphery settings drawn per tile);
    None for the torch tiles, which have none."""
    extra = tile.tile.dump_extra() if hasattr(tile.tile, "dump_extra") else None
    if extra is None:
        return None
    if not json_able(extra):
        raise ValueError(f"tile {tile_name!r}: the simulator tile's extra state (dump_extra) "
                         "is not JSON-able; it cannot be stored without pickle")
    return extra


def json_able(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def _ordinary_state(model: Module) -> Tuple[Dict[str, Tensor], Dict[str, Any]]:
    """The tensors of ``model.state_dict()`` and its JSON-able extra states.

    aihwkit's ``analog_tile_state`` entries (pickled tile objects, rpu_configs) are
    left out: the tile records hold what they describe; so are the tiles' analog
    contexts, which hold nothing (see the module docstring).
    """
    tensors: Dict[str, Tensor] = {}
    extra: Dict[str, Any] = {}
    # keep_vars: a plain state_dict() detaches every parameter, which turns aihwkit
    # 1.2.0's analog context into a placeholder tensor no longer recognisable as one.
    for key, value in model.state_dict(keep_vars=True).items():
        if isinstance(value, AnalogContext):
            continue
        if isinstance(value, Tensor):
            tensors[key] = _plain(value)
        elif is_analog_tile_state(key):
            continue
        elif json_able(value):
            extra[key] = json.loads(json.dumps(value))
        else:
            raise ValueError(f"state_dict entry {key!r} is a {type(value).__name__}, which "
                             "cannot be stored without pickle")
    return tensors, extra


def analog_context_keys(state: Dict[str, Any]) -> Set[str]:
    """The keys of a ``state_dict(keep_vars=True)`` that hold a tile's analog context."""
    return {key for key, value in state.items() if isinstance(value, AnalogContext)}


def is_analog_tile_state(key: str) -> bool:
    return key.rsplit(".", 1)[-1] == AnalogTileStateNames.ANALOG_STATE_NAME
