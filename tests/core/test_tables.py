"""Unit and property tests of :mod:`aihwkit_slicing.core.tables` (ProgrammingTable and builders).

Small tables are checked against a brute-force computation written here, independent of
the package: enumerate the columns, compute ``u_j = sum_k f_k (gp_k - gm_k)``, group equal
values, and pick a column per level by the documented rule.
"""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aihwkit_slicing.core.builders import (
    bit_sliced,
    builtin_tables,
    equal_significance,
    from_device_levels,
    seed_table,
    single_pair,
)
from aihwkit_slicing.core.tables import (
    ENCODING_RULES,
    LEVEL_TOLERANCE,
    MAX_COLUMNS,
    ProgrammingTable,
)

# ----------------------------------------------------------------------------- helpers
SEED_PATTERN = [
    [0, 0, 0, 0, 1, 0, 1],  # gp0
    [1, 0, 1, 0, 0, 0, 0],  # gm0
    [0, 0, 0, 0, 0, 1, 1],  # gp1
    [1, 1, 0, 0, 0, 0, 0],  # gm1
]

# the names eval(repr(table)) needs
REPR_NAMESPACE = {"ProgrammingTable": ProgrammingTable, "nan": math.nan, "inf": math.inf}


def brute_column_weights(f_lst, g_lst):
    """u_j = sum_k f_k (gp_k - gm_k), with plain Python floats."""
    n_cols = len(g_lst[0])
    return [
        sum(f * (g_lst[2 * k][j] - g_lst[2 * k + 1][j]) for k, f in enumerate(f_lst))
        for j in range(n_cols)
    ]


def brute_levels(f_lst, g_lst):
    """Sorted distinct levels and, per level, the sorted columns that encode it.

    Column weights closer than LEVEL_TOLERANCE * max|u| are one level (the table's
    documented grouping); the level value reported is the smallest member's.
    """
    u = brute_column_weights(f_lst, g_lst)
    tol = LEVEL_TOLERANCE * max(abs(v) for v in u)
    groups = []  # [representative, [columns]]
    for j in sorted(range(len(u)), key=lambda j: (u[j], j)):
        if groups and u[j] - groups[-1][2] <= tol:
            groups[-1][1].append(j)
            groups[-1][2] = u[j]
        else:
            groups.append([u[j], [j], u[j]])
    return [g[0] for g in groups], [tuple(sorted(g[1])) for g in groups]


def brute_cost(rule, f_lst, g_lst, j):
    if rule == "first":
        return 0.0
    if rule == "min_total":
        return sum(row[j] for row in g_lst)
    return sum(f * (g_lst[2 * k][j] + g_lst[2 * k + 1][j]) for k, f in enumerate(f_lst))


def mirror_key(f_lst, g_lst, j):
    """The documented mirror-invariant tie-break: pairs from the most significant down,
    |f_k (gp_k - gm_k)|, then the larger and the smaller conductance of each pair."""
    pairs = range(len(f_lst) - 1, -1, -1)
    contribution = tuple(abs(f_lst[k] * (g_lst[2 * k][j] - g_lst[2 * k + 1][j])) for k in pairs)
    high = tuple(max(g_lst[2 * k][j], g_lst[2 * k + 1][j]) for k in pairs)
    low = tuple(min(g_lst[2 * k][j], g_lst[2 * k + 1][j]) for k in pairs)
    return contribution, high, low


def brute_selected(rule, f_lst, g_lst):
    _, encodings = brute_levels(f_lst, g_lst)
    if rule == "first":
        return tuple(min(cols) for cols in encodings)
    return tuple(
        min(cols, key=lambda j: (brute_cost(rule, f_lst, g_lst, j), *mirror_key(f_lst, g_lst, j),
                                 j))
        for cols in encodings
    )


def signed_digit_columns(pair_levels):
    """Brute-force set of signed-digit columns: each pair has one device at its lowest level."""
    per_pair = []
    for lp, lm in pair_levels:
        states = {(lp[0], lm[0])}
        states |= {(g, lm[0]) for g in lp}
        states |= {(lp[0], g) for g in lm}
        per_pair.append(sorted(states))
    columns = []
    for combo in itertools.product(*per_pair):
        columns.append(tuple(v for pair in combo for v in pair))
    return sorted(columns)


def table_columns(table):
    return sorted(tuple(col) for col in table.conductances.T.tolist())


def digits_of(table, column):
    """Signed digit of each pair of a bit-sliced column (in units of the device step)."""
    g = table.conductances[:, column]
    return tuple(g[0::2] - g[1::2])


