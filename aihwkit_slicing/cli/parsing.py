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


def check_model(name: str) -> None:
    """Raise :class:`UsageError` unless ``name`` is a registered task (``--model``)."""
    from aihwkit_slicing.experiments.tasks import TASKS

    if name not in TASKS:
        raise UsageError(f"unknown model {name!r}; choose one of {', '.join(TASKS)}")


def load_model(name: str) -> Any:
    """The task ``name`` (``--model``); a missing optional extra is a :class:`UsageError`."""
    from aihwkit_slicing.experiments.tasks import load_task

    try:
        return load_task(name)
    except ImportError as error:
        raise UsageError(str(error)) from None
