"""``MeasuredNoiseModel``: an aihwkit noise model from a measured device model, level by level.

aihwkit's noise models describe the devices by fits over the conductance
(``PCMLikeNoiseModel``: polynomial programming noise, a fixed drift fit;
``CustomDriftPCMLikeNoiseModel``: drift interpolated over the conductance). A
multi-level device is characterised level by level instead; a
:class:`~aihwkit_slicing.core.device_model.DeviceModel` lists, per level, the
programming error, the drift exponent's mean and spread, the read noise and the
fraction of devices stuck there. :class:`MeasuredNoiseModel` applies exactly those,
device by device, through aihwkit's own noise-model interface:

* programming (``apply_programming_noise_to_conductance``): the level of every device
  is looked up from its target conductance (each is one of the device model's levels,
  see :meth:`DeviceModel.level_indices`); with the stuck fractions a device is stuck
  at a level instead (it then behaves as programmed there); the programmed conductance
  is ``g + prog_std[level] * N(0, 1)``, clipped at 0 as aihwkit's models do;
* drift coefficients (``generate_drift_coefficients``): per device ``[nu, read_std]``
  stacked (shape ``[2, *g.shape]``): ``nu = nu_mean[level] + nu_std[level] * N(0, 1)``
  (not folded: a negative exponent is a conductance that rises) and the read noise std
  of its level;
* drift and read (``apply_drift_noise_to_conductance``): ``g_prog * ((t + t0) / t0) **
  -nu + read_std * N(0, 1)``, clipped at 0 (``t`` seconds after programming, ``t0`` the
  device model's reference time; at ``t = 0`` no drift, as in ``PCMLikeNoiseModel``).
  The read noise is drawn once per drift, as aihwkit's models draw theirs.

In a tile's programming aihwkit calls the first two methods with the same target
tensor; the draws of the first (which devices are stuck, at which level) are kept on
that tensor for the second, so a stuck device drifts with its stuck level's statistics.
Called apart (a fresh tensor), ``generate_drift_coefficients`` draws for the target
levels; :meth:`MeasuredNoiseModel.program_conductance` returns both at once.

The device model is the one given, or else that of the table the converter programs
(``table.device``): ``NOISE_MODELS["measured"]`` is such a model, so a sweep with
``noise_models=["measured"]`` (``--noise-model measured``) uses each table's own.
Drift compensation works as with aihwkit's models (the tile applies it).
"""

from __future__ import annotations

import copy
import json
import math
from typing import Any, Dict, Optional, Tuple

import torch
from torch import Tensor
from torch.autograd import no_grad

from aihwkit.inference.converter.base import BaseConductanceConverter
from aihwkit.inference.converter.conductance import SinglePairConductanceConverter
from aihwkit.inference.noise.base import BaseNoiseModel

from aihwkit_slicing.core.converter import QuantizedSlicedConductanceConverter
from aihwkit_slicing.core.device_model import DeviceModel
from aihwkit_slicing.core.tables import ProgrammingTable
from aihwkit_slicing.core.validation import is_real_number

#: Tensor attribute that carries a programming step's drift parameters from
#: ``apply_programming_noise_to_conductance`` to ``generate_drift_coefficients``.
DRAWN = "_aihwkit_slicing_measured_drift"
#: What :meth:`MeasuredNoiseModel.recorded_params` says of a model that takes each
#: table's device model but has no table yet.
FROM_EACH_TABLE = "from each table"