def raises_naming(*fragments):
    """pytest.raises(ValueError) whose message must contain every fragment."""

    class _Checker:
        def __enter__(self):
            self._ctx = pytest.raises(ValueError)
            self.info = self._ctx.__enter__()
            return self.info

        def __exit__(self, *exc):
            result = self._ctx.__exit__(*exc)
            message = str(self.info.value)
            for fragment in fragments:
                assert fragment in message, f"{fragment!r} not in message {message!r}"
            return result

    return _Checker()


SMALL_TABLES = {
    "seed": seed_table(),
    "bit_sliced(2,2)": bit_sliced(2, 2),
    "bit_sliced(2,3)": bit_sliced(2, 3),
    "equal(2,3)": equal_significance(2, 3),
    "single_pair(5)": single_pair(5),
    "non-uniform": from_device_levels([1, 3], [0.0, 1.0, 4.0, 9.0]),
    "per-device": from_device_levels([1, 2], [[0, 3, 7], [0, 5], [1, 2], [1, 4, 6]]),
}


# ----------------------------------------------------------------------- the seed table
def test_seed_table_reproduces_design_example_in_units_of_g_max():
    table = seed_table(g_max=1.0, g_min=0.0)
    assert table.f_lst == [1.0, 2.0]
    assert table.g_lst == [[float(v) for v in row] for row in SEED_PATTERN]
    assert table.levels.tolist() == [-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0]
    assert table.n_levels == 7 and table.n_columns == 7 and table.n_devices == 4
    assert table.selected_columns == tuple(range(7))
    assert table.encodings == tuple((j,) for j in range(7))


def test_seed_table_default_is_design_example_scaled_to_25_microsiemens():
    table = seed_table()
    assert (table.g_min, table.g_max) == (0.0, 25.0)
    assert table.g_lst == [[25.0 * v for v in row] for row in SEED_PATTERN]
    assert table.levels.tolist() == [25.0 * k for k in range(-3, 4)]
    assert table.is_symmetric


def test_seed_table_with_g_min_maps_pattern_onto_g_min_and_g_max():
    table = seed_table(g_max=30.0, g_min=5.0)
    assert table.g_lst == [[30.0 if v else 5.0 for v in row] for row in SEED_PATTERN]
    # levels are in units of g_max - g_min
    np.testing.assert_allclose(table.levels, [25.0 * k for k in range(-3, 4)])


# ------------------------------------------------------ levels against brute force
@pytest.mark.parametrize("name", sorted(SMALL_TABLES))
def test_levels_encodings_and_selection_match_brute_force(name):
    table = SMALL_TABLES[name]
    f_lst, g_lst = table.f_lst, table.g_lst
    levels, encodings = brute_levels(f_lst, g_lst)
    np.testing.assert_allclose(table.column_weights, brute_column_weights(f_lst, g_lst),
                               rtol=0, atol=1e-12)
    np.testing.assert_allclose(table.levels, levels, rtol=0, atol=1e-9)
    assert table.encodings == tuple(encodings)
    assert table.selected_columns == brute_selected(table.encoding, f_lst, g_lst)
    assert table.n_levels == len(levels)
    np.testing.assert_array_equal(table.level_conductances,
                                  table.conductances[:, list(table.selected_columns)])


@settings(max_examples=60, deadline=None)
@given(
    n_pairs=st.integers(1, 2),
    n_cols=st.integers(2, 9),
    data=st.data(),
    rule=st.sampled_from(ENCODING_RULES),
)
def test_random_integer_tables_match_brute_force(n_pairs, n_cols, data, rule):
    f_lst = data.draw(st.lists(st.integers(1, 4), min_size=n_pairs, max_size=n_pairs))
    g_lst = data.draw(
        st.lists(st.lists(st.integers(0, 3), min_size=n_cols, max_size=n_cols),
                 min_size=2 * n_pairs, max_size=2 * n_pairs)
    )
    levels, encodings = brute_levels(f_lst, g_lst)
    if len(levels) < 2:
        with raises_naming("g_lst"):
            ProgrammingTable(f_lst, g_lst, encoding=rule)
        return
    table = ProgrammingTable(f_lst, g_lst, encoding=rule)
    assert table.levels.tolist() == levels
    assert table.encodings == tuple(encodings)
    assert table.selected_columns == brute_selected(rule, f_lst, g_lst)


def test_column_weights_closer_than_tolerance_form_one_level():
    # 0.1 + 0.2 != 0.3 in binary floating point, but they are one level
    table = ProgrammingTable([1.0], [[0.1 + 0.2, 0.3, 0.0], [0.0, 0.0, 0.0]])
    assert table.n_levels == 2
    assert table.encodings == ((2,), (0, 1))


def test_table_accepts_numpy_arrays_and_numpy_scalars():
    g = np.array(seed_table().g_lst)
    table = ProgrammingTable(np.array([1, 2]), g)
    assert table == seed_table()
    assert ProgrammingTable([np.float32(1.0), np.int64(2)], g.tolist()) == seed_table()


