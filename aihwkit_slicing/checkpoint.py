"""Save a programmed analog chip and restore it into a freshly converted model.

aihwkit's ``state_dict`` keeps neither a tile's programmed weights nor its drift
coefficients (nor, for :class:`~aihwkit_slicing.converter.QuantizedSlicedConductanceConverter`,
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
* as JSON metadata: the tile and noise-model classes, the converter (for ours its
  table, scale rule, per-channel flag and percentile; for aihwkit's its class and
  JSON-able settings) and the compiled tile's extra simulator state (e.g. the output
  offsets it draws per tile for ``forward.v_offset_std``).

Plus every tensor of the model's ordinary ``state_dict()`` (biases, mapping scales,
digital layers, ...) and its JSON-able extra states (e.g. the slicing of
:class:`~aihwkit_slicing.digital.AnalogSlicedLinear`), except each tile's
``analog_ctx``: aihwkit's :class:`~aihwkit.optim.context.AnalogContext` holds no state
of its own. In aihwkit 1.1.0 it is a constant 0-d tensor of ones; in aihwkit 1.2.0 it
is a view of the tile's raw weights (the tile record holds them) in "placeholder
mode", which refuses to be read or written (``RuntimeError: AnalogContext data is in
placeholder mode``) and whose ``detach()`` is uninitialized memory of its shape.
aihwkit's own ``load_state_dict`` skips it as well. Files that hold it (written before,
with aihwkit 1.1.0) still load: the entry is ignored.

Loading checks everything first (format, tile names and count, shapes, dtypes, tile
and converter classes, programming table, state_dict keys) and raises ``ValueError``
naming the file and what differs; only a file that fits the model changes it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, NoReturn, Optional, Sequence, Set, Tuple, Union

import torch
from torch import Tensor
from torch.nn import Module

import aihwkit
from aihwkit.optim.context import AnalogContext
from aihwkit.simulator.tiles.base import AnalogTileStateNames
from aihwkit.simulator.tiles.inference import InferenceTileWithPeriphery

from aihwkit_slicing import device_state
from aihwkit_slicing.call_sites import converts_in_forward
from aihwkit_slicing.converter import QuantizedSlicedConductanceConverter
from aihwkit_slicing.tables import ProgrammingTable

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
    tiles = _named_tiles(model, str(path))
    tile_metadata = []
    tile_tensors: Dict[str, Dict[str, Any]] = {}
    for name, tile in tiles:
        entry, tensors = _tile_record(name, tile)
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


def _named_tiles(model: Module, path: str) -> List[Tuple[str, InferenceTileWithPeriphery]]:
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
        "dtype": _dtype_name(current.dtype),
        "noise_model": type(noise_model).__name__,
        "drift_compensation": None if compensation is None else type(compensation).__name__,
        "converter": _converter_record(converter),
        "simulator_extra": _simulator_extra(name, tile),
        "drift_readout_identity": None,
        "devices": None,
        "drifted_devices": None,
    }
    readout = _tensor_or_none(name, "drift_readout_tensor", tile.drift_readout_tensor)
    if readout is not None and _is_identity(readout):
        metadata["drift_readout_identity"] = {"size": readout.shape[0],
                                              "dtype": _dtype_name(readout.dtype)}
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


def _dtype_name(dtype: torch.dtype) -> str:
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
        }
    settings = {key: value for key, value in vars(converter).items()
                if not key.startswith("_") and _json_able(value)} if converter is not None else {}
    return {"class": type(converter).__name__, "settings": settings}


def _simulator_extra(tile_name: str, tile: InferenceTileWithPeriphery) -> Optional[Dict]:
    """The compiled tile's extra simulator state (periphery settings drawn per tile);
    None for the torch tiles, which have none."""
    extra = tile.tile.dump_extra() if hasattr(tile.tile, "dump_extra") else None
    if extra is None:
        return None
    if not _json_able(extra):
        raise ValueError(f"tile {tile_name!r}: the simulator tile's extra state (dump_extra) "
                         "is not JSON-able; it cannot be stored without pickle")
    return extra


def _json_able(value: Any) -> bool:
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
        elif _is_analog_tile_state(key):
            continue
        elif _json_able(value):
            extra[key] = json.loads(json.dumps(value))
        else:
            raise ValueError(f"state_dict entry {key!r} is a {type(value).__name__}, which "
                             "cannot be stored without pickle")
    return tensors, extra


def _is_analog_tile_state(key: str) -> bool:
    return key.rsplit(".", 1)[-1] == AnalogTileStateNames.ANALOG_STATE_NAME


def _analog_context_keys(state: Dict[str, Any]) -> Set[str]:
    """The keys of a ``state_dict(keep_vars=True)`` that hold a tile's analog context."""
    return {key for key, value in state.items() if isinstance(value, AnalogContext)}


