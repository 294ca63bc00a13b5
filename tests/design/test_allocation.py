"""Device allocation under a budget: knapsack, measurement, assignment, command line."""

import itertools
import json
import random

import pytest
import torch
from torch import nn

from aihwkit.nn.conversion import convert_to_analog
from aihwkit.simulator.configs import TorchInferenceRPUConfig

from aihwkit_slicing.design import allocation as alloc_module
from aihwkit_slicing.design.allocation import Sensitivities, allocate, choose_tables, solve_knapsack
from aihwkit_slicing.design.candidates import CANDIDATES, selected_only, tuned_table
from aihwkit_slicing.experiments.sensitivity import allocate_tables
from aihwkit_slicing.design.assignment import TableAssignment
from aihwkit_slicing.integration.catalog import make_converter
from aihwkit_slicing.cli.main import main
from aihwkit_slicing.experiments.results import read_records
from aihwkit_slicing.experiments.sweep import run_sweep
from aihwkit_slicing.experiments.tasks import digits_task

SMALL = ["1x33lvl", "2x33lvl-fill", "4x33lvl-fill"]  # 2, 4 and 8 devices


def mlp(sizes, seed=0):
    """Linear layers of the given widths with ReLUs between, seeded weights."""
    torch.manual_seed(seed)
    layers = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(n_in, n_out), nn.ReLU()]
    return nn.Sequential(*layers[:-1]).eval()


def handmade(model, candidates, values):
    """Sensitivities of ``model``'s layers as given (no measurement): for plumbing tests."""
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    values = torch.as_tensor(values, dtype=torch.float64)[:, :, None]
    return Sensitivities(
        layers=[n for n, _ in layers], weights=[m.weight.numel() for _, m in layers],
        candidates=list(candidates), devices=[CANDIDATES[c].n_devices for c in candidates],
        values=values, spread=torch.zeros_like(values), times=[86400.0],
        measure="handmade", repeats=1, seed=0)


def layer_tables_of_analog(analog, names):
    """{layer name: table name of every tile of that layer} of a converted model."""
    found = {}
    for name, module in analog.named_modules():
        if name in names:
            found[name] = {tile.rpu_config.noise_model.g_converter.table.name
                           for tile in module.analog_tiles()}
    return found


# ================================================================= knapsack
def brute_force(costs, values, capacity):
    best = None
    for choice in itertools.product(*[range(len(c)) for c in costs]):
        cost = sum(costs[g][k] for g, k in enumerate(choice))
        value = sum(values[g][k] for g, k in enumerate(choice))
        if cost <= capacity and (best is None or value < best):
            best = value
    return best


def test_knapsack_is_optimal_against_brute_force_on_small_cases():
    rng = random.Random(0)
    for _ in range(60):
        groups, options = rng.randint(1, 5), rng.randint(1, 4)
        costs = [[rng.randint(0, 12) for _ in range(options)] for _ in range(groups)]
        values = [[rng.uniform(-1, 3) for _ in range(options)] for _ in range(groups)]
        capacity = rng.randint(sum(min(c) for c in costs), sum(max(c) for c in costs))
        chosen = solve_knapsack(costs, values, capacity)
        assert sum(costs[g][k] for g, k in enumerate(chosen)) <= capacity
        assert sum(values[g][k] for g, k in enumerate(chosen)) == pytest.approx(
            brute_force(costs, values, capacity), abs=1e-12)


def test_the_budget_holds_on_random_layer_sizes():
    rng = random.Random(1)
    devices = [2, 4, 6, 8]
    binding = 0
    for _ in range(40):
        weights = [rng.randint(1, 5000) for _ in range(rng.randint(1, 12))]
        # more devices, less loss: the budget is what stops the knapsack
        values = [[loss / d for d in devices] for loss in
                  (rng.uniform(0.1, 1.0) for _ in weights)]
        budget = rng.uniform(2.0, 8.0)
        chosen, exact = choose_tables(weights, devices, values, budget)
        average = sum(n * devices[k] for n, k in zip(weights, chosen)) / sum(weights)
        assert exact and average <= budget + 1e-12
        # optimal, so no layer's upgrade to more devices (less loss) would still fit
        for i, k in enumerate(chosen):
            for upgrade in range(k + 1, len(devices)):
                extra = weights[i] * (devices[upgrade] - devices[k])
                assert average * sum(weights) + extra > budget * sum(weights) + 1e-9
        binding += k > 0 or len(weights) == 0
    assert binding > 0