def test_conductances_are_read_only():
    table = seed_table()
    with pytest.raises(ValueError):
        table.conductances[0, 0] = 3.0
    copy_of_rows = table.g_lst
    copy_of_rows[0][0] = 3.0
    assert table.g_lst[0][0] == 0.0


# ------------------------------------------------------------------------- bit_sliced
@pytest.mark.parametrize("n_pairs,levels_per_device", [(1, 2), (1, 7), (2, 2), (2, 3), (3, 2),
                                                       (2, 4), (3, 3), (4, 2)])
def test_bit_sliced_has_2n_minus_1_to_the_p_columns(n_pairs, levels_per_device):
    table = bit_sliced(n_pairs, levels_per_device)
    assert table.n_columns == (2 * levels_per_device - 1) ** n_pairs
    assert table.n_pairs == n_pairs and table.n_devices == 2 * n_pairs
    # every column is distinct
    assert len(set(table_columns(table))) == table.n_columns


@pytest.mark.parametrize("significance", ["base", "equal", [1.0, 3.0, 5.0]])
@pytest.mark.parametrize("n_pairs,n", [(1, 4), (2, 3), (3, 2), (3, 3)])
def test_bit_sliced_levels_are_evenly_spaced(significance, n_pairs, n):
    if isinstance(significance, list):
        significance = significance[:n_pairs]
    table = bit_sliced(n_pairs, n, significance=significance, g_max=25.0)
    step = 25.0 / (n - 1)
    gaps = np.diff(table.levels)
    np.testing.assert_allclose(gaps, gaps[0], rtol=1e-9)
    assert table.is_symmetric
    top = step * (n - 1) * sum(table.f_lst)
    np.testing.assert_allclose([table.levels[0], table.levels[-1]], [-top, top], rtol=1e-12)


@pytest.mark.parametrize("n_pairs,n", [(1, 2), (2, 2), (2, 4), (3, 3), (4, 2)])
def test_bit_sliced_base_significance_is_powers_of_levels_per_device(n_pairs, n):
    table = bit_sliced(n_pairs, n)
    assert table.f_lst == [float(n**k) for k in range(n_pairs)]
    # balanced digits in base n reach every integer in +-(n**P - 1): 2 n**P - 1 levels
    assert table.n_levels == 2 * n**n_pairs - 1
    np.testing.assert_allclose(table.levels / (25.0 / (n - 1)),
                               np.arange(-(n**n_pairs - 1), n**n_pairs), atol=1e-9)


@pytest.mark.parametrize("n_pairs,n", [(2, 2), (2, 3), (3, 4)])
def test_bit_sliced_equal_significance_weights_all_pairs_one(n_pairs, n):
    table = bit_sliced(n_pairs, n, significance="equal")
    assert table.f_lst == [1.0] * n_pairs
    assert table.n_levels == 2 * n_pairs * (n - 1) + 1


def test_bit_sliced_list_significance_is_used_as_given():
    table = bit_sliced(2, 2, significance=[1, 3])
    assert table.f_lst == [1.0, 3.0]
    np.testing.assert_allclose(table.levels / 25.0, [-4, -3, -2, -1, 0, 1, 2, 3, 4])


@pytest.mark.parametrize("fraction", [0.25, 0.5, 0.8, 1.0])
def test_bit_sliced_g_max_fraction_limits_the_highest_device_level(fraction):
    table = bit_sliced(2, 3, g_min=2.0, g_max=22.0, g_max_fraction=fraction)
    top = 2.0 + fraction * 20.0
    assert table.conductances.max() == pytest.approx(top, rel=1e-12)
    assert table.conductances.min() == 2.0
    assert (table.g_min, table.g_max) == (2.0, 22.0)
    # each device's set of conductances is the evenly spaced grid
    for row in table.conductances:
        np.testing.assert_allclose(sorted(set(row.tolist())), np.linspace(2.0, top, 3),
                                   rtol=1e-12)


@pytest.mark.parametrize("n_pairs,n,g_min", [(2, 2, 0.0), (2, 4, 1.5), (3, 3, 0.0),
                                             (1, 6, 3.0)])
def test_bit_sliced_keeps_one_device_of_each_pair_at_the_lowest_level(n_pairs, n, g_min):
    table = bit_sliced(n_pairs, n, g_min=g_min, g_max=25.0)
    g = table.conductances
    pair_minimum = np.minimum(g[0::2], g[1::2])
    np.testing.assert_array_equal(pair_minimum, np.full_like(pair_minimum, g_min))


