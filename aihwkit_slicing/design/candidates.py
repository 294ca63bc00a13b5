"""Candidate tables of an allocation: the default ones (binary significance on 2 to 4 pairs,
equal significance beyond, every level encoded as errs least under the noise model:
:func:`tuned_table`), plain named candidates (:data:`CANDIDATES`), and how the candidates
a user names become table specs (:func:`candidate_specs`).
"""

from __future__ import annotations

import numbers

from typing import Any, Dict, List, Mapping, Sequence, Tuple, Union

import torch


from aihwkit_slicing.integration.catalog import TableSpec, known_names
from aihwkit_slicing.design.encodings import column_errors
from aihwkit_slicing.core.builders import bit_sliced, equal_significance, single_pair
from aihwkit_slicing.core.tables import ProgrammingTable
from aihwkit_slicing.core.validation import validate_times


#: Inference times (seconds) allocations aim at by default: 1 day and 1 year.
DEFAULT_TIMES: Tuple[float, ...] = (86400.0, 31536000.0)


#: The default candidates: (pairs, levels per device, significance), 2 to 16 devices per
#: weight. Binary significance (F = 1, 2, 4, ...) with the levels the table optimizer
#: picks for MiniLM where it has a table of that size (2, 3 and 4 pairs), equal
#: significance beyond; every level encoded as errs least (:func:`tuned_table`). Measured
#: on MiniLM under PCM with noise-aware clipping, the binary tables beat equal
#: significance of the same devices at 1 s, 1 day and 1 year (6 devices, 1 day: 0.984
#: against 0.981).
DEFAULT_CANDIDATES: Tuple[Tuple[int, int, str], ...] = (
    (1, 33, "equal"), (2, 33, "binary"), (3, 17, "binary"), (4, 5, "binary"),
    (6, 33, "equal"), (8, 33, "equal"))
#: Pair counts of the default candidates: 2, 4, 6, 8, 12 and 16 devices per weight.
DEFAULT_PAIRS: Tuple[int, ...] = tuple(pairs for pairs, _, _ in DEFAULT_CANDIDATES)
#: Conductance levels a device offers in equal-significance candidates (as in the
#: fidelity benchmark's optimizer: 33 evenly spaced levels between g_min and g_max).
DEFAULT_DEVICE_LEVELS = 33


def _candidate_tables() -> Dict[str, ProgrammingTable]:
    """Plain candidate tables by name: equal significance (pairs filled one after the
    other) and binary significance, for 2 to 16 devices."""
    tables = [single_pair(33, name="1x33lvl")]
    tables += [equal_significance(p, 33, columns="fill", name=f"{p}x33lvl-fill")
               for p in DEFAULT_PAIRS[1:]]
    tables += [bit_sliced(2, 33, significance=[1, 2], name="2x33lvl-binary"),
               bit_sliced(3, 17, significance=[1, 2, 4], name="3x17lvl-binary"),
               bit_sliced(4, 5, significance=[1, 2, 4, 8], name="4x5lvl-binary")]
    return {table.name: table for table in tables}


#: Plain candidate tables by name (besides :data:`aihwkit_slicing.integration.catalog.TABLES`):
#: ``"1x33lvl"``, ``"<P>x33lvl-fill"`` (equal significance, P = 2, 3, 4, 6, 8) and the
#: table optimizer's binary-significance picks ``"2x33lvl-binary"``,
#: ``"3x17lvl-binary"``, ``"4x5lvl-binary"``.
CANDIDATES: Dict[str, ProgrammingTable] = _candidate_tables()


def tuned_table(n_pairs: int, noise_model: Any = "pcm", times: Sequence[float] = DEFAULT_TIMES,
                levels_per_device: int = DEFAULT_DEVICE_LEVELS, n_samples: int = 1000,
                seed: int = 0, significance: str = "equal") -> ProgrammingTable:
    """Sliced pairs, each level programmed the way that errs least.

    ``significance="equal"``: ``equal_significance(n_pairs, levels_per_device,
    columns="fill+spread")`` offers two encodings per level: pairs filled one after the
    other, or the level spread evenly over the pairs. ``"binary"``: ``bit_sliced`` with
    significances 1, 2, 4, ..., whose levels have many encodings. Per level, the
    encoding of least mean squared weight error after programming and drift to
    ``times`` (averaged over the times; Monte Carlo through the noise model, with global
    drift compensation, see :func:`aihwkit_slicing.design.encodings.column_errors`) is
    selected. One pair has one encoding per level:
    :func:`~aihwkit_slicing.core.builders.single_pair`.

    Args:
        n_pairs: device pairs (``2 * n_pairs`` devices per weight).
        noise_model: the noise model the encodings are chosen for.
        times: inference times in seconds.
        levels_per_device: conductance levels per device.
        n_samples: Monte Carlo cells per column and time.
        seed: seed of the Monte Carlo.
        significance: ``"equal"`` or ``"binary"``.

    Returns:
        The table, named ``"<n_pairs>x<levels>lvl-tuned"`` (equal) or
        ``"<n_pairs>x<levels>lvl-binary-tuned"``.
    """
    if significance not in ("equal", "binary"):
        raise ValueError(f"significance must be 'equal' or 'binary', got {significance!r}")
    kind = "" if significance == "equal" else "binary-"
    name = f"{n_pairs}x{levels_per_device}lvl-{kind}tuned"
    if n_pairs == 1:
        return single_pair(levels_per_device, name=name)
    if significance == "binary":
        table = bit_sliced(n_pairs, levels_per_device,
                           significance=[float(2**k) for k in range(n_pairs)], name=name)
    else:
        table = equal_significance(n_pairs, levels_per_device, columns="fill+spread",
                                   name=name)
    times = times_list(times)
    with torch.random.fork_rng(devices=[]):  # the caller's random state stays as it was
        mse = sum(column_errors(table, noise_model, t, None, n_samples, seed + index)["mse"]
                  for index, t in enumerate(times))
    chosen = [min(columns, key=lambda c: (float(mse[c]), c)) for columns in table.encodings]
    return table.with_encodings(chosen)