# =================================================================== loading
@dataclass
class _TileRestore:
    """What :func:`load_programmed` sets on one tile, checked and prepared."""

    tile: InferenceTileWithPeriphery
    current: Tensor
    reference: Optional[Tensor]
    programmed: Optional[Tensor]
    drift_noise_parameters: Optional[List[Optional[Tensor]]]
    alpha: Tensor
    drift_baseline: Optional[Tensor]
    drift_readout_tensor: Optional[Tensor]
    devices: Optional[device_state.DeviceState]
    simulator_extra: Optional[Dict[str, Any]]


class _File:
    """The file being loaded: names it in every error."""

    def __init__(self, path: PathLike):
        self.path = str(path)

    def fail(self, message: str) -> NoReturn:
        raise ValueError(f"{self.path}: {message}")


def load_programmed(model: Module, path: PathLike) -> None:
    """Restore the programmed state saved by :func:`save_programmed` into ``model``.

    ``model`` must be converted the same way as the saved one (same architecture,
    same ``rpu_config``); it need not be programmed. Afterwards its tile weights,
    reference and programmed weights, drift coefficients and drift compensation state
    equal the saved ones bit for bit, the programmed weights of our converter carry
    their devices again, and ``model.drift_analog_weights(t)`` drifts the saved chip
    (no new programming): with the same ``torch.manual_seed`` it gives what the saved
    model would have given. Tensors are placed as aihwkit places them: the tile's
    weights and compensation state on the tile's device, the programmed state on the
    CPU.

    Args:
        model: the model to restore into.
        path: a file written by :func:`save_programmed`.

    Raises:
        ValueError: naming the file and the problem, if the file is not such a
            checkpoint (not a torch file, truncated, another format or version) or
            does not fit ``model`` (tile count, names, classes, shapes or dtypes,
            converter class or programming table, noise model, state_dict entries).
            ``model`` is then unchanged: everything is checked before it is touched.
        OSError: if the file cannot be read (e.g. it does not exist).
    """
    file = _File(path)
    tiles = _named_tiles(model, file.path)
    checkpoint = _read(file)
    metadata = _metadata(file, checkpoint)
    try:
        restores = _tile_restores(file, tiles, checkpoint, metadata)
        copies = _state_dict_copies(file, model, tiles, checkpoint, metadata)
    except (KeyError, TypeError, AttributeError, IndexError) as error:
        file.fail(f"damaged checkpoint: an entry is missing or of the wrong type "
                  f"({type(error).__name__}: {error})")
    with torch.no_grad():
        for target, value in copies:
            target.detach().copy_(value)
    for restore in restores:
        _restore_tile(restore)


def _read(file: _File) -> Dict[str, Any]:
    """The checkpoint dict, read without pickle."""
    with open(file.path, "rb"):  # a missing or unreadable file raises OSError here
        pass
    try:
        checkpoint = torch.load(file.path, map_location="cpu", weights_only=True)
    except Exception as error:  # RuntimeError, UnpicklingError, EOFError, OSError, ...
        if isinstance(error, pickle.UnpicklingError) and "Unsupported global" in str(error):
            reason = ("it holds pickled Python objects (a whole model saved with "
                      "torch.save(model), ...), which are never unpickled here")
        else:
            reason = "truncated, damaged or not a torch file"
        file.fail(f"not a programmed-chip checkpoint of aihwkit-slicing: torch.load("
                  f"weights_only=True) cannot read it ({reason}): {type(error).__name__}: "
                  f"{_first_line(error)}")
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        found = (f"format {checkpoint.get('format')!r}" if isinstance(checkpoint, dict)
                 else f"a {type(checkpoint).__name__}")
        file.fail(f"not a programmed-chip checkpoint of aihwkit-slicing (expected format "
                  f"{FORMAT!r}, found {found}); a plain state_dict or model goes through "
                  "torch.load / load_state_dict instead")
    version = checkpoint.get("version")
    if version != FORMAT_VERSION:
        file.fail(f"checkpoint format version {version!r}; this aihwkit-slicing reads "
                  f"version {FORMAT_VERSION}")
    for entry in ("metadata", "state_dict", "tiles"):
        if entry not in checkpoint:
            file.fail(f"damaged checkpoint: no {entry!r} entry")
    return checkpoint