def test_bit_sliced_columns_equal_brute_force_signed_digits():
    table = bit_sliced(2, 3, g_max=10.0)
    grid = [0.0, 5.0, 10.0]
    assert table_columns(table) == signed_digit_columns([(grid, grid)] * 2)


def test_equal_significance_is_bit_sliced_with_equal_factors():
    assert equal_significance(3, 3) == bit_sliced(3, 3, significance="equal")
    assert equal_significance(2, 4, g_max=10.0).f_lst == [1.0, 1.0]
    assert equal_significance(2, 4, g_max=10.0).conductances.max() == 10.0


@pytest.mark.parametrize("n", [2, 3, 4, 16])
def test_single_pair_has_2n_minus_1_levels(n):
    table = single_pair(n)
    assert table.n_pairs == 1
    assert table.n_levels == 2 * n - 1
    assert table.n_columns == 2 * n - 1
    np.testing.assert_allclose(table.levels, np.linspace(-25.0, 25.0, 2 * n - 1), atol=1e-12)
    assert table.name == f"1x{n}lvl"


# ------------------------------------------------------------------ from_device_levels
def test_from_device_levels_with_one_shared_non_uniform_set():
    levels = [0.0, 1.0, 4.0, 9.0]
    table = from_device_levels([1, 3], levels)
    assert table_columns(table) == signed_digit_columns([(levels, levels)] * 2)
    squares = (-9, -4, -1, 0, 1, 4, 9)
    expected = sorted({a + 3 * b for a in squares for b in squares})
    np.testing.assert_allclose(table.levels, expected)
    assert (table.g_min, table.g_max) == (0.0, 9.0)


def test_from_device_levels_with_one_set_per_pair():
    sets = [[0, 2, 5], [1, 3]]
    table = from_device_levels([1, 4], sets)
    pairs = [([0.0, 2.0, 5.0], [0.0, 2.0, 5.0]), ([1.0, 3.0], [1.0, 3.0])]
    assert table_columns(table) == signed_digit_columns(pairs)
    assert sorted(set(table.column_weights.tolist())) == table.levels.tolist()
    np.testing.assert_allclose(table.levels, sorted({a + 4 * b for a in (-5, -2, 0, 2, 5)
                                                     for b in (-2, 0, 2)}))


def test_from_device_levels_with_one_set_per_device_unsorted_and_duplicated():
    sets = [[7, 0, 3, 3], [5, 0], [2, 1], [6, 1, 4]]
    table = from_device_levels([1, 2], sets)
    pairs = [([0.0, 3.0, 7.0], [0.0, 5.0]), ([1.0, 2.0], [1.0, 4.0, 6.0])]
    assert table_columns(table) == signed_digit_columns(pairs)
    levels, encodings = brute_levels(table.f_lst, table.g_lst)
    np.testing.assert_allclose(table.levels, levels)
    assert table.encodings == tuple(encodings)
    assert not table.is_symmetric


def test_from_device_levels_honours_given_g_min_g_max_and_name():
    table = from_device_levels([1], [1.0, 2.0, 3.0], g_min=0.5, g_max=4.0, name="x")
    assert (table.g_min, table.g_max, table.name) == (0.5, 4.0, "x")
    with raises_naming("g_min", "lies below g_min = 1.5 uS"):
        from_device_levels([1], [1.0, 2.0, 3.0], g_min=1.5)


# -------------------------------------------------------------------- encoding rules
def three_way_table(encoding):
    """Level 8 encoded three ways (f_lst = [1, 4]):

    column 1: gp0=10, gm0=2        u = 8, total 12, weighted 12  (first in order)
    column 2: gp0=8                u = 8, total  8, weighted  8  (min_weighted)
    column 3: gm0=4, gp1=3         u = 8, total  7, weighted 16  (min_total)
    column 0: all zero             u = 0
    """
    g = [
        [0, 10, 8, 0],  # gp0
        [0, 2, 0, 4],   # gm0
        [0, 0, 0, 3],   # gp1
        [0, 0, 0, 0],   # gm1
    ]
    return ProgrammingTable([1, 4], g, encoding=encoding)


@pytest.mark.parametrize("rule,column", [("min_total", 3), ("min_weighted", 2), ("first", 1)])
def test_encoding_rules_pick_the_documented_column(rule, column):
    table = three_way_table(rule)
    assert table.encodings == ((0,), (1, 2, 3))
    assert table.selected_columns == (0, column)
    assert table.levels.tolist() == [0.0, 8.0]


def test_default_encoding_rule_is_min_total():
    table = ProgrammingTable([1, 4], three_way_table("first").g_lst)
    assert table.encoding == "min_total"
    assert table.selected_columns == (0, 3)


