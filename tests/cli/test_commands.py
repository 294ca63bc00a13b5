"""The commands around a sweep: ``tables FILE.json``, one registry of table names, and
``plot``."""

import json

import pytest

from aihwkit_slicing.cli.main import main
from aihwkit_slicing.design.candidates import table_names, tuned_table
from aihwkit_slicing.experiments.results import read_records
from aihwkit_slicing.integration.catalog import NAMED_TABLES


def run_in_process(args, capsys):
    """Exit code, stdout and stderr of ``main(args)``, argparse's own exits included."""
    try:
        code = main(args)
    except SystemExit as stop:
        code = stop.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ============================================================ table files
def test_tables_checks_and_shows_a_table_file(tmp_path, capsys):
    from aihwkit_slicing import from_device_levels, save_table

    path = tmp_path / "mine.json"
    save_table(from_device_levels([1, 3], [0.0, 6.0, 20.0], name="mine"), path)
    code, out, _ = run_in_process(["tables", str(path)], capsys)
    assert code == 0
    assert out.startswith(f"{path}: a valid table, named 'mine'")
    assert "table mine: 2 pair(s), 4 devices per weight" in out
    code, out, _ = run_in_process(["tables", str(path), "--json"], capsys)
    assert code == 0 and json.loads(out) == json.loads(path.read_text())


@pytest.mark.parametrize("content, message", [
    ("{not json", "not JSON"),
    ('{"f_lst": [1], "g_lst": [[0, 25], [25, -1]]}', "g_lst[1][1]"),
])
def test_tables_names_what_is_wrong_with_a_table_file(content, message, tmp_path, capsys):
    path = tmp_path / "bad.json"
    path.write_text(content)
    code, _, err = run_in_process(["tables", str(path)], capsys)
    assert code == 2
    (line,) = err.strip().splitlines()
    assert str(path) in line and message in line


def test_an_unknown_table_name_says_a_file_would_do(capsys):
    code, _, err = run_in_process(["tables", "nope"], capsys)
    assert code == 2 and "or give a table file (FILE.json)" in err


# ===================================================== one registry of names
def test_tables_lists_every_name_sweep_and_allocate_accept(capsys):
    code, out, _ = run_in_process(["tables"], capsys)
    assert code == 0
    listed = {line.split()[0] for line in out.splitlines()
              if line.startswith("  ") and not line.strip().startswith("name")}
    baselines = out.splitlines()[-1].split(": ")[1].split(", ")
    assert sorted(listed | set(baselines)) == sorted(table_names())
    assert {"3x17lvl-binary", "3x17lvl-binary-tuned", "1x33lvl", "seed"} <= listed


def test_sweep_takes_allocation_candidates_by_name(tmp_path, capsys):
    """The README's best uniform tables are allocation candidates: sweep takes them."""
    code, _, err = run_in_process(["sweep", "--tables", "3x17lvl-binary", "--layer-tables",
                                   "features=4x5lvl-binary,*=3x17lvl-binary", "--times", "1",
                                   "--repeats", "1", "--out", str(tmp_path), "--quiet"], capsys)
    assert code == 0, err
    records = read_records(tmp_path / "results.csv")
    uniform = [r for r in records if r["table"] == "3x17lvl-binary"]
    assert {r["table_hash"] for r in uniform} == {
        NAMED_TABLES["3x17lvl-binary"].programmed_hash()}
    assert {r["n_devices"] for r in uniform} == {6.0}
    mixed = {r["n_devices"] for r in records if r["table"].startswith("features=")}
    assert len(mixed) == 1 and 6.0 < mixed.pop() < 8.0


def test_sweep_tunes_a_tuned_default_candidate_for_its_noise_model(tmp_path, capsys):
    code, _, err = run_in_process(["sweep", "--tables", "2x33lvl-binary-tuned",
                                   "--noise-model", "hermes", "--times", "1", "--repeats", "1",
                                   "--out", str(tmp_path), "--quiet"], capsys)
    assert code == 0, err
    tuned = tuned_table(2, "hermes", levels_per_device=33, significance="binary")
    assert {r["table_hash"] for r in read_records(tmp_path / "results.csv")} == {
        tuned.programmed_hash()}


# ==================================================================== plot
@pytest.fixture(scope="module")
def results_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sweep")
    assert main(["sweep", "--tables", "aihwkit-1pair,seed", "--times", "1,86400,31536000",
                 "--repeats", "2", "--out", str(folder), "--quiet"]) == 0
    return folder


def test_plot_redraws_any_metric_of_a_results_folder(results_folder, tmp_path, capsys):
    out = tmp_path / "rms.png"
    code, printed, err = run_in_process(["plot", str(results_folder), "--metric",
                                         "weight_rms_error", "--out", str(out)], capsys)
    assert code == 0, err
    assert printed.startswith("digits: weight_rms_error (lower is better), mean ± std over "
                              "2 repeats")
    assert out.stat().st_size > 10_000
    assert printed.strip().endswith(f"wrote {out}")


def test_plot_defaults_to_the_main_metric_in_the_folder(results_folder, capsys):
    (results_folder / "accuracy_vs_time.png").unlink()
    code, printed, _ = run_in_process(["plot", str(results_folder)], capsys)
    assert code == 0
    assert printed.startswith("digits: accuracy (higher is better, floating point 0.9833)")
    assert (results_folder / "accuracy_vs_time.png").exists()


@pytest.mark.parametrize("args, message", [
    (["--metric", "loss"], "--metric loss: no records of the metric 'loss'; the records hold "
                           "accuracy, weight_rms_error, weight_max_error"),
    (["--out", "/no/such/folder/x.png"], "--out must be a file in an existing folder"),
    (["--out", "{folder}/plot.jpeg"], "the suffix must be one of .png, .pdf, .svg"),
])
def test_plot_names_bad_options(results_folder, args, message, capsys):
    args = [a.format(folder=results_folder) for a in args]
    code, _, err = run_in_process(["plot", str(results_folder)] + args, capsys)
    assert code == 2
    (line,) = err.strip().splitlines()
    assert message in line


def test_plot_of_a_folder_without_a_sweep_is_one_line(tmp_path, capsys):
    code, _, err = run_in_process(["plot", str(tmp_path)], capsys)
    assert code == 2
    assert err.strip() == (f"aihwkit-slicing: error: {tmp_path} holds no sweep.json (a "
                           "sweep's --out folder has results.csv and sweep.json)")