def _metadata(file: _File, checkpoint: Dict[str, Any]) -> Dict[str, Any]:
    try:
        metadata = json.loads(checkpoint["metadata"])
    except (TypeError, ValueError) as error:
        file.fail(f"damaged checkpoint: its metadata is not JSON ({error})")
    if not isinstance(metadata, dict) or not isinstance(metadata.get("tiles"), list):
        file.fail("damaged checkpoint: its metadata has no list of tiles")
    return metadata


def _state_dict_copies(file: _File, model: Module,
                       tiles: List[Tuple[str, InferenceTileWithPeriphery]],
                       checkpoint: Dict[str, Any],
                       metadata: Dict[str, Any]) -> List[Tuple[Tensor, Tensor]]:
    """``(model tensor, saved tensor)`` pairs of the ordinary state_dict, checked.

    The tiles' ``alpha`` buffers are left to the tile records: aihwkit makes them 0-d
    at a drift, while a fresh tile has shape ``[1]``. The tiles' analog contexts are
    neither copied nor required, and the file's entries for them (files written with
    aihwkit 1.1.0 hold a 0-d one per tile) are ignored (see the module docstring).
    """
    saved: Dict[str, Any] = checkpoint["state_dict"]
    if not isinstance(saved, dict):
        file.fail("damaged checkpoint: its state_dict is not a dict")
    current = model.state_dict(keep_vars=True)
    contexts = _analog_context_keys(current)
    tensors = {key: value for key, value in current.items()
               if isinstance(value, Tensor) and key not in contexts}
    missing = sorted(tensors.keys() - saved.keys())
    unexpected = sorted(saved.keys() - tensors.keys() - contexts)
    if missing or unexpected:
        file.fail(f"saved from another model: state_dict entries missing in the file "
                  f"{_few(missing)}, in the file but not in the model {_few(unexpected)}")
    alphas = {id(tile.alpha) for _, tile in tiles}
    copies = []
    for key, target in tensors.items():
        value = saved[key]
        if id(target) in alphas:
            continue
        if not isinstance(value, Tensor):
            file.fail(f"damaged checkpoint: state_dict entry {key!r} is not a tensor")
        if value.shape != target.shape or value.dtype != target.dtype:
            file.fail(f"saved from another model: state_dict entry {key!r} is "
                      f"{_describe(value)} in the file, {_describe(target)} in the model")
        copies.append((target, value))

    extra = {key: json.loads(json.dumps(value)) for key, value in current.items()
             if not isinstance(value, Tensor) and not _is_analog_tile_state(key)
             and _json_able(value)}
    saved_extra = metadata.get("extra_states", {})
    for key in sorted(extra.keys() | saved_extra.keys()):
        if extra.get(key) != saved_extra.get(key):
            file.fail(f"saved from another model: state_dict entry {key!r} is "
                      f"{saved_extra.get(key)!r} in the file, {extra.get(key)!r} in the model")
    return copies


def _tile_restores(file: _File, tiles: List[Tuple[str, InferenceTileWithPeriphery]],
                   checkpoint: Dict[str, Any], metadata: Dict[str, Any]) -> List[_TileRestore]:
    saved_names = [entry["name"] for entry in metadata["tiles"]]
    names = [name for name, _ in tiles]
    if saved_names != names:
        file.fail(f"saved from another model: the file has {len(saved_names)} analog tiles "
                  f"{_few(saved_names)}, the model {len(names)} {_few(names)}")
    converters = metadata["converters"]
    tables = [_saved_table(file, converter) for converter in converters]
    records = checkpoint["tiles"]
    restores = []
    for (name, tile), entry in zip(tiles, metadata["tiles"], strict=True):
        index = entry["converter"]
        restores.append(_tile_restore(file, name, tile, entry, records[name],
                                      converters[index], tables[index]))
    return restores


