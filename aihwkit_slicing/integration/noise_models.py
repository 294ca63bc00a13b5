"""aihwkit noise models by name, and the inference times each of them supports.

* :data:`NOISE_MODELS`: factories taking the converter a noise model drives;
* :func:`build_noise_model`: a noise model from a name, a class, a factory or an
  instance, driven by a given converter;
* :func:`default_times` and :func:`check_times`: the inference times (seconds) a sweep
  uses by default, and a clear error for times a noise model does not know
  (``ReRamWan2022NoiseModel`` has coefficients for a few times only).
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Dict, List, Sequence, Union

from aihwkit.inference.converter.base import BaseConductanceConverter
from aihwkit.inference.noise.base import BaseNoiseModel
from aihwkit.inference.noise.custom import StateIndependentNoiseModel
from aihwkit.inference.noise.hermes import HermesNoiseModel
from aihwkit.inference.noise.pcm import PCMLikeNoiseModel
from aihwkit.inference.noise.reram import ReRamWan2022NoiseModel

from aihwkit_slicing.integration.measured_noise import MeasuredNoiseModel

#: Inference times of a sweep, in seconds: 1 s, 1 h, 1 day, 1 month, 1 year, 10 years.
DEFAULT_TIMES: List[float] = [1.0, 3600.0, 86400.0, 2592000.0, 31536000.0, 315360000.0]

NoiseModelFactory = Callable[[BaseConductanceConverter], BaseNoiseModel]
NoiseModelSpec = Union[str, NoiseModelFactory, BaseNoiseModel, type]

#: Noise models by name; each factory takes the converter the noise model drives.
#: ``"measured"`` takes the device model of the table the converter programs
#: (``docs/devices.md``).
NOISE_MODELS: Dict[str, NoiseModelFactory] = {
    "pcm": lambda conv: PCMLikeNoiseModel(g_converter=conv),
    "hermes": lambda conv: HermesNoiseModel(g_converter=conv),
    "reram": lambda conv: ReRamWan2022NoiseModel(g_converter=conv),
    "state-independent": lambda conv: StateIndependentNoiseModel(g_converter=conv),
    "none": lambda conv: PCMLikeNoiseModel(
        g_converter=conv, prog_noise_scale=0.0, read_noise_scale=0.0, drift_scale=0.0
    ),
    "measured": lambda conv: MeasuredNoiseModel(g_converter=conv),
}


def build_noise_model(spec: NoiseModelSpec, converter: BaseConductanceConverter) -> BaseNoiseModel:
    """A noise model driven by ``converter``: from a name in :data:`NOISE_MODELS`, a
    noise model class, a factory taking the converter, or an instance (deep-copied,
    its converter replaced and its ``g_max`` taken from the converter)."""
    if isinstance(spec, str):
        if spec not in NOISE_MODELS:
            raise ValueError(
                f"unknown noise model {spec!r}; known noise models: {', '.join(NOISE_MODELS)}"
            )
        return NOISE_MODELS[spec](converter)
    if isinstance(spec, type) and issubclass(spec, BaseNoiseModel):
        return spec(g_converter=converter)
    if isinstance(spec, BaseNoiseModel):
        model = copy.deepcopy(spec)
        model.g_converter = copy.deepcopy(converter)
        if hasattr(model, "g_max"):
            model.g_max = converter.g_max
        return model
    if callable(spec):
        return spec(converter)
    raise TypeError(f"noise_model must be a name, a factory or a noise model, got {spec!r}")


def supported_times(noise_model: Any) -> List[float] | None:
    """The only inference times (seconds) ``noise_model`` knows, or None for any time."""
    if isinstance(noise_model, str):
        if noise_model not in NOISE_MODELS:
            return None
        from aihwkit.inference.converter.conductance import SinglePairConductanceConverter

        noise_model = NOISE_MODELS[noise_model](SinglePairConductanceConverter())
    if isinstance(noise_model, ReRamWan2022NoiseModel):
        return sorted(float(t) for t in noise_model.coeff_dic)
    return None


def default_times(noise_model: Any = "pcm") -> List[float]:
    """The inference times (seconds) a sweep uses by default with ``noise_model``:
    :data:`DEFAULT_TIMES`, or the times the noise model knows if it knows only some."""
    known = supported_times(noise_model)
    return list(DEFAULT_TIMES) if known is None else known


def check_times(times: Sequence[float], noise_model: Any, name: str) -> None:
    """Raise ``ValueError`` naming the noise model if it does not know one of ``times``."""
    known = supported_times(noise_model)
    if known is not None:
        bad = [t for t in times if float(t) not in known]
        if bad:
            raise ValueError(
                f"noise model {name!r} only knows the times {known} s, got {bad}"
            )