class MeasuredNoiseModel(BaseNoiseModel):
    """Programming error, drift and read noise of a measured device, per level.

    Args:
        device_model: the device's per-level statistics; None (default): the device
            model of the table the converter programs (``g_converter.table.device``).
        g_converter: the conductance converter (deep-copied, as aihwkit's models do);
            default aihwkit's single pair, which only a given ``device_model`` whose
            levels it hits could drive (use ours with a table).
        prog_noise_scale, drift_scale, read_noise_scale: factors on the programming
            error std, the drift exponent and the read noise std (aihwkit's names).

    Raises:
        TypeError: for a ``device_model`` that is not a :class:`DeviceModel`.
        ValueError: for a negative or non-finite scale.
    """

    def __init__(
        self,
        device_model: Optional[DeviceModel] = None,
        g_converter: Optional[BaseConductanceConverter] = None,
        prog_noise_scale: float = 1.0,
        drift_scale: float = 1.0,
        read_noise_scale: float = 1.0,
    ):
        g_converter = copy.deepcopy(g_converter) or SinglePairConductanceConverter()
        super().__init__(g_converter)
        if device_model is not None and not isinstance(device_model, DeviceModel):
            raise TypeError(f"device_model must be a DeviceModel, got "
                            f"{type(device_model).__name__}")
        for name, value in (("prog_noise_scale", prog_noise_scale),
                            ("drift_scale", drift_scale),
                            ("read_noise_scale", read_noise_scale)):
            if not is_real_number(value) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        self.device_model = device_model
        self.g_max = getattr(self.g_converter, "g_max", None)
        self.prog_noise_scale = float(prog_noise_scale)
        self.drift_scale = float(drift_scale)
        self.read_noise_scale = float(read_noise_scale)

    @classmethod
    def from_table(cls, table: ProgrammingTable, **kwargs: Any) -> "MeasuredNoiseModel":
        """The noise model of ``table``'s device model, driving our converter of ``table``
        (scaled ``max`` per tensor; a sweep or ``make_rpu_config`` replaces the converter
        and keeps this device model).

        Raises:
            ValueError: if the table has no device model.
        """
        if not isinstance(table, ProgrammingTable):
            raise TypeError(f"table must be a ProgrammingTable, got {type(table).__name__}")
        if table.device is None:
            raise ValueError(f"table {table.name or '(unnamed)'} has no device model (a "
                             "\"device\" key in its JSON, see docs/devices.md)")
        converter = QuantizedSlicedConductanceConverter.from_table(table)
        return cls(device_model=table.device, g_converter=converter, **kwargs)

    # ------------------------------------------------------------ the device
    @property
    def device(self) -> DeviceModel:
        """The device model in use: the one given, else the converter's table's.

        Raises:
            ValueError: one line saying why there is none.
        """
        if self.device_model is not None:
            return self.device_model
        table = getattr(self.g_converter, "table", None)
        if not isinstance(table, ProgrammingTable):
            raise ValueError(
                f"the measured noise model has no device model: its converter "
                f"{type(self.g_converter).__name__} programs no table; pass device_model=, "
                "or drive it with QuantizedSlicedConductanceConverter of a table that "
                "carries one (docs/devices.md)")
        if table.device is None:
            raise ValueError(
                f"table {table.name or '(unnamed)'} has no device model; the measured noise "
                "model takes each table's own (a \"device\" key in its JSON, "
                "docs/devices.md)")
        return table.device

    def recorded_params(self) -> str:
        """What sweep records and checkpoints say of this model (``noise_params``): the
        device model's :meth:`~DeviceModel.content_hash` (or ``"from each table"`` while
        there is no table yet) and the scales that are not 1."""
        try:
            device = self.device.content_hash()
        except ValueError:
            device = FROM_EACH_TABLE
        params: Dict[str, Any] = {"device_model": device}
        for name in ("prog_noise_scale", "drift_scale", "read_noise_scale"):
            if getattr(self, name) != 1.0:
                params[name] = getattr(self, name)
        return json.dumps(params, sort_keys=True)

    # ------------------------------------------------------------ aihwkit's interface
    @no_grad()
    def program_conductance(self, g_target: Tensor) -> Tuple[Tensor, Tensor]:
        """Program devices whose targets are ``g_target`` (microsiemens, device levels).

        Returns:
            The programmed conductances (microsiemens) and the drift parameters
            ``[nu, read_std]`` stacked along a new first dimension.
        """
        device = self.device
        index = device.level_indices(g_target)
        stats = device.statistics(g_target.dtype, g_target.device)
        base = g_target
        if device.stuck is not None:
            draw = torch.rand(g_target.shape, dtype=torch.float64, device=g_target.device)
            stuck_at = torch.searchsorted(stats["stuck_cdf"], draw, right=True)
            stuck = stuck_at < device.n_levels
            index = torch.where(stuck, stuck_at, index)
            base = torch.where(stuck, _at(stats["levels"], index), g_target)
        if self.prog_noise_scale and any(device.prog_std):
            std = _at(stats["prog_std"], index).mul_(self.prog_noise_scale)
            g_prog = torch.randn_like(base).mul_(std).add_(base)
        else:
            g_prog = base.clone()
        return g_prog.clamp_(min=0.0), self._drift_parameters(stats, index, device)

    def _drift_parameters(self, stats: Dict[str, Tensor], index: Tensor,
                          device: DeviceModel) -> Tensor:
        parameters = torch.empty((2,) + index.shape, dtype=stats["nu_mean"].dtype,
                                 device=index.device)
        nu, read_std = parameters[0], parameters[1]
        nu.copy_(_at(stats["nu_mean"], index))
        if any(device.nu_std):
            nu.add_(torch.randn_like(nu).mul_(_at(stats["nu_std"], index)))
        nu.mul_(self.drift_scale)
        read_std.copy_(_at(stats["read_std"], index)).mul_(self.read_noise_scale)
        return parameters

    @no_grad()
    def apply_programming_noise_to_conductance(self, g_target: Tensor) -> Tensor:
        """Programmed conductances (microsiemens) of devices targeting ``g_target``;
        their drift parameters wait on ``g_target`` for
        :meth:`generate_drift_coefficients` (see the module docstring)."""
        g_prog, parameters = self.program_conductance(g_target)
        g_target.__dict__[DRAWN] = parameters
        return g_prog

    @no_grad()
    def generate_drift_coefficients(self, g_target: Tensor) -> Tensor:
        """``[nu, read_std]`` per device, stacked: those drawn when ``g_target`` was
        programmed, else drawn now for its levels."""
        drawn = g_target.__dict__.pop(DRAWN, None)
        if drawn is not None:
            return drawn
        device = self.device
        index = device.level_indices(g_target)
        return self._drift_parameters(device.statistics(g_target.dtype, g_target.device),
                                      index, device)

    @no_grad()
    def apply_drift_noise_to_conductance(self, g_prog: Tensor, drift_noise_param: Tensor,
                                         t_inference: float) -> Tensor:
        """``g_prog * ((t + t0) / t0) ** -nu + read_std * N(0, 1)``, clipped at 0
        (microsiemens; ``t = t_inference`` seconds after programming)."""
        nu, read_std = drift_noise_param[0], drift_noise_param[1]
        t_0 = self.device.t0
        t = t_inference + t_0
        g_drift = g_prog * ((t / t_0) ** (-nu)) if t > t_0 else g_prog.clone()
        if bool(read_std.any()):
            g_drift = g_drift + read_std * torch.randn_like(g_drift)
        return g_drift.clamp(min=0.0)