def _tile_restore(file: _File, name: str, tile: InferenceTileWithPeriphery,
                  entry: Dict[str, Any], record: Dict[str, Any],
                  saved_converter: Dict[str, Any],
                  saved_table: Optional[ProgrammingTable]) -> _TileRestore:
    """Check one tile's record against the model's tile and prepare its restore.

    Args:
        entry: the tile's metadata; record: its tensors.
        saved_converter, saved_table: the converter it was saved with, and for ours
            its programming table.
    """
    where = f"tile {name!r}"
    for key, kind in (("tile_class", type(tile).__name__),
                      ("simulator_class", type(tile.tile).__name__)):
        if entry[key] != kind:
            file.fail(f"{where} is a {entry[key]} in the file, a {kind} in the model "
                      "(another rpu_config)")
    noise_model = tile.rpu_config.noise_model
    if entry["noise_model"] != type(noise_model).__name__:
        file.fail(f"{where} was programmed with {entry['noise_model']}, the model uses "
                  f"{type(noise_model).__name__}")
    converter = noise_model.g_converter
    _check_converter(file, where, saved_converter, saved_table, converter)

    model_weights = tile.tile.get_weights()
    current = _saved_tensor(file, where, "current weights", record["current"], model_weights)
    reference = _optional_saved_tensor(file, where, "reference weights", record["reference"],
                                       model_weights)
    programmed = _optional_saved_tensor(file, where, "programmed weights",
                                        record["programmed"], model_weights)
    parameters = record["drift_noise_parameters"]
    if parameters is not None:
        if not isinstance(parameters, list) or not all(
                p is None or isinstance(p, Tensor) for p in parameters):
            file.fail(f"damaged checkpoint: {where}: drift_noise_parameters is not a list "
                      "of tensors")
        parameters = [None if p is None else p.clone() for p in parameters]
    alpha = _loose_tensor(file, where, "alpha", record["alpha"])
    if alpha is None:
        file.fail(f"damaged checkpoint: {where} has no alpha")
    simulator_extra = entry["simulator_extra"]
    model_extra = _simulator_extra(name, tile)
    if (None if simulator_extra is None else sorted(simulator_extra)) != (
            None if model_extra is None else sorted(model_extra)):
        file.fail(f"{where}: the simulator tile's extra state differs in kind from the "
                  "model's (another rpu_config)")

    devices = None
    if record["devices"] is not None:
        if programmed is None:
            file.fail(f"damaged checkpoint: {where} has devices but no programmed weights")
        devices = _device_state(file, where, converter, record["devices"], entry["devices"],
                                programmed, model_weights)
        if record["drifted_devices"] is not None:
            drifted = entry["drifted_devices"]
            devices.current = _device_state(file, f"{where} (drifted devices)", converter,
                                            record["drifted_devices"], drifted, None,
                                            model_weights, t_inference=drifted["t_inference"])
    return _TileRestore(
        tile=tile, current=current, reference=reference, programmed=programmed,
        drift_noise_parameters=parameters, alpha=alpha,
        drift_baseline=_loose_tensor(file, where, "drift_baseline", record["drift_baseline"]),
        drift_readout_tensor=_readout(file, where, entry, record),
        devices=devices, simulator_extra=simulator_extra,
    )


def _saved_table(file: _File, converter: Dict[str, Any]) -> Optional[ProgrammingTable]:
    """The programming table of a saved converter of ours; None for aihwkit's."""
    if "table" not in converter:
        return None
    try:
        return ProgrammingTable.from_dict(converter["table"])
    except (ValueError, KeyError, TypeError) as error:
        file.fail(f"damaged checkpoint: a saved programming table is invalid ({error})")


def _check_converter(file: _File, where: str, saved: Dict[str, Any],
                     table: Optional[ProgrammingTable], converter: Any) -> None:
    """The model's converter must be of the saved class; ours must have the saved table."""
    if saved["class"] != type(converter).__name__:
        file.fail(f"{where} was programmed through a {saved['class']}, the model's converter "
                  f"is a {type(converter).__name__}")
    if not isinstance(converter, QuantizedSlicedConductanceConverter):
        return
    if table is None:
        file.fail(f"damaged checkpoint: {where}: no programming table for its converter")
    if table != converter.table:
        file.fail(f"{where} was programmed with another programming table: the file's is "
                  f"{_describe_table(table)}, the model's {_describe_table(converter.table)}")


def _optional_saved_tensor(file: _File, where: str, what: str, value: Any,
                           like: Tensor) -> Optional[Tensor]:
    """None, or a copy of ``value`` of the shape and dtype of ``like``."""
    return None if value is None else _saved_tensor(file, where, what, value, like)


def _saved_tensor(file: _File, where: str, what: str, value: Any, like: Tensor) -> Tensor:
    """A copy of ``value``, which must have the shape and dtype of ``like``."""
    if not isinstance(value, Tensor):
        file.fail(f"damaged checkpoint: {where}: no {what}")
    if value.shape != like.shape or value.dtype != like.dtype:
        file.fail(f"saved from another model: {where}: the {what} are {_describe(value)} in "
                  f"the file, the model's tile holds {_describe(like)}")
    return value.clone()