@pytest.mark.parametrize("rule", ENCODING_RULES)
def test_bit_sliced_2x2_encodes_plus_minus_one_with_a_single_nonzero_digit(rule):
    table = bit_sliced(2, 2, encoding=rule)
    step = 25.0
    levels = (table.levels / step).round().astype(int).tolist()
    assert levels == [-3, -2, -1, 0, 1, 2, 3]
    # +-1 are redundant: digits (+-1, 0) or (-+1, +-1); every rule prefers (+-1, 0)
    for level, digit in ((-1, -1.0), (1, 1.0)):
        i = levels.index(level)
        assert len(table.encodings[i]) == 2
        assert digits_of(table, table.selected_columns[i]) == (digit * step, 0.0)


def test_first_rule_follows_table_order_while_min_total_does_not():
    base = bit_sliced(2, 2)
    reversed_g = base.conductances[:, ::-1]
    first = ProgrammingTable(base.f_lst, reversed_g, encoding="first")
    cheap = ProgrammingTable(base.f_lst, reversed_g, encoding="min_total")
    i = first.levels.tolist().index(25.0)
    assert first.selected_columns[i] == min(first.encodings[i])
    # in reversed order the first encoding of +1 is (-1, +1), total 50 uS
    assert first.conductances[:, first.selected_columns[i]].sum() == 50.0
    assert cheap.conductances[:, cheap.selected_columns[i]].sum() == 25.0


def test_remaining_ties_go_to_the_lowest_column_index():
    # level 1 encoded by columns 1 and 2 with the same total and weighted cost
    g = [[0, 1, 1], [0, 0, 0]]
    for rule in ENCODING_RULES:
        assert ProgrammingTable([1], g, encoding=rule).selected_columns == (0, 1)


# -------------------------------------------------------------------- with_encodings
def test_with_encodings_accepts_redundant_columns_and_leaves_original_alone():
    table = bit_sliced(2, 2)
    alternative = [enc[-1] for enc in table.encodings]
    other = table.with_encodings(alternative)
    assert other.selected_columns == tuple(alternative)
    np.testing.assert_array_equal(other.levels, table.levels)
    np.testing.assert_array_equal(other.level_conductances,
                                  table.conductances[:, alternative])
    assert other.encoding == list(alternative)
    assert table.selected_columns == (0, 1, 2, 4, 5, 7, 8)
    assert other != table


def test_with_encodings_rejects_a_column_of_another_level_naming_it():
    table = bit_sliced(2, 2)
    columns = list(table.selected_columns)
    columns[2] = 4  # column 4 encodes level 0, not level 2 (-25 uS)
    with raises_naming("columns[2]", "= 4", "level 2", "-25"):
        table.with_encodings(columns)


def test_with_encodings_rejects_wrong_count_naming_both_counts():
    table = bit_sliced(2, 2)
    with raises_naming("columns", "(7)", "got 6"):
        table.with_encodings(list(table.selected_columns)[:-1])


def test_with_encodings_rejects_non_integer_column_index():
    table = bit_sliced(2, 2)
    columns = list(table.selected_columns)
    columns[2] = 2.7
    with raises_naming("columns[2]", "2.7"):
        table.with_encodings(columns)


# ------------------------------------------------------------------------- bad input
GOOD_F = [1, 2]
GOOD_G = seed_table().g_lst

