"""Argument checks shared by the tables, the builders, the sliced layers and the sweeps.

Each raises ``ValueError`` with a message that names the argument and the bad value.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, List, Optional, Sequence, Tuple


def is_real_number(value: Any) -> bool:
    """A real number that is not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def is_integer(value: Any) -> bool:
    """An integer that is not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_count(name: str, value: Any, minimum: int) -> int:
    """``value`` as an int, if it is an integer ``>= minimum``."""
    if not is_integer(value) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_conductance(name: str, value: Any) -> Optional[float]:
    """A conductance bound (``g_min``/``g_max``) in microsiemens: None, or a finite
    number ``>= 0``."""
    if value is None:
        return None
    if not is_real_number(value) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number of microsiemens, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {value!r}")
    return float(value)


def check_device_range(g_min: Any, g_max: Any, required: bool = True
                       ) -> Tuple[Optional[float], Optional[float]]:
    """``(g_min, g_max)`` in microsiemens, each valid, ``g_min < g_max``.

    With ``required=False`` either may be None (then they are not compared).
    """
    low, high = check_conductance("g_min", g_min), check_conductance("g_max", g_max)
    if (required and (low is None or high is None)) or (
            low is not None and high is not None and low >= high):
        raise ValueError(f"g_min must be below g_max, got g_min={low}, g_max={high}")
    return low, high


def check_fraction(name: str, value: Any) -> float:
    """A fraction in ``(0, 1]``."""
    if not is_real_number(value) or not 0 < value <= 1:
        raise ValueError(f"{name} must lie in (0, 1], got {value!r}")
    return float(value)


def validate_times(times: Sequence[float]) -> List[float]:
    """Inference times as floats (seconds >= 0, at least one, no repeats) or a ``ValueError``."""
    checked = []
    for t in list(times):
        if not is_real_number(t) or not math.isfinite(t) or t < 0:
            raise ValueError(f"times must be finite numbers of seconds >= 0, got {t!r}")
        if float(t) in checked:
            raise ValueError(f"times name {float(t):g} s twice")
        checked.append(float(t))
    if not checked:
        raise ValueError("times must name at least one inference time")
    return checked
