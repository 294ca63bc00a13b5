"""The probe for aihwkit's compiled tile, shared by the integration tests.

With the torch build aihwkit 1.1.0 installs here, creating its compiled
``InferenceTile`` (``InferenceRPUConfig``) fails with ``RuntimeError: weights must be a
CPU tensor``. That is aihwkit's problem; the tests that need the compiled tile skip with
that reason, and run where it works.
"""

import pytest
from aihwkit.nn import AnalogLinear
from aihwkit.simulator.configs import InferenceRPUConfig

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
