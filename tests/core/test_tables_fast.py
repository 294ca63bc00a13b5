"""The table building of :mod:`aihwkit_slicing.core.tables` equals the frozen reference exactly.

``tests/reference_tables.py`` is a copy of the slow pure-Python implementation (level
grouping, selection by rule, explicit encodings, ``g_lst`` validation and signed-digit
column generation). Here every result of the package is compared with it bit for bit:
conductances, column weights, levels, encodings, selected columns, the column order of
the builders and the error messages.
"""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from reference_tables import (
    reference_check_columns,
    reference_signed_digit_columns,
    reference_table,
    reference_uniform_pair_levels,
    reference_validate_g_lst,
)

from aihwkit_slicing.core import builders as builders_module
from aihwkit_slicing.core.builders import (
    bit_sliced,
    builtin_tables,
    equal_significance,
    from_device_levels,
    single_pair,
)
from aihwkit_slicing.core.tables import ENCODING_RULES, ProgrammingTable


# ----------------------------------------------------------------------------- helpers
def assert_matches_reference(table, encoding=None):
    """The table equals what the reference derives from its f_lst and conductances."""
    if encoding is None:
        encoding = table.encoding
    ref = reference_table(table.f_lst, table.g_lst, encoding)
    np.testing.assert_array_equal(table.conductances, ref.g)
    assert table.conductances.flags.c_contiguous
    # bit for bit: the same float64 values, not merely close ones
    assert table.column_weights.tobytes() == ref.column_weights.tobytes()
    assert table.n_levels == ref.n_levels
    np.testing.assert_array_equal(table._level_of_column, ref.level_of_column)
    assert table.encodings == ref.encodings
    assert all(type(c) is int for cols in table.encodings[:3] for c in cols)
    assert table.selected_columns == ref.selected_columns
    assert all(type(c) is int for c in table.selected_columns)
    assert table.levels.tobytes() == ref.levels.tobytes()
    return ref


def message_of(call):
    """The ValueError message of ``call()`` (the call must raise ValueError)."""
    with pytest.raises(ValueError) as info:
        call()
    return str(info.value)


def reference_message(g_lst, n_pairs):
    return message_of(lambda: reference_validate_g_lst(g_lst, n_pairs))


def table_message(g_lst, n_pairs):
    return message_of(lambda: ProgrammingTable([1.0] * n_pairs, g_lst))


# ------------------------------------------------------------------- builtin tables
BUILTIN = builtin_tables()


@pytest.mark.parametrize("rule", ENCODING_RULES)
@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_builtin_tables_match_the_reference_for_every_rule(name, rule):
    table = BUILTIN[name]
    again = ProgrammingTable(table.f_lst, table.conductances, g_min=table.g_min,
                             g_max=table.g_max, encoding=rule)
    assert_matches_reference(again)


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_builtin_tables_from_nested_lists_equal_those_from_arrays(name):
    table = BUILTIN[name]
    from_lists = ProgrammingTable(table.f_lst, table.g_lst, g_min=table.g_min,
                                  g_max=table.g_max, encoding=table.encoding)
    assert from_lists == table
    assert from_lists.encodings == table.encodings
    assert from_lists.column_weights.tobytes() == table.column_weights.tobytes()


# ------------------------------------------------------------------ builder columns
UNIFORM_CASES = [
    (1, 2, "base", 0.0, 25.0, 1.0),
    (1, 16, "base", 0.0, 25.0, 1.0),
    (2, 2, "base", 0.0, 25.0, 1.0),
    (2, 4, "equal", 0.0, 25.0, 1.0),
    (3, 3, "base", 1.5, 22.0, 0.8),
    (3, 4, "equal", 0.0, 25.0, 1.0),
    (3, 3, [1.0, 3.0, 5.0], 0.0, 25.0, 1.0),
    (3, 5, [0.3, 0.7, 1.1], 2.0, 20.0, 0.7),
    (4, 2, "base", 0.0, 25.0, 1.0),
    (4, 4, "base", 0.0, 25.0, 1.0),
    (4, 4, "equal", 0.1, 24.9, 0.9),
    (2, 40, "base", 0.0, 25.0, 1.0),
]


