"""A cache of the encodings noise tuning chooses, on disk and in this process.

Tuning a table's encodings (:func:`aihwkit_slicing.design.candidates.tuned_table`)
simulates every column of the table by Monte Carlo; for the allocation's default
candidates that took a minute on 2 cores (a 3-pair table has 35937 columns), every
time ``aihwkit-slicing allocate`` ran. The result is a list of column indices, one per
level, that depends only on the table, the noise model, the times, the Monte Carlo's
size and seed, and the aihwkit and torch releases (whose noise draws it is). It is kept:

* in this process (a dict), and
* on disk, one small JSON file per key, in ``$AIHWKIT_SLICING_CACHE`` if set, else
  ``$XDG_CACHE_HOME/aihwkit-slicing`` (``~/.cache/aihwkit-slicing``).

``AIHWKIT_SLICING_CACHE=off`` switches the disk cache off (as ``allocate --no-cache``
does for one run); deleting the folder is always safe. A noise model whose settings are
not plain values (so that two of them cannot be told apart) is never cached. A file
that cannot be read or does not fit the table is recomputed and rewritten.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

#: The environment variable naming the cache folder (``off`` switches it off).
CACHE_ENV = "AIHWKIT_SLICING_CACHE"
#: Bumped whenever the tuning itself changes, so that old files are not used.
TUNING_VERSION = 1
_OFF = ("off", "0", "none", "false", "no")

_MEMO: Dict[str, List[int]] = {}
_WARNED: set = set()


def cache_folder() -> Optional[Path]:
    """The folder of the disk cache, or None where it is switched off."""
    value = os.environ.get(CACHE_ENV)
    if value is not None:
        if value.strip().lower() in _OFF or not value.strip():
            return None
        return Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "aihwkit-slicing"


def tuning_key(parts: Mapping[str, Any]) -> str:
    """The cache key of a tuning: a hash of ``parts`` and the releases whose random
    draws the Monte Carlo is."""
    import aihwkit
    import torch

    described = dict(parts, tuning_version=TUNING_VERSION, aihwkit=aihwkit.__version__,
                     torch=torch.__version__)
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:32]


def load_encoding(key: str, use_disk: bool = True) -> Optional[List[int]]:
    """The encoding kept under ``key`` (this process first, then the disk), or None."""
    if key in _MEMO:
        return list(_MEMO[key])
    folder = cache_folder() if use_disk else None
    if folder is None:
        return None
    try:
        data = json.loads((folder / f"tuned-{key}.json").read_text())
        encoding = data["encoding"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(encoding, list) or not all(
            isinstance(c, int) and not isinstance(c, bool) for c in encoding):
        return None
    return list(encoding)


def store_encoding(key: str, parts: Mapping[str, Any], encoding: List[int],
                   use_disk: bool = True) -> None:
    """Keep ``encoding`` under ``key``: in this process, and on disk (written whole or
    not at all; a folder that cannot be written is said once, in a warning)."""
    _MEMO[key] = list(encoding)
    folder = cache_folder() if use_disk else None
    if folder is None:
        return
    path = folder / f"tuned-{key}.json"
    partial = folder / f".tuned-{key}.{os.getpid()}.tmp"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        partial.write_text(json.dumps({"key": dict(parts), "encoding": encoding}) + "\n")
        os.replace(partial, path)
    except OSError as error:
        if str(folder) not in _WARNED:
            _WARNED.add(str(folder))
            warnings.warn(f"cannot write the tuning cache in {folder} "
                          f"({error.strerror or error}); tuned tables are recomputed each "
                          f"run: set {CACHE_ENV} to a writable folder, or to off",
                          stacklevel=3)


def forget_memo() -> None:
    """Empty this process's part of the cache (the disk's stays)."""
    _MEMO.clear()
