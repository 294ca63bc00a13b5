"""Benchmark: building large programming tables (``bit_sliced``, ``equal_significance``).

Times, in the same process and on one thread (numpy/BLAS/torch limited to 1):

* new: the package's builders (:mod:`aihwkit_slicing.core.tables`);
* reference: the frozen pure-Python implementation the tests compare against
  (``tests/reference_tables.py``: the signed-digit columns, ``g_lst`` validation, level
  grouping and selection by rule as they were before the vectorization), on the same
  arguments; its result is checked to equal the new one (levels, encodings, selected
  columns). By default only for the tables where it takes seconds, not minutes
  (``--full`` times it on every table);
* sort: one ``np.argsort`` of as many float64 values as the table has columns, the
  ``O(L log L)`` floor of grouping ``L`` columns into levels.

It prints the best of ``--repeats`` wall times (the reference: of
``--reference-repeats``) and the ratios reference/new and new/sort.

Run: ``python benchmarks/bench_tables.py [--repeats 3] [--full] [--quick]``.
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "1"

import argparse  # noqa: E402
import gc  # noqa: E402
import importlib.util  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable, List, Optional, Sequence, Tuple  # noqa: E402

import numpy as np  # noqa: E402

from aihwkit_slicing.core.builders import bit_sliced, equal_significance
from aihwkit_slicing.core.tables import ProgrammingTable

REFERENCE_PATH = Path(__file__).resolve().parents[1] / "tests" / "reference_tables.py"


def load_reference() -> Any:
    """The frozen reference implementation (tests/reference_tables.py) as a module."""
    name = "bench_tables_reference"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REFERENCE_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


def best_time(fn: Callable[[], Any], repeats: int) -> Tuple[float, Any]:
    """Best wall time of ``fn`` in seconds over ``repeats`` runs, and its last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        result = None
        gc.collect()
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def reference_builder(reference: Any, n_pairs: int, n: int, equal: bool) -> Callable[[], Any]:
    """The old ``bit_sliced``/``equal_significance``: columns, validation, levels, rule."""

    def build() -> Any:
        f_lst = [1.0] * n_pairs if equal else [float(n**k) for k in range(n_pairs)]
        pairs = reference.reference_uniform_pair_levels(n_pairs, n)
        g = reference.reference_signed_digit_columns(f_lst, pairs)
        return reference.reference_table(f_lst, g, "min_total")

    return build


def same_result(table: ProgrammingTable, ref: Any) -> bool:
    return (
        table.conductances.tobytes() == np.ascontiguousarray(ref.g).tobytes()
        and table.levels.tobytes() == ref.levels.tobytes()
        and table.encodings == ref.encodings
        and table.selected_columns == ref.selected_columns
    )


#: (label, n_pairs, levels_per_device, equal significance, reference timed by default)
CASES: List[Tuple[str, int, int, bool, bool]] = [
    ("bit_sliced(4, 4)", 4, 4, False, True),
    ("bit_sliced(3, 24)", 3, 24, False, True),
    ("equal_significance(4, 16)", 4, 16, True, False),
    ("bit_sliced(4, 16)", 4, 16, False, False),
]
QUICK_CASES: List[Tuple[str, int, int, bool, bool]] = [
    ("bit_sliced(4, 4)", 4, 4, False, True),
    ("equal_significance(3, 4)", 3, 4, True, True),
]


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs of the new code")
    parser.add_argument("--reference-repeats", type=int, default=1,
                        help="runs of the reference implementation")
    parser.add_argument("--full", action="store_true",
                        help="also time the reference on the 923521-column tables (minutes)")
    parser.add_argument("--quick", action="store_true", help="small tables only (for tests)")
    args = parser.parse_args(argv)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover - torch is a dependency of the package
        pass

    reference = load_reference()
    print(f"programming-table build, 1 thread, best of {args.repeats} "
          f"(reference: best of {args.reference_repeats})")
    print(f"{'table':<27s} {'columns':>8s} {'levels':>7s} {'new (s)':>9s} "
          f"{'reference (s)':>14s} {'reference/new':>14s} {'sort (s)':>9s} {'new/sort':>9s}")
    for label, n_pairs, n, equal, with_reference in (QUICK_CASES if args.quick else CASES):
        if equal:
            build = lambda: equal_significance(n_pairs, n)  # noqa: E731
        else:
            build = lambda: bit_sliced(n_pairs, n)  # noqa: E731
        new_time, table = best_time(build, args.repeats)
        weights = np.random.default_rng(0).standard_normal(table.n_columns)
        sort_time, _ = best_time(lambda: np.argsort(weights, kind="stable"), args.repeats)
        ref_text, ratio_text = "-", "-"
        if with_reference or args.full:
            ref_time, ref = best_time(reference_builder(reference, n_pairs, n, equal),
                                      args.reference_repeats)
            if not same_result(table, ref):
                print(f"{label}: the new table differs from the reference", file=sys.stderr)
                return 1
            ref_text, ratio_text = f"{ref_time:.4f}", f"{ref_time / new_time:.1f}x"
        print(f"{label:<27s} {table.n_columns:>8d} {table.n_levels:>7d} {new_time:>9.4f} "
              f"{ref_text:>14s} {ratio_text:>14s} {sort_time:>9.4f} "
              f"{new_time / sort_time:>8.1f}x")
    print("reference/new: speed-up over the frozen pure-Python implementation (same result); "
          "new/sort: the build in units of one stable argsort of as many float64 values")
    return 0


if __name__ == "__main__":
    sys.exit(main())
