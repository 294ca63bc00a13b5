"""The benchmark scripts run (small sizes; the real runs are in benchmarks/)."""

import importlib.util
import re
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_convert_runs_and_prints_ratios():
    """In its own interpreter: the benchmark pins glibc's mmap threshold for its memory
    figures, a setting of the whole process."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, str(BENCHMARKS / "bench_convert.py"), "--size",
                           "128", "--repeats", "1"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "memory-copy bound" in done.stdout and "CustomPair vs ours" in done.stdout
    assert done.stdout.count("(target: at most") == 4  # two ratios per table
    assert "4x4lvl-base, mse per channel:" in done.stdout.split(
        "peak extra memory of our round trip")[-1]


def test_bench_fidelity_quick_writes_csv_plot_and_wpo_comparison(tmp_path, capsys):
    assert load("bench_fidelity").main(["--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "optimizer vs aihwkit WPO" in out and "optimizer best" in out
    assert (tmp_path / "fidelity.csv").read_text().count("\n") > 9
    assert (tmp_path / "fidelity_digits.png").stat().st_size > 1000
    assert '"wpo"' in (tmp_path / "optimizer_vs_wpo.json").read_text()


def test_quickstart_example_runs(capsys):
    import runpy

    runpy.run_path(str(BENCHMARKS.parent / "examples" / "quickstart.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert out.count("accuracy") >= 12 and "table seed" in out


def test_bench_tables_quick_checks_against_the_reference_and_prints_ratios(capsys):
    assert load("bench_tables").main(["--quick", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "reference/new" in out and "bit_sliced(4, 4)" in out


def test_bench_scale_quick_prints_ratios_against_aihwkit(capsys):
    assert load("bench_scale").main(["--quick", "--threads", "1", "--skip", "resnet,memory"]) == 0
    out = capsys.readouterr().out
    assert "x the sort" in out and "aihwkit NPair F=[1,1,1,1]" in out
    assert out.count("program") >= 2 and "(1.00x)" in out
    assert "ours program vs aihwkit NPair" in out and "(target: at most 1.00x)" in out


def test_bench_sweep_quick_compares_engines_and_records(capsys):
    assert load("bench_sweep").main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "Dask, --workers 2" in out and "x in-process" in out
    assert "records equal the 1-thread run" in out and "DIFFER" not in out


def test_bench_allocation_quick_compares_against_uniform_tables_and_npair(tmp_path, capsys):
    import json

    assert load("bench_allocation").main(["--quick", "--quiet", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "aihwkit NPair F=[1,1,1,1], per column" in out and "best uniform table" in out
    assert out.count("allocation, budget 6 vs") == 5 and "loss ratio" in out
    assert "by layer type" in out and "evaluation sweeps" in out
    for budget in (6, 4):
        data = json.loads((tmp_path / f"allocation_digits_{budget}.json").read_text())
        assert data["devices_per_weight"] <= budget
    assert (tmp_path / "allocation.csv").read_text().count("\n") > 12 * 3


def test_bench_noise_models_quick_prints_ratios_against_pcm(capsys):
    assert load("bench_noise_models").main(["--quick", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert out.count("measured") >= 11 and "MiniLM-sized network" in out
    # 8 matrix rows (2 tables x 4) and 2 network rows, each with its ratio
    assert len(re.findall(r"measured +\d+\.\d ms \(\d+\.\d\dx\)", out)) == 10


def test_the_bundled_device_models_are_the_fits_their_script_computes(tmp_path):
    import json
    import runpy

    module = runpy.run_path(str(BENCHMARKS.parent / "examples" / "device_models.py"))
    assert module["main"](["--check"]) == 0
    # the check sees one number off in the 9th digit
    model = module["pcm_hermes"]()
    data = model.to_dict()
    data["nu_std"][3] *= 1 + 1e-9
    path = tmp_path / "pcm.json"
    path.write_text(json.dumps(data))
    assert not module["same_numbers"](path, model)
    path.write_text(module["text_of"](model))
    assert module["same_numbers"](path, model)


def test_measured_devices_example_ranks_tables_under_both_noise_models(capsys):
    import runpy

    module = runpy.run_path(str(BENCHMARKS.parent / "examples" / "measured_devices.py"))
    assert module["main"](["--quick"]) == 0
    out = capsys.readouterr().out
    assert out.count("Kendall's tau-b") == 2
    assert "pcm-hermes-2023: digits" in out and "reram-wan-2022: digits" in out
