"""Unit and property tests of QuantizedSlicedConductanceConverter, called directly.

``convert_to_conductances``, ``convert_back_to_weights`` and ``quantize`` are checked
against brute-force references written here (nearest level by distance, ties toward
zero; the best uniform quantizer by a fine search over clips), plus the scaling rules,
the device state of produced weights, and the Python protocol (pickle, deepcopy, ==, repr).
aihwkit layers, tiles and noise models are covered elsewhere.
"""

from __future__ import annotations

import copy
import io
import math
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from aihwkit_slicing import (
    QuantizedSlicedConductanceConverter,
    bit_sliced,
    equal_significance,
    from_device_levels,
    seed_table,
    single_pair,
)
from aihwkit_slicing.core import device_state
from aihwkit_slicing.core.quantize import CellIndex, LevelQuantizer, compute_dtype

Converter = QuantizedSlicedConductanceConverter


class MemoryFreeConverter(QuantizedSlicedConductanceConverter):
    """The reference for new targets: quantizes a copy of whatever it is given, so it
    can neither recognize a tensor nor remember one."""

    def convert_to_conductances(self, weights):
        return self._convert_new_target(weights.detach().clone())

# ----------------------------------------------------------------------------- helpers
TABLES = {
    "seed": seed_table(),
    "single_pair(4)": single_pair(4),
    "bit_sliced(2,3)": bit_sliced(2, 3),
    "bit_sliced(2,4)": bit_sliced(2, 4),
    "equal(2,3)": equal_significance(2, 3),
    "non-uniform": from_device_levels([1, 3], [0.0, 1.5, 6.0, 13.0]),
    "g_min>0": seed_table(g_max=27.0, g_min=2.0),
    # levels -5, 0, 10, 20 uS
    "asymmetric": from_device_levels([1], [[0.0, 10.0, 20.0], [0.0, 5.0]]),
}
SYMMETRIC = sorted(name for name, t in TABLES.items() if t.is_symmetric)
FLOAT_DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


def make(table_name="seed", **kwargs):
    """A fresh converter for a table of TABLES."""
    return Converter.from_table(TABLES[table_name], **kwargs)


def weights_in_us(weights, scale):
    """The scaled weights exactly as the converter computes them (compute dtype)."""
    cdtype = compute_dtype(weights.dtype)
    return weights.to(cdtype) * torch.as_tensor(scale).to(cdtype)


def reference_level_index(x_us, levels):
    """Brute force: index of the level at minimum distance, ties toward zero (float64)."""
    x = np.asarray(x_us, dtype=np.float64)[..., None]
    levels = np.asarray(levels, dtype=np.float64)
    distance = np.abs(x - levels)
    nearest = distance == distance.min(axis=-1, keepdims=True)
    return np.where(nearest, np.abs(levels), np.inf).argmin(axis=-1)


def reference_weights(conductances, f_lst, scale):
    """sum_k f_k (gp_k - gm_k) / scale in float64."""
    total = sum(f * (gp.double() - gm.double())
                for f, gp, gm in zip(f_lst, conductances[0::2], conductances[1::2]))
    return total / torch.as_tensor(scale).double()


def assert_conductances_select_levels(conductances, table, index, dtype):
    """Device d of every weight holds level_conductances[d, index] (in dtype)."""
    expected = torch.as_tensor(table.level_conductances)[:, torch.as_tensor(index)]
    for d, g in enumerate(conductances):
        assert torch.equal(g, expected[d].to(dtype)), f"device {d}"


def produce(converter, weights, noise=0.0, seed=0):
    """Program ``weights`` like aihwkit does: convert, optionally perturb, convert back."""
    conductances, params = converter.convert_to_conductances(weights)
    if noise:
        gen = torch.Generator().manual_seed(seed)
        conductances = [
            (g + noise * torch.randn(g.shape, generator=gen, dtype=g.dtype)).clamp(min=0)
            for g in conductances
        ]
    produced = converter.convert_back_to_weights(conductances, params)
    return produced, conductances, params


def sqnr_db(weights, quantized):
    w = np.asarray(weights, dtype=np.float64)
    err = np.asarray(quantized, dtype=np.float64) - w
    return 10 * math.log10((w**2).sum() / (err**2).sum())


def best_uniform_sqnr_db(weights, n_levels):
    """SQNR of the best symmetric uniform quantizer with n_levels (odd) levels.

    Fine search over the clip c (the outermost level): a coarse grid of 400 clips on
    (0, max|w|], then 400 around the best.
    """
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    k = (n_levels - 1) // 2
    top = np.abs(w).max()

    def sqnr(clips):
        step = clips[:, None] / k
        q = np.clip(np.round(w[None, :] / step), -k, k) * step
        return 10 * np.log10((w**2).sum() / ((q - w) ** 2).sum(axis=1))

    coarse = np.linspace(top / 400, top, 400)
    best = coarse[sqnr(coarse).argmax()]
    fine = np.linspace(max(best - top / 200, top / 4000), min(best + top / 200, top), 400)
    return float(max(sqnr(coarse).max(), sqnr(fine).max()))


weight_arrays = hnp.arrays(
    np.float32,
    hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=8),
    elements=st.floats(-100, 100, width=32, allow_subnormal=False),
)
finite_vectors = hnp.arrays(
    np.float32,
    st.integers(1, 24),
    elements=st.floats(-10, 10, width=32, allow_subnormal=False),
)
PROPERTY = settings(max_examples=40, deadline=None)


# ------------------------------------------------------------ nearest-level reference
@pytest.mark.parametrize("rule,per_channel", [("max", False), ("max", True),
                                              ("percentile", False), ("percentile", True),
                                              ("mse", False), ("mse", True)])