def test_the_budget_holds_when_costs_are_rounded_to_a_coarser_grid(monkeypatch):
    monkeypatch.setattr(alloc_module, "MAX_DP_CELLS", 64)
    weights, devices = [997, 1009, 1013, 1019], [2, 4, 8]
    values = [[3.0, 2.0, 1.0]] * 4
    chosen, exact = choose_tables(weights, devices, values, 5.0)
    average = sum(n * devices[k] for n, k in zip(weights, chosen)) / sum(weights)
    assert not exact and 4.0 <= average <= 5.0


def test_a_budget_at_the_cheapest_candidates_is_met_on_the_coarser_grid_too(monkeypatch):
    monkeypatch.setattr(alloc_module, "MAX_DP_CELLS", 64)
    weights, devices = [997, 1009, 1013, 1019], [2, 4, 8]
    chosen, exact = choose_tables(weights, devices, [[3.0, 2.0, 1.0]] * 4, 2.0)
    assert chosen == [0, 0, 0, 0]


def test_a_decimal_budget_is_met_exactly_not_as_the_float_below_it():
    # 2.3 devices per weight over 10 weights: 23 devices, exactly layer 0 on 2, layer 1 on 3
    chosen, _ = choose_tables([7, 3], [2, 3], [[1.0, 0.0], [1.0, 0.0]], 2.3)
    assert chosen == [0, 1]


def test_linear_subclasses_stay_digital_as_in_aihwkit_and_get_no_table():
    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.attention = nn.MultiheadAttention(8, 2, batch_first=True)
            self.head = nn.Linear(8, 3)

        def forward(self, x):
            return self.head(self.attention(x, x, x)[0])

    torch.manual_seed(0)
    model = Attention().eval()
    result = allocate_tables(model, SMALL[:2], 3.0, times=[86400.0], inputs=torch.rand(2, 5, 8),
                             repeats=1, quiet=True)
    assert [layer.name for layer in result.layers] == ["head"]  # out_proj: a subclass
    analog = convert_to_analog(model, TorchInferenceRPUConfig(),
                               specific_rpu_config_fun=result.rpu_config_fun())
    assert type(analog.attention.out_proj) is nn.modules.linear.NonDynamicallyQuantizableLinear


def test_a_module_shared_by_two_names_is_refused_naming_both():
    shared = nn.Linear(6, 6)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    with pytest.raises(ValueError, match=r"'0' is the same module as '2'"):
        allocate_tables(model, SMALL[:2], 3.0, times=[86400.0], inputs=torch.rand(2, 6),
                        repeats=1, quiet=True)


def test_a_noise_model_instance_is_kept_and_drives_the_converted_model():
    from aihwkit.inference import PCMLikeNoiseModel

    model = mlp([6, 5, 4])
    noise = PCMLikeNoiseModel(prog_noise_scale=0.5)
    result = allocate_tables(model, SMALL[:2], 3.0, noise_model=noise, times=[86400.0],
                             inputs=torch.rand(4, 6), repeats=1, quiet=True)
    assert result.to_dict()["noise_model"] == "PCMLikeNoiseModel"
    analog = convert_to_analog(model, TorchInferenceRPUConfig(),
                               specific_rpu_config_fun=result.rpu_config_fun())
    tile = next(analog[0].analog_tiles())
    assert tile.rpu_config.noise_model.prog_noise_scale == 0.5


