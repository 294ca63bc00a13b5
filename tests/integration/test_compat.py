"""Which torch releases aihwkit's compiled tile works with (aihwkit_slicing.integration.compat).

The installed versions are faked by replacing ``compat._installed_version`` (and, where a
test is about it, ``compat._extension_error``), so every combination is checked here
whatever this environment has installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from aihwkit.simulator.configs import (
    InferenceRPUConfig,
    SingleRPUConfig,
    TorchInferenceRPUConfig,
    TorchInferenceRPUConfigIRDropT,
)
from torch import nn

from aihwkit_slicing import (
    AnalogSlicedConv2d,
    AnalogSlicedLinear,
    convert_to_analog_sliced,
    seed_table,
)
from aihwkit_slicing.core.converter import QuantizedSlicedConductanceConverter
from aihwkit_slicing.integration import compat
from aihwkit_slicing.integration.rpu_configs import make_rpu_config
from aihwkit_slicing.experiments.sweep import run_sweep
from aihwkit_slicing.experiments.tasks import Task

ROOT = Path(__file__).resolve().parents[2]

UNDEFINED_SYMBOL = (
    "ImportError: .../rpu_base.cpython-311-x86_64-linux-gnu.so: undefined symbol: "
    "_ZN3c1010TensorImpl14decref_pyobjectEv"
)


@pytest.fixture
def installed(monkeypatch):
    """``installed(aihwkit, torch, extension_error=None)`` fakes what is installed."""

    def fake(aihwkit: str | None, torch: str | None, extension_error: str | None = None):
        versions = {"aihwkit": aihwkit, "torch": torch}
        monkeypatch.setattr(compat, "_installed_version", versions.__getitem__)
        monkeypatch.setattr(compat, "_extension_error", lambda: extension_error)

    return fake


def assert_one_sentence(message: str) -> None:
    assert message.endswith(".") and "\n" not in message
    assert ". " not in message, f"more than one sentence: {message!r}"


# ----------------------------------------------------------------- the message
@pytest.mark.parametrize(
    "aihwkit,torch,requirement",
    [
        ("1.1.0", "2.13.0", "torch>=2.10,<2.13"),
        ("1.1.0", "2.14.1", "torch>=2.10,<2.13"),
        ("1.1.0", "2.9.0", "torch>=2.10,<2.13"),
        ("1.2.0", "2.12.1", "torch>=2.14,<2.15"),
        ("1.2.0", "2.15.0", "torch>=2.14,<2.15"),
    ],
)
def test_unsupported_pair_names_the_versions_the_working_torch_and_the_fix(installed, aihwkit,
                                                                           torch, requirement):
    installed(aihwkit, torch)
    message = compat.compiled_tile_problem()
    assert message is not None
    assert f"aihwkit {aihwkit}'s compiled tile (InferenceRPUConfig)" in message
    assert f"torch {torch}" in message
    assert f"needs {requirement}" in message
    assert f"`pip install '{requirement}'`" in message
    assert "TorchInferenceRPUConfig instead" in message
    assert_one_sentence(message)


def test_message_a_user_on_torch_2_13_sees(installed):
    installed("1.1.0", "2.13.0")
    assert compat.compiled_tile_problem() == (
        "aihwkit 1.1.0's compiled tile (InferenceRPUConfig) does not work with torch 2.13.0 "
        "(aihwkit 1.1.0 needs torch>=2.10,<2.13): run `pip install 'torch>=2.10,<2.13'`, "
        "or use aihwkit's pure-torch tile TorchInferenceRPUConfig instead."
    )


@pytest.mark.parametrize("aihwkit", ["1.3.0", "0.9.2", "1.1.1"])
def test_unknown_aihwkit_release_names_it_and_the_known_pairs(installed, aihwkit):
    installed(aihwkit, "2.14.1")
    message = compat.compiled_tile_problem()
    assert message is not None
    assert f"aihwkit {aihwkit} (with torch 2.14.1)" in message
    assert "aihwkit 1.1.0 with torch>=2.10,<2.13" in message
    assert "aihwkit 1.2.0 with torch>=2.14,<2.15" in message
    assert "`pip install 'aihwkit==1.1.0' 'torch>=2.10,<2.13'` (Python 3.11)" in message
    assert "`pip install 'aihwkit==1.2.0' 'torch>=2.14,<2.15'` (Python 3.12)" in message
    assert "TorchInferenceRPUConfig instead" in message
    assert_one_sentence(message)


@pytest.mark.parametrize(
    "aihwkit,torch",
    [
        ("1.1.0", "2.10.0"),
        ("1.1.0", "2.11.0"),
        ("1.1.0", "2.12.1"),
        ("1.1.0", "2.12.1+cpu"),
        ("1.2.0", "2.14.0"),
        ("1.2.0", "2.14.1+cu128"),
    ],
)
def test_supported_pair_has_no_problem(installed, aihwkit, torch):
    installed(aihwkit, torch)
    assert compat.compiled_tile_problem() is None


@pytest.mark.parametrize(
    "torch,supported",
    [("2.13.0.dev20250601+cpu", False), ("2.13.0rc1", False), ("2.10.0a0", True)],
)
def test_prereleases_count_as_their_release(installed, torch, supported):
    """Previews of torch 2.13 already have 2.13's tensor layout: outside ``<2.13``."""
    installed("1.1.0", torch)
    assert (compat.compiled_tile_problem() is None) == supported


