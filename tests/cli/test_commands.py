"""The commands around a sweep: your own model (--model MODULE:FACTORY or FILE.py:FACTORY),
``layers``, ``tables FILE.json``, one registry of table names, and ``plot``."""

import json
import subprocess
import sys
import textwrap

import pytest

from aihwkit_slicing.cli.main import main
from aihwkit_slicing.experiments.results import read_records
from aihwkit_slicing.design.candidates import table_names, tuned_table
from aihwkit_slicing.integration.catalog import NAMED_TABLES

#: A module of the user's with Task factories, good and bad.
TASKS_PY = textwrap.dedent('''
    import torch
    from aihwkit_slicing.experiments.tasks import Task


    def make_task():
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(8, 12), torch.nn.Tanh(),
                                    torch.nn.Linear(12, 3))
        inputs = torch.randn(32, 8)
        with torch.no_grad():
            target = model(inputs)

        def evaluate(net):
            with torch.no_grad():
                out = net(inputs)
            return {"cosine": float(torch.nn.functional.cosine_similarity(out, target).mean()),
                    "mse": float((out - target).square().mean())}

        return Task("tiny", model, evaluate, "cosine", lower_is_better=("mse",))


    def not_a_task():
        return {"model": None}


    def broken():
        raise RuntimeError("the weights file is missing")


    NOT_CALLABLE = 3
''')


@pytest.fixture
def tasks_file(tmp_path):
    path = tmp_path / "my_tasks.py"
    path.write_text(TASKS_PY)
    return path


def run_in_process(args, capsys):
    """Exit code, stdout and stderr of ``main(args)``, argparse's own exits included."""
    try:
        code = main(args)
    except SystemExit as stop:
        code = stop.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ========================================================== your own model
def test_a_sweep_of_a_task_factory_in_a_file(tasks_file, tmp_path, capsys):
    code, out, err = run_in_process(
        ["sweep", "--model", f"{tasks_file}:make_task", "--tables", "seed", "--times", "1",
         "--repeats", "1", "--out", str(tmp_path / "out"), "--quiet"], capsys)
    assert code == 0, err
    records = read_records(tmp_path / "out" / "results.csv")
    assert {r["task"] for r in records} == {"tiny"}
    assert {r["metric"] for r in records} == {"cosine", "mse", "weight_rms_error",
                                              "weight_max_error"}
    manifest = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert manifest["lower_is_better"] == ["weight_rms_error", "weight_max_error", "mse"]


def test_a_task_factory_of_a_package_in_the_working_folder(tmp_path):
    package = tmp_path / "mylab"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "tasks.py").write_text(TASKS_PY)
    done = subprocess.run([sys.executable, "-m", "aihwkit_slicing.cli.main", "layers",
                           "--model", "mylab.tasks:make_task"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "tiny: 2 layers" in done.stdout and "0     Linear  12 x 8" in done.stdout


def test_allocate_takes_a_task_factory(tasks_file, tmp_path, capsys):
    out = tmp_path / "assignment.json"
    code, printed, err = run_in_process(
        ["allocate", "--model", f"{tasks_file}:make_task", "--budget", "3", "--candidates",
         "1x4lvl,seed", "--times", "86400", "--repeats", "1", "--out", str(out), "--quiet"],
        capsys)
    assert code == 0, err
    assert {layer["name"] for layer in json.loads(out.read_text())["layers"]} == {"0", "2"}
    assert f"--model {tasks_file}:make_task" in printed


@pytest.mark.parametrize("model, message", [
    ("./my_model.pt", "unknown model './my_model.pt'; known models: digits, minilm, or a "
                      "Task factory of your own as MODULE:FACTORY or FILE.py:FACTORY; a saved "
                      "network needs a factory that loads it"),
    ("{file}:nothing_here", "--model {file}:nothing_here: {file} has no attribute "
                            "'nothing_here'"),
    ("{file}:NOT_CALLABLE", "NOT_CALLABLE is a int, not a function returning a Task"),
    ("{file}:not_a_task", "not_a_task() must return an aihwkit_slicing.experiments.tasks.Task, "
                          "got dict"),
    ("{file}:broken", "broken() raised RuntimeError: the weights file is missing"),
    ("{folder}/absent.py:make_task", "--model {folder}/absent.py:make_task: no file "
                                     "{folder}/absent.py"),
    ("no_such_package_xyz.tasks:make", "--model no_such_package_xyz.tasks:make: no module "
                                       "named 'no_such_package_xyz'"),
    ("{folder}/syntax.py:make", "running syntax.py raised SyntaxError"),
])
@pytest.mark.parametrize("command", ["layers", "sweep", "allocate"])
def test_a_task_source_that_cannot_be_loaded_is_one_line(command, model, message, tasks_file,
                                                         tmp_path, capsys):
    (tmp_path / "syntax.py").write_text("def make(:\n")
    model = model.format(file=tasks_file, folder=tmp_path)
    message = message.format(file=tasks_file, folder=tmp_path)
    extra = {"layers": [], "sweep": ["--out", str(tmp_path / "out")],
             "allocate": ["--budget", "4", "--out", str(tmp_path / "a.json")]}[command]
    code, _, err = run_in_process([command, "--model", model] + extra, capsys)
    assert code == 2
    (line,) = err.strip().splitlines()
    assert line.startswith("aihwkit-slicing: error: ") and message in line, line


# ================================================================== layers
def test_layers_lists_what_a_sweep_makes_analog(capsys):
    code, out, _ = run_in_process(["layers", "--model", "digits"], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("digits: 4 layers a sweep makes analog, 38160 weights")
    assert lines[2].split() == ["features.0", "Conv2d", "16", "x", "1", "x", "3", "x", "3",
                                "144", "0.4", "%"]
    assert lines[4].split()[:3] == ["classifier.1", "Linear", "64"]


def test_layers_as_json_gives_the_names_assignments_use(capsys):
    from aihwkit_slicing.design.assignment import TableAssignment
    from aihwkit_slicing.experiments.tasks import digits_task

    code, out, _ = run_in_process(["layers", "--json"], capsys)
    assert code == 0
    layers = json.loads(out)
    assert [layer["name"] for layer in layers] == list(
        TableAssignment({"*": "seed"}).layer_tables(digits_task().model))
    assert layers[2] == {"name": "classifier.1", "type": "Linear", "shape": [64, 512],
                         "weights": 32768}


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