@settings(max_examples=15, deadline=None)
@given(table_name=st.sampled_from(sorted(TABLES)), w=weight_arrays)
def test_conductances_select_the_nearest_level_of_the_scaled_weight(rule, per_channel,
                                                                    table_name, w):
    converter = make(table_name, scale=rule, per_channel=per_channel, percentile=90.0)
    weights = torch.from_numpy(w)
    conductances, params = converter.convert_to_conductances(weights)
    table = converter.table
    x_us = weights_in_us(weights, params["scale_ratio"])
    index = reference_level_index(x_us.numpy(), table.levels)
    assert_conductances_select_levels(conductances, table, index, weights.dtype)


@pytest.mark.parametrize("table_name", sorted(TABLES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_conductances_select_the_nearest_level_on_a_dense_sweep(table_name, dtype):
    table = TABLES[table_name]
    top = float(np.abs(table.levels).max())
    weights = torch.linspace(-1.0, 1.0, 4001, dtype=dtype)  # max|w| = 1
    converter = make(table_name)
    conductances, params = converter.convert_to_conductances(weights)
    scale = params["scale_ratio"]
    if table.is_symmetric:
        assert float(scale) == pytest.approx(top, rel=1e-6)
    index = reference_level_index(weights_in_us(weights, scale).numpy(), table.levels)
    assert_conductances_select_levels(conductances, table, index, dtype)


def midpoint_ties(table):
    """Weights whose scaled values are exactly the midpoints (scale == 1 exactly).

    The table's outermost |level| is included, so rule "max" gives scale = top / top.
    Returns (weights in float64, expected quantized weights rounding toward zero).
    """
    levels = table.levels
    top = float(np.abs(levels).max())
    mids = (levels[1:] + levels[:-1]) / 2
    toward_zero = np.where(mids > 0, levels[:-1], levels[1:])
    return np.concatenate([[top], mids]), np.concatenate([[top], toward_zero])


@pytest.mark.parametrize("table", [seed_table(), bit_sliced(2, 3), single_pair(5),
                                   equal_significance(2, 3), bit_sliced(3, 2)],
                         ids=["seed", "bit_sliced(2,3)", "single_pair(5)", "equal(2,3)",
                              "bit_sliced(3,2)"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_exact_midpoint_ties_round_toward_zero_on_both_sides(table, dtype):
    w, expected = midpoint_ties(table)  # dyadic levels: midpoints exact in float32
    converter = Converter.from_table(table)
    weights = torch.tensor(w, dtype=dtype)
    conductances, params = converter.convert_to_conductances(weights)
    assert float(params["scale_ratio"]) == 1.0
    back = Converter.from_table(table).convert_back_to_weights(conductances, params)
    assert back.tolist() == expected.tolist()
    assert converter.quantize(weights).tolist() == expected.tolist()
    assert converter.quantize(-weights).tolist() == (-expected).tolist()


# ------------------------------------------------------------------------ scale "max"
@pytest.mark.parametrize("table_name", SYMMETRIC)
def test_scale_max_puts_the_largest_weight_on_the_largest_level(table_name):
    gen = torch.Generator().manual_seed(1)
    weights = torch.randn(16, 9, generator=gen)
    converter = make(table_name)
    conductances, params = converter.convert_to_conductances(weights)
    table = converter.table
    top = float(table.levels[-1])
    scale = params["scale_ratio"]
    assert float(weights.abs().max() * scale) == pytest.approx(top, rel=1e-6)
    i = int(weights.abs().argmax())
    level = table.n_levels - 1 if weights.reshape(-1)[i] > 0 else 0
    for d, g in enumerate(conductances):
        assert float(g.reshape(-1)[i]) == table.level_conductances[d, level]
    assert params["clipped_fraction"] == 0.0


@pytest.mark.parametrize("sign_bias", [-3.0, 0.0, 3.0])
def test_scale_max_keeps_weights_within_outermost_levels_of_asymmetric_table(sign_bias):
    table = TABLES["asymmetric"]
    bottom, top = float(table.levels[0]), float(table.levels[-1])
    assert (bottom, top) == (-5.0, 20.0)
    gen = torch.Generator().manual_seed(2)
    weights = torch.randn(40, 7, generator=gen) + sign_bias
    _, params = make("asymmetric").convert_to_conductances(weights)
    x = weights_in_us(weights, params["scale_ratio"]).double()
    slack = 1e-6 * top
    assert float(x.max()) <= top + slack and float(x.min()) >= bottom - slack
    # the largest such scale: one side reaches its outermost level
    assert (math.isclose(float(x.max()), top, rel_tol=1e-6)
            or math.isclose(float(x.min()), bottom, rel_tol=1e-6))


def test_params_hold_scale_ratio_f_lst_and_clipped_fraction():
    converter = make("bit_sliced(2,3)")
    weights = torch.randn(5, 3)
    _, params = converter.convert_to_conductances(weights)
    assert isinstance(params["scale_ratio"], torch.Tensor)
    assert params["scale_ratio"].dim() == 0
    assert float(params["scale_ratio"]) > 0
    assert params["f_lst"] == [1.0, 3.0]
    assert params["clipped_fraction"] == 0.0


@pytest.mark.parametrize("table_name", ["seed", "bit_sliced(2,4)", "non-uniform"])
@pytest.mark.parametrize("shape", [(7,), (4, 6), (2, 3, 5), ()])
def test_returns_2p_conductances_with_shape_dtype_device_of_weights(table_name, shape):
    converter = make(table_name)
    weights = torch.randn(shape, dtype=torch.float64)
    conductances, _ = converter.convert_to_conductances(weights)
    assert isinstance(conductances, list)
    assert len(conductances) == converter.table.n_devices == 2 * len(converter.f_lst)
    for g in conductances:
        assert g.shape == weights.shape
        assert g.dtype == weights.dtype and g.device == weights.device
        assert not g.requires_grad


def test_non_contiguous_weights_convert_like_their_contiguous_copy():
    weights = torch.randn(6, 9)
    a, pa = make("bit_sliced(2,4)", per_channel=True).convert_to_conductances(weights.T)
    b, pb = make("bit_sliced(2,4)", per_channel=True).convert_to_conductances(
        weights.T.contiguous())
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert torch.equal(pa["scale_ratio"], pb["scale_ratio"])


def test_weights_requiring_grad_convert_without_graph():
    weights = torch.randn(4, 4, requires_grad=True)
    converter = make()
    conductances, params = converter.convert_to_conductances(weights)
    back = converter.convert_back_to_weights(conductances, params)
    assert not any(g.requires_grad for g in conductances)
    assert not back.requires_grad
    assert not converter.quantize(weights).requires_grad


# ------------------------------------------------------------------ hypothesis properties
@PROPERTY
@given(table_name=st.sampled_from(sorted(TABLES)), w=weight_arrays)
def test_quantize_is_idempotent(table_name, w):
    converter = make(table_name)
    once = converter.quantize(torch.from_numpy(w))
    twice = converter.quantize(once)
    eps = torch.finfo(torch.float32).eps
    torch.testing.assert_close(twice, once, rtol=4 * eps, atol=0.0)


@PROPERTY
@given(table_name=st.sampled_from(sorted(TABLES)), w=weight_arrays)
def test_quantization_error_is_at_most_half_the_local_level_gap(table_name, w):
    converter = make(table_name)
    weights = torch.from_numpy(w)
    _, params = converter.convert_to_conductances(weights)
    scale = float(params["scale_ratio"])
    q = converter.quantize(weights).double().numpy()
    levels = converter.table.levels
    x = weights_in_us(weights, params["scale_ratio"]).double().numpy().reshape(-1)
    hi = np.searchsorted(levels, x, side="left").clip(1, len(levels) - 1)
    half_gap = (levels[hi] - levels[hi - 1]) / 2
    w64 = w.astype(np.float64).reshape(-1)
    err = np.abs(q.reshape(-1) - w64)
    eps = np.finfo(np.float32).eps
    bound = half_gap / scale * (1 + 1e-6) + 4 * eps * (np.abs(w64) + np.abs(q.reshape(-1)))
    assert np.all(err <= bound), (err - bound).max()


@PROPERTY
@given(table_name=st.sampled_from(sorted(TABLES)), w=finite_vectors)
def test_quantize_is_monotone_non_decreasing(table_name, w):
    weights = torch.from_numpy(np.sort(w))
    q = make(table_name).quantize(weights)
    assert torch.all(q[1:] >= q[:-1])


@PROPERTY
@given(table_name=st.sampled_from(SYMMETRIC), w=weight_arrays, with_ties=st.booleans())
def test_quantize_is_exactly_antisymmetric_for_symmetric_tables(table_name, w, with_ties):
    converter = make(table_name)
    weights = torch.from_numpy(w).reshape(-1)
    if with_ties:  # append exact midpoints at scale 1 (see midpoint_ties)
        ties, _ = midpoint_ties(converter.table)
        weights = torch.cat([weights.new_tensor(ties), weights / weights.abs().max().clamp(
            min=1) * float(ties[0])])
    q_plus = converter.quantize(weights)
    q_minus = converter.quantize(-weights)
    assert torch.equal(q_minus, -q_plus)


@PROPERTY
@given(table_name=st.sampled_from(sorted(TABLES)), w=weight_arrays,
       rule=st.sampled_from(["max", "percentile", "mse"]), per_channel=st.booleans())
def test_round_trip_convert_back_equals_quantize(table_name, w, rule, per_channel):
    weights = torch.from_numpy(w)
    converter = make(table_name, scale=rule, per_channel=per_channel, percentile=95.0)
    expected = make(table_name, scale=rule, per_channel=per_channel,
                    percentile=95.0).quantize(weights)
    conductances, params = converter.convert_to_conductances(weights)
    assert torch.equal(converter.convert_back_to_weights(conductances, params), expected)


def symmetric_level_weights(table, dtype):
    levels = torch.as_tensor(table.levels, dtype=torch.float64)
    return (levels / levels.abs().max()).to(dtype)


def test_quantize_is_antisymmetric_when_redundant_levels_tie_in_cost():
    table = bit_sliced(2, 7)  # default encoding "min_total", g_max 25 uS
    converter = Converter.from_table(table)
    weights = symmetric_level_weights(table, torch.float32)
    assert torch.equal(converter.quantize(-weights), -converter.quantize(weights))


def test_quantize_is_antisymmetric_with_nonzero_g_min():
    table = seed_table(g_max=25.3, g_min=1.7)  # mirror columns are selected here
    converter = Converter.from_table(table)
    weights = symmetric_level_weights(table, torch.float64)
    assert torch.equal(converter.quantize(-weights), -converter.quantize(weights))


# ------------------------------------------------------------------ lookup internals
@settings(max_examples=60, deadline=None)
@given(
    boundaries=st.lists(st.floats(-1e3, 1e3, width=32, allow_subnormal=False), min_size=1,
                        max_size=40, unique=True),
    x=st.lists(st.floats(-2e3, 2e3, width=32, allow_subnormal=False), min_size=1,
               max_size=60),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_cell_index_equals_bucketize(boundaries, x, dtype):
    b = torch.tensor(sorted(boundaries), dtype=dtype)
    xs = torch.tensor(x + boundaries, dtype=dtype)  # include exact hits of boundaries
    index = CellIndex.build(b)
    if index is not None:
        assert torch.equal(index(xs), torch.bucketize(xs, b))


@pytest.mark.parametrize("per_channel", [False, True])
def test_encode_in_small_chunks_equals_one_chunk(per_channel):
    quantizer = LevelQuantizer(bit_sliced(2, 4))
    weights = torch.randn(13, 17)
    scale = torch.rand(13, 1) * 100 if per_channel else torch.tensor(50.0)
    whole = quantizer.encode(weights, scale)
    chunked = quantizer.encode(weights, scale, chunk=7)
    assert torch.equal(whole, chunked)


# ----------------------------------------------------------- zero, empty, bad weights
@pytest.mark.parametrize("rule", ["max", "percentile",
                                  "mse"])
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("table_name", ["seed", "g_min>0", "bit_sliced(2,4)"])
def test_all_zero_weights_program_the_zero_level(rule, per_channel, table_name):
    converter = make(table_name, scale=rule, per_channel=per_channel)
    table = converter.table
    zero = list(table.levels).index(0.0)
    weights = torch.zeros(3, 4)
    conductances, params = converter.convert_to_conductances(weights)
    assert torch.all(torch.isfinite(params["scale_ratio"]))
    assert torch.all(params["scale_ratio"] > 0)
    assert_conductances_select_levels(conductances, table, np.full((3, 4), zero),
                                      torch.float32)
    back = converter.convert_back_to_weights(conductances, params)
    assert torch.equal(back, weights)
    assert torch.equal(converter.quantize(weights), weights)


@pytest.mark.parametrize("rule", ["max", "percentile",
                                  "mse"])
def test_an_all_zero_channel_stays_zero_and_other_channels_are_unaffected(rule):
    gen = torch.Generator().manual_seed(3)
    weights = torch.randn(4, 10, generator=gen)
    weights[2] = 0.0
    q = make("single_pair(4)", scale=rule, per_channel=True).quantize(weights)
    assert torch.all(torch.isfinite(q))
    assert torch.equal(q[2], torch.zeros(10))
    alone = make("single_pair(4)", scale=rule, per_channel=True).quantize(weights[[0, 1, 3]])
    assert torch.equal(q[[0, 1, 3]], alone)


@pytest.mark.parametrize("shape", [(0,), (0, 5), (3, 0)])
@pytest.mark.parametrize("per_channel", [False, True])
def test_empty_weights_give_empty_conductances(shape, per_channel):
    converter = make("bit_sliced(2,3)", per_channel=per_channel)
    weights = torch.empty(shape)
    conductances, params = converter.convert_to_conductances(weights)
    assert len(conductances) == 4
    assert all(g.shape == weights.shape and g.dtype == weights.dtype for g in conductances)
    assert "scale_ratio" in params
    back = converter.convert_back_to_weights(conductances, params)
    assert back.shape == weights.shape
    assert converter.quantize(weights).shape == weights.shape


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("rule,per_channel", [("max", False), ("percentile", True),
                                              ("mse", False), ("mse", True)])
def test_non_finite_weights_raise_value_error_mentioning_finite(bad, rule, per_channel):
    weights = torch.randn(3, 4)
    weights[1, 2] = bad
    converter = make(scale=rule, per_channel=per_channel)
    with pytest.raises(ValueError, match="finite") as info:
        converter.convert_to_conductances(weights)
    assert ("1 NaN" if math.isnan(bad) else "1 infinite") in str(info.value)
    with pytest.raises(ValueError, match="finite"):
        converter.quantize(weights)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_weights_raise_also_once_produced_weights_are_remembered(bad):
    converter = make()
    produce(converter, torch.randn(3, 4))
    weights = torch.randn(3, 4)
    weights[0, 0] = bad
    with pytest.raises(ValueError, match="finite"):
        converter.convert_to_conductances(weights)


@pytest.mark.parametrize("weights", [
    [[0.1, 0.2]],
    np.ones((2, 2), dtype=np.float32),
    torch.ones(2, 2, dtype=torch.int64),
    torch.ones(2, 2, dtype=torch.int32),
    torch.ones(2, 2, dtype=torch.bool),
    torch.ones(2, 2, dtype=torch.complex64),
    1.5,
], ids=["list", "numpy", "int64", "int32", "bool", "complex", "float"])
def test_non_tensor_or_non_float_weights_raise_type_error(weights):
    converter = make()
    with pytest.raises(TypeError, match="weights"):
        converter.convert_to_conductances(weights)
    with pytest.raises(TypeError, match="weights"):
        converter.quantize(weights)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("per_channel", [False, True])
def test_dtype_of_weights_is_kept_by_conductances_and_weights(dtype, per_channel):
    converter = make("bit_sliced(2,3)", per_channel=per_channel)
    weights = torch.randn(6, 8).to(dtype)
    conductances, params = converter.convert_to_conductances(weights)
    assert all(g.dtype == dtype for g in conductances)
    back = converter.convert_back_to_weights(conductances, params)
    assert back.dtype == dtype
    q = converter.quantize(weights)
    assert q.dtype == dtype
    # same levels as in float32, up to the dtype's rounding of the result
    q32 = make("bit_sliced(2,3)", per_channel=per_channel).quantize(weights.float())
    eps = max(torch.finfo(dtype).eps, torch.finfo(torch.float32).eps)
    tol = 2 * eps * float(q32.abs().max())
    torch.testing.assert_close(q.float(), q32, rtol=0.0, atol=tol)
    torch.testing.assert_close(back.float(), q32, rtol=0.0, atol=tol)


# ------------------------------------------------------------ percentile and mse scales
@pytest.mark.parametrize("rule", ["max", "percentile", "mse"])
@pytest.mark.parametrize("shape", [(8, 32), (5, 3, 4), (9,)])
def test_scale_ratio_is_0d_per_tensor_and_one_per_channel(rule, shape):
    weights = torch.randn(shape)
    _, per_tensor = make(scale=rule).convert_to_conductances(weights)
    _, per_channel = make(scale=rule, per_channel=True).convert_to_conductances(weights)
    assert per_tensor["scale_ratio"].shape == ()
    expected = (shape[0],) + (1,) * (len(shape) - 1)
    assert per_channel["scale_ratio"].shape == expected
    assert torch.all(per_channel["scale_ratio"] > 0)


@pytest.mark.parametrize("rule,percentile", [("percentile", 99.0), ("percentile", 90.0),
                                             ("percentile", 100.0), ("mse", 99.9),
                                             ("max", 99.9)])
@pytest.mark.parametrize("per_channel", [False, True])
def test_clipped_fraction_lies_in_unit_interval_and_matches_the_rule(rule, percentile,
                                                                     per_channel):
    gen = torch.Generator().manual_seed(4)
    weights = torch.randn(16, 256, generator=gen)
    converter = make("single_pair(4)", scale=rule, per_channel=per_channel,
                     percentile=percentile)
    _, params = converter.convert_to_conductances(weights)
    clipped = params["clipped_fraction"]
    assert 0.0 <= clipped <= 1.0
    assert converter.last_clipped_fraction == clipped
    if rule == "percentile" and percentile < 100:
        assert 0.0 < clipped <= (100 - percentile) / 100 + 0.005
    if rule == "max":
        assert clipped == 0.0
    else:  # counted: weights beyond the clip, i.e. scaled beyond the outermost level
        # (a weight exactly at the clip may land an ulp above the level: not clipped)
        x = weights_in_us(weights, params["scale_ratio"])
        top = float(converter.table.levels[-1])
        surely_beyond = float((x.abs() > top * (1 + 1e-5)).sum()) / x.numel()
        maybe_beyond = float((x.abs() > top * (1 - 1e-5)).sum()) / x.numel()
        assert surely_beyond <= clipped <= maybe_beyond


def test_percentile_100_reports_no_clipped_weights():
    gen = torch.Generator().manual_seed(0)
    weights = torch.randn(16, 256, generator=gen)
    converter = make("bit_sliced(2,4)", scale="percentile", percentile=100.0,
                     per_channel=True)
    _, params = converter.convert_to_conductances(weights)
    assert params["clipped_fraction"] == 0.0


@pytest.mark.parametrize("per_channel", [False, True])
def test_percentile_of_abs_weights_lands_on_the_outermost_level(per_channel):
    gen = torch.Generator().manual_seed(5)
    weights = torch.randn(8, 200, generator=gen)
    converter = make("seed", scale="percentile", percentile=90.0, per_channel=per_channel)
    _, params = converter.convert_to_conductances(weights)
    rows = weights.abs() if per_channel else weights.abs().reshape(1, -1)
    k = math.ceil(0.9 * rows.shape[1])
    clip = rows.kthvalue(k, dim=1).values.reshape(-1, 1) if per_channel else rows.kthvalue(
        k, dim=1).values.reshape(())
    np.testing.assert_allclose((clip * params["scale_ratio"]).numpy(), 75.0, rtol=1e-6)


@pytest.mark.parametrize("rule", ["percentile", "mse"])
@pytest.mark.parametrize("per_channel", [False, True])
def test_weights_beyond_the_clip_saturate_on_the_outermost_level(rule, per_channel):
    gen = torch.Generator().manual_seed(6)
    weights = torch.randn(8, 300, generator=gen)
    converter = make("single_pair(4)", scale=rule, per_channel=per_channel, percentile=90.0)
    conductances, params = converter.convert_to_conductances(weights)
    table = converter.table
    x = weights_in_us(weights, params["scale_ratio"])
    top = float(table.levels[-1])
    beyond = x.abs() > top * (1 + 1e-6)
    assert int(beyond.sum()) > 0
    outermost = np.where(x.numpy() > 0, table.n_levels - 1, 0)
    for d, g in enumerate(conductances):
        expected = torch.as_tensor(table.level_conductances[d][outermost], dtype=g.dtype)
        assert torch.equal(g[beyond], expected[beyond])
    q = converter.quantize(weights)
    expected_q = torch.sign(weights) * top / params["scale_ratio"]
    torch.testing.assert_close(q[beyond], expected_q.expand_as(q)[beyond], rtol=1e-6, atol=0)


@pytest.mark.parametrize("table", [single_pair(4), seed_table(), bit_sliced(2, 2),
                                   single_pair(8)],
                         ids=["single_pair(4)", "seed", "bit_sliced(2,2)", "single_pair(8)"])
def test_mse_scale_is_within_0p1_db_of_the_best_uniform_quantizer(table):
    gen = torch.Generator().manual_seed(7)
    weights = torch.randn(8192, generator=gen)
    q = Converter.from_table(table, scale="mse").quantize(weights)
    reference = best_uniform_sqnr_db(weights.numpy(), table.n_levels)
    achieved = sqnr_db(weights.numpy(), q.numpy())
    assert achieved >= reference - 0.1, (achieved, reference)
    # and clearly better than rule "max" on Gaussian weights
    q_max = Converter.from_table(table, scale="max").quantize(weights)
    assert achieved > sqnr_db(weights.numpy(), q_max.numpy()) + 1.0


def test_per_channel_mse_is_at_least_as_good_as_per_tensor_on_unequal_rows():
    gen = torch.Generator().manual_seed(8)
    scales = torch.tensor([0.01, 0.1, 1.0, 10.0, 100.0])[:, None]
    weights = torch.randn(5, 512, generator=gen) * scales
    per_tensor = make("single_pair(4)", scale="mse").quantize(weights)
    per_channel = make("single_pair(4)", scale="mse", per_channel=True).quantize(weights)
    w = weights.numpy()
    assert sqnr_db(w, per_channel.numpy()) >= sqnr_db(w, per_tensor.numpy())
    # row by row the small rows gain a lot
    row_gain = [sqnr_db(w[i], per_channel[i].numpy()) - sqnr_db(w[i], per_tensor[i].numpy())
                if np.any(per_tensor[i].numpy()) else math.inf for i in range(5)]
    assert min(row_gain) >= -0.01
    assert row_gain[0] > 10.0


# ------------------------------------------------------------ device state of outputs
NOISE = 0.4  # uS: puts produced weights off the grid, as programming noise does


def reference_conversion(table_name, weights, **kwargs):
    """What a converter with no memory at all makes of ``weights`` (a new target)."""
    return MemoryFreeConverter.from_table(TABLES[table_name], **kwargs).convert_to_conductances(
        weights)


def assert_same_conversion(got, expected):
    (a, pa), (b, pb) = got, expected
    assert len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))
    assert torch.equal(torch.as_tensor(pa["scale_ratio"]), torch.as_tensor(pb["scale_ratio"]))
    assert pa["clipped_fraction"] == pb["clipped_fraction"]


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_produced_tensor_converts_to_exactly_its_own_conductances(per_channel, dtype):
    converter = make("bit_sliced(2,4)", per_channel=per_channel)
    produced, conductances, params = produce(converter, torch.randn(6, 5, dtype=dtype),
                                             noise=NOISE)
    again, again_params = converter.convert_to_conductances(produced)
    assert all(torch.equal(a, g) for a, g in zip(again, conductances))
    assert torch.equal(again_params["scale_ratio"], params["scale_ratio"])
    # the returned conductances are copies: changing them does not corrupt the state
    again[0].add_(1.0)
    third, _ = converter.convert_to_conductances(produced)
    assert torch.equal(third[0], conductances[0])


def test_produced_tensor_is_recognized_by_another_converter_of_an_equal_table():
    produced, conductances, _ = produce(make("bit_sliced(2,4)"), torch.randn(6, 5), noise=NOISE)
    again, _ = make("bit_sliced(2,4)").convert_to_conductances(produced)
    assert all(torch.equal(a, g) for a, g in zip(again, conductances))
    # ... but not by a converter of another table
    assert_same_conversion(make("bit_sliced(2,3)").convert_to_conductances(produced),
                           reference_conversion("bit_sliced(2,3)", produced))


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("how", ["clone", "transposed_padded", "arithmetic"])
def test_copies_of_produced_tensor_are_new_targets_quantized_like_a_memory_free_converter(
        how, per_channel):
    converter = make("bit_sliced(2,4)", per_channel=per_channel)
    produced, _, _ = produce(converter, torch.randn(6, 5), noise=NOISE)
    copy_ = {"clone": produced.clone(),
             "transposed_padded": F.pad(produced.T, (0, 0, 3, 3)),
             "arithmetic": produced * 1.0}[how]
    got = converter.convert_to_conductances(copy_)
    assert_same_conversion(got, reference_conversion("bit_sliced(2,4)", copy_,
                                                     per_channel=per_channel))
    # the reference really quantizes: the noisy weights are not on the grid
    assert not torch.allclose(make("bit_sliced(2,4)", per_channel=per_channel).quantize(copy_),
                              copy_)


def test_programming_always_quantizes_even_the_converters_own_output():
    from aihwkit.inference import PCMLikeNoiseModel

    converter = make("bit_sliced(2,4)")
    noise = PCMLikeNoiseModel(g_converter=converter, prog_noise_scale=0.0, drift_scale=0.0,
                              read_noise_scale=0.0)
    produced, _, _ = produce(noise.g_converter, torch.randn(6, 5), noise=NOISE)
    programmed, _ = noise.apply_programming_noise(produced)
    assert torch.equal(programmed, make("bit_sliced(2,4)").quantize(produced.clone()))


def test_fingerprint_collider_is_quantized_not_taken_for_the_produced_tensor():
    """Finding 4: (min, max, wrap-around bit sum) is not an identity. Moving one entry
    up and another down by the same number of ulps keeps all three, yet the tensor
    is a new target."""
    converter = make("bit_sliced(2,4)")
    produced, _, _ = produce(converter, torch.randn(6, 5), noise=NOISE)
    collider = produced.clone()
    bits = collider.view(torch.int32)
    flat = bits.view(-1)
    inner = [i for i in range(flat.numel())
             if 0 < abs(float(collider.view(-1)[i])) < float(produced.abs().max())
             and float(collider.view(-1)[i]) > 0][:2]
    flat[inner[0]] += 1000
    flat[inner[1]] -= 1000
    assert float(collider.min()) == float(produced.min())
    assert float(collider.max()) == float(produced.max())
    assert int(collider.view(torch.int32).sum()) == int(produced.view(torch.int32).sum())
    assert not torch.equal(collider, produced)
    assert_same_conversion(converter.convert_to_conductances(collider),
                           reference_conversion("bit_sliced(2,4)", collider))


@pytest.mark.parametrize("modify", [
    lambda w: w.mul_(0.5),
    lambda w: w.add_(0.3),
    lambda w: w.__setitem__((0, 0), 2.0 * float(w.abs().max())),
    lambda w: w.copy_(w.flip(0)),
    lambda w: w.data.mul_(0.5),
], ids=["mul_", "add_", "setitem", "permuted", "through_data"])
def test_produced_tensor_modified_in_place_is_quantized_afresh(modify):
    converter = make("bit_sliced(2,4)")
    produced, _, _ = produce(converter, torch.randn(6, 5), noise=NOISE)
    modify(produced)
    assert_same_conversion(converter.convert_to_conductances(produced),
                           reference_conversion("bit_sliced(2,4)", produced.clone()))


def test_deep_copied_and_reloaded_produced_tensor_keeps_its_conductances():
    converter = make("bit_sliced(2,4)")
    produced, conductances, params = produce(converter, torch.randn(6, 5), noise=NOISE)
    buffer = io.BytesIO()
    torch.save(produced, buffer)
    buffer.seek(0)
    for copy_ in (copy.deepcopy(produced), torch.load(buffer, weights_only=False)):
        again, again_params = converter.convert_to_conductances(copy_)
        assert all(torch.equal(a, g) for a, g in zip(again, conductances))
        assert torch.equal(again_params["scale_ratio"], params["scale_ratio"])


def test_deep_copy_of_produced_tensor_modified_in_place_is_quantized_afresh():
    converter = make("bit_sliced(2,4)")
    produced, _, _ = produce(converter, torch.randn(6, 5), noise=NOISE)
    duplicate = copy.deepcopy(produced)
    assert device_state.state_of(duplicate) is not None
    duplicate.mul_(0.5)
    assert_same_conversion(converter.convert_to_conductances(duplicate),
                           reference_conversion("bit_sliced(2,4)", duplicate.clone()))


@pytest.mark.parametrize("per_channel", [False, True])
def test_conversions_do_not_depend_on_what_the_converter_produced_before(per_channel):
    converter = make("bit_sliced(2,4)", per_channel=per_channel)
    trained = torch.randn(6, 5)
    for seed in range(3):
        produce(converter, trained, noise=NOISE, seed=seed)
    produce(converter, trained)  # noise-free programming as well
    for weights in (trained, torch.randn(6, 5), trained.T.contiguous()):
        assert_same_conversion(converter.convert_to_conductances(weights),
                               reference_conversion("bit_sliced(2,4)", weights,
                                                    per_channel=per_channel))


def test_symmetrically_clipped_trained_weights_are_quantized_after_a_noise_free_programming():
    table = bit_sliced(4, 4)
    converter = Converter.from_table(table)
    gen = torch.Generator().manual_seed(1)
    trained = (torch.randn(64, 64, generator=gen) * 0.5).clamp(-1.0, 1.0)
    assert float(trained.min()) == -1.0 and float(trained.max()) == 1.0
    produce(converter, trained)  # noise-free programming, e.g. to study quantization alone
    again, _ = converter.convert_to_conductances(trained)
    expected, _ = Converter.from_table(table).convert_to_conductances(trained)
    assert all(torch.equal(a, b) for a, b in zip(again, expected))


def test_forget_is_a_deprecated_no_op():
    converter = make("bit_sliced(2,4)")
    produced, conductances, _ = produce(converter, torch.randn(6, 5), noise=NOISE)
    with pytest.warns(DeprecationWarning, match="forget"):
        converter.forget()
    still, _ = converter.convert_to_conductances(produced)
    assert all(torch.equal(a, g) for a, g in zip(still, conductances))


def test_quantize_always_quantizes():
    converter = make("bit_sliced(2,4)")
    produced, _, _ = produce(converter, torch.randn(6, 5), noise=NOISE)
    q = converter.quantize(produced)
    assert torch.equal(q, make("bit_sliced(2,4)").quantize(produced.clone()))
    assert not torch.allclose(q, produced)


def test_device_state_lives_exactly_as_long_as_the_produced_tensor():
    import gc
    import weakref

    produced, _, _ = produce(make("bit_sliced(2,4)"), torch.randn(6, 5), noise=NOISE)
    state = weakref.ref(device_state.state_of(produced))
    assert state() is not None
    del produced
    gc.collect()
    assert state() is None
    kept = [name for name, value in vars(device_state).items()
            if isinstance(value, (dict, list, set)) and value and not name.startswith("__")]
    assert not kept, f"device_state keeps {kept} at module level"


# ------------------------------------------------------------------ python protocol
def test_pickle_round_trip_gives_an_equal_working_converter():
    converter = make("bit_sliced(2,4)", scale="mse", per_channel=True)
    produce(converter, torch.randn(4, 6), noise=NOISE)
    data = pickle.dumps(converter)
    assert len(data) < 20_000  # the table and settings, nothing remembered
    again = pickle.loads(data)
    assert again == converter
    weights = torch.randn(7, 3)
    a, pa = again.convert_to_conductances(weights)
    b, pb = make("bit_sliced(2,4)", scale="mse", per_channel=True).convert_to_conductances(
        weights)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert torch.equal(pa["scale_ratio"], pb["scale_ratio"])


def test_deep_copy_is_equal_and_recognizes_what_the_original_produced():
    converter = make("bit_sliced(2,4)")
    duplicate = copy.deepcopy(converter)
    assert duplicate == converter and duplicate is not converter
    assert duplicate.table == converter.table
    produced, conductances, params = produce(converter, torch.randn(6, 5), noise=NOISE)
    again, again_params = duplicate.convert_to_conductances(produced)
    assert all(torch.equal(a, g) for a, g in zip(again, conductances))
    assert torch.equal(again_params["scale_ratio"], params["scale_ratio"])


def test_equality_ignores_the_memory_and_compares_settings():
    converter = make("bit_sliced(2,4)")
    produce(converter, torch.randn(6, 5), noise=NOISE)
    fresh = make("bit_sliced(2,4)")
    assert converter == fresh
    assert not converter != fresh
    assert converter != make("bit_sliced(2,4)", scale="mse")
    assert converter != make("bit_sliced(2,4)", per_channel=True)
    assert converter != make("bit_sliced(2,3)")
    assert make(scale="percentile", percentile=90.0) != make(scale="percentile",
                                                              percentile=99.0)
    assert (converter == "converter") is False
    assert converter in [object(), fresh]


@pytest.mark.parametrize("kwargs", [
    dict(),
    dict(scale="percentile", percentile=97.5),
    dict(scale="mse", per_channel=True),
])
def test_repr_is_readable_and_evaluates_back(kwargs):
    converter = Converter([1, 2], seed_table().g_lst, encoding="min_weighted", name="s",
                          **kwargs)
    text = repr(converter)
    assert text.startswith("QuantizedSlicedConductanceConverter(")
    assert "f_lst=[1.0, 2.0]" in text and "encoding='min_weighted'" in text
    for key, value in kwargs.items():
        assert f"{key}={value!r}" in text
    again = eval(text, {"QuantizedSlicedConductanceConverter": Converter})  # noqa: S307
    assert again == converter
    assert str(converter) == text


def test_repr_of_a_large_table_stays_short():
    text = repr(Converter.from_table(bit_sliced(4, 4)))
    assert "see .table" in text and len(text) < 300


def test_constructor_and_from_table_build_equal_converters():
    table = bit_sliced(2, 3, encoding="first")
    a = Converter(table.f_lst, table.g_lst, g_min=table.g_min, g_max=table.g_max,
                  encoding="first", scale="mse")
    b = Converter.from_table(table, scale="mse")
    assert a == b
    assert a.f_lst == table.f_lst and a.g_lst == table.g_lst
    assert (a.g_min, a.g_max, a.n_devices) == (0.0, 25.0, 4)


# ---------------------------------------------------------------------------- bad input
SEED_G = seed_table().g_lst
BAD_CONVERTER_ARGS = {
    "unknown scale": (dict(scale="minmax"), ["scale", "'minmax'"]),
    "scale None": (dict(scale=None), ["scale", "None"]),
    "percentile 0": (dict(percentile=0), ["percentile", "0"]),
    "percentile negative": (dict(percentile=-5.0), ["percentile", "-5.0"]),
    "percentile above 100": (dict(percentile=100.5), ["percentile", "100.5"]),
    "percentile NaN": (dict(percentile=math.nan), ["percentile", "nan"]),
    "percentile string": (dict(percentile="99"), ["percentile", "'99'"]),
    "percentile bool": (dict(percentile=True), ["percentile", "True"]),
    "per_channel int": (dict(per_channel=1), ["per_channel", "1"]),
    "per_channel string": (dict(per_channel="yes"), ["per_channel", "'yes'"]),
    "per_channel None": (dict(per_channel=None), ["per_channel", "None"]),
    "empty f_lst": (dict(f_lst=[]), ["f_lst", "[]"]),
    "negative factor": (dict(f_lst=[1, -2]), ["f_lst[1]", "-2"]),
    "ragged g_lst": (dict(g_lst=[[0, 1], [1], [0, 1], [1, 0]]), ["g_lst", "ragged"]),
    "NaN conductance": (dict(g_lst=[[0, math.nan], [1, 0], [0, 1], [1, 0]]),
                        ["g_lst[0][1]", "nan"]),
    "negative conductance": (dict(g_lst=[[0, -1], [1, 0], [0, 1], [1, 0]]),
                             ["g_lst[0][1]", "-1"]),
    "wrong row count": (dict(g_lst=SEED_G[:3]), ["g_lst", "got 3 rows"]),
    "g_min above g_max": (dict(g_min=30.0, g_max=25.0), ["g_min", "g_max"]),
    "entry above g_max": (dict(g_max=20.0), ["g_lst", "above g_max = 20 uS"]),
    "unknown encoding": (dict(encoding="cheap"), ["encoding", "'cheap'"]),
}


@pytest.mark.parametrize("case", sorted(BAD_CONVERTER_ARGS))
def test_bad_constructor_argument_raises_value_error_naming_it(case):
    overrides, fragments = BAD_CONVERTER_ARGS[case]
    kwargs = dict(f_lst=[1, 2], g_lst=SEED_G)
    kwargs.update(overrides)
    with pytest.raises(ValueError) as info:
        Converter(**kwargs)
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))


@pytest.mark.parametrize("case", ["unknown scale", "percentile 0", "per_channel int"])
def test_from_table_validates_like_the_constructor(case):
    overrides, fragments = BAD_CONVERTER_ARGS[case]
    with pytest.raises(ValueError, match=fragments[0]):
        Converter.from_table(seed_table(), **overrides)


def test_from_table_rejects_a_non_table_with_type_error():
    with pytest.raises(TypeError, match="ProgrammingTable"):
        Converter.from_table(seed_table().to_dict())


@pytest.mark.parametrize("count", [0, 2, 3, 5, 8])
def test_convert_back_with_wrong_number_of_conductances_raises(count):
    converter = make("seed")
    conductances, params = converter.convert_to_conductances(torch.randn(3, 3))
    tensors = (conductances * 2)[:count]
    with pytest.raises(ValueError, match=f"4 tensors .*got {count}"):
        converter.convert_back_to_weights(tensors, params)


def test_convert_back_without_scale_ratio_raises():
    converter = make("seed")
    conductances, params = converter.convert_to_conductances(torch.randn(3, 3))
    params.pop("scale_ratio")
    with pytest.raises(ValueError, match="scale_ratio"):
        converter.convert_back_to_weights(conductances, params)


def test_convert_back_accepts_a_plain_float_scale_ratio():
    converter = make("seed")
    conductances, params = converter.convert_to_conductances(torch.randn(3, 3))
    expected = converter.convert_back_to_weights(conductances, params)
    got = make("seed").convert_back_to_weights(conductances, {"scale_ratio": float(
        params["scale_ratio"])})
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=0)