BAD_TABLE_INPUTS = {
    "ragged rows": (dict(f_lst=[1], g_lst=[[0, 1, 2], [1, 0]]),
                    ["g_lst", "ragged", "row 1 has 2"]),
    "empty rows": (dict(f_lst=[1], g_lst=[[], []]), ["g_lst", "[]"]),
    "non-numeric entry": (dict(f_lst=[1], g_lst=[[0, "1"], [1, 0]]),
                          ["g_lst[0][1]", "'1'"]),
    "None entry": (dict(f_lst=[1], g_lst=[[0, 1], [None, 0]]), ["g_lst[1][0]", "None"]),
    "bool entry": (dict(f_lst=[1], g_lst=[[0, True], [1, 0]]), ["g_lst[0][1]", "True"]),
    "string g_lst": (dict(f_lst=[1], g_lst="0101"), ["g_lst", "str"]),
    "string row": (dict(f_lst=[1], g_lst=["01", [1, 0]]), ["g_lst row 0", "'01'"]),
    "scalar g_lst": (dict(f_lst=[1], g_lst=3.0), ["g_lst", "float"]),
    "too few rows": (dict(f_lst=[1, 2], g_lst=[[0, 1], [1, 0], [0, 1]]),
                     ["g_lst", "2 * len(f_lst) = 4", "got 3 rows"]),
    "too many rows": (dict(f_lst=[1], g_lst=[[0, 1], [1, 0], [0, 1]]),
                      ["g_lst", "= 2", "got 3 rows"]),
    "NaN entry": (dict(f_lst=[1], g_lst=[[0, math.nan], [1, 0]]), ["g_lst[0][1]", "nan"]),
    "inf entry": (dict(f_lst=[1], g_lst=[[0, 1], [math.inf, 0]]), ["g_lst[1][0]", "inf"]),
    "negative conductance": (dict(f_lst=[1], g_lst=[[0, 1], [-0.5, 0]]),
                             ["g_lst[1][0]", "-0.5"]),
    "entry below g_min": (dict(f_lst=[1], g_lst=[[0.5, 1], [1, 2]], g_min=1.0),
                          ["g_lst[0][0]", "0.5", "g_min"]),
    "entry above g_max": (dict(f_lst=[1], g_lst=[[0, 1], [3, 0]], g_max=2.0),
                          ["g_lst[1][0] = 3 uS", "above g_max = 2 uS"]),
    "g_min equals g_max": (dict(f_lst=[1], g_lst=[[1, 1], [1, 1]], g_min=1.0, g_max=1.0),
                           ["g_min", "g_max", "1.0"]),
    "g_min above g_max": (dict(f_lst=[1], g_lst=[[1, 2], [2, 1]], g_min=3.0, g_max=2.0),
                          ["g_min=3.0", "g_max=2.0"]),
    "negative g_min": (dict(f_lst=[1], g_lst=[[0, 1], [1, 0]], g_min=-1.0), ["g_min", "-1.0"]),
    "NaN g_max": (dict(f_lst=[1], g_lst=[[0, 1], [1, 0]], g_max=math.nan), ["g_max", "nan"]),
    "string g_max": (dict(f_lst=[1], g_lst=[[0, 1], [1, 0]], g_max="25"), ["g_max", "'25'"]),
    "zero factor": (dict(f_lst=[1, 0], g_lst=GOOD_G), ["f_lst[1]", "0"]),
    "negative factor": (dict(f_lst=[-1, 2], g_lst=GOOD_G), ["f_lst[0]", "-1"]),
    "inf factor": (dict(f_lst=[1, math.inf], g_lst=GOOD_G), ["f_lst[1]", "inf"]),
    "NaN factor": (dict(f_lst=[math.nan, 2], g_lst=GOOD_G), ["f_lst[0]", "nan"]),
    "string factor": (dict(f_lst=[1, "2"], g_lst=GOOD_G), ["f_lst[1]", "'2'"]),
    "bool factor": (dict(f_lst=[True, 2], g_lst=GOOD_G), ["f_lst[0]", "True"]),
    "string f_lst": (dict(f_lst="12", g_lst=GOOD_G), ["f_lst", "str"]),
    "empty f_lst": (dict(f_lst=[], g_lst=GOOD_G), ["f_lst", "[]"]),
    "one level only": (dict(f_lst=[1], g_lst=[[1, 2], [1, 2]]),
                       ["g_lst", "fewer than two distinct levels"]),
    "all zero": (dict(f_lst=[1], g_lst=[[0, 0], [0, 0]]), ["g_lst"]),
    "unknown encoding rule": (dict(f_lst=GOOD_F, g_lst=GOOD_G, encoding="cheapest"),
                              ["encoding", "'cheapest'"]),
}


@pytest.mark.parametrize("case", sorted(BAD_TABLE_INPUTS))
def test_bad_table_input_raises_value_error_naming_argument_and_value(case):
    kwargs, fragments = BAD_TABLE_INPUTS[case]
    with raises_naming(*fragments):
        ProgrammingTable(**kwargs)


