"""Programming tables as JSON files: :func:`save_table` and :func:`load_table` (the form of
:meth:`~aihwkit_slicing.core.tables.ProgrammingTable.to_dict`, see ``docs/tables.md``).
"""

from __future__ import annotations

import json
import os
from typing import Union

from aihwkit_slicing.core.tables import ProgrammingTable


def save_table(table: ProgrammingTable, path: Union[str, "os.PathLike[str]"]) -> None:
    """Write ``table`` as JSON (:meth:`ProgrammingTable.to_dict`) to ``path``."""
    with open(path, "w") as handle:
        json.dump(table.to_dict(), handle, indent=1)
        handle.write("\n")


def load_table(path: Union[str, "os.PathLike[str]"]) -> ProgrammingTable:
    """Read a table written by :func:`save_table` (or by hand, same keys).

    Its name is the file's ``name`` field, or else the file name without ``.json``.

    Raises:
        ValueError: one sentence naming the file and the problem (unreadable, not
            JSON, a missing or bad key).
    """
    try:
        with open(path) as handle:
            data = json.load(handle)
    except OSError as error:
        raise ValueError(f"{path}: cannot read it ({error.strerror or error})") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not JSON ({error.msg} at line {error.lineno})") from None
    try:
        table = ProgrammingTable.from_dict(data)
    except (ValueError, TypeError) as error:
        raise ValueError(f"{path}: {error}") from None
    if table.name is None:
        table = table.with_name(os.path.splitext(os.path.basename(path))[0])
    return table