def test_a_new_budget_from_a_measurement_keeps_its_noise_model_and_compensation():
    model = mlp([6, 5, 4])
    measured = allocate_tables(model, SMALL[:2], 4.0, noise_model="reram", times=[86400.0],
                               compensation=False, inputs=torch.rand(4, 6), repeats=1,
                               quiet=True).sensitivities
    again = allocate(measured, {c: CANDIDATES[c] for c in SMALL[:2]}, 2.0)
    assert again.noise_model == "reram" and again.compensation is False
    assert again.to_dict()["noise_model"] == "reram"


def test_the_callers_random_state_is_left_as_it_was():
    model, inputs = mlp([6, 5, 4]), torch.rand(4, 6)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    candidates = [tuned_table(2, times=[86400.0], n_samples=50), "1x33lvl"]
    allocate_tables(model, candidates, 3.0, times=[86400.0], inputs=inputs, repeats=1,
                    quiet=True)
    assert torch.equal(torch.rand(3), expected)


def test_times_a_noise_model_does_not_know_fail_before_any_work():
    with pytest.raises(ValueError, match="noise model 'reram' only knows the times"):
        allocate_tables(mlp([6, 5, 4]), None, 6.0, noise_model="reram",
                        times=[86400.0, 31536000.0], inputs=torch.rand(4, 6), quiet=True)


def test_a_noise_aware_allocation_measures_and_converts_with_noise_aware_clips():
    model, inputs = mlp([6, 5, 4]), torch.rand(4, 6)
    kwargs = dict(times=[86400.0], inputs=inputs, repeats=1, quiet=True)
    plain = allocate_tables(model, SMALL[:2], 3.0, **kwargs)
    aware = allocate_tables(model, SMALL[:2], 3.0, noise_aware=True, **kwargs)
    assert plain.sensitivities.noise_aware is None and "noise_aware" not in plain.scale
    assert aware.sensitivities.noise_aware == [86400.0]
    assert aware.to_dict()["scale"]["noise_aware"] == [86400.0]
    assert not torch.equal(plain.sensitivities.values, aware.sensitivities.values)
    for allocation, expect_noise in ((plain, False), (aware, True)):
        analog = convert_to_analog(model, TorchInferenceRPUConfig(),
                                   specific_rpu_config_fun=allocation.rpu_config_fun())
        for tile in analog.analog_tiles():
            converter = tile.rpu_config.noise_model.g_converter
            assert (converter.level_noise is not None) is expect_noise


def test_noise_aware_needs_the_mse_rule():
    with pytest.raises(ValueError, match="noise_aware needs scale='mse'"):
        allocate_tables(mlp([6, 5, 4]), SMALL[:2], 3.0, times=[86400.0], scale="max",
                        noise_aware=True, inputs=torch.rand(4, 6), quiet=True)


def test_a_random_mlp_allocation_stays_within_budget_and_records_it_in_the_sweep():
    rng = random.Random(2)
    sizes = [rng.randint(3, 40) for _ in range(5)]
    model = mlp(sizes)
    result = allocate_tables(model, SMALL, 3.0, times=[86400.0], inputs=torch.rand(16, sizes[0]),
                             repeats=1, quiet=True)
    assert result.devices_per_weight <= 3.0
    assert result.to_assignment().devices_per_weight(model) == pytest.approx(
        result.devices_per_weight)
    assert [layer.weights for layer in result.layers] == [
        a * b for a, b in zip(sizes[:-1], sizes[1:])]


# ============================================================== measurement
class TwoBranches(nn.Module):
    """``y = robust(x) + 30 * fragile(x)``: two layers alike in shape and weights,
    one of which the output amplifies."""

    def __init__(self):
        super().__init__()
        generator = torch.Generator().manual_seed(3)
        self.robust = nn.Linear(24, 8, bias=False)
        self.fragile = nn.Linear(24, 8, bias=False)
        self.head = nn.Linear(8, 8, bias=False)
        with torch.no_grad():
            for layer in (self.robust, self.fragile, self.head):
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator))

    def forward(self, x):
        return self.head(self.robust(x) + 30.0 * self.fragile(x))


