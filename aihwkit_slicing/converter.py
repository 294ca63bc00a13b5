"""``QuantizedSlicedConductanceConverter``: quantized weight slicing as an aihwkit converter.

Set it as ``rpu_config.noise_model.g_converter`` (or pass it as ``g_converter`` to any
aihwkit noise model) and every tile programs its weights onto the states of the unit
cell described by a :class:`~aihwkit_slicing.tables.ProgrammingTable`; programming
noise, drift and read noise then act on each device separately.

Data flow of ``convert_to_conductances`` for trained weights::

    weights --scale (scaling.py)--> uS --nearest level (quantize.py)--> table column
            --gather--> 2P conductance tensors (gp0, gm0, gp1, gm1, ...)

and ``convert_back_to_weights`` computes ``sum_k f_k (gp_k - gm_k) / scale_ratio``.

Weights the converter produced itself (programmed or drifted weights, and copies of
them) are recognized and *not* quantized again; see :mod:`aihwkit_slicing.memory`.
"""

from __future__ import annotations

import copy
import math
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor
from torch.autograd import no_grad

from aihwkit.inference.converter.base import BaseConductanceConverter

from aihwkit_slicing.memory import (
    attach_device_state,
    attached_device_state,
    bit_sum,
    fingerprint,
    shared_records,
)
from aihwkit_slicing.quantize import ACCELERATOR_CHUNK, CPU_CHUNK, LevelQuantizer, compute_dtype
from aihwkit_slicing.scaling import (
    LevelNoise,
    Scaling,
    compute_scaling,
    raise_not_finite,
    validate_rule,
)
from aihwkit_slicing.tables import ProgrammingTable


#: Trained weight tensors whose (clip-rule) scaling a converter remembers.
SCALING_CACHE = 8


