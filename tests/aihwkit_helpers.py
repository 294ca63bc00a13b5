"""Helpers shared by the aihwkit integration tests: the compiled-tile gate and the
reconstruction of weights from captured conductances.

aihwkit's compiled ``InferenceTile`` (``InferenceRPUConfig``) works only with the torch
releases its wheel was built for (:mod:`aihwkit_slicing.integration.compat`). Where the installed
aihwkit/torch pair is one of those, the compiled-tile tests run, and a tile that fails
there fails them; only where compat reports an unsupported pair do they skip, with
compat's message as the reason.
"""

import pytest
import torch
from torch import Tensor

from aihwkit_slicing.integration.compat import compiled_tile_problem


def require_compiled_tile() -> None:
    """Skip the calling test if the installed aihwkit/torch pair cannot run the
    compiled tile (the reason says which versions work and how to install them).

    Creates no tile: in a supported environment the test itself creates it, so a
    broken compiled tile fails the test instead of skipping it.
    """
    problem = compiled_tile_problem()
    if problem is not None:
        pytest.skip(problem)


def weights_from(conductances: list, params: dict) -> Tensor:
    """``sum_k f_k (gp_k - gm_k) / scale_ratio``, in float64."""
    total = torch.zeros_like(conductances[0], dtype=torch.float64)
    for k, f_k in enumerate(params["f_lst"]):
        total += f_k * (conductances[2 * k].double() - conductances[2 * k + 1].double())
    return total / torch.as_tensor(params["scale_ratio"]).double()


def max_rel_diff(a: Tensor, b: Tensor) -> float:
    """max|a - b| relative to max|b|."""
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).abs().max() / b.abs().max())
