"""Restoring a programmed chip into a freshly converted model: :func:`load_programmed`
reads what :func:`~aihwkit_slicing.integration.checkpoint.save_programmed` wrote.

Everything is checked first (format, tile names and count, shapes, dtypes, tile and
converter classes, programming table, state_dict keys); a mismatch raises ``ValueError``
naming the file and what differs, and only a file that fits the model changes it.
"""

from __future__ import annotations

import json
import pickle
import re
from dataclasses import dataclass
from typing import Any, Dict, List, NoReturn, Optional, Sequence, Tuple

import aihwkit
import torch
from torch import Tensor
from torch.nn import Module

from aihwkit.simulator.tiles.inference import InferenceTileWithPeriphery

from aihwkit_slicing.core import device_state
from aihwkit_slicing.core.converter import QuantizedSlicedConductanceConverter
from aihwkit_slicing.core.tables import ProgrammingTable
from aihwkit_slicing.integration.checkpoint import (
    FORMAT,
    FORMAT_VERSION,
    PathLike,
    analog_context_keys,
    dtype_name,
    is_analog_tile_state,
    json_able,
    layer_of,
    named_tiles,
    simulator_extra,
)
from aihwkit_slicing.integration.setting import noise_params, rpu_config_parts


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
    tiles = named_tiles(model, file.path)
    checkpoint = _read(file)
    metadata = _metadata(file, checkpoint)
    try:
        restores = _tile_restores(file, model, tiles, checkpoint, metadata)
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
    aihwkit 1.1.0 hold a 0-d one per tile) are ignored (see
    :mod:`aihwkit_slicing.integration.checkpoint`).
    """
    saved: Dict[str, Any] = checkpoint["state_dict"]
    if not isinstance(saved, dict):
        file.fail("damaged checkpoint: its state_dict is not a dict")
    current = model.state_dict(keep_vars=True)
    contexts = analog_context_keys(current)
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
             if not isinstance(value, Tensor) and not is_analog_tile_state(key)
             and json_able(value)}
    saved_extra = metadata.get("extra_states", {})
    for key in sorted(extra.keys() | saved_extra.keys()):
        if extra.get(key) != saved_extra.get(key):
            file.fail(f"saved from another model: state_dict entry {key!r} is "
                      f"{saved_extra.get(key)!r} in the file, {extra.get(key)!r} in the model")
    return copies


def _tile_restores(file: _File, model: Module,
                   tiles: List[Tuple[str, InferenceTileWithPeriphery]],
                   checkpoint: Dict[str, Any], metadata: Dict[str, Any]) -> List[_TileRestore]:
    saved_names = [entry["name"] for entry in metadata["tiles"]]
    names = [name for name, _ in tiles]
    if metadata.get("model_class") not in (None, type(model).__name__):
        file.fail(f"saved from another model: a {metadata['model_class']} in the file, a "
                  f"{type(model).__name__} here")
    if saved_names != names:
        file.fail(f"saved from another model: the file has {len(saved_names)} analog tiles "
                  f"{_few(saved_names)}, the model {len(names)} {_few(names)}")
    converters = metadata["converters"]
    tables = [_saved_table(file, converter) for converter in converters]
    records = checkpoint["tiles"]
    restores = []
    same_aihwkit = metadata.get("versions", {}).get("aihwkit") == aihwkit.__version__
    for (name, tile), entry in zip(tiles, metadata["tiles"], strict=True):
        index = entry["converter"]
        restores.append(_tile_restore(file, name, tile, entry, records[name],
                                      converters[index], tables[index]))
        _check_setting(file, f"tile {name!r}", entry, layer_of(model, name), tile,
                       same_aihwkit)
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
    saved_extra = entry["simulator_extra"]
    model_extra = simulator_extra(name, tile)
    if (None if saved_extra is None else sorted(saved_extra)) != (
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
        devices=devices, simulator_extra=saved_extra,
    )


def _check_setting(file: _File, where: str, entry: Dict[str, Any], layer: Module,
                   tile: InferenceTileWithPeriphery, same_aihwkit: bool) -> None:
    """Refuse a tile saved in another setting: another layer class, drift compensation,
    noise-model parameters or rpu_config field (naming it). rpu_config fields are
    compared where the file was saved with this aihwkit (their form is aihwkit's)."""
    if entry.get("layer_class", type(layer).__name__) != type(layer).__name__:
        file.fail(f"saved from another model: {where} belongs to a {entry['layer_class']} in "
                  f"the file, a {type(layer).__name__} in the model")
    compensation = getattr(tile.rpu_config, "drift_compensation", None)
    mine = None if compensation is None else type(compensation).__name__
    if entry["drift_compensation"] != mine:
        file.fail(f"{where} was saved with drift compensation {entry['drift_compensation']}, "
                  f"the model has {mine}: convert the model with the rpu_config it was "
                  "saved with")
    params = noise_params(tile.rpu_config.noise_model)
    if "noise_params" in entry and entry["noise_params"] != params:
        file.fail(f"{where} was saved with noise-model parameters "
                  f"{entry['noise_params'] or '(defaults)'}, the model has "
                  f"{params or '(defaults)'}")
    if same_aihwkit and "rpu_config" in entry:
        parts = rpu_config_parts(tile.rpu_config)
        differ = sorted(key for key in parts.keys() | entry["rpu_config"].keys()
                        if parts.get(key) != entry["rpu_config"].get(key))
        if differ:
            file.fail(f"{where} was saved with another rpu_config: its "
                      f"{', '.join(differ)} differ{'s' if len(differ) == 1 else ''}; convert "
                      "the model with the rpu_config it was saved with")


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
    compact = bool(getattr(converter, "compact_state", False))
    if bool(saved.get("compact_state", False)) != compact:
        file.fail(f"{where} was programmed with compact_state={not compact}, the model's "
                  f"converter has compact_state={compact}: its drifts would round the "
                  "devices otherwise")


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
        converter.table.key, converter.kept_conductances(conductances, lossless=True), scale,
        entry["clipped_fraction"], decoded if weights is None else weights,
        t_inference=t_inference)
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
    return f"{tuple(tensor.shape)} {dtype_name(tensor.dtype)}"


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