def test_extension_that_does_not_load_is_named_with_its_error_and_the_fix(installed):
    installed("1.1.0", "2.9.0", extension_error=UNDEFINED_SYMBOL)
    message = compat.compiled_tile_problem()
    assert message is not None
    assert "aihwkit 1.1.0's compiled extension (aihwkit.simulator.rpu_base)" in message
    assert "torch 2.9.0" in message and UNDEFINED_SYMBOL in message
    assert "`pip install 'torch>=2.10,<2.13'`" in message
    # aihwkit's rpu configs all import the extension: the pure-torch tile is no way out
    assert "TorchInferenceRPUConfig" not in message
    assert_one_sentence(message)


def test_extension_that_does_not_load_with_a_supported_torch_asks_for_a_reinstall(installed):
    installed("1.1.0", "2.12.1", extension_error="ImportError: libc10.so: cannot open")
    message = compat.compiled_tile_problem()
    assert message is not None and "ImportError: libc10.so: cannot open" in message
    assert "`pip install --force-reinstall 'aihwkit==1.1.0' 'torch>=2.10,<2.13'`" in message


@pytest.mark.parametrize("missing", ["aihwkit", "torch"])
def test_missing_package_is_named(installed, missing):
    installed(*(None if name == missing else version
                for name, version in (("aihwkit", "1.1.0"), ("torch", "2.12.1"))))
    message = compat.compiled_tile_problem()
    assert message is not None and f"{missing} is not installed" in message
    assert "pip install 'aihwkit==1.1.0' 'torch>=2.10,<2.13'" in message


def test_real_extension_lookup_reports_an_import_error(monkeypatch):
    def failing_import(name):
        raise ImportError(f"undefined symbol in {name}")

    monkeypatch.setattr(compat.importlib, "import_module", failing_import)
    compat._extension_error.cache_clear()
    try:
        assert compat._extension_error() == (
            "ImportError: undefined symbol in aihwkit.simulator.rpu_base"
        )
    finally:
        compat._extension_error.cache_clear()


@pytest.mark.parametrize("with_packaging", [True, False], ids=["packaging", "fallback"])
@pytest.mark.parametrize(
    "version,release",
    [
        ("2.12.1", (2, 12, 1)),
        ("2.12.1+cpu", (2, 12, 1)),
        ("2.13.0", (2, 13)),
        ("2.13.0.dev20250601", (2, 13)),
        ("2.10", (2, 10)),
        ("1.1.0", (1, 1)),
    ],
)
def test_release_numbers_with_and_without_packaging(monkeypatch, with_packaging, version,
                                                    release):
    if not with_packaging:
        monkeypatch.setitem(sys.modules, "packaging.version", None)  # import fails
    assert compat._release(version) == release


def test_torch_requirement_of_every_known_release():
    assert compat.torch_requirement("1.1.0") == "torch>=2.10,<2.13"
    assert compat.torch_requirement("1.2.0") == "torch>=2.14,<2.15"
    with pytest.raises(KeyError):
        compat.torch_requirement("1.3.0")


# ------------------------------------------------------------ check_compiled_tile
COMPILED_CONFIGS = [InferenceRPUConfig, SingleRPUConfig]
TORCH_CONFIGS = [TorchInferenceRPUConfig, TorchInferenceRPUConfigIRDropT]


@pytest.mark.parametrize("config", COMPILED_CONFIGS + TORCH_CONFIGS, ids=lambda c: c.__name__)
def test_uses_compiled_tile_tells_compiled_from_pure_torch_configs(config):
    assert compat.uses_compiled_tile(config()) == (config in COMPILED_CONFIGS)


@pytest.mark.parametrize("config", COMPILED_CONFIGS, ids=lambda c: c.__name__)
def test_check_refuses_a_compiled_tile_config_where_the_pair_is_unsupported(installed, config):
    installed("1.1.0", "2.13.0")
    with pytest.raises(RuntimeError) as error:
        compat.check_compiled_tile(config())
    assert str(error.value) == compat.compiled_tile_problem()


