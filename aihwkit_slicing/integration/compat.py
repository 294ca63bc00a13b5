"""Which torch releases each aihwkit release's compiled tile works with.

aihwkit's compiled C++ extension (``aihwkit.simulator.rpu_base``, behind
``InferenceRPUConfig`` and the other configs whose tile is not pure torch) is built
against one torch release and reads torch's tensor structure at fixed offsets, so each
aihwkit wheel works with a band of torch releases only (measured, see
``docs/compatibility.md``):

* aihwkit 1.1.0 works with torch 2.10 to 2.12; from torch 2.13 on creating its compiled
  tile fails with ``RuntimeError: weights must be a CPU tensor``, and with torch 2.9 the
  extension does not load (``undefined symbol``);
* aihwkit 1.2.0 works with torch 2.14.

:func:`compiled_tile_problem` tells, without creating a tile, whether the installed pair
works; :func:`check_compiled_tile` raises for a compiled-tile rpu_config where it does
not; importing :mod:`aihwkit_slicing` warns once (:func:`warn_if_compiled_tile_broken`).
aihwkit's pure-torch tiles (``TorchInferenceRPUConfig``) do not use the extension's tile.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import re
import warnings
from typing import Any

#: aihwkit release -> the torch releases its compiled tile works with, as
#: ``(lowest, first that no longer works)``: ``(">= lowest", "< first")``.
SUPPORTED_TORCH: dict[str, tuple[str, str]] = {
    "1.1.0": ("2.10", "2.13"),
    "1.2.0": ("2.14", "2.15"),
}

#: Classes whose subclasses wrap a tile of aihwkit's compiled extension (by module and
#: name, so that deciding needs no import of the extension).
_COMPILED_TILE_BASES = {("aihwkit.simulator.tiles.rpucuda", "RPUCudaSimulatorTileWrapper")}

_ALTERNATIVE = "aihwkit's pure-torch tile TorchInferenceRPUConfig"

_warned = False


def torch_requirement(aihwkit_version: str) -> str:
    """The pip requirement for the torch releases that ``aihwkit_version`` works with.

    Example: ``torch_requirement("1.1.0") == "torch>=2.10,<2.13"``.

    Raises:
        KeyError: for an aihwkit release not in :data:`SUPPORTED_TORCH`.
    """
    lowest, first_broken = SUPPORTED_TORCH[aihwkit_version]
    return f"torch>={lowest},<{first_broken}"


def compiled_tile_problem() -> str | None:
    """Why aihwkit's compiled tile does not work here, or ``None`` if it does.

    Reads the installed aihwkit and torch versions from the package metadata and checks
    them against :data:`SUPPORTED_TORCH`; for a known aihwkit release, also imports the
    compiled extension (``aihwkit.simulator.rpu_base``, import errors caught), whose
    failure needs another fix than the torch band alone. Creates no tile.

    Returns:
        ``None`` where the installed aihwkit/torch pair is supported and the extension
        loads; otherwise one sentence naming the installed versions, the torch releases
        that work with this aihwkit, the ``pip install`` command that fixes it and the
        alternative.
    """
    aihwkit_version = _installed_version("aihwkit")
    torch_version = _installed_version("torch")
    if aihwkit_version is None or torch_version is None:
        missing = " and ".join(
            name for name, version in (("aihwkit", aihwkit_version), ("torch", torch_version))
            if version is None
        )
        return (f"aihwkit's compiled tile cannot work because {missing} is not installed: "
                f"run `pip install 'aihwkit==1.1.0' '{torch_requirement('1.1.0')}'` "
                f"(Python 3.11) or `pip install 'aihwkit==1.2.0' "
                f"'{torch_requirement('1.2.0')}'` (Python 3.12).")
    known = _known_release(aihwkit_version)
    if known is None:
        pairs = ", ".join(f"aihwkit {a} with {torch_requirement(a)}" for a in SUPPORTED_TORCH)
        return (f"aihwkit {aihwkit_version} (with torch {torch_version}) is not a release "
                f"whose compiled tile (InferenceRPUConfig) aihwkit-slicing knows to work "
                f"(known: {pairs}): run `pip install 'aihwkit==1.1.0' "
                f"'{torch_requirement('1.1.0')}'` (Python 3.11) or `pip install "
                f"'aihwkit==1.2.0' '{torch_requirement('1.2.0')}'` (Python 3.12), or use "
                f"{_ALTERNATIVE} instead.")
    requirement = torch_requirement(known)
    lowest, first_broken = SUPPORTED_TORCH[known]
    torch_release = _release(torch_version)
    in_band = _release(lowest) <= torch_release < _release(first_broken)
    extension_error = _extension_error()
    if extension_error is not None:
        fix = (f"pip install --force-reinstall 'aihwkit=={known}' '{requirement}'" if in_band
               else f"pip install '{requirement}'")
        return (f"aihwkit {aihwkit_version}'s compiled extension (aihwkit.simulator.rpu_base), "
                f"which all of aihwkit's rpu configs need, does not load with torch "
                f"{torch_version} ({extension_error}); aihwkit {aihwkit_version} works with "
                f"{requirement}: run `{fix}`.")
    if in_band:
        return None
    return (f"aihwkit {aihwkit_version}'s compiled tile (InferenceRPUConfig) does not work "
            f"with torch {torch_version} (aihwkit {aihwkit_version} needs {requirement}): "
            f"run `pip install '{requirement}'`, or use {_ALTERNATIVE} instead.")


def uses_compiled_tile(rpu_config: Any) -> bool:
    """Whether ``rpu_config`` makes tiles of aihwkit's compiled extension.

    True for ``InferenceRPUConfig`` (its tile class is the compiled ``InferenceTile``)
    and aihwkit's training configs (``SingleRPUConfig``, ...); False for the pure-torch
    configs (``TorchInferenceRPUConfig``, ``TorchInferenceRPUConfigIRDropT``, ...) and
    anything without a ``tile_class``.
    """
    tile_class = getattr(rpu_config, "tile_class", None)
    if not isinstance(tile_class, type):
        return False
    return any((base.__module__, base.__name__) in _COMPILED_TILE_BASES
               for base in tile_class.__mro__)


def check_compiled_tile(rpu_config: Any) -> None:
    """Refuse an rpu_config of aihwkit's compiled tile where that tile does not work.

    Call before creating tiles from a user's ``rpu_config``; does nothing for pure-torch
    configs or where :func:`compiled_tile_problem` finds no problem.

    Raises:
        RuntimeError: with the message of :func:`compiled_tile_problem`, if
            ``rpu_config`` uses the compiled tile (:func:`uses_compiled_tile`) and the
            installed aihwkit/torch pair cannot run it.
    """
    if not uses_compiled_tile(rpu_config):
        return
    problem = compiled_tile_problem()
    if problem is not None:
        raise RuntimeError(problem)


def warn_if_compiled_tile_broken() -> str | None:
    """Emit one ``UserWarning`` per process if aihwkit's compiled tile does not work here.

    Called on ``import aihwkit_slicing``; later calls warn no more.

    Returns:
        The problem (see :func:`compiled_tile_problem`), or ``None``.
    """
    global _warned  # pylint: disable=global-statement
    problem = compiled_tile_problem()
    if problem is not None and not _warned:
        _warned = True
        warnings.warn(problem, UserWarning, stacklevel=2)
    return problem


# ------------------------------------------------------------------ helpers
@functools.cache
def _installed_version(distribution: str) -> str | None:
    """The installed version of ``distribution`` (``None`` if not installed)."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