def test_measured_sensitivities_rank_a_deliberately_fragile_layer_first():
    model = TwoBranches()
    # alike to a weight-only proxy: same shape, same distribution
    with torch.no_grad():
        assert float(model.robust.weight.std()) == pytest.approx(
            float(model.fragile.weight.std()), rel=0.2)
    inputs = torch.rand(64, 24, generator=torch.Generator().manual_seed(4))
    result = allocate_tables(model, ["1x33lvl", "4x5lvl-binary"], 5.5, times=[86400.0],
                             inputs=inputs, repeats=2, quiet=True)
    ranking = result.sensitivities.ranking()
    # (the head scales the whole output, so it is as sensitive as the fragile branch)
    assert ranking.index("fragile") < ranking.index("robust")
    mean = result.sensitivities.mean
    layers = result.sensitivities.layers
    assert (mean[layers.index("fragile")] > 10 * mean[layers.index("robust")]).all()
    # 5.5 devices per weight afford 8 for one of the two alike layers: the fragile one
    assert result.tables["fragile"] == "4x5lvl-binary"
    assert result.tables["robust"] == "1x33lvl"


def test_the_same_seed_gives_the_same_allocation_and_another_seed_other_numbers():
    model = mlp([12, 10, 6])
    kwargs = dict(times=[86400.0], inputs=torch.rand(8, 12), repeats=1, quiet=True)
    first = allocate_tables(model, SMALL, 4.0, seed=5, **kwargs)
    again = allocate_tables(model, SMALL, 4.0, seed=5, **kwargs)
    other = allocate_tables(model, SMALL, 4.0, seed=6, **kwargs)
    assert torch.equal(first.sensitivities.values, again.sensitivities.values)
    assert first.tables == again.tables
    assert not torch.equal(first.sensitivities.values, other.sensitivities.values)


def test_the_measurement_leaves_the_model_untouched_and_is_reproduced_by_hand():
    """One layer converted by aihwkit, programmed and drifted with the seeds the
    measurement documents, swapped into the network: the same output error."""
    model = mlp([10, 7, 5])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    inputs = torch.rand(6, 10)
    result = allocate_tables(model, ["2x33lvl-fill"], 4.0, times=[86400.0], inputs=inputs,
                             repeats=1, quiet=True, seed=0)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(type(m).__module__.startswith("torch.nn") for m in model.modules())
    # the layer "2" measured alone again, by hand, with the seeds the measurement uses
    from aihwkit_slicing.integration.rpu_configs import make_rpu_config
    from aihwkit_slicing.integration.setting import stable_seed

    config = make_rpu_config(make_converter(CANDIDATES["2x33lvl-fill"], scale="mse",
                                            per_channel=True), "pcm")
    work = mlp([10, 7, 5])
    work[2] = convert_to_analog(model[2], config).eval()
    unit = stable_seed(0, "allocation", "2", 0)
    torch.manual_seed(unit)
    work[2].program_analog_weights()
    torch.manual_seed(stable_seed(unit, 86400.0))
    work[2].drift_analog_weights(86400.0)
    with torch.no_grad():
        reference, output = model(inputs), work(inputs)
    expected = float((output - reference).double().square().sum()
                     / reference.double().square().sum())
    measured = result.sensitivities.values[result.sensitivities.layers.index("2"), 0, 0]
    assert float(measured) == pytest.approx(expected, rel=1e-6)


# =============================================================== assignment
def test_exact_layer_names_even_when_one_name_contains_another():
    model = mlp([4] * 13)  # Sequential children "0", "2", ..., "20", "22": "2" is in "20"
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    values = [[1.0, 0.0] if name == "2" else [0.0, 1.0] for name in names]
    allocation = allocate(handmade(model, ["1x33lvl", "2x33lvl-fill"], values),
                          CANDIDATES, 4.0)
    assert allocation.tables["2"] == "2x33lvl-fill"
    assert allocation.tables["20"] == "1x33lvl"
    assert allocation.to_assignment().layer_tables(model) == allocation.tables


