"""Candidate tables of an allocation: the default ones (binary significance on 2 to 4 pairs,
equal significance beyond, every level encoded as errs least under the noise model:
:func:`tuned_table`, cached by :mod:`aihwkit_slicing.design.tuning_cache`), plain named
candidates (:data:`CANDIDATES`), and how the candidates a user names become table specs
(:func:`candidate_specs`).
"""

from __future__ import annotations

import numbers

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch


from aihwkit_slicing.integration.catalog import CANDIDATE_TABLES, TableSpec, known_names
from aihwkit_slicing.design.encodings import column_errors
from aihwkit_slicing.design.tuning_cache import load_encoding, store_encoding, tuning_key
from aihwkit_slicing.integration.level_noise import noise_model_identity
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


#: Plain candidate tables by name (besides :data:`aihwkit_slicing.integration.catalog.TABLES`):
#: ``"1x33lvl"``, ``"<P>x33lvl-fill"`` (equal significance, P = 2, 3, 4, 6, 8) and the
#: table optimizer's binary-significance picks ``"2x33lvl-binary"``,
#: ``"3x17lvl-binary"``, ``"4x5lvl-binary"``. The same dict as
#: :data:`~aihwkit_slicing.integration.catalog.CANDIDATE_TABLES`: every command and
#: sweep knows these names.
CANDIDATES: Dict[str, ProgrammingTable] = CANDIDATE_TABLES