def default_candidates(noise_model: Any = "pcm", times: Sequence[float] = DEFAULT_TIMES,
                       seed: int = 0, n_samples: int = 1000) -> List[ProgrammingTable]:
    """What :func:`~aihwkit_slicing.experiments.sensitivity.allocate_tables` chooses from
    by default: :func:`tuned_table` for each of :data:`DEFAULT_CANDIDATES` (2 to 16
    devices), tuned for ``noise_model`` at ``times`` with ``n_samples`` Monte Carlo cells
    per column and time."""
    return [tuned_table(pairs, noise_model, times, levels, n_samples, seed, kind)
            for pairs, levels, kind in DEFAULT_CANDIDATES]


Candidate = Union[str, ProgrammingTable, Any]  # Any: an optimizer's OptimizationResult


def candidate_specs(candidates: Union[None, Sequence[Candidate], Mapping[str, Candidate]]
                    ) -> Dict[str, TableSpec]:
    """Display name -> table spec for the candidates of an allocation.

    Args:
        candidates: table names (:func:`aihwkit_slicing.integration.catalog.known_names` or
            :data:`CANDIDATES`), :class:`ProgrammingTable` objects, or results of
            :func:`aihwkit_slicing.design.optimizer.optimize_table` (their table is used,
            with the allocation's scaling); a sequence (names taken from the tables) or
            a mapping of display name to candidate; None for :func:`default_candidates`
            (for PCM at the default times).

    Raises:
        ValueError: for no candidate, an unknown name or two candidates of one name.
        TypeError: for anything else.
    """
    if candidates is None:
        candidates = default_candidates()
    if isinstance(candidates, (str, ProgrammingTable)):
        candidates = [candidates]
    named = candidates.items() if isinstance(candidates, Mapping) else [
        (None, c) for c in candidates]
    specs: Dict[str, TableSpec] = {}
    for given_name, candidate in named:
        spec = _spec_of(candidate)
        name = given_name or (spec if isinstance(spec, str) else
                              spec.name or f"table-{spec.programmed_hash()[:8]}")
        if isinstance(spec, ProgrammingTable) and spec.name != name:
            spec = spec.with_name(name)  # the name reports and the JSON form show
        if name in specs:
            raise ValueError(f"candidates name the table {name!r} twice; give each its own "
                             "name (ProgrammingTable.with_name)")
        specs[name] = spec
    if not specs:
        raise ValueError("candidates must name at least one table")
    return specs


def _spec_of(candidate: Candidate) -> TableSpec:
    """The spec of one candidate: a known name, or a table."""
    if isinstance(candidate, str):
        if candidate in known_names():
            return candidate
        if candidate in CANDIDATES:
            return CANDIDATES[candidate]
        raise ValueError(f"candidates: unknown table {candidate!r}; known tables: "
                         f"{', '.join(known_names() + list(CANDIDATES))}")
    if isinstance(candidate, ProgrammingTable):
        return candidate
    if isinstance(getattr(candidate, "table", None), ProgrammingTable):  # OptimizationResult
        return candidate.table
    raise TypeError("candidates must be table names, ProgrammingTables or results of "
                    f"optimize_table, got {type(candidate).__name__}")


def selected_only(table: ProgrammingTable) -> ProgrammingTable:
    """``table`` reduced to the column it programs for each level.

    A converter never uses the other (redundant) columns, so the reduced table
    quantizes and programs every weight exactly as ``table`` does; its JSON form is
    much smaller (a 4-pair bit-sliced table of 6561 columns keeps 121).
    """
    columns = list(table.selected_columns)
    if len(columns) == table.n_columns:
        return table
    return ProgrammingTable(table.f_lst, table.conductances[:, columns], g_min=table.g_min,
                            g_max=table.g_max, encoding="first", name=table.name)


def times_list(times: Any) -> List[float]:
    if isinstance(times, numbers.Real):
        times = [times]
    return validate_times(list(times))