def test_json_round_trip_run_sweep_and_convert_to_analog_give_each_layer_its_table(tmp_path):
    task = digits_task()
    candidates = ["1x33lvl", "2x33lvl-fill", "4x33lvl-fill"]
    # classifier.3 most sensitive, then the convolutions; the budget cannot give 8 to all
    values = [[0.2, 0.1, 0.05], [0.4, 0.2, 0.1], [0.01, 0.009, 0.008], [3.0, 1.0, 0.5]]
    allocation = allocate(handmade(task.model, candidates, values), CANDIDATES, 3.0)
    expected = allocation.tables
    assert len(set(expected.values())) >= 2

    path = allocation.save(tmp_path / "alloc.json")
    data = json.loads(path.read_text())
    assert data["devices_per_weight"] == pytest.approx(allocation.devices_per_weight)
    assert data["devices_per_weight"] <= 3.0 and data["scale"] == {"scale": "mse",
                                                                  "per_channel": True}
    loaded = TableAssignment.from_dict(data)
    assert loaded.layer_tables(task.model) == expected
    assert loaded.devices_per_weight(task.model) == pytest.approx(allocation.devices_per_weight)

    result = run_sweep(task, tables=[loaded], times=[1.0], repeats=1, progress=False)
    record = result.of_metric()[0]
    assert record["n_devices"] == pytest.approx(allocation.devices_per_weight)
    assert record["value"] > 0.8

    analog = convert_to_analog(task.model, TorchInferenceRPUConfig(),
                               specific_rpu_config_fun=allocation.rpu_config_fun())
    assert layer_tables_of_analog(analog, expected) == {n: {t} for n, t in expected.items()}
    for tile in analog.analog_tiles():
        converter = tile.rpu_config.noise_model.g_converter
        assert converter.scale == "mse" and converter.per_channel
        assert tile.rpu_config.forward.is_perfect


def test_the_reduced_table_of_the_json_programs_like_the_full_one():
    table = CANDIDATES["4x5lvl-binary"]
    reduced = selected_only(table)
    assert reduced.n_columns == table.n_levels < table.n_columns
    weights = torch.randn(16, 40)
    full = make_converter(table, scale="mse", per_channel=True)
    small = make_converter(reduced, scale="mse", per_channel=True)
    assert torch.equal(full.quantize(weights), small.quantize(weights))
    g_full, _ = full.convert_to_conductances(weights.clone())
    g_small, _ = small.convert_to_conductances(weights.clone())
    assert all(torch.equal(a, b) for a, b in zip(g_full, g_small))


def test_tuned_tables_take_per_level_the_encoding_that_errs_least():
    from aihwkit_slicing.design.encodings import column_errors
    from aihwkit_slicing.core.builders import equal_significance

    times = [86400.0, 31536000.0]
    tuned = tuned_table(3, "pcm", times, levels_per_device=9, n_samples=300, seed=1)
    both = equal_significance(3, 9, columns="fill+spread")
    mse = sum(column_errors(both, "pcm", t, None, 300, 1 + i)["mse"]
              for i, t in enumerate(times))
    chosen = list(tuned.selected_columns)
    fill_only = [columns[0] for columns in both.encodings]  # fill comes first per level
    assert chosen != fill_only  # some levels are better spread over the pairs
    for level, columns in enumerate(both.encodings):
        assert float(mse[chosen[level]]) == min(float(mse[c]) for c in columns)
    assert tuned.name == "3x9lvl-tuned" and tuned.n_devices == 6


