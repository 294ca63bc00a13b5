"""Tasks of your own: loaded from 'module:factory' or 'file.py:factory', in this process
and on Dask workers, which check that they built the same network."""

import sys
import textwrap

import pytest

from aihwkit_slicing.experiments.sweep import run_sweep
from aihwkit_slicing.experiments.tasks import Task, TaskLoadError, load_task

FACTORIES = textwrap.dedent('''
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
            return {"cosine": float(torch.nn.functional.cosine_similarity(out, target).mean())}

        return Task("tiny", model, evaluate, "cosine")


    def random_weights():
        task = make_task()
        torch.seed()  # a fresh seed: every process draws other weights
        torch.nn.init.normal_(task.model[0].weight)
        return task
''')


@pytest.fixture
def factories(tmp_path):
    path = tmp_path / "factories.py"
    path.write_text(FACTORIES)
    return path


def test_a_factory_in_a_file_is_loaded_with_an_absolute_source(factories, monkeypatch):
    monkeypatch.chdir(factories.parent)
    task = load_task("factories.py:make_task")
    assert isinstance(task, Task) and task.name == "tiny"
    assert task.source == f"{factories}:make_task"
    assert load_task(task.source).source == task.source


def test_a_registered_task_knows_its_source():
    assert load_task("digits").source == "digits"


def test_a_factory_of_a_module_is_loaded_by_its_dotted_name(factories, monkeypatch):
    monkeypatch.syspath_prepend(str(factories.parent))
    monkeypatch.delitem(sys.modules, "factories", raising=False)
    task = load_task("factories:make_task")
    assert task.name == "tiny" and task.source == "factories:make_task"


@pytest.mark.parametrize("source, reason", [
    ("{file}:absent", "{file} has no attribute 'absent'"),
    ("{file}:Task", "Task() raised TypeError: "),
    ("{folder}/none.py:f", "no file {folder}/none.py"),
])
def test_what_cannot_be_loaded_is_named(source, reason, factories):
    source = source.format(file=factories, folder=factories.parent)
    with pytest.raises(TaskLoadError) as error:
        load_task(source)
    assert error.value.reason.startswith(reason.format(file=factories,
                                                       folder=factories.parent))
    assert "\n" not in str(error.value)


def test_the_main_metric_must_be_higher_is_better():
    import torch

    with pytest.raises(ValueError, match="its main metric 'loss' must be higher-is-better"):
        Task("t", torch.nn.Linear(2, 2), lambda net: {"loss": 0.0}, "loss",
             lower_is_better=("loss",))


def test_dask_workers_build_a_file_factory_and_refuse_other_weights(factories):
    from distributed import Client

    from aihwkit_slicing.experiments.distributed import start_local_cluster

    kwargs = dict(tables=["seed"], times=[1.0, 86400.0], repeats=2, progress=False,
                  threads=1)
    in_process = run_sweep(f"{factories}:make_task", **kwargs)
    with start_local_cluster(1) as cluster, Client(cluster) as client:
        on_workers = run_sweep(f"{factories}:make_task", client=client, **kwargs)
        assert on_workers.records == in_process.records
        with pytest.raises(ValueError, match="a Dask worker built task .*random_weights' "
                           "with other weights"):
            run_sweep(f"{factories}:random_weights", client=client, **kwargs)


def test_a_task_built_by_hand_is_refused_by_dask_workers_before_they_start(factories):
    task = load_task(f"{factories}:make_task")
    task.source = None
    with pytest.raises(ValueError, match="task 'tiny' was built by hand: Dask workers build "
                       "a task from its source"):
        run_sweep(task, tables=["seed"], times=[1.0], repeats=1, workers=1, progress=False)