def _loose_tensor(file: _File, where: str, what: str, value: Any) -> Optional[Tensor]:
    """A copy of ``value`` (a floating-point tensor of any shape, or None)."""
    if value is None:
        return None
    if not isinstance(value, Tensor) or not value.is_floating_point():
        file.fail(f"damaged checkpoint: {where}: {what} is not a floating-point tensor")
    return value.clone()


def _readout(file: _File, where: str, entry: Dict[str, Any],
             record: Dict[str, Any]) -> Optional[Tensor]:
    """The drift read-out tensor: saved, or the identity matrix saved as its size."""
    identity = entry["drift_readout_identity"]
    if identity is None:
        return _loose_tensor(file, where, "drift_readout_tensor", record["drift_readout_tensor"])
    dtype = getattr(torch, identity["dtype"], None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point or not (
            isinstance(identity["size"], int) and identity["size"] > 0):
        file.fail(f"damaged checkpoint: {where}: drift_readout_identity is {identity!r}")
    return torch.eye(identity["size"], dtype=dtype)


def _device_state(file: _File, where: str, converter: Any, record: Dict[str, Any],
                  entry: Dict[str, Any], weights: Optional[Tensor], like: Tensor,
                  t_inference: Optional[float] = None) -> device_state.DeviceState:
    """The saved devices as a :class:`DeviceState`, checked against ``weights``.

    Args:
        weights: the weights the devices must decode to exactly (the programmed
            weights); None for drifted devices, whose weights are their decoding.
        like: the model's tile weights (shape and dtype of every conductance tensor).
    """
    if not isinstance(converter, QuantizedSlicedConductanceConverter):
        file.fail(f"damaged checkpoint: {where} has device conductances, but its converter "
                  "is not a QuantizedSlicedConductanceConverter")
    conductances = record["conductances"]
    if not isinstance(conductances, list) or len(conductances) != converter.n_devices:
        file.fail(f"{where}: the file holds {_count(conductances)} device conductance "
                  f"tensors, the model's table has {converter.n_devices} devices per weight")
    conductances = [_saved_tensor(file, where, f"conductances of device {i}", g, like)
                    for i, g in enumerate(conductances)]
    scale = _loose_tensor(file, where, "scale", record["scale"])
    if scale is None:
        file.fail(f"damaged checkpoint: {where} has no scale")
    try:
        decoded = converter.quantizer.decode(conductances, scale)
    except RuntimeError as error:
        file.fail(f"damaged checkpoint: {where}: the scale of shape {tuple(scale.shape)} "
                  f"does not fit the weights ({error})")
    if weights is not None and not torch.equal(decoded, weights):
        file.fail(f"{where}: the saved device conductances do not decode to the saved "
                  "programmed weights with the model's table (damaged file)")
    state = device_state.DeviceState(
        converter.table.key, conductances, scale, entry["clipped_fraction"],
        decoded if weights is None else weights, t_inference=t_inference)
    state.drifted_to = entry.get("drifted_to")
    return state


def _restore_tile(restore: _TileRestore) -> None:
    """Set everything :func:`_tile_restore` prepared on its tile."""
    tile = restore.tile
    device = tile.device
    if restore.simulator_extra is not None:
        tile.tile.load_extra(restore.simulator_extra, False)
    tile.tile.set_weights(restore.current)
    tile.reference_combined_weights = restore.reference
    tile.programmed_weights = restore.programmed
    if restore.devices is not None and restore.programmed is not None:
        device_state.restore(restore.programmed, restore.devices)
    tile.drift_noise_parameters = restore.drift_noise_parameters
    tile.alpha = restore.alpha.to(device)
    tile.drift_baseline = None if restore.drift_baseline is None else (
        restore.drift_baseline.to(device))
    tile.drift_readout_tensor = None if restore.drift_readout_tensor is None else (
        restore.drift_readout_tensor.to(device))


# =================================================================== messages
def _few(names: Sequence[str], limit: int = 6) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return f"[{shown}{more}]"


def _describe(tensor: Tensor) -> str:
    return f"{tuple(tensor.shape)} {_dtype_name(tensor.dtype)}"


def _describe_table(table: ProgrammingTable) -> str:
    name = f"{table.name!r}, " if table.name else ""
    return (f"{name}{table.n_devices} devices, f_lst={table.f_lst}, {table.n_levels} levels, "
            f"g in [{table.g_min:g}, {table.g_max:g}] uS")


def _first_line(error: Exception) -> str:
    """The first line of ``error``'s message, without terminal escape sequences."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip()
    return text.splitlines()[0] if text else "(no message)"


def _count(value: Any) -> str:
    return str(len(value)) if isinstance(value, list) else "no list of"
