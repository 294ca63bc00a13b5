"""A model built by hand with make_rpu_config, seeded as a sweep seeds a unit, gives the
very numbers of the sweep's record: one set of defaults everywhere."""

import pytest
import torch
from aihwkit.nn.conversion import convert_to_analog

from aihwkit_slicing import make_rpu_config
from aihwkit_slicing.experiments.sweep import run_sweep
from aihwkit_slicing.experiments.sweep_plan import drift_seed, programming_seed
from aihwkit_slicing.experiments.tasks import Task


def cosine_task():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4))
    inputs = torch.randn(64, 16)
    with torch.no_grad():
        target = model(inputs)

    def evaluate(net):
        with torch.no_grad():
            out = net(inputs)
        return {"cosine": float(torch.nn.functional.cosine_similarity(out, target).mean())}

    return Task("mine", model, evaluate, "cosine")


@pytest.mark.parametrize("table, seed, repeat, t", [
    ("seed", 0, 0, 86400.0), ("4x4lvl-base", 3, 1, 31536000.0),
    ("3x17lvl-binary", 0, 1, 1.0)])
def test_a_model_built_by_hand_reproduces_a_sweep_record_exactly(table, seed, repeat, t):
    task = cosine_task()
    result = run_sweep(task, tables=[table], times=[t], repeats=repeat + 1, seed=seed,
                       threads=torch.get_num_threads(), progress=False)
    (swept,) = [r["value"] for r in result.of_metric() if r["repeat"] == repeat]

    analog = convert_to_analog(task.model, make_rpu_config(table)).eval()
    torch.manual_seed(programming_seed(seed, repeat))
    analog.program_analog_weights()
    torch.manual_seed(drift_seed(seed, repeat, t))
    analog.drift_analog_weights(t)
    assert task.evaluate(analog)["cosine"] == swept


@pytest.mark.parametrize("table, noise_model, compensation, noise_aware", [
    ("seed", "pcm", True, [86400.0, 31536000.0]), ("1x16lvl", "hermes", False, [3600.0])])
def test_a_noise_aware_row_is_reproduced_with_the_same_noise_aware_times(
        table, noise_model, compensation, noise_aware):
    """make_rpu_config(noise_aware=...) draws the sweep's level noise (the same seeded
    Monte Carlo), so the noise-aware clip and every number are the sweep's."""
    task, seed, repeat, t = cosine_task(), 2, 0, 86400.0
    result = run_sweep(task, tables=[table], times=[t], repeats=1, seed=seed,
                       noise_models=[noise_model], compensation=compensation,
                       noise_aware=noise_aware, threads=torch.get_num_threads(),
                       progress=False)
    (swept,) = [r["value"] for r in result.of_metric()]

    def by_hand(**noise_aware_arguments):
        config = make_rpu_config(table, noise_model, compensation, **noise_aware_arguments)
        analog = convert_to_analog(task.model, config).eval()
        torch.manual_seed(programming_seed(seed, repeat))
        analog.program_analog_weights()
        torch.manual_seed(drift_seed(seed, repeat, t))
        analog.drift_analog_weights(t)
        return task.evaluate(analog)["cosine"], config.noise_model.g_converter

    value, converter = by_hand(noise_aware=noise_aware)
    assert converter.level_noise is not None
    assert value == swept
    assert by_hand()[0] != swept  # the plain clip is another row


def test_noise_aware_needs_the_mse_clip():
    with pytest.raises(ValueError, match="noise_aware needs scale='mse', got scale='max'"):
        make_rpu_config("seed", scale="max", noise_aware=[86400.0])


def test_the_noise_aware_clip_depends_on_the_noise_model_not_its_label():
    """'pcm', a PCMLikeNoiseModel under the label 'PCM' and a factory of it are one noise
    model: one noise-aware row, by any path (sweep labels, make_rpu_config)."""
    from aihwkit.inference.noise.pcm import PCMLikeNoiseModel

    task, t = cosine_task(), 86400.0
    common = dict(tables=["2x4lvl-base"], times=[t], repeats=1, noise_aware=[t],
                  threads=torch.get_num_threads(), progress=False)
    by_name = run_sweep(task, noise_models=["pcm"], **common).of_metric()
    by_label = run_sweep(task, noise_models={"PCM": PCMLikeNoiseModel()},
                         **common).of_metric()
    assert by_label[0]["value"] == by_name[0]["value"]
    hand = make_rpu_config("2x4lvl-base", PCMLikeNoiseModel(), noise_aware=[t])
    named = make_rpu_config("2x4lvl-base", "pcm", noise_aware=[t])
    assert hand.noise_model.g_converter.level_noise.mean_square == \
        named.noise_model.g_converter.level_noise.mean_square
