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
:func:`aihwkit_slicing.core.builders.bit_sliced`: ``"base"`` with ``levels_per_slice`` is
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

import math
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor
from torch.nn import Conv2d, Linear, Module, ModuleList, Parameter

from aihwkit.nn import AnalogConv2d, AnalogLinear
from aihwkit.nn.modules.container import AnalogContainerBase
from aihwkit.simulator.parameters.base import RPUConfigBase
from aihwkit.simulator.tiles.array import TileModuleArray

from aihwkit_slicing.core.validation import is_integer
from aihwkit_slicing.digital.slice_configs import (
    check_flag,
    check_rpu_config,
    shrink_zero_row_scales,
    slice_rpu_config,
)
from aihwkit_slicing.digital.slicing import Significance, WeightSlicing


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
    return check_flag("bias", bias)


class AnalogSlicedBase(AnalogContainerBase, Module):
    """Shared part of the sliced layers: the slices, the digital bias, the sum.

    Subclasses create ``self.slices`` (one analog layer per slice) and define
    :attr:`weight_shape` and :meth:`_digital_layer`.
    """

    slices: ModuleList
    bias: Optional[Parameter]
    #: The floating-point weight last given to :meth:`set_weights` (None after
    #: ``load_state_dict``): what the sum of the slices approximates.
    reference_weight: Optional[Tensor] = None
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
        self.scale_slices = check_flag("scale_slices", scale_slices)
        rpu_config = check_rpu_config(rpu_config)
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
            shrink_zero_row_scales(layer)
        # the weight the slices stand for (each tile knows only its own slice's target)
        self.reference_weight = weight.detach().clone()
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
        drift_compensation = check_flag("drift_compensation", drift_compensation)
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
        self.reference_weight = None  # the loaded slices stand for a weight not known here
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
        module: "AnalogSlicedBase",
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


class AnalogSlicedLinear(AnalogSlicedBase):
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


class AnalogSlicedConv2d(AnalogSlicedBase):
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
