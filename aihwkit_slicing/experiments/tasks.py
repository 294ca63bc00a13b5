"""Tasks: a pretrained floating-point model and how to score an analog copy of it.

:func:`load_task` builds a task from its *source*, a string another process can load
too, so that a Dask worker builds the same task without receiving the model:

* a registered name (:data:`TASKS`: ``"digits"``, ``"minilm"``, or one of
  :func:`register_task`);
* ``"package.module:factory"``: a function of your own that takes no arguments and
  returns a :class:`Task` (imported as ``python -m`` would: the working folder is
  searched first);
* ``"path/to/file.py:factory"``: the same from a file (its folder is searched for its
  own imports, as ``python path/to/file.py`` does).

Every problem with a source of your own (no such module or file, an error while
importing it, no such function, a function that does not return a :class:`Task`) is a
:class:`TaskLoadError`, a ``ValueError`` of one line.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Tuple

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
        source: how another process builds this task (see :func:`load_task`); set by
            :func:`load_task`, None for a task built by hand (Dask workers then need
            it registered by its name).
    """

    name: str
    model: nn.Module
    evaluate: Callable[[nn.Module], Dict[str, float]]
    metric: str
    lower_is_better: Tuple[str, ...] = ()
    source: Optional[str] = field(default=None, compare=False)

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


class TaskLoadError(ValueError):
    """A task source that cannot be loaded; ``str()`` is one line naming the source."""

    def __init__(self, source: str, reason: str):
        super().__init__(f"task {source!r}: {reason}")
        self.source, self.reason = source, reason


def load_task(source: str) -> Task:
    """Build the task ``source`` names (see the module docstring for the forms).

    The task's :attr:`Task.source` says how to build it again (a file's path made
    absolute), which sweeps hand to their Dask workers.

    Raises:
        ValueError: an unknown name (the message lists the registered ones).
        TaskLoadError: a factory of your own that cannot be imported, found or called,
            or does not return a :class:`Task`.
        ImportError: a bundled task whose optional extra is not installed.
    """
    if not isinstance(source, str):
        raise ValueError(f"a task source must be a string, got {type(source).__name__}")
    if source in TASKS:
        task = _checked(TASKS[source](), source, source)
        if task.source is None:
            task.source = source
        return task
    check_source(source)
    module_text, _, attribute = source.rpartition(":")
    if module_text.endswith(".py") or os.sep in module_text or "/" in module_text:
        path = os.path.abspath(module_text)
        source = f"{path}:{attribute}"
        module = _import_file(source, path)
    else:
        module = _import_module(source, module_text)
    factory = getattr(module, attribute, None)
    if factory is None:
        raise TaskLoadError(source, f"{module_text} has no attribute {attribute!r}")
    if not callable(factory):
        raise TaskLoadError(source, f"{attribute} is a {type(factory).__name__}, not a "
                            "function returning a Task")
    try:
        task = factory()
    except Exception as error:  # the user's code: say what it raised, in one line
        raise TaskLoadError(source, f"{attribute}() raised {_one_line(error)}") from None
    task = _checked(task, source, f"{attribute}()")
    task.source = source
    return task


def check_source(source: str) -> None:
    """Raise ``ValueError`` unless ``source`` has a form :func:`load_task` takes (a
    registered name, ``MODULE:FACTORY`` or ``FILE.py:FACTORY``); nothing is imported."""
    if source in TASKS:
        return
    module_text, colon, attribute = source.rpartition(":")
    if not colon or not module_text or not attribute or "/" in attribute or os.sep in attribute:
        hint = ("; a saved network needs a factory that loads it and says how to score it"
                if source.endswith((".pt", ".pth", ".py")) or "/" in source else "")
        raise ValueError(f"unknown model {source!r}; known models: {', '.join(TASKS)}, or "
                         f"a Task factory of your own as MODULE:FACTORY or "
                         f"FILE.py:FACTORY{hint}")


def _checked(task: Any, source: str, what: str) -> Task:
    if not isinstance(task, Task):
        raise TaskLoadError(source, f"{what} must return an aihwkit_slicing.experiments."
                            f"tasks.Task, got {type(task).__name__}")
    return task


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _import_module(source: str, name: str) -> Any:
    """``import name``, the working folder searched first (as ``python -m`` does)."""
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name and (name == error.name or name.startswith(error.name + ".")):
            raise TaskLoadError(source, f"no module named {error.name!r} (searched the "
                                "working folder and the installed packages)") from None
        raise TaskLoadError(source, f"importing {name} raised {_one_line(error)}") from None
    except Exception as error:  # the user's module: what went wrong, in one line
        raise TaskLoadError(source, f"importing {name} raised {_one_line(error)}") from None


def _import_file(source: str, path: str) -> Any:
    """The module in the file ``path``, its folder searched for its own imports."""
    if not os.path.isfile(path):
        raise TaskLoadError(source, f"no file {path}")
    folder = os.path.dirname(path)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    digest = hashlib.sha256(path.encode()).hexdigest()[:12]
    name = f"aihwkit_slicing_task_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise TaskLoadError(source, f"{path} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # so that pickle and dataclasses find its classes
    try:
        spec.loader.exec_module(module)
    except Exception as error:  # the user's file: what went wrong, in one line
        del sys.modules[name]
        raise TaskLoadError(source, f"running {os.path.basename(path)} raised "
                            f"{_one_line(error)}") from None
    return module


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