class QuantizedSlicedConductanceConverter(BaseConductanceConverter):
    r"""Weights quantized onto the states of a sliced unit cell.

    A weight is stored on ``P`` device pairs; pair ``k`` is weighted by ``f_lst[k]``
    and the pair currents add up in analog. The cell can only be programmed to the
    columns of ``g_lst``, so each weight is rounded to the nearest level the cell can
    represent (ties toward zero) and programmed with that level's column.

    Args:
        f_lst: ``P`` positive significance factors, least significant pair first.
        g_lst: ``2P x L`` conductances in :math:`\mu S`; rows ``gp0, gm0, gp1, gm1,
            ...``; column ``j`` is one state of the whole unit cell.
        g_min: In :math:`\mu S`, the lowest device conductance (default: smallest
            entry of ``g_lst``).
        g_max: In :math:`\mu S`, the highest device conductance, which aihwkit's
            noise models normalize by (default: largest entry of ``g_lst``).
        encoding: rule picking one column among several encoding the same level
            (see :data:`aihwkit_slicing.tables.ENCODING_RULES`).
        scale: how weights map onto the levels: ``"max"`` (default; the largest
            ``|w|`` lands on the largest ``|level|``, aihwkit's convention),
            ``"percentile"`` or ``"mse"`` (see :mod:`aihwkit_slicing.scaling`).
        per_channel: one scale per output channel (row of the ``[out, in]`` weight)
            instead of one per tensor.
        percentile: for ``scale="percentile"``, the percentile of ``|w|`` that lands
            on the outermost level, in (0, 100].
        level_noise: for ``scale="mse"``, the expected device error of every level
            (:func:`aihwkit_slicing.encodings.level_noise`): the clip then minimizes
            quantization plus device error instead of quantization error alone, and
            each weight goes to the level whose expected read-back is nearest (see
            :class:`~aihwkit_slicing.quantize.LevelQuantizer`).
        name: optional table name (reports, plots).

    Attributes:
        table: the :class:`ProgrammingTable`.
        g_min, g_max: device range in :math:`\mu S`.
        f_lst: the significance factors.
        last_clipped_fraction: fraction of the weights that saturated on the outermost
            level in the last conversion of trained weights (0 for ``"max"``).

    Raises:
        ValueError: for any malformed argument, naming it and the bad value.
    """

    def __init__(
        self,
        f_lst: Sequence[float],
        g_lst: Sequence[Sequence[float]],
        g_min: Optional[float] = None,
        g_max: Optional[float] = None,
        encoding: str = "min_total",
        scale: str = "max",
        per_channel: bool = False,
        percentile: float = 99.9,
        level_noise: Optional[LevelNoise] = None,
        name: Optional[str] = None,
    ):
        table = ProgrammingTable(f_lst, g_lst, g_min=g_min, g_max=g_max, encoding=encoding,
                                 name=name)
        self._setup(table, scale, per_channel, percentile, level_noise)

    @classmethod
    def from_table(
        cls,
        table: ProgrammingTable,
        scale: str = "max",
        per_channel: bool = False,
        percentile: float = 99.9,
        level_noise: Optional[LevelNoise] = None,
    ) -> "QuantizedSlicedConductanceConverter":
        """Build a converter for an existing :class:`ProgrammingTable`."""
        if not isinstance(table, ProgrammingTable):
            raise TypeError(f"table must be a ProgrammingTable, got {type(table).__name__}")
        converter = cls.__new__(cls)
        converter._setup(table, scale, per_channel, percentile, level_noise)
        return converter

    def _setup(self, table: ProgrammingTable, scale: str, per_channel: bool,
               percentile: float, level_noise: Optional[LevelNoise] = None) -> None:
        validate_rule(scale, percentile)
        if not isinstance(per_channel, bool):
            raise ValueError(f"per_channel must be True or False, got {per_channel!r}")
        if level_noise is not None:
            if scale != "mse":
                raise ValueError(f"level_noise needs scale='mse', got scale={scale!r}")
            if not isinstance(level_noise, LevelNoise):
                raise ValueError(f"level_noise must be a LevelNoise, got {level_noise!r}")
            if len(level_noise.mean) != table.n_levels:
                raise ValueError(f"level_noise has {len(level_noise.mean)} levels, the table "
                                 f"{table.n_levels}")
        self.level_noise = level_noise
        self._scalings: "OrderedDict[Any, Scaling]" = OrderedDict()
        self.table = table
        self.scale = scale
        self.per_channel = per_channel
        self.percentile = float(percentile)
        self.last_clipped_fraction = 0.0
        self._records = shared_records(table.key)
        self._quantizer = LevelQuantizer(table, level_noise)

    # ------------------------------------------------------------ table accessors
    @property
    def f_lst(self) -> List[float]:
        """Significance factors, least significant pair first."""
        return self.table.f_lst

    @property
    def g_lst(self) -> List[List[float]]:
        """The ``2P x L`` conductance table in microsiemens."""
        return self.table.g_lst

    @property
    def g_min(self) -> float:
        """Lowest device conductance in microsiemens."""
        return self.table.g_min

    @property
    def g_max(self) -> float:
        """Highest device conductance in microsiemens."""
        return self.table.g_max

    @property
    def n_devices(self) -> int:
        """Devices per weight (``2P``)."""
        return self.table.n_devices

    # --------------------------------------------------------------- conversion
    @no_grad()
    def convert_to_conductances(self, weights: Tensor) -> Tuple[List[Tensor], Dict]:
        """Convert weights into the ``2P`` device conductances (microsiemens).

        Trained weights are scaled (see ``scale``), rounded to the nearest level
        and programmed with that level's column. Weights this converter produced
        (or copies of them) keep their exact values and scale instead.

        Args:
            weights: floating-point weights of any shape (aihwkit: ``[out, in]``).

        Returns:
            ``2P`` conductance tensors (``gp0, gm0, gp1, ...``) with the shape, dtype
            and device of ``weights``, and params with ``scale_ratio`` (microsiemens
            per weight unit, 0-d or per channel), ``f_lst`` and ``clipped_fraction``.

        Raises:
            TypeError: if ``weights`` is not a floating-point tensor.
            ValueError: if ``weights`` holds NaN or infinite values, or signs the
                table cannot represent.
        """
        self._check_type(weights)
        state = attached_device_state(weights, self.table.key)
        if state is not None and torch.equal(
            self._weighted_sum(state.conductances, state.params["scale_ratio"]), weights
        ):
            return [g.clone() for g in state.conductances], dict(state.params)
        if weights.numel() == 0:
            block = self._quantizer.encode(weights)
            one = torch.ones((), dtype=compute_dtype(weights.dtype), device=weights.device)
            return list(block.unbind(0)), self._params(one, 0.0)
        if len(self._records):
            content = fingerprint(weights)
            if not all(math.isfinite(v) for v in content[:2]):
                raise_not_finite(weights)
            scale = self._records.scale_for(weights, content)
            if scale is not None:
                block = self._quantizer.encode(weights, scale, keep_residual=True)
                return list(block.unbind(0)), self._params(scale, 0.0)
        scaling = self._scaling(weights)
        self.last_clipped_fraction = scaling.clipped_fraction
        block = self._quantizer.encode(weights, scaling.scale)
        return list(block.unbind(0)), self._params(scaling.scale, scaling.clipped_fraction)

    @no_grad()
    def convert_back_to_weights(self, conductances: List[Tensor], params: Dict) -> Tensor:
        """Weights from device conductances: ``sum_k f_k (gp_k - gm_k) / scale_ratio``.

        Args:
            conductances: ``2P`` tensors in microsiemens, ``gp0, gm0, gp1, ...``.
            params: the params returned by :meth:`convert_to_conductances`.

        Returns:
            The weights, in the dtype and on the device of the conductances. The
            converter remembers them (see :mod:`aihwkit_slicing.memory`).

        Raises:
            ValueError: if the number of conductances does not match the table or
                ``params`` has no ``scale_ratio``.
        """
        if len(conductances) != self.n_devices:
            raise ValueError(
                f"conductances must hold {self.n_devices} tensors (2 per pair of the "
                f"table), got {len(conductances)}"
            )
        if "scale_ratio" not in params:
            raise ValueError("params must contain 'scale_ratio' (from convert_to_conductances)")
        weights = self._weighted_sum(conductances, params["scale_ratio"])
        if weights.numel():
            attach_device_state(weights, self.table.key, conductances, params)
            self._records.add(weights, fingerprint(weights), params["scale_ratio"])
        return weights

    @no_grad()
    def quantize(self, weights: Tensor) -> Tensor:
        """The quantized weights: what programming without noise would store.

        Unlike the aihwkit round trip, this neither uses nor changes the memory of
        produced weights, so it always quantizes.
        """
        self._check_type(weights)
        if weights.numel() == 0:
            return weights.clone()
        scaling = self._scaling(weights)
        block = self._quantizer.encode(weights, scaling.scale)
        return self._weighted_sum(list(block.unbind(0)), scaling.scale)

    def forget(self) -> None:
        """Forget the fingerprints of produced weights (shared by all converters of
        this table).

        Copies of produced weights are quantized afresh afterwards; a tensor that
        :meth:`convert_back_to_weights` returned still carries its device state.
        """
        self._records.clear()

    # ------------------------------------------------------------------ helpers
    def _weighted_sum(self, conductances: List[Tensor], scale: Any) -> Tensor:
        """``sum_k f_k (gp_k - gm_k) / scale`` in the compute dtype, cast back.

        Each pair's difference is formed first, so swapping every pair's plus and
        minus device negates the result exactly (``q(-w) == -q(w)``). The sum runs in
        chunks (see :mod:`aihwkit_slicing.quantize`), so the pair differences never
        need a weights-sized temporary.
        """
        out_dtype = conductances[0].dtype
        cdtype = compute_dtype(out_dtype)
        f_lst = self.table.f_lst
        scale = torch.as_tensor(scale, device=conductances[0].device).to(cdtype)
        shape = conductances[0].shape
        total = torch.empty(shape, dtype=cdtype, device=conductances[0].device)
        flat_total = total.view(-1)
        flat = [g.reshape(-1) for g in conductances]
        chunk = CPU_CHUNK if total.device.type == "cpu" else ACCELERATOR_CHUNK
        for start in range(0, flat_total.numel(), chunk):
            part = flat_total[start:start + chunk]
            torch.sub(flat[0][start:start + chunk], flat[1][start:start + chunk], out=part)
            if f_lst[0] != 1.0:
                part.mul_(f_lst[0])
            for k in range(1, len(f_lst)):
                difference = torch.sub(flat[2 * k][start:start + chunk],
                                       flat[2 * k + 1][start:start + chunk])
                part.add_(difference, alpha=f_lst[k])
        if scale.dim() == 0 or torch.broadcast_shapes(scale.shape, shape) == shape:
            total.div_(scale)
        else:
            total = total / scale
        return total.to(out_dtype)

    def _scaling(self, weights: Tensor) -> Scaling:
        """The scaling of ``weights``, remembered for the same trained weights.

        aihwkit programs the same reference weights once per repeat; an MSE search is
        the costly part, so its result is kept for up to :data:`SCALING_CACHE` tensors,
        keyed by their exact content (fingerprint, and per-row bit sums when per channel).
        """
        if self.scale == "max":
            return compute_scaling(weights, self._quantizer, self.scale, self.per_channel,
                                   self.percentile, self.level_noise)
        key: Tuple[Any, ...] = (fingerprint(weights), weights.dtype, tuple(weights.shape),
                                weights.device)
        if self.per_channel and weights.dim() > 1:
            key += (tuple(bit_sum(weights.reshape(weights.shape[0], -1), dim=1).tolist()),)
        scaling = self._scalings.get(key)
        if scaling is None:
            scaling = compute_scaling(weights, self._quantizer, self.scale, self.per_channel,
                                      self.percentile, self.level_noise)
            self._scalings[key] = scaling
            while len(self._scalings) > SCALING_CACHE:
                self._scalings.popitem(last=False)
        return scaling

    def _params(self, scale: Tensor, clipped_fraction: float) -> Dict[str, Any]:
        return {
            "scale_ratio": scale,
            "f_lst": self.table.f_lst,
            "clipped_fraction": clipped_fraction,
        }

    @staticmethod
    def _check_type(weights: Any) -> None:
        if not isinstance(weights, Tensor):
            raise TypeError(f"weights must be a torch.Tensor, got {type(weights).__name__}")
        if not weights.is_floating_point():
            raise TypeError(f"weights must be a floating-point tensor, got {weights.dtype}")

    # ----------------------------------------------------------- python protocol
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, QuantizedSlicedConductanceConverter):
            return NotImplemented
        return (
            type(self) is type(other)
            and self.table == other.table
            and self.scale == other.scale
            and self.per_channel == other.per_channel
            and self.percentile == other.percentile
            and self.level_noise == other.level_noise
        )

    __hash__ = None  # mutable (remembers produced weights)

    def __repr__(self) -> str:
        table = self.table
        if table.n_columns <= 32:
            g_repr = repr(table.g_lst)
        else:
            g_repr = f"<{table.n_devices} x {table.n_columns} table, see .table>"
        args = [f"f_lst={table.f_lst!r}", f"g_lst={g_repr}", f"g_min={table.g_min!r}",
                f"g_max={table.g_max!r}"]
        if table.encoding != "min_total":
            args.append(f"encoding={table.encoding!r}")
        if self.scale != "max":
            args.append(f"scale={self.scale!r}")
        if self.per_channel:
            args.append("per_channel=True")
        if self.scale == "percentile":
            args.append(f"percentile={self.percentile!r}")
        if self.level_noise is not None:
            args.append(f"level_noise=<{len(self.level_noise.mean)} levels: "
                        f"{self.level_noise.description or 'noise-aware clip'}>")
        if table.name is not None:
            args.append(f"name={table.name!r}")
        return f"{type(self).__name__}({', '.join(args)})"

    __str__ = __repr__

    def __getstate__(self) -> Dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_quantizer", None)  # lookup caches: rebuilt from the table
        state.pop("_scalings", None)
        state["_records"] = self._records.items()  # small: fingerprints and scales
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        records = state.pop("_records", [])
        self.__dict__.update(state)
        self.__dict__.setdefault("level_noise", None)
        self._quantizer = LevelQuantizer(self.table, self.level_noise)
        self._scalings = OrderedDict()
        self._records = shared_records(self.table.key)
        if records:
            self._records.update(records)

    def __deepcopy__(self, memo: Dict[int, Any]) -> "QuantizedSlicedConductanceConverter":
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        state = self.__dict__.copy()
        state.pop("_quantizer", None)
        state.pop("_scalings", None)
        state.pop("_records", None)  # shared anyway (see aihwkit_slicing.memory)
        new.__setstate__(copy.deepcopy(state, memo))
        return new