BAD_BUILDER_CALLS = {
    "n_pairs 0": (lambda: bit_sliced(0, 2), ["n_pairs", "0"]),
    "n_pairs float": (lambda: bit_sliced(1.5, 2), ["n_pairs", "1.5"]),
    "n_pairs bool": (lambda: bit_sliced(True, 2), ["n_pairs", "True"]),
    "levels_per_device 1": (lambda: bit_sliced(2, 1), ["levels_per_device", "1"]),
    "levels_per_device str": (lambda: bit_sliced(2, "4"), ["levels_per_device", "'4'"]),
    "single_pair 1 level": (lambda: single_pair(1), ["levels_per_device", "1"]),
    "equal 0 pairs": (lambda: equal_significance(0, 3), ["n_pairs", "0"]),
    "significance string": (lambda: bit_sliced(2, 2, significance="binary"),
                            ["significance", "'binary'"]),
    "significance too short": (lambda: bit_sliced(3, 2, significance=[1, 2]),
                               ["significance", "n_pairs = 3", "got 2"]),
    "significance too long": (lambda: bit_sliced(1, 2, significance=[1, 2]),
                              ["significance", "n_pairs = 1", "got 2"]),
    "g_max_fraction 0": (lambda: bit_sliced(2, 2, g_max_fraction=0.0),
                         ["g_max_fraction", "0.0"]),
    "g_max_fraction above 1": (lambda: bit_sliced(2, 2, g_max_fraction=1.5),
                               ["g_max_fraction", "1.5"]),
    "g_max_fraction negative": (lambda: bit_sliced(2, 2, g_max_fraction=-0.5),
                                ["g_max_fraction", "-0.5"]),
    "g_max_fraction NaN": (lambda: bit_sliced(2, 2, g_max_fraction=math.nan),
                           ["g_max_fraction", "nan"]),
    "g_max_fraction str": (lambda: bit_sliced(2, 2, g_max_fraction="1"),
                           ["g_max_fraction", "'1'"]),
    "builder g_min >= g_max": (lambda: bit_sliced(2, 2, g_min=5.0, g_max=5.0),
                               ["g_min", "g_max", "5.0"]),
    "builder negative g_min": (lambda: bit_sliced(2, 2, g_min=-1.0), ["g_min", "-1.0"]),
    "seed g_min >= g_max": (lambda: seed_table(g_max=1.0, g_min=2.0),
                            ["g_min=2.0", "g_max=1.0"]),
    "seed NaN g_max": (lambda: seed_table(g_max=math.nan), ["g_max", "nan"]),
    "device_levels empty": (lambda: from_device_levels([1], []), ["device_levels", "[]"]),
    "device_levels wrong count": (lambda: from_device_levels([1, 2], [[0, 1]] * 3),
                                  ["device_levels", "got 3 sets"]),
    "device_levels negative": (lambda: from_device_levels([1], [0.0, -1.0]),
                               ["device_levels[0]", "-1.0"]),
    "device_levels NaN": (lambda: from_device_levels([1], [[0.0, 1.0], [0.0, math.nan]]),
                          ["device_levels[1]", "nan"]),
    "device_levels empty set": (lambda: from_device_levels([1], [[], [0.0, 1.0]]),
                                ["device_levels[0]", "empty"]),
    "device_levels one level": (lambda: from_device_levels([1], [2.0]),
                                ["fewer than two distinct levels"]),
    "device_levels bad f_lst": (lambda: from_device_levels([1, -2], [0.0, 1.0]),
                                ["f_lst[1]", "-2"]),
}


@pytest.mark.parametrize("case", sorted(BAD_BUILDER_CALLS))
def test_bad_builder_input_raises_value_error_naming_argument_and_value(case):
    call, fragments = BAD_BUILDER_CALLS[case]
    with raises_naming(*fragments):
        call()


@pytest.mark.parametrize("significance,bad", [([1, 0], "0"), ([1, -2], "-2"),
                                              ([1, math.inf], "inf"), ([1, "x"], "'x'"),
                                              ([], "[]")])
def test_bad_significance_factor_error_names_significance(significance, bad):
    with raises_naming("significance", bad) as info:
        bit_sliced(len(significance) or 1, 2, significance=significance)
    assert "f_lst" not in str(info.value)


@pytest.mark.parametrize("significance", [[1, 0], [1, -2], [1, math.inf], [1, "x"], []])
def test_bad_significance_factor_raises_value_error_with_the_value(significance):
    with pytest.raises(ValueError) as info:
        bit_sliced(len(significance) or 1, 2, significance=significance)
    shown = repr(significance[-1]) if significance else "[]"
    assert shown in str(info.value)


@pytest.mark.parametrize("call,count", [
    (lambda: bit_sliced(13, 2), 3**13),
    (lambda: bit_sliced(2, 1025), 2049**2),
    (lambda: equal_significance(8, 4), 7**8),
    (lambda: single_pair(2**20), 2**21 - 1),
    (lambda: from_device_levels([1] * 13, [0.0, 1.0]), 3**13),
])
def test_builder_refuses_more_than_max_columns_and_gives_the_count(call, count):
    assert count > MAX_COLUMNS
    with raises_naming(str(count), str(MAX_COLUMNS)):
        call()


# ------------------------------------------------------------- serialization, identity
@pytest.mark.parametrize("name", sorted(SMALL_TABLES))
def test_to_dict_from_dict_round_trip_through_json(name):
    table = SMALL_TABLES[name]
    data = json.loads(json.dumps(table.to_dict()))
    again = ProgrammingTable.from_dict(data)
    assert again == table
    assert again.selected_columns == table.selected_columns
    assert again.name == table.name
    assert again.encoding == table.encoding


@pytest.mark.parametrize("rule", ["min_weighted", "first"])
def test_from_dict_keeps_the_encoding_rule(rule):
    table = three_way_table(rule)
    again = ProgrammingTable.from_dict(table.to_dict())
    assert again.encoding == rule
    assert again.selected_columns == table.selected_columns


