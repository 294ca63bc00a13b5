"""Digitally summed weight slicing: every slice of a weight on its own analog tile.

Two ways to slice a weight ``W`` into ``n`` slices ``W_k`` with significance factors
``f_k`` (``W = sum_k f_k W_k``):

* *Analog summation*, inside one unit cell
  (:class:`~aihwkit_slicing.core.converter.QuantizedSlicedConductanceConverter`): the
  device currents of all slices add up on one bit line and one ADC reads the sum.
  This is a conductance mapping and serves inference only.
* *Digital summation* (this module): slice ``k`` is an ordinary aihwkit analog layer
  with its own tile, its own ``rpu_config`` copy and its own output stage (ADC,
  output noise, drift compensation, ...); the slice outputs are added digitally,

      y = sum_k f_k * y_k + b,

  and the bias ``b`` is added once, digitally. Because every slice is an ordinary
  analog layer, gradients reach every slice (``dL/dW_k = f_k dL/dW``), so the sliced
  network can be trained hardware-aware.

:class:`AnalogSlicedLinear` and :class:`AnalogSlicedConv2d` are *containers*
(:class:`aihwkit.nn.modules.container.AnalogContainerBase`), not analog layers: the
slices are their analog layers, so aihwkit's model-wide calls
(``analog_layers()``, ``program_analog_weights()``, ``drift_analog_weights(t)``,
``train()``/``eval()``, ``state_dict``/``load_state_dict``) reach every slice, also from
an enclosing :class:`~aihwkit.nn.AnalogSequential` or ``AnalogWrapper``.
:func:`convert_to_analog_sliced` converts the ``Linear`` and ``Conv2d`` layers of a
torch model, :func:`convert_to_digital_sliced` converts back.

How a weight is split (:class:`WeightSlicing`) is documented there; all rules scale
per tensor by ``R = max|W|`` (in weight units). The rule names follow
:func:`aihwkit_slicing.core.tables.bit_sliced`: ``"base"`` with ``levels_per_slice`` is
the positional rule, ``"binary"`` with ``bits_per_slice`` its special case
``levels_per_slice = 2 ** bits_per_slice``.

Mapping: each slice's tile uses its full weight range. A slice's scale is one the
split chose, not the user (the largest ``|W_k|`` of 4 ``"binary"`` slices of 2 bits
is ``3/255`` of ``max|W|``). aihwkit's default mapping (``weight_scaling_omega = 0``)
stores weights as they are, relative to a conductance maximum of 1, so such slices
would use a sliver of the conductance range (under 1 % on the bundled digits CNN):
their outputs lie below half an ADC step and under the output noise, and the
factors ``f_k`` (up to 64) amplify that noise. Each slice's copy of the rpu_config
therefore gets ``mapping.weight_scaling_omega = 1.0`` where it has 0 (aihwkit divides
the slice by its ``max|W_k|`` and multiplies its output by it digitally);
``scale_slices=False`` keeps the mapping as given (:func:`slice_rpu_config`). See
``docs/digital-slicing.md`` for the measurements.

Converting back (:func:`convert_to_digital_sliced`) folds each slice's drift
compensation factor into the digital weight by default, so that the digital model
computes what the analog one computes after a drift.

Training: an optimizer step moves slice ``k`` by ``-lr * f_k * dL/dW`` (in weight
units: aihwkit divides a tile's gradient by its mapping scale), so the
reconstructed weight moves by ``-lr * (sum_k f_k**2) * dL/dW``; lower the learning
rate for large factors (``"base"``, ``"binary"``). Slices trained this way leave
their split (and, for ``"base"``, the digit grid);
``layer.set_weights(*layer.get_weights())`` splits the trained weight anew.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Type, Union

import torch
from torch import Tensor
from torch.nn import Conv2d, Linear, Module, ModuleList, Parameter, Sequential

from aihwkit.nn import AnalogConv2d, AnalogLinear, AnalogSequential
from aihwkit.nn.conversion import convert_to_analog, convert_to_digital
from aihwkit.nn.modules.container import AnalogContainerBase
from aihwkit.simulator.configs import TorchInferenceRPUConfig
from aihwkit.simulator.parameters.base import RPUConfigBase
from aihwkit.simulator.tiles.array import TileModuleArray

from aihwkit_slicing.integration.compat import check_compiled_tile
from aihwkit_slicing.core.validation import is_integer, is_real_number

#: Named significance rules (a list of factors is the third option). ``"base"`` is
#: the positional rule of :func:`aihwkit_slicing.core.tables.bit_sliced`; ``"binary"`` is
#: its special case for ``levels_per_slice = 2 ** bits_per_slice``.
SIGNIFICANCE_MODES = ("equal", "base", "binary")

#: Largest ``n_slices * bits_per_slice`` for ``"binary"``: the integer magnitudes
#: must stay exact in float64.
MAX_BINARY_BITS = 52

#: Largest ``levels_per_slice ** n_slices`` for ``"base"`` (the same bound as
#: :data:`MAX_BINARY_BITS`: the integer magnitudes must stay exact in float64).
MAX_BASE_LEVELS = 2**MAX_BINARY_BITS

Significance = Union[str, Sequence[float]]


class WeightSlicing:
    """How a weight is split over slices and summed back: ``W = sum_k f_k W_k``.

    Slice ``k`` (``0 <= k < n_slices``) has the significance factor ``f_k``; as in
    :class:`~aihwkit_slicing.core.tables.ProgrammingTable`, slice 0 is the least
    significant for the named rules. All rules work per tensor with ``R = max|W|``
    (weight units) and give every slice the same range ``[-rho, rho]`` with
    ``rho * sum_k f_k = R``, so the largest weight uses every slice's full range.

    * ``"equal"``: ``f_k = 1`` and ``W_k = W / n_slices`` (``rho = R / n``). The
      reconstruction is exact (up to float rounding); the independent device noise
      of the slices averages out.
    * ``"base"``: positional digits, the rule :func:`aihwkit_slicing.core.tables.bit_sliced`
      calls ``"base"``. With ``L = levels_per_slice`` levels of magnitude per slice
      (digits ``0 .. L - 1``), ``f_k = L ** k``. The weight is quantized to
      ``L ** n_slices`` levels of magnitude plus sign: with the step
      ``delta = R / (L ** n_slices - 1)`` (weight units), ``q = round(|W| / delta)``
      (nearest integer, ties to even) and ``W_k = sign(W) * d_k * delta``, where
      ``d_k`` is the ``k``-th base-``L`` digit of ``q``. Each slice lies in
      ``[-rho, rho]`` with ``rho = (L - 1) * delta`` and holds integer multiples of
      ``delta`` only; ``sum_k f_k W_k = sign(W) * q * delta`` is within ``delta / 2``
      of ``W``.
    * ``"binary"``: ``"base"`` with ``L = 2 ** b`` levels, ``b = bits_per_slice``, so
      ``f_k = 2 ** (b * k)`` and the weight has ``N = n_slices * b`` bits of magnitude
      plus sign (``delta = R / (2 ** N - 1)``). ``WeightSlicing(n, "binary",
      bits_per_slice=b)`` splits exactly as ``WeightSlicing(n, "base",
      levels_per_slice=2 ** b)`` and compares equal to it.
    * a list of ``n_slices`` positive finite factors: no quantization. From the most
      significant slice down (largest factor first; among equal factors the higher
      index first), slice ``k`` takes the part of the remaining weight ``r`` that its
      range holds, ``W_k = clamp(r / f_k, -rho, rho)``, and ``r -= f_k W_k``; the least
      significant slice takes the rest, ``W_k = r / f_k``, which lies in
      ``[-rho, rho]`` too (up to rounding). Small weights thus sit on the most
      significant slices.

    Args:
        n_slices: Number of slices (analog tiles) per weight, at least 1.
        significance: ``"equal"``, ``"base"``, ``"binary"`` or a sequence of
            ``n_slices`` factors, one per slice.
        bits_per_slice: Bits of magnitude per slice for ``"binary"`` (default 1);
            must be left ``None`` for the other rules.
        levels_per_slice: Levels of magnitude per slice (digits ``0 .. L - 1``) for
            ``"base"``, at least 2 (default 2); must be left ``None`` for the other
            rules (``"binary"`` takes ``bits_per_slice``).

    Attributes:
        levels_per_slice: ``L`` for ``"base"``, ``2 ** bits_per_slice`` for
            ``"binary"``, ``None`` for the other rules.
        bits_per_slice: ``b`` for ``"binary"``, else ``None``.

    Raises:
        ValueError: for ``n_slices < 1``, an unknown rule, a wrong number of factors,
            non-positive or non-finite factors, ``bits_per_slice < 1``,
            ``n_slices * bits_per_slice > 52``, ``levels_per_slice < 2``,
            ``levels_per_slice ** n_slices > 2 ** 52``, or ``bits_per_slice`` /
            ``levels_per_slice`` with a rule they do not apply to; the message names
            the argument and the value.
        TypeError: for arguments of the wrong type (naming the argument).
    """

    def __init__(
        self,
        n_slices: int,
        significance: Significance = "equal",
        bits_per_slice: Optional[int] = None,
        levels_per_slice: Optional[int] = None,
    ):
        if not is_integer(n_slices):
            raise TypeError(f"n_slices must be an integer, got {n_slices!r}")
        if n_slices < 1:
            raise ValueError(f"n_slices must be at least 1, got {n_slices!r}")
        self.n_slices = int(n_slices)
        if isinstance(significance, str):
            if significance not in SIGNIFICANCE_MODES:
                raise ValueError(
                    f"significance must be one of {SIGNIFICANCE_MODES} or a list of "
                    f"factors, got {significance!r}"
                )
            self.significance: Union[str, Tuple[float, ...]] = significance
        else:
            self.significance = self._validate_factors(significance, self.n_slices)

        if bits_per_slice is not None and self.significance != "binary":
            raise ValueError(
                "bits_per_slice only applies to significance='binary', got "
                f"bits_per_slice={bits_per_slice!r} with significance={self.significance!r}"
            )
        if levels_per_slice is not None and self.significance != "base":
            hint = (" (give bits_per_slice for 'binary')"
                    if self.significance == "binary" else "")
            raise ValueError(
                "levels_per_slice only applies to significance='base', got "
                f"levels_per_slice={levels_per_slice!r} with "
                f"significance={self.significance!r}{hint}"
            )
        self.bits_per_slice: Optional[int] = None
        self.levels_per_slice: Optional[int] = None
        if self.significance == "binary":
            bits = 1 if bits_per_slice is None else bits_per_slice
            if not is_integer(bits):
                raise TypeError(f"bits_per_slice must be an integer, got {bits!r}")
            if bits < 1:
                raise ValueError(f"bits_per_slice must be at least 1, got {bits!r}")
            if self.n_slices * bits > MAX_BINARY_BITS:
                raise ValueError(
                    f"n_slices * bits_per_slice must be at most {MAX_BINARY_BITS}, got "
                    f"{self.n_slices} * {bits} = {self.n_slices * bits} (bits_per_slice)"
                )
            self.bits_per_slice = int(bits)
            self.levels_per_slice = 2**self.bits_per_slice
        elif self.significance == "base":
            levels = 2 if levels_per_slice is None else levels_per_slice
            if not is_integer(levels):
                raise TypeError(f"levels_per_slice must be an integer, got {levels!r}")
            if levels < 2:
                raise ValueError(f"levels_per_slice must be at least 2, got {levels!r}")
            if int(levels) ** self.n_slices > MAX_BASE_LEVELS:
                raise ValueError(
                    f"levels_per_slice ** n_slices must be at most 2**{MAX_BINARY_BITS}, "
                    f"got levels_per_slice={levels!r} with n_slices={self.n_slices}"
                )
            self.levels_per_slice = int(levels)

    @staticmethod
    def _validate_factors(factors: Any, n_slices: int) -> Tuple[float, ...]:
        if hasattr(factors, "tolist") and not isinstance(factors, (list, tuple)):
            factors = factors.tolist()
        if not isinstance(factors, Sequence) or isinstance(factors, (str, bytes)):
            raise TypeError(
                "significance must be 'equal', 'base', 'binary' or a sequence of "
                f"factors, got {type(factors).__name__}"
            )
        if len(factors) != n_slices:
            raise ValueError(
                f"significance must list one factor per slice (n_slices = {n_slices}), "
                f"got {len(factors)} factors: {list(factors)!r}"
            )
        for k, factor in enumerate(factors):
            if not is_real_number(factor):
                raise TypeError(f"significance[{k}] must be a real number, got {factor!r}")
            if not math.isfinite(factor) or factor <= 0:
                raise ValueError(
                    f"significance[{k}] must be a positive finite factor, got {factor!r}"
                )
        return tuple(float(f) for f in factors)

    # ------------------------------------------------------------------ properties
    @property
    def factors(self) -> Tuple[float, ...]:
        """The significance factors ``f_k``, one per slice (slice order)."""
        if self.significance == "equal":
            return (1.0,) * self.n_slices
        if self.levels_per_slice is not None:  # "base" and "binary"
            return tuple(float(self.levels_per_slice**k) for k in range(self.n_slices))
        return self.significance  # type: ignore[return-value]

    @property
    def total_bits(self) -> Optional[int]:
        """Bits of magnitude of the quantized weight: ``n_slices * bits_per_slice``.

        Also for ``"base"`` when ``levels_per_slice`` is a power of two; else None.
        """
        levels = self.levels_per_slice
        if levels is None or levels & (levels - 1):
            return None
        return self.n_slices * (levels.bit_length() - 1)

    def slice_range(self, weight: Tensor) -> float:
        """``rho``: the largest ``|W_k|`` of any slice for this weight (weight units)."""
        return float(weight.detach().abs().max()) / sum(self.factors) if weight.numel() else 0.0

    # ------------------------------------------------------------------ split / combine
    @torch.no_grad()
    def split(self, weight: Tensor) -> List[Tensor]:
        """Split ``weight`` into ``n_slices`` tensors with ``sum_k f_k W_k ~ weight``.

        Args:
            weight: A finite floating-point tensor of any shape (weight units).

        Returns:
            One tensor per slice (slice order), same shape, dtype and device as
            ``weight``; computed in float64.

        Raises:
            TypeError: if ``weight`` is not a floating-point tensor.
            ValueError: if ``weight`` holds NaN or infinite values.
        """
        if not isinstance(weight, Tensor):
            raise TypeError(f"weight must be a torch.Tensor, got {type(weight).__name__}")
        if not weight.is_floating_point():
            raise TypeError(f"weight must be a floating-point tensor, got {weight.dtype}")
        w = weight.detach().to(torch.float64)
        if not bool(torch.isfinite(w).all()):
            raise ValueError(
                f"weight must be finite, got {int(torch.isnan(w).sum())} NaN and "
                f"{int(torch.isinf(w).sum())} infinite value(s)"
            )
        r_max = float(w.abs().max()) if w.numel() else 0.0
        if r_max == 0.0:
            parts = [torch.zeros_like(w) for _ in range(self.n_slices)]
        elif self.significance == "equal":
            parts = [w / self.n_slices for _ in range(self.n_slices)]
        elif self.levels_per_slice is not None:  # "base" and "binary"
            parts = self._split_digits(w, r_max, self.levels_per_slice)
        else:
            parts = self._split_greedy(w, r_max)
        return [p.to(dtype=weight.dtype, device=weight.device) for p in parts]

    def _split_digits(self, w: Tensor, r_max: float, levels: int) -> List[Tensor]:
        top = levels**self.n_slices - 1
        delta = r_max / top
        q = torch.round(w.abs() / delta).clamp_(max=top).to(torch.int64)
        sign = torch.sign(w)
        return [
            sign * torch.remainder(torch.div(q, levels**k, rounding_mode="floor"), levels)
            .to(torch.float64) * delta
            for k in range(self.n_slices)
        ]

    def _split_greedy(self, w: Tensor, r_max: float) -> List[Tensor]:
        factors = self.factors
        rho = r_max / sum(factors)
        order = sorted(range(self.n_slices), key=lambda k: (-factors[k], -k))
        parts: List[Optional[Tensor]] = [None] * self.n_slices
        rest = w
        for k in order[:-1]:
            wanted = rest / factors[k]
            saturated = wanted.abs() > rho
            part = torch.where(saturated, torch.sign(wanted) * rho, wanted)
            parts[k] = part
            # where the slice holds all of the rest, the rest is exactly zero
            rest = torch.where(saturated, rest - factors[k] * part, torch.zeros_like(rest))
        parts[order[-1]] = rest / factors[order[-1]]
        return parts  # type: ignore[return-value]

    def combine(self, slices: Sequence[Tensor]) -> Tensor:
        """``sum_k f_k W_k`` (computed in float64, returned in the slices' dtype).

        Raises:
            ValueError: if the number of slices is not ``n_slices``.
        """
        if len(slices) != self.n_slices:
            raise ValueError(
                f"slices must hold {self.n_slices} tensors (n_slices), got {len(slices)}"
            )
        total = torch.zeros_like(slices[0], dtype=torch.float64)
        for factor, part in zip(self.factors, slices, strict=True):
            total.add_(part.to(torch.float64), alpha=factor)
        return total.to(slices[0].dtype)

    # ------------------------------------------------------------------ python protocol
    def arguments(self) -> Dict[str, Any]:
        """The constructor arguments, as spelled (``WeightSlicing(**arguments())``).

        ``significance`` is a string or a list of factors; ``bits_per_slice`` appears
        for ``"binary"`` only, ``levels_per_slice`` for ``"base"`` only. JSON-able.
        """
        significance = self.significance
        args: Dict[str, Any] = {
            "n_slices": self.n_slices,
            "significance": significance if isinstance(significance, str)
            else list(significance),
        }
        if significance == "binary":
            args["bits_per_slice"] = self.bits_per_slice
        elif significance == "base":
            args["levels_per_slice"] = self.levels_per_slice
        return args

    def _key(self) -> Tuple[int, Union[str, Tuple[float, ...]], Optional[int]]:
        # "binary" with b bits is "base" with 2 ** b levels: they compare equal
        if self.levels_per_slice is not None:
            return (self.n_slices, "base", self.levels_per_slice)
        return (self.n_slices, self.significance, None)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, WeightSlicing):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def _repr_args(self) -> str:
        return ", ".join(f"{name}={value!r}" for name, value in self.arguments().items())

    def __repr__(self) -> str:
        return f"WeightSlicing({self._repr_args()})"


#: ``weight_scaling_omega`` every slice's copy of the rpu_config gets where the
#: given one has aihwkit's default 0 (no weight scaling), unless ``scale_slices=False``.
SLICE_WEIGHT_SCALING_OMEGA = 1.0


def _check_rpu_config(rpu_config: Optional[RPUConfigBase]) -> RPUConfigBase:
    if rpu_config is None:
        return TorchInferenceRPUConfig()
    if not isinstance(rpu_config, RPUConfigBase):
        raise TypeError(
            f"rpu_config must be an aihwkit RPU config, got {type(rpu_config).__name__}"
        )
    check_compiled_tile(rpu_config)
    return rpu_config


def _check_flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def slice_rpu_config(rpu_config: RPUConfigBase, scale_slices: bool = True) -> RPUConfigBase:
    """The rpu_config one slice gets: a deep copy, mapped to the tile's full range.

    A slice's weight ``W_k`` has a scale the split chose (for 4 ``"binary"`` slices of
    2 bits the largest ``|W_k|`` is ``3 / 255`` of ``max|W|``), not one the user
    chose. With aihwkit's default mapping (``weight_scaling_omega = 0``: no scaling,
    weights taken as conductances relative to a maximum of 1) such a slice would use
    a small fraction of the conductance range, and its outputs would drown in the
    output noise and round away in the ADC. So where
    ``rpu_config.mapping.weight_scaling_omega`` is 0 the copy gets
    :data:`SLICE_WEIGHT_SCALING_OMEGA` (1.0): aihwkit divides each slice by its own
    ``max|W_k|`` (per tensor, or per column with ``weight_scaling_columnwise``) and
    multiplies the slice's output by it digitally after the ADC, before the factor
    ``f_k``. A positive ``weight_scaling_omega`` is kept as it is.

    Args:
        rpu_config: The layer's rpu_config (not changed).
        scale_slices: ``False`` keeps ``rpu_config.mapping`` as given.

    Returns:
        A deep copy of ``rpu_config``.
    """
    config = copy.deepcopy(rpu_config)
    mapping = getattr(config, "mapping", None)
    if scale_slices and mapping is not None and not mapping.weight_scaling_omega:
        mapping.weight_scaling_omega = SLICE_WEIGHT_SCALING_OMEGA
    return config


def _drift_factor(tile: Module) -> Optional[Tensor]:
    """The drift compensation factor the tile's output is multiplied with in eval mode.

    ``None`` for a tile without drift compensation; else its ``alpha`` (1 until a
    drift), shaped to scale the rows (outputs) of the tile's ``[out, in]`` weight.
    """
    if getattr(getattr(tile, "rpu_config", None), "drift_compensation", None) is None:
        return None
    alpha = getattr(tile, "alpha", None)
    if not isinstance(alpha, Tensor):
        return None
    alpha = alpha.detach().cpu()
    return alpha.reshape(-1, 1) if alpha.numel() > 1 else alpha.reshape(())


def _positive_sizes(**sizes: Any) -> Tuple[int, ...]:
    """The given layer sizes as ints; ``ValueError`` naming one that is not >= 1."""
    for name, value in sizes.items():
        if not is_integer(value) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return tuple(int(value) for value in sizes.values())


def _check_bias(bias: Any) -> bool:
    return _check_flag("bias", bias)


class _AnalogSlicedBase(AnalogContainerBase, Module):
    """Shared part of the sliced layers: the slices, the digital bias, the sum.

    Subclasses create ``self.slices`` (one analog layer per slice) and define
    :attr:`weight_shape` and :meth:`_digital_layer`.
    """

    slices: ModuleList
    bias: Optional[Parameter]
    #: How the ``[out]`` bias broadcasts over the output (channels first for conv).
    _BIAS_VIEW: Tuple[int, ...] = (-1,)

    def _setup(
        self,
        slicing: WeightSlicing,
        make_slice: Callable[[RPUConfigBase], Module],
        rpu_config: Optional[RPUConfigBase],
        out_size: int,
        bias: Any,
        scale_slices: Any = True,
    ) -> None:
        """Check the arguments, then make the slices and the bias."""
        bias = _check_bias(bias)
        self.scale_slices = _check_flag("scale_slices", scale_slices)
        rpu_config = _check_rpu_config(rpu_config)
        self.slicing = slicing
        self.slices = ModuleList(
            [make_slice(slice_rpu_config(rpu_config, self.scale_slices))
             for _ in range(slicing.n_slices)]
        )
        dtype = next(self.analog_tiles()).get_dtype()
        if bias:
            self.bias = Parameter(torch.zeros(out_size, dtype=dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    # ------------------------------------------------------------------ properties
    @property
    def n_slices(self) -> int:
        """Number of slices (analog layers, each with its own tile)."""
        return self.slicing.n_slices

    @property
    def significance_factors(self) -> Tuple[float, ...]:
        """The factors ``f_k`` the slice outputs are multiplied with (slice order)."""
        return self.slicing.factors

    @property
    def weight_shape(self) -> Tuple[int, ...]:
        """Shape of the (reconstructed) weight, as the digital layer has it."""
        raise NotImplementedError

    def _digital_layer(self) -> Union[Linear, Conv2d]:
        """A digital layer of the same geometry (weights not set)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ weights
    def reset_parameters(self) -> None:
        """Initialize like the digital torch layer, then split the weight."""
        digital = self._digital_layer()
        self.set_weights(digital.weight, digital.bias)

    @torch.no_grad()
    def set_weights(self, weight: Tensor, bias: Optional[Tensor] = None) -> None:
        """Split ``weight`` over the slices (see :class:`WeightSlicing`), set the bias.

        Every slice gets its part through its own ``set_weights`` (so its
        ``rpu_config.mapping``, e.g. ``weight_scaling_omega``, applies per tile).

        Args:
            weight: The weight in the digital layer's shape (:attr:`weight_shape`);
                for convolutions also the flattened ``[out, in * kh * kw]``.
            bias: The ``[out]`` bias; ``None`` leaves the bias as it is.

        Raises:
            ValueError: for a weight or bias of the wrong shape, a bias for a layer
                built without one, or a non-finite weight.
        """
        if not isinstance(weight, Tensor):
            weight = torch.as_tensor(weight)
        shape = self.weight_shape
        flat = (shape[0], math.prod(shape[1:]))
        if tuple(weight.shape) not in (shape, flat):
            raise ValueError(
                f"weight must have shape {shape}, got {tuple(weight.shape)}"
            )
        weight = weight.reshape(shape)
        for layer, part in zip(self.slices, self.slicing.split(weight), strict=True):
            layer.set_weights(part)
        if bias is None:
            return
        if self.bias is None:
            raise ValueError("bias was given, but the layer was built with bias=False")
        bias = torch.as_tensor(bias)
        if tuple(bias.shape) != (shape[0],):
            raise ValueError(f"bias must have shape ({shape[0]},), got {tuple(bias.shape)}")
        self.bias.data.copy_(bias.detach())

    @torch.no_grad()
    def get_weights(  # type: ignore[override]
        self, drift_compensation: bool = False, **kwargs: Any
    ) -> Tuple[Tensor, Optional[Tensor]]:
        """The reconstructed weight ``sum_k f_k W_k`` and the bias.

        Args:
            drift_compensation: Scale every slice by its tile's drift compensation
                factor, ``sum_k f_k alpha_k W_k`` (see :meth:`get_slice_weights`).
                Default ``False``, as aihwkit's ``get_weights``.
            kwargs: passed to every tile's ``get_weights`` (e.g. ``realistic=True``
                to read the slices through their forward pass).

        Returns:
            ``(weight, bias)``: the weight in :attr:`weight_shape` (on the CPU, as
            aihwkit returns tile weights), the bias (a detached copy) or ``None``.
        """
        parts = self.get_slice_weights(drift_compensation=drift_compensation, **kwargs)
        bias = None if self.bias is None else self.bias.detach().clone()
        return self.slicing.combine(parts), bias

    @torch.no_grad()
    def get_slice_weights(self, drift_compensation: bool = False,
                          **kwargs: Any) -> List[Tensor]:
        """Copies of every slice's own weight ``W_k`` (in :attr:`weight_shape`).

        Args:
            drift_compensation: Multiply every tile's weight by the drift
                compensation factor ``alpha`` that tile multiplies its outputs with
                in eval mode (``rpu_config.drift_compensation``, found at the last
                ``drift_analog_weights``; 1 before any drift, per column with
                aihwkit's ``PerColumnDriftCompensation``), so that
                ``x @ W_k.T`` is what the slice computes with ideal peripherals.
                Tiles without drift compensation are left as they are. A
                ``realistic=True`` read-out goes through the forward pass, which
                applies ``alpha`` already; ``drift_compensation=False`` then
                divides it out.
            kwargs: passed to every tile's ``get_weights`` (``realistic``,
                ``apply_weight_scaling``).

        Returns:
            One tensor per slice, slice order. (Copies: aihwkit's torch tile hands
            out its live weight tensor when no mapping scale applies.)
        """
        drift_compensation = _check_flag("drift_compensation", drift_compensation)
        realistic = bool(kwargs.get("realistic", False))
        weights = []
        for layer in self.slices:
            module = layer.analog_module
            # a layer larger than mapping.max_input_size / max_output_size is a grid
            # of tiles (aihwkit's TileModuleArray), each with its own alpha
            grid: Sequence[Sequence[Any]] = (
                module.array if isinstance(module, TileModuleArray) else [[module]])
            columns = []
            for in_tiles in grid:
                blocks = []
                for tile in in_tiles:
                    weight = tile.get_weights(**kwargs)[0]
                    alpha = _drift_factor(tile)
                    if alpha is not None and drift_compensation != realistic:
                        weight = weight * alpha if drift_compensation else weight / alpha
                    blocks.append(weight)
                columns.append(torch.cat(blocks, 0))
            weights.append(torch.cat(columns, 1).reshape(self.weight_shape).clone())
        return weights

    # ------------------------------------------------------------------ forward
    def forward(self, x_input: Tensor) -> Tensor:
        """``sum_k f_k * slice_k(x) + bias``, summed digitally."""
        # pylint: disable=arguments-differ
        out: Optional[Tensor] = None
        for factor, layer in zip(self.slicing.factors, self.slices, strict=True):
            y = layer(x_input)
            if factor != 1.0:
                y = y * factor
            out = y if out is None else out + y
        assert out is not None  # at least one slice
        if self.bias is not None:
            out = out + self.bias.view(self._BIAS_VIEW)
        return out

    # ------------------------------------------------------------------ state
    def get_extra_state(self) -> Dict[str, Any]:
        """The slicing parameters, stored in ``state_dict`` to check a reload.

        ``n_slices``, ``significance``, ``bits_per_slice`` (``None`` but for
        ``"binary"``) and, for ``"base"`` only, ``levels_per_slice``.
        """
        state = self.slicing.arguments()
        state.setdefault("bits_per_slice", None)
        return state

    def set_extra_state(self, state: Dict[str, Any]) -> None:
        """Refuse a state saved with other slicing parameters.

        Raises:
            ValueError: if the saved slicing differs from this layer's.
        """
        saved = WeightSlicing(
            state["n_slices"], state["significance"], state.get("bits_per_slice"),
            state.get("levels_per_slice"),
        )
        if saved != self.slicing:
            raise ValueError(
                f"state_dict was saved with {saved!r}, but this layer uses {self.slicing!r}"
            )

    # ------------------------------------------------------------------ conversion
    @classmethod
    def to_digital(
        cls,
        module: "_AnalogSlicedBase",
        realistic: bool = False,
        drift_compensation: bool = True,
    ) -> Union[Linear, Conv2d]:
        """A digital torch layer holding the reconstructed weight and the bias.

        Args:
            module: The sliced layer.
            realistic: Read the slices through their forward pass (aihwkit's
                ``get_weights(realistic=True)``) instead of copying them.
            drift_compensation: Give the digital layer ``sum_k f_k alpha_k W_k``, each
                slice scaled by its tile's drift compensation factor (default), so
                that it computes what the sliced layer computes in eval mode; with
                ``False``, ``sum_k f_k W_k`` (see :meth:`get_slice_weights`).
        """
        weight, bias = module.get_weights(drift_compensation=drift_compensation,
                                          realistic=realistic)
        digital = module._digital_layer()
        digital.weight.data = weight.to(digital.weight.dtype)
        if bias is not None and digital.bias is not None:
            digital.bias.data = bias.to(digital.bias.dtype)
        tile = next(module.analog_tiles())
        return digital.to(device=tile.device, dtype=weight.dtype)

    def _slicing_repr(self) -> str:
        text = self.slicing._repr_args()  # pylint: disable=protected-access
        if not self.scale_slices:
            text += ", scale_slices=False"
        return text


