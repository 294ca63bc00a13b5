"""Train the bundled digits CNN and write its checkpoint.

Usage: ``python -m aihwkit_slicing.experiments.models.train_digits [--out PATH] [--epochs N]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from aihwkit_slicing.experiments.models.digits import (
    CHECKPOINT,
    accuracy,
    load_digits_split,
    train_digits_model,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=CHECKPOINT)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    model = train_digits_model(epochs=args.epochs, seed=args.seed)
    _, _, x_test, y_test = load_digits_split()
    torch.save(model.state_dict(), args.out)
    print(f"test accuracy {accuracy(model, x_test, y_test):.4f}; wrote {args.out}")


if __name__ == "__main__":
    main()