def test_to_dict_from_dict_round_trip_keeps_explicit_encodings():
    table = bit_sliced(2, 2)
    explicit = table.with_encodings([enc[-1] for enc in table.encodings])
    data = json.loads(json.dumps(explicit.to_dict()))
    assert data["encoding"] == list(explicit.selected_columns)
    again = ProgrammingTable.from_dict(data)
    assert again == explicit
    assert again.selected_columns == explicit.selected_columns
    assert again != table


def test_equal_tables_are_equal_and_hash_equal():
    a = bit_sliced(2, 3, name="a")
    b = ProgrammingTable(a.f_lst, a.g_lst, g_min=a.g_min, g_max=a.g_max, name="b")
    assert a == b and hash(a) == hash(b)
    assert len({a, b}) == 1


@pytest.mark.parametrize("other", [
    ProgrammingTable([1, 3], seed_table().g_lst),
    ProgrammingTable([1, 2], seed_table().g_lst, g_max=30.0),
    bit_sliced(2, 2).with_encodings([enc[-1] for enc in bit_sliced(2, 2).encodings]),
], ids=["other factors", "other g_max", "other selected columns"])
def test_tables_differing_in_factors_range_or_selection_are_unequal(other):
    reference = seed_table() if other.n_columns == 7 else bit_sliced(2, 2)
    assert other != reference
    assert not other == reference


def test_tables_differing_only_in_name_or_given_bounds_are_equal():
    seed = seed_table()
    same = ProgrammingTable([1, 2], seed.g_lst, name="other name")
    assert same == seed and hash(same) == hash(seed)


def test_table_compared_with_other_types_is_unequal_without_raising():
    assert (seed_table() == "seed") is False
    assert (seed_table() != 3) is True


def test_equal_tables_hash_equal_also_with_negative_zero_entries():
    a = ProgrammingTable([1], [[0.0, 1.0], [1.0, 0.0]])
    b = ProgrammingTable([1], [[-0.0, 1.0], [1.0, 0.0]])
    assert a == b
    assert hash(a) == hash(b)


REPR_TABLES = {
    "seed": seed_table(),
    "bit_sliced(2,2) first": bit_sliced(2, 2, encoding="first"),
    "given range": ProgrammingTable([1], [[1, 2, 3], [3, 2, 1]], g_min=0.5, g_max=4.0),
    "derived range": ProgrammingTable([0.5, 1.5], seed_table().g_lst),
    "min_weighted": three_way_table("min_weighted"),
    "non-uniform": from_device_levels([1, 3], [0.0, 1.0, 4.0]),
    "quote in name": seed_table().with_name("it's"),
}


@pytest.mark.parametrize("name", sorted(REPR_TABLES))
def test_repr_evaluates_back_to_an_equal_table(name):
    table = REPR_TABLES[name]
    again = eval(repr(table), dict(REPR_NAMESPACE))  # noqa: S307
    assert again == table
    assert again.encoding == table.encoding and again.name == table.name
    assert repr(again) == repr(table)


def test_repr_of_explicit_encodings_evaluates_back_to_an_equal_table():
    base = bit_sliced(2, 2)
    table = base.with_encodings([enc[-1] for enc in base.encodings])
    again = eval(repr(table), dict(REPR_NAMESPACE))  # noqa: S307
    assert again == table


def test_repr_of_large_table_is_a_short_summary():
    table = bit_sliced(2, 4)
    assert table.n_columns > 32
    text = repr(table)
    assert "<4 x 49 table>" in text
    assert len(text) < 200


def test_describe_lists_every_level_and_its_column():
    table = seed_table()
    text = table.describe()
    assert "7 levels" in text and "seed" in text and "min_total" in text
    lines = text.splitlines()
    for level, column in zip(table.levels, table.selected_columns):
        assert any(line.split()[:2] == [f"{level:.6g}", str(column)] for line in lines), level


def test_describe_counts_redundant_columns_and_summarizes_many_levels():
    table = bit_sliced(2, 2)
    text = table.describe()
    level_line = next(line for line in text.splitlines() if line.split()[:1] == ["25"])
    assert level_line.split()[-1] == "1"  # one other column encodes +25 uS
    big = bit_sliced(2, 4)
    summary = big.describe(max_levels=8)
    assert f"{big.n_levels} levels" in summary
    assert f"{big.n_levels - 8} more levels" in summary


def test_builtin_tables_are_named_by_their_keys_and_distinct():
    tables = builtin_tables()
    assert "seed" in tables and len(tables) >= 5
    for name, table in tables.items():
        assert table.name == name
    assert len(set(tables.values())) == len(tables)