def test_default_candidates_span_2_to_16_devices():
    from aihwkit_slicing.design.candidates import DEFAULT_PAIRS, default_candidates

    tables = default_candidates("pcm", [86400.0], n_samples=50)
    assert [t.n_devices for t in tables] == [2 * p for p in DEFAULT_PAIRS] == [
        2, 4, 6, 8, 12, 16]
    assert len({t.name for t in tables}) == len(tables)
    assert [t.f_lst for t in tables[1:4]] == [[1.0, 2.0], [1.0, 2.0, 4.0],
                                               [1.0, 2.0, 4.0, 8.0]]


def test_binary_tuned_tables_take_per_level_the_encoding_that_errs_least():
    from aihwkit_slicing.design.encodings import column_errors
    from aihwkit_slicing.core.builders import bit_sliced

    times = [86400.0]
    tuned = tuned_table(3, "pcm", times, levels_per_device=3, n_samples=200, seed=2,
                        significance="binary")
    every = bit_sliced(3, 3, significance=[1, 2, 4])
    mse = column_errors(every, "pcm", times[0], None, 200, 2)["mse"]
    chosen = list(tuned.selected_columns)
    assert chosen != list(every.selected_columns)  # the default encodings are not the best
    for level, columns in enumerate(every.encodings):
        assert float(mse[chosen[level]]) == min(float(mse[c]) for c in columns)
    assert tuned.name == "3x3lvl-binary-tuned"
    with pytest.raises(ValueError, match="significance must be 'equal' or 'binary'"):
        tuned_table(2, significance="base")


# ================================================================ bad input
@pytest.mark.parametrize("kwargs, argument", [
    (dict(devices_per_weight=0), "devices_per_weight"),
    (dict(devices_per_weight=float("nan")), "devices_per_weight"),
    (dict(devices_per_weight=1.5), "devices_per_weight=1.5 is below"),
    (dict(repeats=0), "repeats"),
    (dict(seed=-1), "seed"),
    (dict(times=[-5.0]), "times"),
    (dict(candidates=["nope"]), "candidates: unknown table 'nope'"),
    (dict(candidates=[]), "candidates"),
    (dict(inputs=None), "task and inputs"),
    (dict(noise_model="nope"), "noise model"),
    (dict(scale="median"), "scale"),
])
def test_bad_input_errors_name_the_argument(kwargs, argument):
    arguments = dict(candidates=SMALL, devices_per_weight=4.0, times=[86400.0],
                     inputs=torch.rand(2, 4), repeats=1, quiet=True)
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=argument):
        allocate_tables(mlp([4, 3]), **arguments)


def test_knapsack_refuses_malformed_input():
    with pytest.raises(ValueError, match="capacity"):
        solve_knapsack([[1]], [[0.0]], -1)
    with pytest.raises(ValueError, match=r"costs\[0\]\[0\]"):
        solve_knapsack([[-1]], [[0.0]], 3)
    with pytest.raises(ValueError, match=r"values\[0\]\[1\]"):
        solve_knapsack([[1, 1]], [[0.0, float("inf")]], 3)
    with pytest.raises(ValueError, match="no choice fits"):
        solve_knapsack([[4], [4]], [[0.0], [0.0]], 7)


