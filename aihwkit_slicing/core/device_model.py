"""Measured device models: per-level programming error, drift and read noise of a device.

Multi-level devices are characterised level by level. A :class:`DeviceModel` lists,
for every level ``g_i`` a device can be programmed to (microsiemens, ascending):

* ``prog_std[i]``: standard deviation of the programmed conductance around ``g_i``
  (microsiemens);
* ``nu_mean[i]``, ``nu_std[i]``: mean and standard deviation of the drift exponent
  ``nu``: a device programmed to ``g_prog`` reads ``g_prog * ((t + t0) / t0) ** -nu``
  at ``t`` seconds after programming, where ``t0`` (seconds) is the time of the first
  read after programming that the drift was measured from (aihwkit's ``t_0``);
* ``read_std[i]``: standard deviation of the read noise at that level (microsiemens);
* ``stuck[i]`` (optional, default 0): the fraction of all devices stuck at level ``i``:
  whatever they are programmed to, they hold level ``i`` and behave like devices
  programmed there.

One model describes every device of a unit cell. It travels in a table's JSON under the
key ``"device"`` (see ``docs/devices.md``), and every conductance of that table must be
one of its levels. :mod:`aihwkit_slicing.integration.measured_noise` turns it into an
aihwkit noise model. The bundled models (:func:`bundled_device_models`) are JSON files
in ``aihwkit_slicing/core/devices/``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from aihwkit_slicing.core.cell_index import CellIndex
from aihwkit_slicing.core.validation import is_real_number

#: Per-level statistics, in the order of the JSON form.
LEVEL_KEYS = ("levels", "prog_std", "nu_mean", "nu_std", "read_std", "stuck")
#: Keys a device model's JSON may hold; all but ``name``, ``source`` and ``stuck`` are
#: required.
DEVICE_KEYS = ("name", "source", "t0") + LEVEL_KEYS
#: Per-level statistics that are standard deviations (must be >= 0).
STD_KEYS = ("prog_std", "nu_std", "read_std")
#: A conductance counts as a level when it lies within this fraction of the highest
#: level from it (float64 tables; tensors of lower precision get their own rounding).
LEVEL_TOLERANCE = 1e-9

BUNDLED = Path(__file__).resolve().parent / "devices"


@dataclass(frozen=True)
class DeviceModel:
    """Per-level statistics of one device type (see the module docstring).

    Args:
        levels: the conductances a device can be programmed to, microsiemens,
            ascending, at least two.
        prog_std: programming error std per level, microsiemens.
        nu_mean, nu_std: drift exponent mean and std per level (dimensionless).
        read_std: read noise std per level, microsiemens.
        t0: seconds after programming of the first read, the drift's reference time.
        stuck: per level, the fraction of all devices stuck there (sum <= 1); default
            none.
        name: short name (reports); not part of :meth:`content_hash`.
        source: where the numbers come from (a citation); not part of the hash.

    Raises:
        ValueError: naming the key and index, for lists of other lengths, non-numbers,
            NaN or infinite values, negative standard deviations, levels that do not
            ascend, stuck fractions outside [0, 1] or summing above 1, ``t0 <= 0``.
    """

    levels: Tuple[float, ...]
    prog_std: Tuple[float, ...]
    nu_mean: Tuple[float, ...]
    nu_std: Tuple[float, ...]
    read_std: Tuple[float, ...]
    t0: float
    stuck: Optional[Tuple[float, ...]] = None
    name: Optional[str] = field(default=None, compare=False)
    source: Optional[str] = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        checked = _checked(self.__dict__, prefix="")
        for key, value in checked.items():
            object.__setattr__(self, key, value)

    # ------------------------------------------------------------ constructors
    @classmethod
    def constant(cls, levels: Sequence[float], t0: float = 20.0, prog_std: float = 0.0,
                 nu_mean: float = 0.0, nu_std: float = 0.0, read_std: float = 0.0,
                 name: Optional[str] = None) -> "DeviceModel":
        """A model with the same statistics at every level (microsiemens, seconds)."""
        n = len(levels)
        return cls(levels=tuple(levels), prog_std=(prog_std,) * n, nu_mean=(nu_mean,) * n,
                   nu_std=(nu_std,) * n, read_std=(read_std,) * n, t0=t0, name=name)

    @classmethod
    def from_dict(cls, data: Any, where: str = "device") -> "DeviceModel":
        """The model of a JSON object (:meth:`to_dict`'s form).

        Args:
            where: how messages name the object (``"device"``: the key in a table).

        Raises:
            ValueError: one line naming ``where``, the key and the index.
        """
        if not isinstance(data, dict):
            raise ValueError(f"{where} must be a JSON object of per-level lists, got "
                             f"{type(data).__name__}")
        unknown = sorted(set(data) - set(DEVICE_KEYS))
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}; a device model "
                             f"has {', '.join(DEVICE_KEYS)}")
        missing = [key for key in DEVICE_KEYS if key not in data
                   and key not in ("name", "source", "stuck")]
        if missing:
            raise ValueError(f"{where} needs the key(s) {', '.join(missing)}")
        checked = _checked({key: data.get(key) for key in DEVICE_KEYS}, prefix=f"{where}.")
        return cls(**checked)

    # ------------------------------------------------------------ properties
    @property
    def n_levels(self) -> int:
        """Number of levels."""
        return len(self.levels)

    @property
    def stuck_fractions(self) -> Tuple[float, ...]:
        """Per level, the fraction of devices stuck there (zeros when none are)."""
        return self.stuck if self.stuck is not None else (0.0,) * self.n_levels

    def to_dict(self) -> Dict[str, Any]:
        """The JSON form: ``name``, ``source``, ``t0`` (seconds) and the per-level lists
        (microsiemens for levels and conductance stds); ``stuck`` only if given."""
        data: Dict[str, Any] = {"name": self.name, "source": self.source, "t0": self.t0}
        for key in LEVEL_KEYS:
            value = getattr(self, key)
            if value is not None:
                data[key] = list(value)
        return data

    def content_hash(self) -> str:
        """16 hex digits: equal for models with equal numbers (name and source left out).
        Sweep records name the device model a row used by it."""
        numbers = {key: getattr(self, key) for key in ("t0",) + LEVEL_KEYS}
        numbers["stuck"] = self.stuck_fractions
        text = json.dumps({k: list(v) if isinstance(v, tuple) else v
                           for k, v in numbers.items()}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    # ------------------------------------------------------------ levels
    def check_conductances(self, conductances: np.ndarray, name: str = "g_lst") -> None:
        """Raise ``ValueError`` naming the first entry of ``conductances`` (a ``2P x L``
        table, microsiemens) that is not one of the levels."""
        g = np.asarray(conductances, dtype=np.float64)
        levels = np.asarray(self.levels)
        index = _nearest(levels, g.reshape(-1))
        off = np.abs(g.reshape(-1) - levels[index]) > LEVEL_TOLERANCE * levels[-1]
        if off.any():
            flat = int(np.argmax(off))
            where = np.unravel_index(flat, g.shape)
            nearest = int(index[flat])
            raise ValueError(
                f"{name}{''.join(f'[{int(i)}]' for i in where)} = {g.reshape(-1)[flat]:g} uS "
                f"is not a level of the device model (nearest: device.levels[{nearest}] = "
                f"{levels[nearest]:g} uS); every conductance of the table must be one of "
                "the device's levels")

    def level_indices(self, conductances: Tensor) -> Tensor:
        """The level of every conductance (microsiemens), as an int64 tensor of its shape.

        Each conductance must be a level, up to the rounding of its dtype (the
        converter hands float32 copies of the table's float64 conductances).

        Raises:
            ValueError: naming the first conductance that is no level, and its nearest.
        """
        dtype = conductances.dtype
        work = dtype if dtype in (torch.float32, torch.float64) else torch.float32
        g = conductances.detach().to(work).reshape(-1)
        levels64 = torch.tensor(self.levels, dtype=torch.float64, device=g.device)
        levels = levels64.to(work)
        # the level below the first midpoint above g (ties to the lower level): a grid of
        # cells where the levels are about evenly spaced, else a binary search
        midpoints = ((levels64[1:] + levels64[:-1]) / 2).to(work)
        cells = CellIndex.build(midpoints.cpu())
        index = (cells.to(g.device)(g) if cells is not None
                 else torch.searchsorted(midpoints, g))
        eps = torch.finfo(dtype).eps if dtype.is_floating_point else 0.0
        tolerance = max(LEVEL_TOLERANCE, 4 * eps) * self.levels[-1]
        off = (g - torch.index_select(levels, 0, index)).abs_() > tolerance
        if off.any():
            flat = int(torch.nonzero(off)[0])
            value = float(g[flat])
            nearest = int(index[flat])
            raise ValueError(
                f"conductance {value:g} uS is not a level of the device model "
                f"{self.name or '(unnamed)'} (nearest: levels[{nearest}] = "
                f"{self.levels[nearest]:g} uS); the measured noise model takes the "
                "conductances of a table whose every entry is a device level")
        return index.reshape(conductances.shape)

    def statistics(self, dtype: torch.dtype, device: Any = None) -> Dict[str, Tensor]:
        """The per-level lists as tensors (``levels``, stds and ``nu_mean``), and
        ``stuck_cdf``: the cumulative stuck fractions."""
        stats = {key: torch.tensor(getattr(self, key), dtype=dtype, device=device)
                 for key in LEVEL_KEYS if key != "stuck"}
        stats["stuck_cdf"] = torch.tensor(np.cumsum(self.stuck_fractions), dtype=torch.float64,
                                          device=device)
        return stats

    def describe(self) -> str:
        """A text report: one line per level."""
        lines = [f"device {self.name or '(unnamed)'}: {self.n_levels} levels, t0 = "
                 f"{self.t0:g} s" + (f"; {self.source}" if self.source else ""),
                 "  level (uS)  prog std (uS)  nu mean  nu std  read std (uS)  stuck"]
        for i in range(self.n_levels):
            lines.append(f"  {self.levels[i]:>10.4g}  {self.prog_std[i]:>13.4g}  "
                         f"{self.nu_mean[i]:>7.4g}  {self.nu_std[i]:>6.4g}  "
                         f"{self.read_std[i]:>13.4g}  {self.stuck_fractions[i]:.4g}")
        return "\n".join(lines)


# ================================================================ files
def load_device_model(name_or_path: Union[str, "os.PathLike[str]"]) -> DeviceModel:
    """A bundled device model by name (:func:`bundled_device_models`), or one read from
    a JSON file (a device model, or a table whose ``"device"`` key holds one).

    Raises:
        ValueError: one line naming the file and the problem, or the known names.
    """
    text = os.fspath(name_or_path)
    bundled = {p.stem.replace("_", "-"): p for p in sorted(BUNDLED.glob("*.json"))}
    if text in bundled:
        path = bundled[text]
    elif os.path.exists(text):
        path = Path(text)
    else:
        raise ValueError(f"no device model {text!r}: neither a file nor a bundled model "
                         f"({', '.join(bundled)})")
    try:
        data = json.loads(path.read_text())
    except OSError as error:
        raise ValueError(f"{path}: cannot read it ({error.strerror or error})") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not JSON ({error.msg} at line {error.lineno})") from None
    where = "device"
    if isinstance(data, dict) and "g_lst" in data:  # a table file
        if data.get("device") is None:
            raise ValueError(f"{path}: the table has no \"device\" key")
        data = data["device"]
    try:
        return DeviceModel.from_dict(data, where=where)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def bundled_device_models() -> Dict[str, DeviceModel]:
    """The device models shipped with the package, by name (see ``docs/devices.md``
    for their sources)."""
    return {p.stem.replace("_", "-"): load_device_model(p)
            for p in sorted(BUNDLED.glob("*.json"))}


# ================================================================ checks
def _nearest(levels: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Index of the level nearest to each value (ties to the lower level)."""
    position = np.clip(np.searchsorted(levels, values), 1, len(levels) - 1)
    below, above = levels[position - 1], levels[position]
    return np.where(values - below <= above - values, position - 1, position)


def _numbers(key: str, values: Any, prefix: str) -> Tuple[float, ...]:
    name = f"{prefix}{key}"
    if hasattr(values, "tolist") and not isinstance(values, (list, tuple)):
        values = values.tolist()
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ValueError(f"{name} must be a list of numbers (one per level), got {values!r}")
    for i, value in enumerate(values):
        if not is_real_number(value) or not math.isfinite(value):
            raise ValueError(f"{name}[{i}] must be a finite number, got {value!r}")
    return tuple(float(v) for v in values)


def _checked(data: Dict[str, Any], prefix: str) -> Dict[str, Any]:
    """The fields of a device model, checked (messages name ``prefix`` + key + index)."""
    out: Dict[str, Any] = {}
    for key in ("name", "source"):
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{prefix}{key} must be a string, got {value!r}")
        out[key] = value
    t0 = data.get("t0")
    if not is_real_number(t0) or not math.isfinite(t0) or t0 <= 0:
        raise ValueError(f"{prefix}t0 must be a number of seconds > 0 (the first read after "
                         f"programming, the drift's reference time), got {t0!r}")
    out["t0"] = float(t0)
    levels = _numbers("levels", data.get("levels"), prefix)
    if len(levels) < 2:
        raise ValueError(f"{prefix}levels must list at least two conductances, got "
                         f"{list(levels)}")
    for i, g in enumerate(levels):
        if g < 0:
            raise ValueError(f"{prefix}levels[{i}] = {g:g} uS: conductances must be >= 0")
        if i and g <= levels[i - 1]:
            raise ValueError(f"{prefix}levels[{i}] = {g:g} uS is not above "
                             f"{prefix}levels[{i - 1}] = {levels[i - 1]:g} uS; levels must ascend")
    out["levels"] = levels
    for key in LEVEL_KEYS[1:]:
        if key == "stuck" and data.get(key) is None:
            out[key] = None
            continue
        values = _numbers(key, data.get(key), prefix)
        if len(values) != len(levels):
            raise ValueError(f"{prefix}{key} has {len(values)} entr"
                             f"{'y' if len(values) == 1 else 'ies'} but {prefix}levels has "
                             f"{len(levels)}; give one per level")
        for i, value in enumerate(values):
            if key in STD_KEYS and value < 0:
                raise ValueError(f"{prefix}{key}[{i}] = {value:g}: a standard deviation must "
                                 "be >= 0")
            if key == "stuck" and not 0 <= value <= 1:
                raise ValueError(f"{prefix}stuck[{i}] = {value:g}: a fraction of the devices "
                                 "must lie in [0, 1]")
        if key == "stuck" and sum(values) > 1 + 1e-12:
            raise ValueError(f"{prefix}stuck sums to {sum(values):g}: at most 1 (fractions of "
                             "all devices)")
        out[key] = None if key == "stuck" and not any(values) else values
    return out
