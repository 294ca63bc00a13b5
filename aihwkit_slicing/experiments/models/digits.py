"""A small CNN on scikit-learn's bundled 8x8 digits, pretrained and committed.

The data set ships with scikit-learn (1797 images, 8 x 8 pixels, 10 classes), so
nothing is downloaded. The split is fixed: a stratified 30 % held-out test set drawn
with ``random_state=0``. The checkpoint ``digits_cnn.pt`` (a ``state_dict``, about
150 kB) was written by ``python -m aihwkit_slicing.experiments.models.train_digits``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Tuple

import torch
from torch import Tensor, nn

CHECKPOINT = Path(__file__).with_name("digits_cnn.pt")
TEST_FRACTION = 0.3
SPLIT_SEED = 0


class DigitsCNN(nn.Module):
    """Two 3x3 convolutions, a max-pool and two linear layers (about 38 k weights)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(32 * 4 * 4, 64),
            nn.ReLU(),
            nn.Linear(64, 10),
        )

    def forward(self, images: Tensor) -> Tensor:
        """Logits for ``[batch, 1, 8, 8]`` images with pixel values in [0, 1]."""
        return self.classifier(self.features(images))


def load_digits_split() -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """The fixed split: ``(x_train, y_train, x_test, y_test)``.

    Images are ``[n, 1, 8, 8]`` float32 in [0, 1]; labels int64.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = torch.tensor(data.images / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(data.target, dtype=torch.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=y
    )
    return x_train, y_train, x_test, y_test


def load_digits_model(checkpoint: Path = CHECKPOINT) -> DigitsCNN:
    """The pretrained network (floating point, eval mode)."""
    model = DigitsCNN()
    model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
    return model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, images: Tensor, labels: Tensor, batch_size: int = 1024) -> float:
    """Fraction of ``images`` whose arg-max logit is the label (on the model's device)."""
    model.eval()
    device = next(iter(model.parameters()), torch.empty(0)).device
    correct = 0
    for start in range(0, len(images), batch_size):
        logits = model(images[start:start + batch_size].to(device)).cpu()
        correct += int((logits.argmax(dim=1) == labels[start:start + batch_size]).sum())
    return correct / len(images)


def train_digits_model(epochs: int = 40, seed: int = 0, lr: float = 3e-3) -> DigitsCNN:
    """Train a fresh :class:`DigitsCNN` on the training split (a few seconds on a CPU)."""
    torch.manual_seed(seed)
    x_train, y_train, _, _ = load_digits_split()
    model = DigitsCNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x_train), generator=generator)
        for start in range(0, len(order), 64):
            batch = order[start:start + 64]
            optimizer.zero_grad()
            loss_fn(model(x_train[batch]), y_train[batch]).backward()
            optimizer.step()
    return model.eval()