@pytest.mark.parametrize("n_pairs,n,significance,g_min,g_max,fraction", UNIFORM_CASES)
def test_bit_sliced_columns_and_order_equal_the_reference(
    n_pairs, n, significance, g_min, g_max, fraction
):
    table = bit_sliced(n_pairs, n, significance=significance, g_min=g_min, g_max=g_max,
                       g_max_fraction=fraction)
    expected = reference_signed_digit_columns(
        table.f_lst, reference_uniform_pair_levels(n_pairs, n, g_min, g_max, fraction)
    )
    assert table.conductances.tobytes() == np.ascontiguousarray(expected).tobytes()
    for rule in ENCODING_RULES:
        assert_matches_reference(
            table if rule == table.encoding else bit_sliced(
                n_pairs, n, significance=significance, g_min=g_min, g_max=g_max,
                g_max_fraction=fraction, encoding=rule,
            )
        )


def test_equal_significance_all_columns_equal_the_reference():
    table = equal_significance(3, 4)
    expected = reference_signed_digit_columns([1.0] * 3, reference_uniform_pair_levels(3, 4))
    np.testing.assert_array_equal(table.conductances, expected)
    assert_matches_reference(table)


@pytest.mark.parametrize("columns", ["fill", "spread", "fill+spread"])
@pytest.mark.parametrize("rule", ENCODING_RULES)
def test_equal_significance_column_sets_match_the_reference(columns, rule):
    assert_matches_reference(equal_significance(3, 4, columns=columns, encoding=rule))


@settings(max_examples=40, deadline=None)
@given(
    f_lst=st.lists(st.sampled_from([0.5, 1.0, 1.5, 2.0, 3.0, 0.1, 7.0]), min_size=1,
                   max_size=3),
    level_pool=st.lists(st.sampled_from([0.0, 0.1, 0.2, 0.3, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0,
                                         1.0 / 3.0, 2.0 / 3.0, 9.0]),
                        min_size=2, max_size=5),
    per_device=st.booleans(),
    data=st.data(),
)
def test_signed_digit_columns_equal_the_reference(f_lst, level_pool, per_device, data):
    pairs = []
    for _ in f_lst:
        if per_device:
            sets = [sorted(set(data.draw(st.lists(st.sampled_from(level_pool), min_size=1,
                                                  max_size=4)))) for _ in range(2)]
        else:
            sets = [sorted(set(level_pool))] * 2
        pairs.append((sets[0], sets[1]))
    expected = reference_signed_digit_columns(f_lst, pairs)
    produced = builders_module._signed_digit_columns(f_lst, pairs)
    assert produced.shape == expected.shape
    assert produced.tobytes() == np.ascontiguousarray(expected).tobytes()


NON_UNIFORM = {
    "squares": ([1, 3], [0.0, 1.0, 4.0, 9.0]),
    "per pair": ([1, 4], [[0, 2, 5], [1, 3]]),
    "per device": ([1, 2], [[7, 0, 3, 3], [5, 0], [2, 1], [6, 1, 4]]),
    "thirds": ([1, 1, 1], [0.0, 1.0 / 3.0, 2.0 / 3.0, 1.0]),
    "fractions": ([0.1, 0.3, 0.9], [0.0, 0.1, 0.2, 0.3, 0.7]),
    "offset": ([1, 5], [2.0, 2.5, 4.0, 7.5, 11.0]),
}


@pytest.mark.parametrize("rule", ENCODING_RULES)
@pytest.mark.parametrize("name", sorted(NON_UNIFORM))
def test_from_device_levels_matches_the_reference(name, rule):
    f_lst, levels = NON_UNIFORM[name]
    table = from_device_levels(f_lst, levels, encoding=rule)
    assert_matches_reference(table)


def test_builders_refuse_too_many_columns_with_the_reference_message():
    pairs = [([0.0, 1.0], [0.0, 1.0])] * 13
    expected = message_of(lambda: reference_signed_digit_columns([1.0] * 13, pairs))
    assert message_of(lambda: builders_module._signed_digit_columns([1.0] * 13, pairs)) == expected


