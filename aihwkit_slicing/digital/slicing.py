"""How a weight is split into slices: :class:`WeightSlicing` (equal, positional base-L or
binary significance, or given factors), per tensor by ``R = max|W|`` in weight units;
``W = sum_k f_k W_k``. Used by the digitally summed layers of
:mod:`aihwkit_slicing.digital.layers`.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor


from aihwkit_slicing.core.validation import is_integer, is_real_number


#: Named significance rules (a list of factors is the third option). ``"base"`` is
#: the positional rule of :func:`aihwkit_slicing.core.builders.bit_sliced`; ``"binary"`` is
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
    * ``"base"``: positional digits, the rule :func:`aihwkit_slicing.core.builders.bit_sliced`
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
