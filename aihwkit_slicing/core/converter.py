"""``QuantizedSlicedConductanceConverter``: quantized weight slicing as an aihwkit converter.

Set it as ``rpu_config.noise_model.g_converter`` (or pass it as ``g_converter`` to any
aihwkit noise model) and every tile programs its weights onto the states of the unit
cell described by a :class:`~aihwkit_slicing.core.tables.ProgrammingTable`; programming
noise, drift and read noise then act on each device separately.

Data flow of ``convert_to_conductances`` for trained weights::

    weights --scale (scaling.py)--> uS --nearest level (quantize.py)--> table column
            --gather--> 2P conductance tensors (gp0, gm0, gp1, gm1, ...)

and ``convert_back_to_weights`` computes ``sum_k f_k (gp_k - gm_k) / scale_ratio``.

aihwkit hands the converter weights it produced itself (drift of the programmed
weights, the IR-drop tile's forward pass); those are answered with the devices they
came from, never quantized again. How the converter tells them from new targets is
described in :mod:`aihwkit_slicing.core.call_sites` and :mod:`aihwkit_slicing.core.device_state`.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor
from torch.autograd import no_grad

from aihwkit.inference.converter.base import BaseConductanceConverter

from aihwkit_slicing.core import device_state
from aihwkit_slicing.core.call_sites import (
    DRIFT,
    IRDROP_FORWARD,
    PROGRAMMING,
    XDEP_READ_NOISE,
    call_site,
    converts_in_forward,
)
from aihwkit_slicing.core.quantize import LevelNoise, LevelQuantizer, compute_dtype
from aihwkit_slicing.core.scaling import Scaling, compute_scaling, validate_rule
from aihwkit_slicing.core.tables import ProgrammingTable

#: Key of ``params`` that carries the state a re-conversion started from.
ORIGIN = "device_state"


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
            (see :data:`aihwkit_slicing.core.tables.ENCODING_RULES`).
        scale: how weights map onto the levels: ``"max"`` (default; the largest
            ``|w|`` lands on the largest ``|level|``, aihwkit's convention),
            ``"percentile"`` or ``"mse"`` (see :mod:`aihwkit_slicing.core.scaling`).
        per_channel: one scale per output channel (row of the ``[out, in]`` weight)
            instead of one per tensor.
        percentile: for ``scale="percentile"``, the percentile of ``|w|`` that lands
            on the outermost level, in (0, 100].
        level_noise: for ``scale="mse"``, the expected device error of every level
            (:func:`aihwkit_slicing.design.encodings.level_noise`): the clip then minimizes
            quantization plus device error instead of quantization error alone, and
            each weight goes to the level whose expected read-back is nearest (see
            :class:`~aihwkit_slicing.core.quantize.LevelQuantizer`).
        name: optional table name (reports, plots).
        compact_state: keep the device conductances behind produced weights (which
            per-device drift needs: ``2P`` tensors per tile, the largest memory of a
            programmed model) in float16 instead of the weights' dtype: half the
            memory. Off by default: the default is exact. With it, every conductance
            the noise model produced is rounded to float16 before the weights are
            computed from it (so the weights describe exactly the devices kept, and
            recognising them stays exact): an error of at most half a float16 ulp,
            ``2**-11`` of the conductance (at most 0.0078 uS below 32 uS), which is
            under 1 % of the standard deviation of aihwkit's PCM programming noise at
            every conductance (0.26 uS at 0, 1.06 uS at 25 uS). Weights in float16 or
            bfloat16 are kept as they are.

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
        compact_state: bool = False,
    ):
        table = ProgrammingTable(f_lst, g_lst, g_min=g_min, g_max=g_max, encoding=encoding,
                                 name=name)
        self._setup(table, scale, per_channel, percentile, level_noise, compact_state)

    @classmethod
    def from_table(
        cls,
        table: ProgrammingTable,
        scale: str = "max",
        per_channel: bool = False,
        percentile: float = 99.9,
        level_noise: Optional[LevelNoise] = None,
        compact_state: bool = False,
    ) -> "QuantizedSlicedConductanceConverter":
        """Build a converter for an existing :class:`ProgrammingTable`."""
        if not isinstance(table, ProgrammingTable):
            raise TypeError(f"table must be a ProgrammingTable, got {type(table).__name__}")
        converter = cls.__new__(cls)
        converter._setup(table, scale, per_channel, percentile, level_noise, compact_state)
        return converter

    def _setup(self, table: ProgrammingTable, scale: str, per_channel: bool,
               percentile: float, level_noise: Optional[LevelNoise] = None,
               compact_state: bool = False) -> None:
        validate_rule(scale, percentile)
        if not isinstance(per_channel, bool):
            raise ValueError(f"per_channel must be True or False, got {per_channel!r}")
        if not isinstance(compact_state, bool):
            raise ValueError(f"compact_state must be True or False, got {compact_state!r}")
        if level_noise is not None:
            if scale != "mse":
                raise ValueError(f"level_noise needs scale='mse', got scale={scale!r}")
            if not isinstance(level_noise, LevelNoise):
                raise ValueError(f"level_noise must be a LevelNoise, got {level_noise!r}")
            if len(level_noise.mean) != table.n_levels:
                raise ValueError(f"level_noise has {len(level_noise.mean)} levels, the table "
                                 f"{table.n_levels}")
        self.level_noise = level_noise
        self.table = table
        self.scale = scale
        self.per_channel = per_channel
        self.percentile = float(percentile)
        self.compact_state = compact_state
        self.last_clipped_fraction = 0.0
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

    @property
    def quantizer(self) -> LevelQuantizer:
        """The nearest-level lookup of this converter's table (and level noise)."""
        return self._quantizer

    # --------------------------------------------------------------- conversion
    @no_grad()
    def convert_to_conductances(self, weights: Tensor) -> Tuple[List[Tensor], Dict]:
        """Convert weights into the ``2P`` device conductances (microsiemens).

        What the weights are decides what happens (see ``docs/design.md``):

        * a new target (programming, a user's tensor, a clone, loaded weights): scaled
          (see ``scale``), rounded to the nearest level and programmed with that
          level's column;
        * weights this converter produced (:meth:`convert_back_to_weights`), unchanged,
          outside programming (aihwkit's drift): the devices they came from;
        * the IR-drop tile's forward pass (a transposed, zero-padded copy of the tile's
          weights): the devices of the tile's current state, laid out the same way;
          a tile with no known state (never programmed, weights set directly) is
          quantized as a new target, one scale per output column if per channel.

        Args:
            weights: floating-point weights of any shape (aihwkit: ``[out, in]``).

        Returns:
            ``2P`` conductance tensors (``gp0, gm0, gp1, ...``) with the shape, dtype
            and device of ``weights``, and params with ``scale_ratio`` (microsiemens
            per weight unit, 0-d or per channel), ``f_lst`` and ``clipped_fraction``.

        Raises:
            TypeError: if ``weights`` is not a floating-point tensor.
            ValueError: if ``weights`` holds NaN or infinite values or signs the table
                cannot represent, or if aihwkit's x-dependent PCM read noise asks for
                pair 0 of a sliced cell.
        """
        self._check_type(weights)
        site = call_site()
        if site.kind == IRDROP_FORWARD:
            return self._convert_tile_copy(weights, site.tile)
        if site.kind == XDEP_READ_NOISE:
            raise ValueError(
                "rpu_config.forward.apply_xdep_pcm_read_noise = True does not work with "
                f"{type(self).__name__}: aihwkit rebuilds the weights from the first "
                "device pair only and converts them again, which cannot describe the "
                "devices of a quantized cell; set apply_xdep_pcm_read_noise = False (the "
                "noise model's read noise still acts on every device)"
            )
        if site.kind != PROGRAMMING:
            state = device_state.attached(weights, self.table.key, self._quantizer.decode)
            if state is not None:
                return state.conductance_copies(), self._params(
                    state.scale, state.clipped_fraction, origin=state)
        return self._convert_new_target(weights)

    @no_grad()
    def convert_back_to_weights(self, conductances: List[Tensor], params: Dict) -> Tensor:
        """Weights from device conductances: ``sum_k f_k (gp_k - gm_k) / scale_ratio``.

        Args:
            conductances: ``2P`` tensors in microsiemens, ``gp0, gm0, gp1, ...``.
            params: the params returned by :meth:`convert_to_conductances`.

        Returns:
            The weights, in the dtype and on the device of the conductances. They carry
            their devices (:class:`~aihwkit_slicing.core.device_state.DeviceState`), so that
            converting them again gives back exactly these conductances.

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
        scale = torch.as_tensor(params["scale_ratio"])
        kept = self.kept_conductances(conductances)
        weights = self._quantizer.decode(kept, scale, conductances[0].dtype)
        if weights.numel() == 0:
            return weights
        origin = params.get(ORIGIN)
        site = call_site() if origin is not None else None
        state = device_state.DeviceState(
            self.table.key, kept, scale, params.get("clipped_fraction", 0.0), weights,
            t_inference=site.t_inference if site is not None else None,
        )
        device_state.attach(weights, state)
        if origin is not None and site.kind == DRIFT and site.tile is not None:
            origin.drifted_to = site.t_inference
            if converts_in_forward(site.tile):
                origin.current = state  # the drifted devices its forward pass converts
        return weights

    @no_grad()
    def quantize(self, weights: Tensor) -> Tensor:
        """The quantized weights: what programming without noise would store.

        Always quantizes, whatever ``weights`` is.
        """
        self._check_type(weights)
        if weights.numel() == 0:
            return weights.clone()
        scaling = self._scaling(weights)
        block = self._quantizer.encode(weights, scaling.scale)
        return self._quantizer.decode(list(block.unbind(0)), scaling.scale)

    def forget(self) -> None:
        """Does nothing (kept for compatibility; deprecated).

        Earlier versions remembered produced weights by content; device state now lives
        with the tensors it describes, so there is nothing to forget.
        """
        warnings.warn("forget() is deprecated and does nothing: device state now lives "
                      "with the weights it describes", DeprecationWarning, stacklevel=2)

    # ------------------------------------------------------------------ helpers
    def _convert_new_target(self, weights: Tensor,
                            channel_dim: int = 0) -> Tuple[List[Tensor], Dict]:
        """Quantize ``weights``; a per-channel scale varies along ``channel_dim``."""
        if weights.numel() == 0:
            block = self._quantizer.encode(weights)
            one = torch.ones((), dtype=compute_dtype(weights.dtype), device=weights.device)
            return list(block.unbind(0)), self._params(one, 0.0)
        if channel_dim == 0:
            scaling = self._scaling(weights)
            scale = scaling.scale
        else:
            scaling = self._scaling(weights.transpose(0, channel_dim))
            scale = scaling.scale.transpose(0, channel_dim) if scaling.scale.dim() else (
                scaling.scale)
        self.last_clipped_fraction = scaling.clipped_fraction
        block = self._quantizer.encode(weights, scale)
        return list(block.unbind(0)), self._params(scale, scaling.clipped_fraction)

    def _convert_tile_copy(self, tile_copy: Tensor, tile: Any) -> Tuple[List[Tensor], Dict]:
        """The IR-drop forward pass: ``tile_copy`` is ``tile``'s weights, ``[in, out]``,
        zero-padded.

        Answered with the devices of ``tile``'s own state whose weights ``tile_copy``
        reproduces exactly (the drifted state first, then the programmed one); anything
        else (a tile never programmed, weights set or loaded directly, no tile found) is
        a new target, as in a fresh process, with its channels (output columns) along
        dimension 1.
        """
        decode = self._quantizer.decode
        for state in device_state.tile_states(tile, self.table.key):
            if device_state.match_padded_transpose(tile_copy, state, decode):
                padding = self._quantizer.zero_conductances(tile_copy.dtype, tile_copy.device)
                laid_out = device_state.laid_out_like_copy(state, tile_copy.shape[0], padding)
                scale = state.scale.reshape(1, -1) if state.scale.dim() else state.scale
                return laid_out, self._params(scale, state.clipped_fraction)
        if tile_copy.dim() != 2:
            return self._convert_new_target(tile_copy)
        return self._convert_new_target(tile_copy, channel_dim=1)

    def kept_conductances(self, conductances: List[Tensor],
                          lossless: bool = False) -> List[Tensor]:
        """The conductances as the device state keeps them: as given, or with
        ``compact_state`` in float16 (where that holds every value: a conductance
        beyond float16's range keeps the whole state exact). With ``lossless``, in
        float16 only if that changes no value (restoring saved devices)."""
        if not self.compact_state or conductances[0].dtype not in (torch.float32,
                                                                   torch.float64):
            return list(conductances)
        kept = [g.to(torch.float16) for g in conductances]
        if lossless:
            same = all(torch.equal(h.to(g.dtype), g) for g, h in zip(conductances, kept))
            return kept if same else list(conductances)
        overflow = torch.stack([g.isinf().any() for g in kept]) & torch.stack(
            [g.isfinite().all() for g in conductances])
        return list(conductances) if bool(overflow.any()) else kept

    def _scaling(self, weights: Tensor) -> Scaling:
        return compute_scaling(weights, self._quantizer, self.scale, self.per_channel,
                               self.percentile, self.level_noise)

    def _params(self, scale: Tensor, clipped_fraction: float,
                origin: Optional[device_state.DeviceState] = None) -> Dict[str, Any]:
        params = {
            "scale_ratio": scale,
            "f_lst": self.table.f_lst,
            "clipped_fraction": clipped_fraction,
        }
        if origin is not None:
            params[ORIGIN] = origin
        return params

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
            and self.compact_state == other.compact_state
        )

    __hash__ = None  # mutable attributes (scale, per_channel, ...)

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
        if self.compact_state:
            args.append("compact_state=True")
        return f"{type(self).__name__}({', '.join(args)})"

    __str__ = __repr__

    def __getstate__(self) -> Dict[str, Any]:
        state = self.__dict__.copy()
        for cache in _CACHES:  # rebuilt from the table
            state.pop(cache, None)
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        for stale in ("_records", "_scalings"):  # pickles of earlier versions
            state.pop(stale, None)
        self.__dict__.update(state)
        self.__dict__.setdefault("level_noise", None)
        self.__dict__.setdefault("compact_state", False)
        self._quantizer = LevelQuantizer(self.table, self.level_noise)

    def __deepcopy__(self, memo: Dict[int, Any]) -> "QuantizedSlicedConductanceConverter":
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        new.__setstate__(copy.deepcopy(self.__getstate__(), memo))
        return new


#: Attributes rebuilt on unpickling and copying instead of being copied.
_CACHES = ("_quantizer",)
