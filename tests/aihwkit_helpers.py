"""Helpers shared by the aihwkit integration tests: the compiled-tile probe and the
reconstruction of weights from captured conductances.

With the torch build aihwkit 1.1.0 installs here, creating its compiled
``InferenceTile`` (``InferenceRPUConfig``) fails with ``RuntimeError: weights must be a
CPU tensor``. That is aihwkit's problem; the tests that need the compiled tile skip with
that reason, and run where it works.
"""

import pytest
import torch
from aihwkit.nn import AnalogLinear
from aihwkit.simulator.configs import InferenceRPUConfig
from torch import Tensor

COMPILED_TILE_SKIP = (
    "aihwkit 1.1.0's compiled tile fails with this torch build: "
    "RuntimeError: weights must be a CPU tensor"
)
_status: dict = {"works": None}


def require_compiled_tile() -> None:
    """Skip the calling test if aihwkit's compiled ``InferenceTile`` cannot be created.

    Probes once (a 4x2 ``AnalogLinear`` with ``InferenceRPUConfig``) and remembers the
    answer; any other error than the known torch incompatibility propagates.
    """
    if _status["works"] is None:
        try:
            AnalogLinear(4, 2, bias=False, rpu_config=InferenceRPUConfig())
            _status["works"] = True
        except RuntimeError as error:
            if "weights must be a CPU tensor" not in str(error):
                raise
            _status["works"] = False
    if not _status["works"]:
        pytest.skip(COMPILED_TILE_SKIP)


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