def _at(per_level: Tensor, index: Tensor) -> Tensor:
    """``per_level[index]`` (index_select: faster than advanced indexing for short lists)."""
    return torch.index_select(per_level, 0, index.reshape(-1)).reshape(index.shape)


def follows_tables(noise_model: Any) -> bool:
    """Whether ``noise_model`` takes each table's own device model (``"measured"``)."""
    return isinstance(noise_model, MeasuredNoiseModel) and noise_model.device_model is None


def check_table(noise_model: Any, table: Optional[ProgrammingTable], name: str,
                noise_name: str) -> None:
    """Refuse, in one line naming the table, a table ``noise_model`` cannot program: a
    continuous converter (``table`` None), a table without a device model where the
    noise model takes each table's, a conductance that is no device level. Other noise
    models accept every table."""
    if not isinstance(noise_model, MeasuredNoiseModel):
        return
    if table is None:
        raise ValueError(f"noise model {noise_name!r} programs device levels, but {name!r} is "
                         "aihwkit's continuous converter (any conductance in its range); "
                         "sweep programming tables with it")
    device = noise_model.device_model or table.device
    if device is None:
        raise ValueError(f"noise model {noise_name!r} takes each table's device model, but "
                         f"table {name!r} has none; give its JSON a \"device\" key "
                         "(docs/devices.md)")
    try:
        device.check_conductances(table.conductances)
    except ValueError as error:
        raise ValueError(f"table {name!r}: {error}") from None