@pytest.mark.parametrize("config", COMPILED_CONFIGS, ids=lambda c: c.__name__)
def test_check_accepts_a_compiled_tile_config_where_the_pair_is_supported(installed, config):
    installed("1.1.0", "2.12.1")
    compat.check_compiled_tile(config())  # no error


@pytest.mark.parametrize("config", TORCH_CONFIGS, ids=lambda c: c.__name__)
def test_check_never_refuses_a_pure_torch_config(installed, config):
    installed("1.1.0", "2.13.0", extension_error=UNDEFINED_SYMBOL)
    assert compat.compiled_tile_problem() is not None
    compat.check_compiled_tile(config())  # no error
    compat.check_compiled_tile(None)


# -------------------------------------------- our entry points that make tiles
def _tiny_task() -> Task:
    model = nn.Sequential(nn.Linear(4, 2))
    return Task(name="tiny", model=model, evaluate=lambda m: {"score": 1.0}, metric="score")


ENTRY_POINTS = {
    "AnalogSlicedLinear": lambda config: AnalogSlicedLinear(4, 2, 2, rpu_config=config),
    "AnalogSlicedConv2d": lambda config: AnalogSlicedConv2d(1, 2, 3, 2, rpu_config=config),
    "convert_to_analog_sliced": lambda config: convert_to_analog_sliced(
        nn.Sequential(nn.Linear(4, 2)), config, n_slices=2),
    "make_rpu_config": lambda config: make_rpu_config(
        QuantizedSlicedConductanceConverter.from_table(seed_table()), base=config),
    "run_sweep": lambda config: run_sweep(_tiny_task(), tables=["seed"], times=[1.0],
                                          repeats=1, rpu_config=config, progress=False),
}


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_our_entry_points_refuse_the_compiled_tile_where_it_does_not_work(installed, entry):
    installed("1.1.0", "2.13.0")
    with pytest.raises(RuntimeError, match=r"pip install 'torch>=2\.10,<2\.13'"):
        ENTRY_POINTS[entry](InferenceRPUConfig())


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_our_entry_points_keep_working_with_pure_torch_tiles_where_it_does_not(installed,
                                                                              entry):
    installed("1.1.0", "2.13.0")
    result = ENTRY_POINTS[entry](TorchInferenceRPUConfig())
    assert result is not None


# ------------------------------------------------------------------ the warning
def test_warning_is_emitted_once_per_process(installed, monkeypatch):
    installed("1.1.0", "2.13.0")
    monkeypatch.setattr(compat, "_warned", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = compat.warn_if_compiled_tile_broken()
        second = compat.warn_if_compiled_tile_broken()
    assert first == second == compat.compiled_tile_problem()
    assert [str(w.message) for w in caught] == [first]
    assert caught[0].category is UserWarning


def test_no_warning_where_the_pair_is_supported(installed, monkeypatch):
    installed("1.2.0", "2.14.1")
    monkeypatch.setattr(compat, "_warned", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert compat.warn_if_compiled_tile_broken() is None
    assert caught == []


IMPORT_WITH_TORCH_2_13 = """
import importlib.metadata, json, warnings
real_version = importlib.metadata.version
fake = {"aihwkit": "1.1.0", "torch": "2.13.0"}
importlib.metadata.version = lambda name: fake.get(name) or real_version(name)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import aihwkit_slicing
    aihwkit_slicing.integration.compat.warn_if_compiled_tile_broken()
print(json.dumps([[w.category.__name__, str(w.message), w.filename] for w in caught
                  if "compiled" in str(w.message)]))
"""


def test_importing_the_package_with_an_unsupported_torch_warns_once():
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_WITH_TORCH_2_13], cwd=ROOT, capture_output=True,
        text=True, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    caught = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(caught) == 1, caught
    category, message, filename = caught[0]
    assert category == "UserWarning"
    assert message.startswith("aihwkit 1.1.0's compiled tile (InferenceRPUConfig) does not "
                              "work with torch 2.13.0")
    assert Path(filename).name == "__init__.py"


# ------------------------------------------------- the tests' compiled-tile gate
def test_compiled_tile_tests_skip_with_compats_message_where_the_pair_is_unsupported(
    installed,
):
    from aihwkit_helpers import require_compiled_tile

    installed("1.1.0", "2.13.0")
    with pytest.raises(pytest.skip.Exception) as skipped:
        require_compiled_tile()
    assert skipped.value.msg == compat.compiled_tile_problem()


def test_compiled_tile_tests_run_where_the_pair_is_supported(installed):
    """No skip and no probe: a compiled tile that fails here fails the test."""
    from aihwkit_helpers import require_compiled_tile

    installed("1.1.0", "2.12.1")
    assert require_compiled_tile() is None
