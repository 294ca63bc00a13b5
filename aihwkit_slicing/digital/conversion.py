"""Converting a torch model's ``Linear`` and ``Conv2d`` layers to digitally summed sliced
analog layers (:func:`convert_to_analog_sliced`) and back to digital layers
(:func:`convert_to_digital_sliced`, drift compensation folded in).
"""

from __future__ import annotations

import copy
from typing import Callable, List, Optional, Type

from torch.nn import Conv2d, Linear, Module, Sequential

from aihwkit.nn import AnalogSequential
from aihwkit.nn.conversion import convert_to_analog, convert_to_digital
from aihwkit.simulator.parameters.base import RPUConfigBase

from aihwkit_slicing.digital.layers import AnalogSlicedBase, AnalogSlicedConv2d, AnalogSlicedLinear
from aihwkit_slicing.digital.slice_configs import check_flag, check_rpu_config
from aihwkit_slicing.digital.slicing import Significance, WeightSlicing


class _SlicedConversion:
    """Adapter for aihwkit's ``conversion_map``: ``from_digital`` with slicing fixed."""

    def __init__(self, layer_class: Type[AnalogSlicedBase], slicing: WeightSlicing,
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
    scale_slices = check_flag("scale_slices", scale_slices)
    rpu_config = check_rpu_config(rpu_config)
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
    drift_compensation = check_flag("drift_compensation", drift_compensation)
    if not inplace:
        model = copy.deepcopy(model)

    def digital(module: Module) -> Optional[Module]:
        if type(module) not in _SLICED_LAYER_CLASSES:
            return None
        assert isinstance(module, AnalogSlicedBase)
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