# ------------------------------------------------------------------- random tables
def random_table(data, n_pairs, n_cols, pool):
    """f_lst and g_lst with duplicated and mirrored columns and many ties."""
    f_lst = data.draw(st.lists(st.sampled_from([1.0, 2.0, 3.0, 0.5, 0.1, 0.3, 1.0 / 3.0]),
                               min_size=n_pairs, max_size=n_pairs))
    columns = data.draw(st.lists(st.lists(st.sampled_from(pool), min_size=2 * n_pairs,
                                          max_size=2 * n_pairs),
                                 min_size=1, max_size=n_cols))
    extra = []
    for column in columns:
        how = data.draw(st.sampled_from(["none", "duplicate", "mirror"]))
        if how == "duplicate":
            extra.append(list(column))
        elif how == "mirror":
            mirrored = []
            for k in range(n_pairs):
                mirrored += [column[2 * k + 1], column[2 * k]]
            extra.append(mirrored)
    columns = columns + extra
    order = data.draw(st.permutations(range(len(columns))))
    columns = [columns[j] for j in order]
    g_lst = [[column[d] for column in columns] for d in range(2 * n_pairs)]
    return f_lst, g_lst


POOLS = {
    "integers": [0.0, 1.0, 2.0, 3.0],
    "fractions": [0.0, 0.1, 0.2, 0.3, 0.7, 1.0 / 3.0],
    "mixed": [0.0, 0.5, 1.0, 2.5, 3.0, 0.1 + 0.2, 0.3],
}


@settings(max_examples=150, deadline=None)
@given(
    n_pairs=st.integers(1, 3),
    n_cols=st.integers(1, 24),
    pool=st.sampled_from(sorted(POOLS)),
    rule=st.sampled_from(ENCODING_RULES),
    as_array=st.booleans(),
    data=st.data(),
)
def test_random_tables_match_the_reference(n_pairs, n_cols, pool, rule, as_array, data):
    f_lst, g_lst = random_table(data, n_pairs, n_cols, POOLS[pool])
    g_in = np.array(g_lst) if as_array else g_lst
    try:
        ref = reference_table(f_lst, g_lst, rule)
    except ValueError as error:
        assert "fewer than two distinct levels" in str(error) or "zero" in str(error)
        with pytest.raises(ValueError):
            ProgrammingTable(f_lst, g_in, encoding=rule)
        return
    table = ProgrammingTable(f_lst, g_in, encoding=rule)
    assert_matches_reference(table)
    assert table.selected_columns == ref.selected_columns

    # explicit encodings: any column of each level, as a list or an array
    explicit = [data.draw(st.sampled_from(cols)) for cols in ref.encodings]
    chosen = ProgrammingTable(f_lst, g_in, encoding=np.array(explicit))
    assert chosen.selected_columns == tuple(explicit)
    assert table.with_encodings(explicit).selected_columns == tuple(explicit)


@settings(max_examples=80, deadline=None)
@given(n_pairs=st.integers(1, 3), n_cols=st.integers(2, 16), data=st.data())
def test_bad_explicit_encodings_give_the_reference_message(n_pairs, n_cols, data):
    f_lst, g_lst = random_table(data, n_pairs, n_cols, POOLS["integers"])
    try:
        ref = reference_table(f_lst, g_lst)
    except ValueError:
        assume(False)
    columns = [data.draw(st.sampled_from(cols)) for cols in ref.encodings]
    n_bad = data.draw(st.integers(1, 3))
    for _ in range(n_bad):
        level = data.draw(st.integers(0, len(columns) - 1))
        columns[level] = data.draw(st.one_of(
            st.integers(-3, len(g_lst[0]) + 3), st.sampled_from([1.5, True, "0", None]),
            st.just(np.int64(0)),
        ))
    if data.draw(st.booleans()):
        columns = columns[:-1]
    table = ProgrammingTable(f_lst, g_lst)
    try:
        expected = reference_check_columns(columns, ref.encodings, ref.column_weights)
    except ValueError as error:
        assert message_of(lambda: table.with_encodings(columns)) == str(error)
    else:
        assert table.with_encodings(columns).selected_columns == expected


# ----------------------------------------------------- redundant and mirrored levels
@pytest.mark.parametrize("rule", ENCODING_RULES)
@pytest.mark.parametrize("n_pairs,n", [(2, 5), (3, 3), (4, 3), (5, 2)])
def test_equal_significance_with_many_redundant_encodings_matches_the_reference(
    n_pairs, n, rule
):
    table = equal_significance(n_pairs, n, encoding=rule)
    assert max(len(cols) for cols in table.encodings) > n_pairs
    assert_matches_reference(table)