# ============================================================= command line
def test_cli_writes_the_json_and_sweep_reads_it(tmp_path, capsys):
    path = tmp_path / "budget5.json"
    code = main(["allocate", "--model", "digits", "--budget", "5", "--times", "86400",
                 "--candidates", ",".join(SMALL), "--repeats", "1", "--out", str(path),
                 "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "allocation for 5 devices per weight" in printed and "wrote" in printed
    data = json.loads(path.read_text())
    assert 2.0 <= data["devices_per_weight"] <= 5.0
    assert data["measure"] == "relative squared output error"  # digits: logits on training images
    assert {rule["layers"] for rule in data["rules"]} == {
        "features.0", "features.2", "classifier.1", "classifier.3"}

    out_dir = tmp_path / "sweep"
    code = main(["sweep", "--model", "digits", "--assignment", str(path), "--times", "86400",
                 "--repeats", "1", "--out", str(out_dir), "--quiet"])
    assert code == 0
    records = [r for r in read_records(out_dir / "results.csv") if r["metric"] == "accuracy"]
    assert [r["table"] for r in records] == ["budget5"]
    assert records[0]["n_devices"] == pytest.approx(data["devices_per_weight"])


@pytest.mark.parametrize("args, message", [
    (["--budget", "six"], "--budget must be a number"),
    (["--budget", "-2"], "--budget must be a number of devices per weight > 0"),
    (["--budget", "1"], "--budget 1 is below the cheapest candidate's 2 devices"),
    (["--budget", "6", "--candidates", "nope"], "--candidates: unknown table 'nope'"),
    (["--budget", "6", "--times", "soon"], "times must be numbers of seconds, got 'soon'"),
    (["--budget", "6", "--repeats", "0"], "--repeats must be >= 1"),
    (["--budget", "6", "--noise-model", "nope"], "unknown noise model 'nope'"),
    (["--budget", "6", "--model", "nope"], "unknown model 'nope'"),
    (["--budget", "6", "--out", "/nonexistent/folder/a.json"], "--out must be a file"),
    ([], "the following arguments are required: --budget"),
])
def test_cli_bad_input_is_one_line_and_exit_status_2(args, message, capsys):
    try:
        code = main(["allocate", *args])
    except SystemExit as stop:
        code = stop.code
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and err.count("\n") == 1


def test_cli_noise_aware_records_the_times_and_the_sweep_applies_them(tmp_path, capsys):
    path = tmp_path / "aware.json"
    assert main(["allocate", "--model", "digits", "--budget", "5", "--times", "86400",
                 "--candidates", ",".join(SMALL[:2]), "--repeats", "1", "--noise-aware",
                 "--out", str(path), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert f"--assignment {path}' (its tables keep the allocation's scaling: mse per " \
           "channel, noise-aware at 86400 s)" in printed
    assert json.loads(path.read_text())["scale"]["noise_aware"] == [86400.0]
    out_dir = tmp_path / "sweep"
    with pytest.warns(UserWarning, match="assignment 'aware' keeps the scaling it records"):
        assert main(["sweep", "--model", "digits", "--assignment", str(path), "--times",
                     "86400", "--repeats", "1", "--out", str(out_dir), "--quiet"]) == 0
    (record,) = [r for r in read_records(out_dir / "results.csv") if r["metric"] == "accuracy"]
    assert record["level_noise"] == "86400" and record["scale"] == "mse"


def test_cli_takes_candidate_tables_from_files(tmp_path, capsys):
    from aihwkit_slicing.core.builders import equal_significance
    from aihwkit_slicing.core.table_files import save_table

    table_path = tmp_path / "mine.json"
    save_table(equal_significance(3, 5, columns="fill", name="mine"), table_path)
    out = tmp_path / "a.json"
    code = main(["allocate", "--budget", "4", "--times", "86400", "--candidates", "1x33lvl",
                 "--candidate-file", str(table_path), "--repeats", "1", "--out", str(out),
                 "--quiet"])
    assert code == 0
    data = json.loads(out.read_text())
    assert data["candidates"] == {"1x33lvl": 2, "mine": 6}
    # a named table is written by its name (every command knows it), a file's by value
    written = {rule["table"] if isinstance(rule["table"], str) else rule["table"]["name"]:
               type(rule["table"]) for rule in data["rules"]}
    assert set(written) <= {"1x33lvl", "mine"}
    assert all(kind is (str if name == "1x33lvl" else dict) for name, kind in written.items())
    assert TableAssignment.from_dict(data).layer_tables(digits_task().model) == {
        layer["name"]: layer["table"] for layer in data["layers"]}

    (tmp_path / "bad.json").write_text("{not json")
    code = main(["allocate", "--budget", "4", "--candidate-file", str(tmp_path / "bad.json"),
                 "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "--candidate-file" in err and "not JSON" in err and err.count("\n") == 1
