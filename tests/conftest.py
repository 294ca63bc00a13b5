"""Shared test set-up: every test starts from the same state, whatever ran before.

* torch's global generator is seeded (aihwkit's noise models draw from it);
* device state lives only on the tensors and tiles it describes (nothing is kept at
  module level), so no test can see another's programmed tiles;
* matplotlib draws off screen; Hugging Face stays offline;
* the tuning cache (aihwkit_slicing.design.tuning_cache) lives in a fresh folder per
  test process, never in the user's ~/.cache.

The suite runs in random order (pytest-randomly) and in parallel (pytest-xdist).
"""

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import matplotlib
import pytest
import torch


# tests/ holds helpers (aihwkit_helpers, reference_tables) that tests in the subfolders,
# which mirror the package's folders, import
sys.path.insert(0, str(Path(__file__).resolve().parent))

matplotlib.use("Agg")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ["AIHWKIT_SLICING_CACHE"] = tempfile.mkdtemp(prefix="aihwkit-slicing-cache-")
atexit.register(shutil.rmtree, os.environ["AIHWKIT_SLICING_CACHE"], ignore_errors=True)


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)
    yield