@pytest.mark.parametrize("rule", ["min_total", "min_weighted"])
def test_mirrored_levels_use_mirrored_columns(rule):
    for table in (equal_significance(3, 4, encoding=rule), bit_sliced(3, 3, encoding=rule),
                  from_device_levels([1, 3], [0.0, 0.1, 0.3, 0.7], encoding=rule)):
        g = table.level_conductances
        mirrored = g.reshape(-1, 2, g.shape[1])[:, ::-1].reshape(g.shape)[:, ::-1]
        np.testing.assert_array_equal(g, mirrored)


def test_levels_closer_than_the_tolerance_group_like_the_reference():
    # weights that differ by rounding only, in shuffled column order
    values = [0.1 + 0.2, 0.3, 0.0, 0.6, 0.2 + 0.4, 0.1 * 3, 1.0, 0.7 + 0.3]
    rng = np.random.default_rng(0)
    for _ in range(20):
        order = rng.permutation(len(values))
        g_lst = [[values[j] for j in order], [0.0] * len(values)]
        for rule in ENCODING_RULES:
            assert_matches_reference(ProgrammingTable([1.0], g_lst, encoding=rule))


# ------------------------------------------------------------------ error messages
BAD_G_LST = {
    "string": "0101",
    "bytes": b"01",
    "scalar": 3.0,
    "string row": ["01", [1, 0]],
    "scalar row": [1.0, [1, 0]],
    "too few rows": [[0, 1]],
    "too many rows": [[0, 1], [1, 0], [0, 1]],
    "empty rows": [[], []],
    "ragged": [[0, 1, 2], [1, 0]],
    "ragged after nan": [[0, math.nan, 2], [1, 0]],
    "nan before ragged": [[0, 1, 2], [1, math.nan, 2, 3]],
    "non-numeric": [[0, "1"], [1, 0]],
    "None": [[0, 1], [None, 0]],
    "bool": [[0, True], [1, 0]],
    "numpy bool": [[0, np.bool_(True)], [1, 0]],
    "complex": [[0, 1j], [1, 0]],
    "nan": [[0, math.nan], [1, 0]],
    "inf": [[0, 1], [math.inf, 0]],
    "-inf": [[0, 1], [-math.inf, 0]],
    "negative int": [[0, 1], [-1, 0]],
    "negative float": [[0, 1], [-0.5, 0]],
    "negative before nan": [[0, -2.0], [math.nan, 0]],
    "nan before negative": [[math.nan, 1], [-2.0, 0]],
    "string after negative": [[0, 1], [-1, "x"]],
    "string before negative": [[0, "x"], [-1, 0]],
    "numpy float32 negative": [[0, np.float32(-0.25)], [1, 0]],
    "list row of arrays": [np.array([0.0, -1.0]), np.array([1.0, 0.0])],
    "array 1-d": np.array([0.0, 1.0]),
    "array 0-d": np.array(1.0),
    "array 3-d": np.zeros((2, 2, 2)),
    "array wrong rows": np.zeros((3, 2)),
    "array empty rows": np.zeros((2, 0)),
    "array nan": np.array([[0.0, 1.0, 2.0], [1.0, 0.0, math.nan]]),
    "array inf then negative": np.array([[0.0, math.inf], [-1.0, 0.0]]),
    "array negative then inf": np.array([[0.0, -1.0], [math.inf, 0.0]]),
    "array float32 negative": np.array([[0.0, 1.0], [-0.1, 0.0]], dtype=np.float32),
    "array int negative": np.array([[0, 1], [1, -3]]),
    "array bool": np.array([[False, True], [True, False]]),
    "array str": np.array([["0", "1"], ["1", "0"]]),
    "array complex": np.array([[0, 1], [1, 0]], dtype=complex),
    "array object": np.array([[0, None], [1, 0]], dtype=object),
    "array object negative": np.array([[0, 1], [-2, 0]], dtype=object),
    "masked array": np.ma.masked_array([[0.0, 1.0], [1.0, 0.0]], mask=[[0, 1], [0, 0]]),
}


@pytest.mark.parametrize("case", sorted(BAD_G_LST))
def test_bad_g_lst_gives_the_reference_message(case):
    g_lst = BAD_G_LST[case]
    assert table_message(g_lst, 1) == reference_message(g_lst, 1)


def test_bad_tensor_g_lst_gives_the_reference_message():
    torch = pytest.importorskip("torch")
    for g_lst in (torch.tensor([[0.0, 1.0], [-1.0, 0.0]]),
                  torch.tensor([[0.0, float("nan")], [1.0, 0.0]]),
                  torch.tensor([[0, 1], [1, 0], [0, 1]])):
        assert table_message(g_lst, 1) == reference_message(g_lst, 1)


