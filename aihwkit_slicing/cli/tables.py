"""``aihwkit-slicing tables``: list the named tables, show one, or check a table file.

* ``aihwkit-slicing tables``: every name ``sweep --tables``, ``--layer-tables`` and
  ``allocate --candidates`` accept (one registry:
  :func:`aihwkit_slicing.design.candidates.table_names`), the tuned default candidates
  of ``allocate`` among them;
* ``aihwkit-slicing tables NAME``: one table in full (devices, significances, levels
  and their encodings); ``--json`` prints it in the format ``--table-file`` reads;
* ``aihwkit-slicing tables FILE.json``: reads a table file as ``sweep --table-file``
  does, says whether it is valid (one line naming the problem, exit status 2, if not)
  and shows it.

Kept apart from :mod:`aihwkit_slicing.cli.main`, which registers it.
"""

from __future__ import annotations

import argparse
import json
import os

from aihwkit_slicing.cli.parsing import UsageError


def add_tables_parser(commands: argparse._SubParsersAction,  # pylint: disable=protected-access
                      parser: argparse.ArgumentParser) -> None:
    """Add the ``tables`` subcommand to ``commands`` (errors go through ``parser``)."""
    tables = commands.add_parser(
        "tables", help="list the named tables, show one, or check a table file",
        description="List every table name the other commands accept, show one table "
        "in full, or read a table file (JSON) as 'sweep --table-file' does and show it.")
    tables.error = parser.error  # type: ignore[method-assign]
    tables.add_argument("name", nargs="?", metavar="NAME_OR_FILE",
                        help="a table name to show in full, or a table file (.json) to "
                        "check and show")
    tables.add_argument("--json", action="store_true",
                        help="print the table as JSON (the format --table-file reads)")


def _is_file(name: str) -> bool:
    return name.endswith(".json") or os.sep in name or os.path.isfile(name)


def _times(times: tuple) -> str:
    from aihwkit_slicing.experiments.results import format_time

    return " and ".join(format_time(t) for t in times)


def run_tables_command(args: argparse.Namespace) -> int:
    """``aihwkit-slicing tables [NAME_OR_FILE] [--json]``."""
    from aihwkit_slicing.core.table_files import load_table
    from aihwkit_slicing.design.candidates import (
        DEFAULT_TIMES,
        TUNED_CANDIDATES,
        named_spec,
        table_names,
        untuned_table,
    )
    from aihwkit_slicing.integration.catalog import (
        BASELINES,
        CANDIDATE_TABLES,
        NAMED_TABLES,
        TABLES,
    )

    if args.name is None:
        if args.json:
            print(json.dumps({name: t.to_dict() for name, t in NAMED_TABLES.items()},
                             indent=1))
            return 0
        tuned = {name: untuned_table(*spec) for name, spec in TUNED_CANDIDATES.items()}
        groups = (("built-in tables", TABLES),
                  ("plain allocation candidates", CANDIDATE_TABLES),
                  (f"allocate's default candidates, every level encoded as errs least under "
                   f"the noise model at {_times(DEFAULT_TIMES)} (tuned when used, then "
                   "cached)", tuned))
        width = max(len(name) for _, group in groups for name in group)
        for title, group in groups:
            print(f"{title}:")
            print(f"  {'name':<{width}s} {'pairs':>5s} {'devices':>7s} {'levels':>6s}  "
                  "significances")
            for name, table in group.items():
                print(f"  {name:<{width}s} {table.n_pairs:>5d} {table.n_devices:>7d} "
                      f"{table.n_levels:>6d}  [{', '.join(f'{f:g}' for f in table.f_lst)}]")
            print()
        print("aihwkit baselines (continuous): " + ", ".join(BASELINES))
        return 0
    if args.name in BASELINES:
        if args.json:
            raise UsageError(f"{args.name} is aihwkit's continuous converter, not a table; "
                             "it has no JSON form")
        print(f"{args.name}: {BASELINES[args.name]()} (aihwkit's continuous converter)")
        return 0
    if args.name in NAMED_TABLES:
        table = NAMED_TABLES[args.name]
    elif args.name in TUNED_CANDIDATES:
        table = named_spec(args.name)
        if not args.json:
            print(f"{args.name}: tuned for the pcm noise model at {_times(DEFAULT_TIMES)} "
                  "(sweep and allocate tune it for their --noise-model)\n")
    elif _is_file(args.name):
        try:
            table = load_table(args.name)
        except ValueError as error:
            raise UsageError(str(error)) from None
        if not args.json:
            print(f"{args.name}: a valid table, named {table.name!r} (the name sweeps "
                  "record)\n")
    else:
        raise UsageError(f"unknown table {args.name!r}; known tables: "
                         f"{', '.join(table_names())}; or give a table file (FILE.json)")
    if args.json:
        print(json.dumps(table.to_dict(), indent=1))
    else:
        print(table.describe())
    return 0
