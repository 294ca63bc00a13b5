"""The aihwkit-slicing command: the main job, the tables listing and bad input."""

import subprocess
import sys

import pytest

from aihwkit_slicing.cli import main


def run_cli(*args):
    """The command in a fresh interpreter, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "aihwkit_slicing.cli", *args],
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
