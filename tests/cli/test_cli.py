"""The aihwkit-slicing command: the main job, the tables listing and bad input."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from aihwkit_slicing import builtin_tables
from aihwkit_slicing.cli.main import main
from aihwkit_slicing.experiments.models.minilm import minilm_available
from aihwkit_slicing.experiments.results import read_records


def run_cli(*args):
    """The command in a fresh interpreter, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "aihwkit_slicing.cli.main", *args],
                          capture_output=True, text=True, timeout=600)


def run_in_process(args, capsys):
    """Exit code and stderr of ``main(args)``, argparse's own exits included."""
    try:
        code = main(args)
    except SystemExit as stop:
        code = stop.code
    return code, capsys.readouterr().err


def test_tables_lists_the_builtin_tables(capsys):
    assert main(["tables"]) == 0
    out = capsys.readouterr().out
    for name in ("seed", "4x4lvl-base", "aihwkit-1pair"):
        assert name in out


def test_tables_name_shows_levels_and_encodings(capsys):
    assert main(["tables", "seed"]) == 0
    out = capsys.readouterr().out
    assert "7 levels" in out and "f_lst = [1, 2]" in out and "gm1" in out


def test_small_sweep_writes_csv_and_png(tmp_path, capsys):
    out_dir = tmp_path / "out"
    code = main(["sweep", "--tables", "aihwkit-1pair,seed", "--times", "1,86400",
                 "--repeats", "1", "--out", str(out_dir), "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "seed" in printed and "1 day" in printed
    # tidy: per table and time, the accuracy and the two weight errors
    assert (out_dir / "results.csv").read_text().count("\n") == 1 + 2 * 2 * 3
    assert (out_dir / "accuracy_vs_time.png").stat().st_size > 1000
    assert (out_dir / "sweep.json").exists()


@pytest.mark.parametrize("args, message", [
    (["sweep", "--tables", "nope"], "unknown table 'nope'"),
    (["sweep", "--model", "nope"], "unknown model 'nope'"),
    (["sweep", "--times", "-5"], "times must be finite numbers of seconds >= 0, got '-5'"),
    (["sweep", "--times", "1,soon"], "times must be numbers of seconds, got 'soon'"),
    (["sweep", "--repeats", "0"], "--repeats must be >= 1"),
    (["sweep", "--repeats", "two"], "--repeats must be an integer"),
    (["sweep", "--noise-model", "nope"], "unknown noise model 'nope'"),
    (["sweep", "--out", "/proc/cannot/write"], "cannot write to output folder"),
    (["tables", "nope"], "unknown table 'nope'"),
    (["sweep", "--bogus"], "unrecognized arguments: --bogus"),
    ([], "required"),
])
def test_bad_input_gives_one_line_and_exit_code_2(args, message, capsys):
    code, err = run_in_process(args, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert message in lines[0]
    assert "Traceback" not in err


def test_bad_input_from_the_console_has_no_traceback():
    done = run_cli("sweep", "--times", "1,-1")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "aihwkit-slicing: error: times must be finite numbers of seconds >= 0, got '-1'"]


# ===================================================== own tables, resume, Dask, errors
def test_a_table_exported_as_json_is_swept_from_its_file(tmp_path, capsys):
    assert main(["tables", "2x4lvl-base", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["format"] == "aihwkit-slicing-table" and data["version"] == 1
    data["name"] = None  # the file name names it then
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(data))
    code = main(["sweep", "--table-file", str(path), "--tables", "seed", "--times", "1",
                 "--repeats", "1", "--out", str(tmp_path / "out"), "--quiet"])
    assert code == 0
    records = read_records(tmp_path / "out" / "results.csv")
    assert {r["table"] for r in records} == {"seed", "mine"}
    assert {r["table_hash"] for r in records if r["table"] == "mine"} == {
        builtin_tables()["2x4lvl-base"].programmed_hash()}


def test_layer_tables_from_the_command_line(tmp_path, capsys):
    code = main(["sweep", "--layer-tables", "features=seed,*=1x4lvl", "--times", "1",
                 "--repeats", "1", "--out", str(tmp_path), "--quiet"])
    assert code == 0
    records = read_records(tmp_path / "results.csv")
    assert {r["table"] for r in records} == {"features=seed,*=1x4lvl"}
    assert 2.0 < records[0]["n_devices"] < 4.0


@pytest.mark.parametrize("content, message", [
    ("{not json", "not JSON"),
    ('{"f_lst": [1]}', "needs the key(s) g_lst"),
    ('{"f_lst": [1], "g_lst": [[0, 25], [25, -1]]}', "g_lst[1][1]"),
    ('{"format": "other", "f_lst": [1], "g_lst": [[0, 25], [25, 0]]}', "\"format\" must be"),
    ('{"version": 7, "f_lst": [1], "g_lst": [[0, 25], [25, 0]]}', "unsupported table version 7"),
])
def test_a_bad_table_file_gives_one_line_naming_the_file(tmp_path, capsys, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    code, err = run_in_process(["sweep", "--table-file", str(path), "--out", str(tmp_path)],
                               capsys)
    assert code == 2
    (line,) = err.strip().splitlines()
    assert str(path) in line and message in line


def test_an_unreachable_scheduler_gives_one_line(tmp_path, capsys):
    code, err = run_in_process(["sweep", "--scheduler", "tcp://127.0.0.1:9", "--tables", "seed",
                                "--out", str(tmp_path)], capsys)
    assert code == 2
    (line,) = err.strip().splitlines()
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in line


@pytest.mark.parametrize("args, message", [
    (["sweep", "--tables", "seed,seed"], "names the table 'seed' twice"),
    (["sweep", "--layer-tables", "features"], "takes 'PATTERN=TABLE,...'"),
    (["sweep", "--noise-aware", "86400", "--scale", "max"], "--noise-aware needs --scale mse"),
    (["sweep", "--device", "tpu"], "--device must be cpu, cuda or cuda:N"),
    (["sweep", "--workers", "0"], "--workers must be >= 1"),
    (["tables", "aihwkit-1pair", "--json"], "has no JSON form"),
])
def test_more_bad_input_in_shell_words(args, message, capsys, tmp_path):
    code, err = run_in_process(args + (["--out", str(tmp_path)] if args[0] == "sweep" else []),
                               capsys)
    assert code == 2
    (line,) = err.strip().splitlines()
    assert message in line and "mapping" not in line


SWEEP = ["sweep", "--tables", "aihwkit-1pair,seed,1x4lvl", "--times", "1,3600",
         "--repeats", "2", "--quiet"]


def test_a_sweep_killed_midway_resumes_to_the_file_of_an_uninterrupted_one(tmp_path):
    reference = tmp_path / "reference"
    assert main(SWEEP + ["--out", str(reference)]) == 0
    expected = read_records(reference / "results.csv")
    per_unit = len(expected) // 6
    killed = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "aihwkit_slicing.cli.main", *SWEEP, "--out",
                                str(killed)], env=dict(os.environ, OMP_NUM_THREADS="1"))
    results = killed / "results.csv"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if results.exists() and results.read_text().count("\n") >= 1 + 2 * per_unit:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    partial = read_records(results)
    assert 2 * per_unit <= len(partial) < len(expected), "the kill came too late to matter"
    assert main(SWEEP + ["--out", str(killed), "--resume"]) == 0
    resumed = read_records(results)
    assert len(resumed) == len(expected)
    assert results.read_text() == (reference / "results.csv").read_text()


def test_resume_into_a_folder_of_another_sweep_is_refused(tmp_path, capsys):
    assert main(["sweep", "--tables", "seed", "--times", "1", "--repeats", "1", "--quiet",
                 "--out", str(tmp_path)]) == 0
    code, err = run_in_process(["sweep", "--tables", "seed", "--times", "1", "--repeats", "2",
                                "--out", str(tmp_path), "--resume"], capsys)
    assert code == 2 and "holds a sweep with other repeats" in err


@pytest.mark.skipif(not minilm_available(), reason="needs the extra 'minilm'")
def test_quiet_minilm_sweep_prints_no_progress_of_its_own():
    done = run_cli("sweep", "--model", "minilm", "--tables", "aihwkit-1pair", "--times", "1",
                   "--repeats", "1", "--quiet", "--out", "/tmp/aihwkit-slicing-quiet-test")
    assert done.returncode == 0, done.stderr
    assert "Loading" not in done.stderr and "%|" not in done.stderr


def test_a_closed_pipe_ends_the_listing_quietly():
    command = (f"{sys.executable} -m aihwkit_slicing.cli.main tables 4x4lvl-base --json "
               "| head -n 2")
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True,
                          timeout=300)
    assert done.stdout.count("\n") == 2
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr


def test_resume_without_a_sweep_description_is_a_one_line_error(tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "results.csv").write_text("earlier\n")
    done = run_cli("sweep", "--tables", "seed", "--times", "1", "--repeats", "1",
                   "--out", str(out_dir), "--resume", "--quiet")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "sweep.json" in done.stderr
    assert (out_dir / "results.csv").read_text() == "earlier\n"


def test_replacing_earlier_results_is_a_one_line_warning(tmp_path, capsys):
    out_dir = tmp_path / "out"
    args = ["sweep", "--tables", "seed", "--times", "1", "--repeats", "1", "--out",
            str(out_dir), "--quiet"]
    assert main(args) == 0
    capsys.readouterr()
    done = run_cli(*args)
    assert done.returncode == 0
    warning = [line for line in done.stderr.splitlines() if "replacing" in line]
    assert warning == [f"aihwkit-slicing: warning: replacing {out_dir / 'results.csv'} "
                       "(3 records of an earlier sweep); resume=True (--resume) continues "
                       "a sweep instead"]