class AnalogSlicedLinear(_AnalogSlicedBase):
    """A linear layer whose weight is sliced over ``n_slices`` analog tiles.

    Holds ``n_slices`` :class:`aihwkit.nn.AnalogLinear` layers without bias (in
    :attr:`slices`, each with its own copy of ``rpu_config``) and computes

        y = sum_k f_k * slice_k(x) + bias

    where each ``slice_k(x)`` has passed its tile's own output stage and the sum and
    the bias are digital. It is a container (``AnalogContainerBase``), not a
    ``torch.nn.Linear``; it has ``in_features`` and ``out_features``.

    Args:
        in_features: Input size.
        out_features: Output size.
        n_slices: Number of slices (tiles), at least 1.
        bias: Whether to add a digital bias (once, after the sum).
        significance: ``"equal"``, ``"base"``, ``"binary"`` or a list of ``n_slices``
            factors; see :class:`WeightSlicing` for how each splits a weight.
        rpu_config: The aihwkit RPU config of every slice (each slice gets a deep
            copy, see ``scale_slices``). Default: ``TorchInferenceRPUConfig()``.
        bits_per_slice: Bits of magnitude per slice for ``"binary"`` (default 1).
        levels_per_slice: Levels of magnitude per slice for ``"base"`` (default 2).
        scale_slices: Map every slice to its tile's full weight range: where
            ``rpu_config.mapping.weight_scaling_omega`` is 0 (aihwkit's default),
            each slice's copy gets ``weight_scaling_omega = 1.0``
            (:func:`slice_rpu_config`). ``False`` keeps the mapping as given.

    Raises:
        ValueError / TypeError: for bad slicing arguments (see :class:`WeightSlicing`),
            a non-boolean ``bias`` or a ``rpu_config`` that is not an RPU config.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        n_slices: int,
        bias: bool = True,
        significance: Significance = "equal",
        rpu_config: Optional[RPUConfigBase] = None,
        bits_per_slice: Optional[int] = None,
        levels_per_slice: Optional[int] = None,
        *,
        scale_slices: bool = True,
    ):
        Module.__init__(self)
        self.in_features, self.out_features = _positive_sizes(
            in_features=in_features, out_features=out_features)
        self._setup(
            WeightSlicing(n_slices, significance, bits_per_slice, levels_per_slice),
            lambda config: AnalogLinear(self.in_features, self.out_features, bias=False,
                                        rpu_config=config),
            rpu_config,
            self.out_features,
            bias,
            scale_slices,
        )

    @property
    def weight_shape(self) -> Tuple[int, ...]:
        return (self.out_features, self.in_features)

    def _digital_layer(self) -> Linear:
        return Linear(self.in_features, self.out_features, bias=self.bias is not None)

    @classmethod
    def from_digital(
        cls,
        module: Linear,
        rpu_config: Optional[RPUConfigBase] = None,
        n_slices: int = 1,
        significance: Significance = "equal",
        bits_per_slice: Optional[int] = None,
        levels_per_slice: Optional[int] = None,
        *,
        scale_slices: bool = True,
    ) -> "AnalogSlicedLinear":
        """A sliced layer holding the split weight (and the bias) of ``module``.

        The arguments after ``module`` are those of the constructor.
        """
        if not isinstance(module, Linear):
            raise TypeError(f"module must be a torch.nn.Linear, got {type(module).__name__}")
        layer = cls(module.in_features, module.out_features, n_slices,
                    bias=module.bias is not None, significance=significance,
                    rpu_config=rpu_config, bits_per_slice=bits_per_slice,
                    levels_per_slice=levels_per_slice, scale_slices=scale_slices)
        layer.set_weights(module.weight, module.bias)
        return layer.to(module.weight.device)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, {self._slicing_repr()}")


class AnalogSlicedConv2d(_AnalogSlicedBase):
    """A 2-d convolution whose kernel is sliced over ``n_slices`` analog tiles.

    Holds ``n_slices`` :class:`aihwkit.nn.AnalogConv2d` layers without bias (each with
    its own copy of ``rpu_config``) and computes ``sum_k f_k * slice_k(x) + bias``,
    summed digitally, the bias added once per output channel. Only ``groups=1`` and
    zero padding, as in aihwkit's ``AnalogConv2d``.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Kernel size (int or pair).
        n_slices: Number of slices (tiles), at least 1.
        stride: Stride (int or pair).
        padding: Zero padding (int or pair; no string modes).
        dilation: Dilation (int or pair).
        bias: Whether to add a digital bias (once, after the sum).
        significance: ``"equal"``, ``"base"``, ``"binary"`` or a list of ``n_slices``
            factors (see :class:`WeightSlicing`).
        rpu_config: The aihwkit RPU config of every slice (deep-copied per slice,
            see ``scale_slices``). Default: ``TorchInferenceRPUConfig()``.
        bits_per_slice: Bits of magnitude per slice for ``"binary"`` (default 1).
        levels_per_slice: Levels of magnitude per slice for ``"base"`` (default 2).
        scale_slices: Map every slice to its tile's full weight range
            (``weight_scaling_omega = 1.0`` where the given one is 0, aihwkit's
            default; :func:`slice_rpu_config`). ``False`` keeps the mapping as given.

    Raises:
        ValueError / TypeError: for bad arguments, naming them.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Union[int, Sequence[int]],
        n_slices: int,
        stride: Union[int, Sequence[int]] = 1,
        padding: Union[int, Sequence[int]] = 0,
        dilation: Union[int, Sequence[int]] = 1,
        bias: bool = True,
        significance: Significance = "equal",
        rpu_config: Optional[RPUConfigBase] = None,
        bits_per_slice: Optional[int] = None,
        levels_per_slice: Optional[int] = None,
        *,
        scale_slices: bool = True,
    ):
        Module.__init__(self)
        slicing = WeightSlicing(n_slices, significance, bits_per_slice, levels_per_slice)
        self.in_channels, self.out_channels = _positive_sizes(
            in_channels=in_channels, out_channels=out_channels)
        self.kernel_size = self._pair("kernel_size", kernel_size, minimum=1)
        self.stride = self._pair("stride", stride, minimum=1)
        self.padding = self._pair("padding", padding, minimum=0)
        self.dilation = self._pair("dilation", dilation, minimum=1)
        self._setup(
            slicing,
            lambda config: AnalogConv2d(
                self.in_channels, self.out_channels, self.kernel_size, stride=self.stride,
                padding=self.padding, dilation=self.dilation, bias=False, rpu_config=config,
            ),
            rpu_config,
            self.out_channels,
            bias,
            scale_slices,
        )

    @staticmethod
    def _pair(name: str, value: Any, minimum: int) -> Tuple[int, int]:
        pair = (value, value) if is_integer(value) else value
        if (
            not isinstance(pair, (tuple, list))
            or len(pair) != 2
            or not all(is_integer(v) and v >= minimum for v in pair)
        ):
            raise ValueError(
                f"{name} must be an integer >= {minimum} or a pair of them, got {value!r}"
            )
        return (int(pair[0]), int(pair[1]))

    @property
    def weight_shape(self) -> Tuple[int, ...]:
        return (self.out_channels, self.in_channels, *self.kernel_size)

    def _digital_layer(self) -> Conv2d:
        return Conv2d(self.in_channels, self.out_channels, self.kernel_size,
                      stride=self.stride, padding=self.padding, dilation=self.dilation,
                      bias=self.bias is not None)

    _BIAS_VIEW = (-1, 1, 1)

    @classmethod
    def from_digital(
        cls,
        module: Conv2d,
        rpu_config: Optional[RPUConfigBase] = None,
        n_slices: int = 1,
        significance: Significance = "equal",
        bits_per_slice: Optional[int] = None,
        levels_per_slice: Optional[int] = None,
        *,
        scale_slices: bool = True,
    ) -> "AnalogSlicedConv2d":
        """A sliced convolution holding the split kernel (and the bias) of ``module``.

        The arguments after ``module`` are those of the constructor.

        Raises:
            ValueError: for ``groups != 1``, a padding mode other than ``"zeros"`` or a
                string padding (``"same"``), which aihwkit's ``AnalogConv2d`` does not
                support.
        """
        if not isinstance(module, Conv2d):
            raise TypeError(f"module must be a torch.nn.Conv2d, got {type(module).__name__}")
        if module.groups != 1:
            raise ValueError(f"only groups=1 is supported, got groups={module.groups} "
                             f"in {module!r}")
        if module.padding_mode != "zeros":
            raise ValueError(f"only padding_mode='zeros' is supported, got "
                             f"{module.padding_mode!r} in {module!r}")
        if isinstance(module.padding, str):
            raise ValueError(f"padding must be an integer or a pair of them, got "
                             f"{module.padding!r} in {module!r}")
        layer = cls(module.in_channels, module.out_channels, module.kernel_size, n_slices,
                    stride=module.stride, padding=module.padding, dilation=module.dilation,
                    bias=module.bias is not None, significance=significance,
                    rpu_config=rpu_config, bits_per_slice=bits_per_slice,
                    levels_per_slice=levels_per_slice, scale_slices=scale_slices)
        layer.set_weights(module.weight, module.bias)
        return layer.to(module.weight.device)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, "
                f"bias={self.bias is not None}, {self._slicing_repr()}")


