"""Issue 5: noise-aware clipping and level assignment, encodings, the table optimizer."""

import pickle

import numpy as np
import pytest
import torch

from aihwkit.inference.converter.conductance import NPairConductanceConverter

from aihwkit_slicing import (
    QuantizedSlicedConductanceConverter,
    bit_sliced,
    equal_significance,
    seed_table,
)
from aihwkit_slicing.design.encodings import column_errors, level_noise, optimize_encodings
from aihwkit_slicing.design.optimizer import (
    candidate_tables,
    expected_tnmse,
    optimize_table,
    per_time_noise,
    simulated_tnmse,
    weight_matrices,
)
from aihwkit_slicing.core.scaling import LevelNoise


def gaussian(rows=64, cols=96, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(rows, cols, generator=generator) * (
        0.5 + torch.rand(rows, 1, generator=generator))


def silent(table):
    n = table.n_levels
    return LevelNoise((0.0,) * n, (0.0,) * n, "no noise")


# ---------------------------------------------------------------- level noise
def test_level_noise_has_one_entry_per_level_and_averages_over_times():
    table = seed_table()
    day = level_noise(table, "pcm", 86400.0, n_samples=400, seed=1)
    both = level_noise(table, "pcm", [1.0, 86400.0], n_samples=400, seed=1)
    assert len(day.mean) == len(day.mean_square) == table.n_levels
    assert all(v >= 0 for v in day.mean_square)
    assert "pcm" in day.description and "86400" in day.description
    assert both.mean_square != day.mean_square


def test_level_noise_rejects_inconsistent_values():
    with pytest.raises(ValueError, match="as many mean as mean_square"):
        LevelNoise((0.0, 1.0), (1.0,))
    with pytest.raises(ValueError, match="mean_square >= 0"):
        LevelNoise((0.0,), (-1.0,))


def test_silent_level_noise_changes_nothing():
    table = bit_sliced(2, 3)
    weights = gaussian()
    plain = QuantizedSlicedConductanceConverter.from_table(table, scale="mse", per_channel=True)
    aware = QuantizedSlicedConductanceConverter.from_table(
        table, scale="mse", per_channel=True, level_noise=silent(table))
    assert torch.equal(plain.quantize(weights), aware.quantize(weights))


def test_noise_aware_clip_trades_clipping_for_less_device_noise():
    table = equal_significance(2, 8, columns="fill")
    weights = gaussian()
    noise = level_noise(table, "pcm", [86400.0], n_samples=400)
    plain = QuantizedSlicedConductanceConverter.from_table(table, scale="mse", per_channel=True)
    aware = QuantizedSlicedConductanceConverter.from_table(table, scale="mse", per_channel=True,
                                                           level_noise=noise)
    _, p_plain = plain.convert_to_conductances(weights)
    _, p_aware = aware.convert_to_conductances(weights)
    assert float(p_aware["scale_ratio"].mean()) > float(p_plain["scale_ratio"].mean())
    assert p_aware["clipped_fraction"] > p_plain["clipped_fraction"]
    noise_per_time = per_time_noise(table, "pcm", [86400.0], n_samples=400)
    assert expected_tnmse(aware, [weights], noise_per_time) < expected_tnmse(
        plain, [weights], noise_per_time)


def test_level_noise_needs_mse_and_matching_levels():
    table = seed_table()
    with pytest.raises(ValueError, match="level_noise needs scale='mse'"):
        QuantizedSlicedConductanceConverter.from_table(table, level_noise=silent(table))
    with pytest.raises(ValueError, match="level_noise has 31 levels, the table 7"):
        QuantizedSlicedConductanceConverter.from_table(
            table, scale="mse", level_noise=silent(bit_sliced(2, 4)))


def test_noise_aware_converter_pickles_and_compares():
    table = seed_table()
    converter = QuantizedSlicedConductanceConverter.from_table(
        table, scale="mse", level_noise=level_noise(table, "pcm", 3600.0, n_samples=200))
    again = pickle.loads(pickle.dumps(converter))
    assert again == converter
    assert "level_noise=<7 levels" in repr(converter)
    weights = gaussian()
    assert torch.equal(again.quantize(weights), converter.quantize(weights))


# ------------------------------------------------------------------ encodings
def test_optimize_encodings_picks_the_column_of_least_simulated_error():
    table = bit_sliced(2, 3)
    optimized = optimize_encodings(table, "pcm", 86400.0, n_samples=500, seed=3)
    stats = column_errors(table, "pcm", 86400.0, None, n_samples=500, seed=3)
    for level, columns in enumerate(table.encodings):
        best = min(columns, key=lambda c: (float(stats["mse"][c]), c))
        assert optimized.selected_columns[level] == best
    assert optimized.levels.tolist() == table.levels.tolist()
    assert optimized == optimize_encodings(table, "pcm", 86400.0, n_samples=500, seed=3)


def digits_of(table, column):
    """Signed digit (in device steps) of every pair of a column."""
    g = table.conductances[:, column]
    step = table.g_max / (5 - 1)
    return [round((g[2 * k] - g[2 * k + 1]) / step) for k in range(table.n_pairs)]


@pytest.mark.parametrize("columns", ["fill", "spread", "fill+spread"])
def test_equal_significance_column_sets(columns):
    table = equal_significance(3, 5, columns=columns)
    assert table.n_levels == 2 * 3 * 4 + 1
    assert table.is_symmetric and table.f_lst == [1.0, 1.0, 1.0]
    assert (np.minimum(table.conductances[0::2], table.conductances[1::2]) == 0).all()
    encodings = {tuple(digits_of(table, c)) for c in range(table.n_columns)}
    fill = {(min(4, d), min(4, max(0, d - 4)), max(0, d - 8)) for d in range(13)}
    spread = {tuple(d // 3 + (1 if k < d % 3 else 0) for k in range(3)) for d in range(13)}
    expected = {"fill": fill, "spread": spread, "fill+spread": fill | spread}[columns]
    signed = expected | {tuple(-x for x in e) for e in expected}
    assert encodings == signed


def test_equal_significance_rejects_unknown_column_set():
    with pytest.raises(ValueError, match="columns must be one of"):
        equal_significance(2, 3, columns="random")


# ------------------------------------------------------------------ optimizer
def test_candidates_cover_significances_and_level_subsets():
    names = set(candidate_tables(2, 5))
    assert {"2x5lvl-equal", "2x3lvl-equal", "2x2lvl-equal", "2x5lvl-base",
            "2x5lvl-binary"} <= names


def test_weight_matrices_of_a_model_are_2d():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(),
                                torch.nn.Linear(36, 5))
    shapes = [tuple(m.shape) for m in weight_matrices(model)]
    assert shapes == [(4, 9), (5, 36)]
    with pytest.raises(ValueError, match="no weight matrix"):
        weight_matrices(torch.nn.ReLU())


def test_optimizer_ranks_candidates_and_beats_aihwkit_four_pairs():
    weights = gaussian(48, 64)
    result = optimize_table(weights, n_pairs=2, device_levels=5, times=[86400.0],
                            n_samples=300, repeats=2,
                            baselines={"aihwkit 2 pairs": NPairConductanceConverter([1.0, 1.0])})
    values = [v for _, v in result.candidates]
    assert values == sorted(values) and result.objective == values[0]
    assert result.table.n_devices == 4
    # the analytical objective predicts the simulated one
    assert result.simulated == pytest.approx(result.objective, rel=0.25)
    assert result.simulated < result.baselines["aihwkit 2 pairs"]
    assert result.table.name in result.report()


def test_simulated_tnmse_is_zero_without_noise_for_a_continuous_converter():
    value = simulated_tnmse(NPairConductanceConverter([1.0]), gaussian(8, 16), "none",
                            [1.0], repeats=1)
    assert value < 1e-8


def test_optimizer_needs_times():
    with pytest.raises(ValueError, match="times"):
        optimize_table(gaussian(), times=[])


def test_mirror_columns_are_chosen_also_when_costs_are_inexact_floats():
    table = equal_significance(3, 4, g_min=1.3, g_max=23.7)
    levels = table.levels
    assert (levels + levels[::-1] == 0).all()
    converter = QuantizedSlicedConductanceConverter.from_table(table)
    weights = gaussian(8, 16)
    assert torch.equal(converter.quantize(-weights), -converter.quantize(weights))


def test_noise_model_instances_are_driven_with_the_tables_g_max():
    from aihwkit.inference import PCMLikeNoiseModel

    table = bit_sliced(2, 4, g_max=50.0)
    by_name = level_noise(table, "pcm", 3600.0, n_samples=300, seed=2)
    by_instance = level_noise(table, PCMLikeNoiseModel(), 3600.0, n_samples=300, seed=2)
    assert by_instance.mean_square == pytest.approx(by_name.mean_square)


def test_clipped_fraction_ignores_zero_padding():
    weights = gaussian(16, 64)
    padded = torch.nn.functional.pad(weights, (0, 64))
    for rule in ("percentile", "mse"):
        converter = QuantizedSlicedConductanceConverter.from_table(seed_table(), scale=rule,
                                                                   percentile=95.0)
        _, plain = converter.convert_to_conductances(weights)
        _, with_zeros = converter.convert_to_conductances(padded)
        assert with_zeros["clipped_fraction"] == pytest.approx(plain["clipped_fraction"])


@pytest.mark.parametrize("kwargs, message", [(dict(n_pairs=0), "n_pairs"),
                                             (dict(device_levels=1), "device_levels")])
def test_optimizer_validates_its_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        optimize_table(gaussian(), times=[1.0], **kwargs)
