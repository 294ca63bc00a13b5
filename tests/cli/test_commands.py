"""The commands around a sweep: ``tables FILE.json`` and one registry of table names."""

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