class _SlicedConversion:
    """Adapter for aihwkit's ``conversion_map``: ``from_digital`` with slicing fixed."""

    def __init__(self, layer_class: Type[_AnalogSlicedBase], slicing: WeightSlicing,
                 scale_slices: bool):
        self.layer_class = layer_class
        self.slicing = slicing
        self.scale_slices = scale_slices
        self.__name__ = layer_class.__name__

    def from_digital(self, module: Module, rpu_config: RPUConfigBase,
                     tile_module_class: Optional[Type] = None) -> Module:
        # pylint: disable=unused-argument
        arguments = self.slicing.arguments()
        return self.layer_class.from_digital(
            module, rpu_config, scale_slices=self.scale_slices, **arguments)


def convert_to_analog_sliced(
    model: Module,
    rpu_config: Optional[RPUConfigBase],
    n_slices: int,
    significance: Significance = "equal",
    bits_per_slice: Optional[int] = None,
    *,
    levels_per_slice: Optional[int] = None,
    scale_slices: bool = True,
    exclude_modules: Optional[List[str]] = None,
    specific_rpu_config_fun: Optional[Callable] = None,
    ensure_analog_root: bool = True,
    inplace: bool = False,
) -> Module:
    """Replace every ``torch.nn.Linear`` and ``torch.nn.Conv2d`` by a sliced layer.

    Uses aihwkit's :func:`~aihwkit.nn.conversion.convert_to_analog` traversal:
    layers match by exact class (subclasses of ``Linear`` are left alone, as in
    aihwkit), ``torch.nn.Sequential`` becomes ``AnalogSequential`` and, with
    ``ensure_analog_root``, a root that is not an analog module is wrapped in
    aihwkit's ``AnalogWrapper``, so ``model.program_analog_weights()`` and
    ``model.drift_analog_weights(t)`` reach every slice of every layer.

    Args:
        model: The digital torch model (deep-copied unless ``inplace``).
        rpu_config: RPU config for every slice (deep-copied per layer and slice);
            ``None`` for ``TorchInferenceRPUConfig()``.
        n_slices: Slices per weight, at least 1.
        significance: ``"equal"``, ``"base"``, ``"binary"`` or a list of ``n_slices``
            factors (see :class:`WeightSlicing`).
        bits_per_slice: Bits of magnitude per slice for ``"binary"`` (default 1).
        levels_per_slice: Levels of magnitude per slice for ``"base"`` (default 2).
        scale_slices: Map every slice to its tile's full weight range: where
            ``rpu_config.mapping.weight_scaling_omega`` is 0 (aihwkit's default),
            each slice's copy gets ``weight_scaling_omega = 1.0``
            (:func:`slice_rpu_config`). ``False`` keeps the mapping as given.
        exclude_modules: Names of modules to keep digital.
        specific_rpu_config_fun: ``f(name, module, rpu_config) -> rpu_config`` to
            adapt the config per layer (aihwkit's convention).
        ensure_analog_root: Wrap a non-analog root in ``AnalogWrapper``.
        inplace: Convert ``model`` itself instead of a copy.

    Returns:
        The converted model.

    Raises:
        ValueError / TypeError: for bad slicing arguments (checked before any layer
            is converted) or unsupported convolutions (``groups != 1``, ...).
    """
    slicing = WeightSlicing(n_slices, significance, bits_per_slice, levels_per_slice)
    scale_slices = _check_flag("scale_slices", scale_slices)
    rpu_config = _check_rpu_config(rpu_config)
    conversion_map = {
        Linear: _SlicedConversion(AnalogSlicedLinear, slicing, scale_slices),
        Conv2d: _SlicedConversion(AnalogSlicedConv2d, slicing, scale_slices),
        Sequential: AnalogSequential,
    }
    return convert_to_analog(
        model,
        rpu_config,
        conversion_map=conversion_map,
        specific_rpu_config_fun=specific_rpu_config_fun,
        ensure_analog_root=ensure_analog_root,
        exclude_modules=exclude_modules,
        inplace=inplace,
    )