@functools.cache
def _extension_error() -> str | None:
    """``None`` if ``aihwkit.simulator.rpu_base`` imports, else the error, in short."""
    try:
        importlib.import_module("aihwkit.simulator.rpu_base")
    except (ImportError, OSError) as error:
        return f"{type(error).__name__}: {error}"
    return None


def _known_release(version: str) -> str | None:
    """The key of :data:`SUPPORTED_TORCH` for ``version`` (``"1.1.0+cpu"`` -> ``"1.1.0"``)."""
    release = _release(version)
    for known in SUPPORTED_TORCH:
        if _release(known) == release:
            return known
    return None


def _release(version: str) -> tuple[int, ...]:
    """The release numbers of a version, trailing zeros dropped: ``"2.12.1+cpu"`` ->
    ``(2, 12, 1)``, ``"2.13.0.dev20250101"`` -> ``(2, 13)``, ``"2.10"`` -> ``(2, 10)``.

    Pre-releases count as their release, so a nightly of torch 2.13 is outside
    ``< 2.13`` (aihwkit's compiled tile breaks on the development branch first).
    """
    try:
        from packaging.version import InvalidVersion, Version
    except ImportError:  # packaging is not a dependency; a small parser does it too
        numbers = _fallback_release(version)
    else:
        try:
            numbers = Version(version).release
        except InvalidVersion:
            numbers = _fallback_release(version)
    numbers = tuple(numbers)
    while numbers and numbers[-1] == 0:
        numbers = numbers[:-1]
    return numbers


def _fallback_release(version: str) -> tuple[int, ...]:
    match = re.match(r"\s*v?(\d+(?:\.\d+)*)", version)
    if match is None:
        return ()
    return tuple(int(part) for part in match.group(1).split("."))


__all__ = [
    "SUPPORTED_TORCH",
    "check_compiled_tile",
    "compiled_tile_problem",
    "torch_requirement",
    "uses_compiled_tile",
    "warn_if_compiled_tile_broken",
]
