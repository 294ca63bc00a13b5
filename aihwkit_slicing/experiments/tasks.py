"""Tasks: a pretrained floating-point model and how to score an analog copy of it.

Sweeps load tasks by name from a registry (:data:`TASKS`, :func:`register_task`), so
that a worker process can build the same task without receiving the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Tuple

from torch import nn


@dataclass
class Task:
    """A pretrained floating-point model and how to score a copy of it.

    Attributes:
        name: short name (``"digits"``, ``"minilm"``).
        model: the floating-point model (left untouched by sweeps).
        evaluate: scores a model (floating point or analog): metric name -> value.
        metric: the main metric (higher is better), a key of ``evaluate``'s result.
        lower_is_better: other metrics of ``evaluate`` for which lower is better (a
            loss, an error); summaries and plots rank tables by them ascending. The
            sweep's weight errors are lower-is-better anyway.
    """

    name: str
    model: nn.Module
    evaluate: Callable[[nn.Module], Dict[str, float]]
    metric: str
    lower_is_better: Tuple[str, ...] = ()
    def __post_init__(self) -> None:
        if isinstance(self.lower_is_better, str):
            self.lower_is_better = (self.lower_is_better,)
        self.lower_is_better = tuple(self.lower_is_better)
        if self.metric in self.lower_is_better:
            raise ValueError(f"task {self.name!r}: its main metric {self.metric!r} must be "
                             "higher-is-better (allocations measure its drop); list it "
                             "negated, or make another metric the main one")




def digits_task() -> Task:
    """The bundled digits CNN, scored by accuracy on the fixed held-out split."""
    from aihwkit_slicing.experiments.models.digits import (
        accuracy,
        load_digits_model,
        load_digits_split,
    )

    _, _, x_test, y_test = load_digits_split()
    return Task(
        name="digits",
        model=load_digits_model(),
        evaluate=lambda model: {"accuracy": accuracy(model, x_test, y_test)},
        metric="accuracy",
    )


def minilm_task() -> Task:
    """The MiniLM sentence encoder, scored by cosine similarity to floating point.

    Needs the optional extra ``minilm`` (raises ``ImportError`` otherwise).
    """
    from aihwkit_slicing.experiments.models.minilm import MiniLMScorer, load_minilm

    model = load_minilm()
    return Task(name="minilm", model=model, evaluate=MiniLMScorer(model), metric="cosine")


TASKS: Dict[str, Callable[[], Task]] = {"digits": digits_task, "minilm": minilm_task}


def load_task(name: str) -> Task:
    """A bundled task by name (see :data:`TASKS`)."""
    if name not in TASKS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(TASKS)}")
    return TASKS[name]()


def register_task(name: str, factory: Callable[[], Task]) -> None:
    """Make ``factory`` (no arguments, returns a :class:`Task`) loadable by ``name``.

    Register at import time of a module that worker processes import too, so that
    distributed sweeps find the task by name.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    if not callable(factory):
        raise TypeError(f"factory must be callable, got {factory!r}")
    TASKS[name] = factory