def test_good_tensor_and_integer_array_g_lst_equal_the_reference():
    torch = pytest.importorskip("torch")
    g = [[0, 1, 2, 0], [2, 0, 0, 1]]
    for g_in in (torch.tensor(g, dtype=torch.float32), torch.tensor(g), np.array(g),
                 np.array(g, dtype=np.uint8), np.array(g, dtype=np.float32),
                 np.asfortranarray(np.array(g, dtype=float)), np.array(g, dtype=object)):
        table = ProgrammingTable([1.0], g_in)
        np.testing.assert_array_equal(table.conductances, reference_validate_g_lst(g_in, 1))
        assert_matches_reference(table)


def test_table_does_not_alias_the_callers_array():
    g = np.array(bit_sliced(2, 2).conductances)
    table = ProgrammingTable([1.0, 2.0], g)
    g[0, 0] = 7.0
    assert table.conductances[0, 0] == 0.0
    assert not table.conductances.flags.writeable
    assert g.flags.writeable


def test_negative_zero_entries_become_positive_zero_like_the_reference():
    g = np.array([[-0.0, 1.0], [1.0, -0.0]])
    table = ProgrammingTable([1.0], g)
    assert not np.signbit(table.conductances).any()
    assert table.conductances.tobytes() == reference_validate_g_lst(g, 1).tobytes()


BAD_VALUES = st.sampled_from([math.nan, math.inf, -math.inf, -1.0, -1, -0.5, "x", None,
                              True, 1j])


@settings(max_examples=150, deadline=None)
@given(
    n_pairs=st.integers(1, 2),
    n_cols=st.integers(1, 6),
    data=st.data(),
    n_bad=st.integers(1, 3),
    as_array=st.booleans(),
)
def test_first_bad_entry_in_row_major_order_is_named_like_the_reference(
    n_pairs, n_cols, data, n_bad, as_array
):
    g_lst = [[float(data.draw(st.integers(0, 3))) for _ in range(n_cols)]
             for _ in range(2 * n_pairs)]
    for _ in range(n_bad):
        i = data.draw(st.integers(0, 2 * n_pairs - 1))
        j = data.draw(st.integers(0, n_cols - 1))
        g_lst[i][j] = data.draw(BAD_VALUES)
    if data.draw(st.booleans()):  # sometimes a ragged row as well
        i = data.draw(st.integers(1, 2 * n_pairs - 1)) if n_pairs > 0 else 0
        g_lst[i] = g_lst[i][:-1] if data.draw(st.booleans()) else g_lst[i] + [1.0]
    g_in = g_lst
    if as_array:
        try:
            g_in = np.array(g_lst, dtype=np.float64)
        except (TypeError, ValueError):
            g_in = g_lst
    try:
        reference_validate_g_lst(g_in, n_pairs)
    except ValueError as error:
        assert table_message(g_in, n_pairs) == str(error)


# ------------------------------------------------------------ the public API's shapes
def test_encodings_are_tuples_of_tuples_of_ints_and_survive_pickle_and_copies():
    table = bit_sliced(3, 3)
    assert isinstance(table.encodings, tuple)
    assert all(isinstance(cols, tuple) for cols in table.encodings)
    again = pickle.loads(pickle.dumps(table))
    assert again == table and again.encodings == table.encodings
    renamed = table.with_name("x")
    assert renamed.encodings == table.encodings
    explicit = table.with_encodings([cols[-1] for cols in table.encodings])
    assert explicit.encodings == table.encodings


def test_single_pair_and_first_rule_follow_table_order():
    table = single_pair(5, encoding="first")
    assert_matches_reference(table)
    reversed_g = bit_sliced(2, 3).conductances[:, ::-1]
    assert_matches_reference(ProgrammingTable([1.0, 3.0], reversed_g, encoding="first"))


def test_encodings_are_a_cache_that_pickles_leave_out_and_old_pickles_keep():
    table = bit_sliced(2, 3)
    encodings = table.encodings
    assert "_encodings" not in pickle.loads(pickle.dumps(table)).__dict__
    # a table pickled before encodings became lazy carries them in its state
    old_state = dict(table.__dict__, _encodings=encodings)
    old = ProgrammingTable.__new__(ProgrammingTable)
    old.__setstate__(old_state)
    assert old.encodings is encodings and old == table