#: The sliced layer classes :func:`convert_to_digital_sliced` converts (exact classes,
#: as aihwkit's ``convert_to_digital`` matches them).
_SLICED_LAYER_CLASSES = (AnalogSlicedLinear, AnalogSlicedConv2d)


def convert_to_digital_sliced(
    model: Module, inplace: bool = False, *, drift_compensation: bool = True
) -> Module:
    """Replace every sliced layer by a torch layer with the reconstructed weight.

    Also turns ``AnalogSequential`` back into ``torch.nn.Sequential`` and unwraps
    aihwkit's ``AnalogWrapper`` (aihwkit's
    :func:`~aihwkit.nn.conversion.convert_to_digital` traversal). Ordinary aihwkit
    analog layers are left as they are; aihwkit's ``convert_to_digital`` converts
    those.

    Drift compensation: after ``drift_analog_weights(t)``, every slice's tile
    multiplies its outputs (in eval mode) by its own drift compensation factor
    ``alpha_k`` (``rpu_config.drift_compensation``). With ``drift_compensation=True``
    (the default) the digital weight is ``sum_k f_k alpha_k W_k`` (``W_k`` the
    slice's drifted tile weight, in weight units), so the digital model computes
    what the analog model computes in eval mode with ideal peripherals. With
    ``False`` it is ``sum_k f_k W_k``, the drifted weights as they are on the tiles
    (the same as ``layer.get_weights()``). Note that aihwkit's own
    ``convert_to_digital`` (1.1.0) copies the tile weights without ``alpha`` for its
    analog layers, i.e. behaves like ``drift_compensation=False``; after a drift
    its digital model does not compute what the analog one computes.

    Args:
        model: A model with sliced layers (deep-copied unless ``inplace``).
        inplace: Convert ``model`` itself instead of a copy.
        drift_compensation: Fold each slice's drift compensation factor into the
            digital weight (default ``True``, see above). Slices whose rpu_config
            has no drift compensation are taken as they are either way.

    Returns:
        The digital model.

    Raises:
        TypeError: if ``drift_compensation`` is not a bool.
    """
    drift_compensation = _check_flag("drift_compensation", drift_compensation)
    if not inplace:
        model = copy.deepcopy(model)

    def digital(module: Module) -> Optional[Module]:
        if type(module) not in _SLICED_LAYER_CLASSES:
            return None
        assert isinstance(module, _AnalogSlicedBase)
        return type(module).to_digital(module, drift_compensation=drift_compensation)

    def replace_sliced_layers(parent: Module) -> None:
        for name, child in parent.named_children():
            replacement = digital(child)
            if replacement is None:
                replace_sliced_layers(child)
            else:
                parent._modules[name] = replacement  # pylint: disable=protected-access

    root = digital(model)
    if root is not None:
        return root
    replace_sliced_layers(model)
    # AnalogSequential -> Sequential, AnalogWrapper unwrapped
    return convert_to_digital(model, conversion_set={AnalogSequential}, inplace=True)


__all__ = [
    "AnalogSlicedConv2d",
    "AnalogSlicedLinear",
    "MAX_BASE_LEVELS",
    "SIGNIFICANCE_MODES",
    "SLICE_WEIGHT_SCALING_OMEGA",
    "WeightSlicing",
    "convert_to_analog_sliced",
    "convert_to_digital_sliced",
    "slice_rpu_config",
]