def tuned_table(n_pairs: int, noise_model: Any = "pcm", times: Sequence[float] = DEFAULT_TIMES,
                levels_per_device: int = DEFAULT_DEVICE_LEVELS, n_samples: int = 1000,
                seed: int = 0, significance: str = "equal", cache: bool = True
                ) -> ProgrammingTable:
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
        cache: keep the chosen encodings, and use those kept, in this process and on
            disk (keyed by the table, the noise model's settings, ``times``,
            ``n_samples``, ``seed`` and the aihwkit and torch releases; see
            :mod:`aihwkit_slicing.design.tuning_cache`): the same table as a fresh
            Monte Carlo, without its minute for a 3-pair binary table. False: always
            simulate, keep nothing.

    Returns:
        The table, named ``"<n_pairs>x<levels>lvl-tuned"`` (equal) or
        ``"<n_pairs>x<levels>lvl-binary-tuned"``.
    """
    table = untuned_table(n_pairs, levels_per_device, significance)
    if n_pairs == 1:
        return table
    times = times_list(times)
    identity = _cache_identity(noise_model, table) if cache else None
    parts = {"table": repr(table.key), "noise_model": identity, "times": times,
             "n_samples": int(n_samples), "seed": int(seed)}
    key = tuning_key(parts) if identity is not None else None
    if key is not None:
        kept = load_encoding(key)
        if kept is not None:
            try:
                return table.with_encodings(kept)
            except (ValueError, TypeError, IndexError):
                pass  # a file that does not fit this table: simulate and rewrite it
    with torch.random.fork_rng(devices=[]):  # the caller's random state stays as it was
        mse = sum(column_errors(table, noise_model, t, None, n_samples, seed + index)["mse"]
                  for index, t in enumerate(times))
    chosen = [min(columns, key=lambda c: (float(mse[c]), c)) for columns in table.encodings]
    if key is not None:
        store_encoding(key, parts, [int(c) for c in chosen])
    return table.with_encodings(chosen)


def _cache_identity(noise_model: Any, table: ProgrammingTable) -> Optional[str]:
    """The noise model's identity for the tuning cache (the one noise-aware seeds use,
    :func:`~aihwkit_slicing.integration.level_noise.noise_model_identity`), or None
    where a setting cannot be recorded: two such models cannot be told apart, so
    nothing is cached."""
    try:
        return noise_model_identity(noise_model, table)
    except ValueError:
        return None


def tuned_name(n_pairs: int, levels_per_device: int, significance: str) -> str:
    """The name of a :func:`tuned_table`: ``"3x17lvl-binary-tuned"``, ``"6x33lvl-tuned"``."""
    kind = "" if significance == "equal" else "binary-"
    return f"{n_pairs}x{levels_per_device}lvl-{kind}tuned"


def untuned_table(n_pairs: int, levels_per_device: int, significance: str
                  ) -> ProgrammingTable:
    """What :func:`tuned_table` chooses encodings in (every encoding of every level),
    under its name."""
    if significance not in ("equal", "binary"):
        raise ValueError(f"significance must be 'equal' or 'binary', got {significance!r}")
    name = tuned_name(n_pairs, levels_per_device, significance)
    if n_pairs == 1:
        return single_pair(levels_per_device, name=name)
    if significance == "binary":
        return bit_sliced(n_pairs, levels_per_device,
                          significance=[float(2**k) for k in range(n_pairs)], name=name)
    return equal_significance(n_pairs, levels_per_device, columns="fill+spread", name=name)


#: The default candidates by name (``"1x33lvl-tuned"``, ``"2x33lvl-binary-tuned"``,
#: ``"3x17lvl-binary-tuned"``, ...): tables whose encodings are tuned when used, for the
#: noise model at hand (:func:`named_spec`).
TUNED_CANDIDATES: Dict[str, Tuple[int, int, str]] = {
    tuned_name(*candidate): candidate for candidate in DEFAULT_CANDIDATES}


def table_names() -> List[str]:
    """Every table name the commands accept: :func:`~aihwkit_slicing.integration.catalog.
    known_names` and the tuned default candidates (:data:`TUNED_CANDIDATES`)."""
    return known_names() + list(TUNED_CANDIDATES)


def named_spec(name: str, noise_model: Any = "pcm", times: Sequence[float] = DEFAULT_TIMES,
               seed: int = 0, cache: bool = True) -> TableSpec:
    """The table spec of a name of :func:`table_names`: a known name as it is, a tuned
    default candidate (``"3x17lvl-binary-tuned"``) as :func:`tuned_table` makes it for
    ``noise_model`` at ``times`` (the allocation's default: 1 day and 1 year).

    Raises:
        ValueError: for an unknown name (the message lists the known ones).
    """
    if name in known_names():
        return name
    if name in TUNED_CANDIDATES:
        pairs, levels, kind = TUNED_CANDIDATES[name]
        return tuned_table(pairs, noise_model, times, levels, seed=seed, significance=kind,
                           cache=cache)
    raise ValueError(f"unknown table {name!r}; known tables: {', '.join(table_names())}")


def default_candidates(noise_model: Any = "pcm", times: Sequence[float] = DEFAULT_TIMES,
                       seed: int = 0, n_samples: int = 1000, cache: bool = True
                       ) -> List[ProgrammingTable]:
    """What :func:`~aihwkit_slicing.experiments.sensitivity.allocate_tables` chooses from
    by default: :func:`tuned_table` for each of :data:`DEFAULT_CANDIDATES` (2 to 16
    devices), tuned for ``noise_model`` at ``times`` with ``n_samples`` Monte Carlo cells
    per column and time (``cache``: see :func:`tuned_table`)."""
    return [tuned_table(pairs, noise_model, times, levels, n_samples, seed, kind, cache)
            for pairs, levels, kind in DEFAULT_CANDIDATES]


Candidate = Union[str, ProgrammingTable, Any]  # Any: an optimizer's OptimizationResult


def candidate_specs(candidates: Union[None, Sequence[Candidate], Mapping[str, Candidate]],
                    noise_model: Any = "pcm", times: Sequence[float] = DEFAULT_TIMES,
                    seed: int = 0, cache: bool = True) -> Dict[str, TableSpec]:
    """Display name -> table spec for the candidates of an allocation.

    Args:
        candidates: table names (:func:`table_names`: tuned default candidates are tuned
            for ``noise_model`` at ``times`` with ``seed``), :class:`ProgrammingTable`
            objects, or results of :func:`aihwkit_slicing.design.optimizer.optimize_table`
            (their table is used, with the allocation's scaling); a sequence (names taken
            from the tables) or a mapping of display name to candidate; None for
            :func:`default_candidates` (for ``noise_model`` at ``times``).

    Raises:
        ValueError: for no candidate, an unknown name or two candidates of one name.
        TypeError: for anything else.
    """
    if candidates is None:
        candidates = default_candidates(noise_model, times, seed, cache=cache)
    if isinstance(candidates, (str, ProgrammingTable)):
        candidates = [candidates]
    named = candidates.items() if isinstance(candidates, Mapping) else [
        (None, c) for c in candidates]
    specs: Dict[str, TableSpec] = {}
    for given_name, candidate in named:
        spec = _spec_of(candidate, noise_model, times, seed, cache)
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


def _spec_of(candidate: Candidate, noise_model: Any, times: Sequence[float], seed: int,
             cache: bool) -> TableSpec:
    """The spec of one candidate: a known name, or a table."""
    if isinstance(candidate, str):
        try:
            return named_spec(candidate, noise_model, times_list(times), seed, cache)
        except ValueError as error:
            raise ValueError(f"candidates: {error}") from None
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
