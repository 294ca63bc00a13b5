"""Shared test set-up: deterministic torch, a non-interactive matplotlib backend."""

import os

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _seed_torch():
    torch.manual_seed(0)
    yield
