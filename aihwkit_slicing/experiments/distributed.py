"""Sweeps on a Dask cluster: every unit (a setting and a repeat) is one task.

:func:`run_units` submits the units of a
:class:`~aihwkit_slicing.experiments.sweep_plan.SweepPlan` to a
``dask.distributed.Client``, given or started here as a local cluster of worker
processes, and hands each finished unit's records back in the calling process (which
alone writes the results file, so every record lands there exactly once).

* Workers build the task from its source (a registered name, ``"package.module:factory"``
  or ``"path/to/file.py:factory"``, see :func:`aihwkit_slicing.experiments.tasks.load_task`;
  once per worker process) instead of receiving the network through the scheduler, and
  refuse to run a unit if the network they built has other weights than the calling
  process's (the plan's ``model_hash``): workers must find the same code and files.
* A unit whose worker dies is run again elsewhere (``retries``).
* Records do not depend on which worker ran a unit or when: each unit seeds itself
  (:func:`aihwkit_slicing.experiments.sweep_plan.stable_seed`).
* Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which also freezes
  glibc's mmap threshold at 128 KiB: every large tensor a unit allocates is then a fresh
  ``mmap`` whose pages are faulted in and zeroed, and a MiniLM unit ran 3x slower on a
  worker than in a plain process. Each worker process restores glibc's defaults once
  (:func:`restore_malloc_thresholds`; tensors up to 32 MiB reuse freed heap memory).

Dask is optional (``pip install 'aihwkit-slicing[dask]'``); a sweep without
``client=``/``workers=`` never imports it.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

#: How often a unit is run again after its worker died.
RETRIES = 2
#: Seconds to wait for a scheduler given by address.
CONNECT_TIMEOUT = 10

_TASKS: Dict[str, Any] = {}
_MALLOC_TUNED = False

#: glibc's ``mallopt`` parameters and the values its dynamic thresholds reach on 64-bit
#: Linux (``DEFAULT_MMAP_THRESHOLD_MAX`` = 32 MiB; trimming at twice that).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024


def mallopt(parameter: int, value: int) -> bool:
    """glibc's ``mallopt(parameter, value)`` for this process; False where there is no
    glibc (the call then does nothing)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        function = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    return bool(function(parameter, value))


def restore_malloc_thresholds() -> bool:
    """Set glibc's mmap and trim thresholds to the values its dynamic rule reaches.

    Returns False where there is no glibc (the call then does nothing).
    """
    return mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) and mallopt(
        M_TRIM_THRESHOLD, 2 * MMAP_THRESHOLD_BYTES)


def connect(address: str, timeout: float = CONNECT_TIMEOUT) -> Any:
    """A client of the scheduler at ``address`` (``tcp://HOST:PORT``).

    Raises:
        ConnectionError: one sentence naming the address, if it cannot be reached.
    """
    from distributed import Client

    try:
        return Client(address, timeout=timeout)
    except (OSError, TimeoutError) as error:
        raise ConnectionError(f"cannot reach the Dask scheduler at {address}: "
                              f"{error.__class__.__name__}") from None


class OtherNetworkError(ValueError):
    """A worker built a network with other weights than the sweep's."""


def worker_task(source: str, expected_hash: str) -> Any:
    """The task ``source`` names, built once per worker process.

    Raises:
        OtherNetworkError: if its network's weights are not those the sweep was
            planned with (another version of the code or the weights file on this
            worker, or a factory that draws its weights at random).
    """
    from aihwkit_slicing.experiments.tasks import load_task
    from aihwkit_slicing.integration.setting import model_hash

    if source not in _TASKS:
        task = load_task(source)
        _TASKS[source] = (task, model_hash(task.model))
    task, built = _TASKS[source]
    if built != expected_hash:
        raise OtherNetworkError(
            f"a Dask worker built task {source!r} with other weights (model hash {built}, "
            f"the sweep's {expected_hash}): workers must load the same code and weights "
            "as the calling process, and a factory must not draw its weights at random")
    return task


def task_source(plan: Any) -> Optional[str]:
    """How a worker builds ``plan``'s task: its source, else its name if registered."""
    from aihwkit_slicing.experiments.tasks import TASKS

    if plan.task_source is not None:
        return plan.task_source
    return plan.task if plan.task in TASKS else None


def _run_unit_on_worker(plan: Any, setting: Any, repeat: int, threads: int
                        ) -> List[Dict[str, Any]]:
    import torch

    from aihwkit_slicing.experiments.sweep_plan import run_unit

    global _MALLOC_TUNED
    if not _MALLOC_TUNED:
        restore_malloc_thresholds()
        _MALLOC_TUNED = True
    torch.set_num_threads(threads)
    return run_unit(worker_task(task_source(plan), plan.model_hash), plan, setting, repeat)


def start_local_cluster(workers: int) -> Any:
    """A local Dask cluster of ``workers`` processes, one thread each, no dashboard.

    The scheduler's HTTP server listens on a free port rather than 8787, so that two
    sweeps on one machine do not contend for it (the second warned and moved). Dask's
    own log lines stay quiet: a unit that fails raises its error in the calling process
    (where the command line prints it as one line), which Dask's workers also logged
    with a traceback, once per retry.
    """
    import logging

    from distributed import LocalCluster

    return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                        dashboard_address=None, silence_logs=logging.CRITICAL,
                        scheduler_kwargs={"dashboard": False, "dashboard_address": ":0"})


def run_units(plan: Any, units: Sequence[Tuple[Any, int]],
              finished: Callable[[List[Dict[str, Any]]], None], client: Any = None,
              workers: Optional[int] = None, threads: int = 1) -> None:
    """Run ``units`` of ``plan`` on Dask; call ``finished(records)`` for each one done.

    Args:
        plan: the sweep plan (picklable).
        units: ``(setting, repeat)`` pairs.
        finished: called in this process with each unit's records, as units finish.
        client: a ``dask.distributed.Client``; if None, a local cluster of
            ``workers`` processes (one thread each) is started and closed again.
        workers: local worker processes when no client is given.
        threads: torch threads per worker process.

    Raises:
        ValueError: if the task is not registered by name (workers could not load it).
    """
    from distributed import Client, as_completed

    if task_source(plan) is None:
        raise ValueError(f"task {plan.task!r} was built by hand: Dask workers build a task "
                         "from its source; give run_sweep the source (a registered name, "
                         "'package.module:factory' or 'path/to/file.py:factory') or "
                         "register it (aihwkit_slicing.experiments.tasks.register_task)")
    cluster = None
    if client is None:
        cluster = start_local_cluster(workers or 1)
        client = Client(cluster)
    futures = []
    try:
        futures = [client.submit(_run_unit_on_worker, plan, setting, repeat, threads,
                                 pure=False, retries=RETRIES) for setting, repeat in units]
        for future in as_completed(futures):
            finished(future.result())
    finally:
        for future in futures:
            future.cancel()
        if cluster is not None:
            client.close()
            cluster.close()
