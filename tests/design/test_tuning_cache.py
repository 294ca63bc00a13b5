"""Tuned candidates are kept (in the process and on disk), keyed by all they depend on;
the tuned default candidates have names every command knows."""

import json

import pytest

from aihwkit_slicing.design import candidates as candidates_module
from aihwkit_slicing.design import tuning_cache
from aihwkit_slicing.design.candidates import (
    TUNED_CANDIDATES,
    candidate_specs,
    named_spec,
    table_names,
    tuned_table,
)
from aihwkit_slicing.integration.catalog import known_names

SMALL = dict(n_pairs=2, levels_per_device=5, significance="binary", n_samples=100)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A fresh, empty cache folder and no memo."""
    monkeypatch.setenv(tuning_cache.CACHE_ENV, str(tmp_path / "cache"))
    tuning_cache.forget_memo()
    yield tmp_path / "cache"
    tuning_cache.forget_memo()


@pytest.fixture
def count_simulations(monkeypatch):
    """How often tuned_table simulates (the Monte Carlo it caches)."""
    calls = []
    original = candidates_module.column_errors

    def counting(*args, **kwargs):
        calls.append(args[2])
        return original(*args, **kwargs)

    monkeypatch.setattr(candidates_module, "column_errors", counting)
    return calls


def test_a_second_tuning_reads_the_first_from_disk(cache, count_simulations):
    first = tuned_table(times=[86400.0], **SMALL)
    assert len(count_simulations) == 1 and len(list(cache.glob("tuned-*.json"))) == 1
    tuning_cache.forget_memo()  # as a new process would start
    again = tuned_table(times=[86400.0], **SMALL)
    assert len(count_simulations) == 1
    assert again == first and again.name == first.name == "2x5lvl-binary-tuned"
    assert again.selected_columns == first.selected_columns


def test_the_cache_gives_the_table_a_fresh_simulation_gives(cache):
    cached = tuned_table(times=[86400.0], **SMALL)
    fresh = tuned_table(times=[86400.0], cache=False, **SMALL)
    assert fresh == cached


@pytest.mark.parametrize("change", [dict(times=[3600.0]), dict(noise_model="hermes"),
                                    dict(seed=1), dict(n_samples=99)])
def test_what_the_tuning_depends_on_is_in_its_key(change, cache, count_simulations):
    tuned_table(**dict(dict(SMALL, times=[86400.0]), **change))
    tuned_table(times=[86400.0], **SMALL)
    assert len(count_simulations) == 2 and len(list(cache.glob("tuned-*.json"))) == 2


def test_a_noise_model_with_other_settings_is_another_key(cache, count_simulations):
    from aihwkit.inference import PCMLikeNoiseModel

    tuned_table(noise_model=PCMLikeNoiseModel(prog_noise_scale=2.0), times=[86400.0], **SMALL)
    tuned_table(noise_model="pcm", times=[86400.0], **SMALL)
    assert len(count_simulations) == 2


def test_a_damaged_file_is_recomputed_and_rewritten(cache, count_simulations):
    first = tuned_table(times=[86400.0], **SMALL)
    (path,) = cache.glob("tuned-*.json")
    for damage in ("{not json", json.dumps({"encoding": [10**6] * first.n_levels})):
        path.write_text(damage)
        tuning_cache.forget_memo()
        assert tuned_table(times=[86400.0], **SMALL) == first
    assert len(count_simulations) == 3
    assert json.loads(path.read_text())["encoding"] == list(first.selected_columns)


def test_off_keeps_nothing_on_disk(tmp_path, monkeypatch, count_simulations):
    monkeypatch.setenv(tuning_cache.CACHE_ENV, "off")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    tuning_cache.forget_memo()
    tuned_table(times=[86400.0], **SMALL)
    tuning_cache.forget_memo()
    tuned_table(times=[86400.0], **SMALL)
    assert len(count_simulations) == 2 and not list(tmp_path.rglob("*.json"))


def test_cache_false_neither_reads_nor_writes(cache, count_simulations):
    tuned_table(times=[86400.0], **SMALL)
    tuned_table(times=[86400.0], cache=False, **SMALL)
    assert len(count_simulations) == 2 and len(list(cache.glob("tuned-*.json"))) == 1


def test_an_unwritable_folder_is_one_warning(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv(tuning_cache.CACHE_ENV, str(blocker / "cache"))
    tuning_cache.forget_memo()
    with pytest.warns(UserWarning, match="cannot write the tuning cache in .*a-file/cache"):
        tuned_table(times=[86400.0], **SMALL)
    tuning_cache.forget_memo()


def test_the_default_folder_is_under_the_users_cache(monkeypatch, tmp_path):
    monkeypatch.delenv(tuning_cache.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert tuning_cache.cache_folder() == tmp_path / "aihwkit-slicing"


def test_allocate_no_cache_tunes_afresh(monkeypatch, tmp_path, capsys):
    """``allocate --no-cache`` reaches the tuning of the default candidates."""
    from aihwkit_slicing.cli.main import main

    seen = []

    def small_defaults(noise_model, times, seed, n_samples=1000, cache=True):
        seen.append(cache)
        return [tuned_table(1, noise_model, times, 5, n_samples=50),
                tuned_table(2, noise_model, times, 5, n_samples=50, significance="binary")]

    monkeypatch.setattr(candidates_module, "default_candidates", small_defaults)
    for flag, expected in (([], True), (["--no-cache"], False)):
        assert main(["allocate", "--budget", "4", "--repeats", "1", "--times", "86400",
                     "--out", str(tmp_path / "a.json"), "--quiet"] + flag) == 0
        assert seen[-1] is expected


# ========================================================= names of tuned tables
def test_every_command_knows_the_tuned_default_candidates_by_name():
    assert table_names() == known_names() + list(TUNED_CANDIDATES)
    assert set(TUNED_CANDIDATES) == {"1x33lvl-tuned", "2x33lvl-binary-tuned",
                                     "3x17lvl-binary-tuned", "4x5lvl-binary-tuned",
                                     "6x33lvl-tuned", "8x33lvl-tuned"}


def test_a_tuned_name_is_tuned_for_the_noise_model_and_times_at_hand(cache):
    by_name = named_spec("2x33lvl-binary-tuned", "hermes", [3600.0])
    assert by_name == tuned_table(2, "hermes", [3600.0], 33, significance="binary")
    assert named_spec("seed") == "seed"
    specs = candidate_specs(["2x33lvl-binary-tuned", "seed"], "hermes", [3600.0])
    assert specs["2x33lvl-binary-tuned"] == by_name
    with pytest.raises(ValueError, match="unknown table 'nope'; known tables: .*3x17lvl-"
                       "binary-tuned"):
        named_spec("nope")
