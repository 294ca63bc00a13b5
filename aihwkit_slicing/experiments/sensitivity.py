"""Allocation by measurement: :func:`allocate_tables` measures how much fidelity each layer
loses with each candidate table, then chooses a table per layer under an average budget
of devices per weight (:mod:`aihwkit_slicing.design.allocation`).

Given candidate tables with different device counts and a budget of ``D`` devices per
weight on average, :func:`allocate_tables` picks one candidate per analog layer so that
the weight-averaged devices per weight stay within ``D`` and the network stays as close
to floating point as possible at the given inference times::

    from aihwkit_slicing.design.allocation import allocate_tables
    from aihwkit_slicing.experiments.sweep import run_sweep
    from aihwkit_slicing.experiments.tasks import minilm_task

    task = minilm_task()
    times = [86400, 31536000]
    allocation = allocate_tables(task.model, None, devices_per_weight=6, noise_model="pcm",
                                 times=times, task=task, noise_aware=True)
    print(allocation.report())
    allocation.save("assignment.json")   # sweep --assignment assignment.json
    run_sweep(task, tables=[allocation.to_assignment()])  # with the allocation's scaling

How it decides:

1. **Measured sensitivity.** For every layer and every candidate, that layer alone is
   made analog (aihwkit's ``convert_to_analog`` of the layer, with the rpu_config a
   sweep gives it: the noise model, global drift compensation as configured, ideal
   peripherals, per-column mapping, ``mse`` clipping per output channel), programmed,
   drifted to every time and the whole network scored; ``repeats`` programmings, with
   seeds of the allocation's own (:func:`~aihwkit_slicing.integration.setting.stable_seed`
   of ``seed``, ``"allocation"``, the layer and the repeat: every candidate of a layer
   starts from the same seed, so their comparison is paired; a sweep's evaluation seeds
   are different). The sensitivity of a layer to a candidate is the fidelity
   lost: the drop of the task's metric from floating point (``task=``), or the
   squared error of the network's output relative to the floating-point output's
   (``inputs=``), averaged over the times and the repeats.
2. **Knapsack.** The network's loss is predicted by the sum of the chosen candidates'
   sensitivities; :func:`~aihwkit_slicing.design.allocation.choose_tables` picks the
   candidates of least predicted loss within the budget, exactly (see
   :mod:`aihwkit_slicing.design.allocation`).

The result (:class:`~aihwkit_slicing.design.allocation.Allocation`) reports per layer its
weights, table, devices and measured sensitivity, converts to a
:class:`~aihwkit_slicing.design.assignment.TableAssignment` (exact layer names as
patterns) for :func:`~aihwkit_slicing.experiments.sweep.run_sweep` and to the JSON
``aihwkit-slicing sweep --assignment`` reads, and gives aihwkit's
``convert_to_analog`` a ``specific_rpu_config_fun`` (:meth:`Allocation.rpu_config_fun`).
"""

from __future__ import annotations

import copy
import time
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from aihwkit.nn.conversion import convert_to_analog
from aihwkit.simulator.parameters.base import RPUConfigBase

from aihwkit_slicing.design.assignment import shared_weight_layers, weight_layers
from aihwkit_slicing.integration.catalog import make_converter, table_of
from aihwkit_slicing.integration.catalog import devices_per_weight as devices_of
from aihwkit_slicing.integration.noise_models import build_noise_model, check_times
from aihwkit_slicing.integration.rpu_configs import make_rpu_config
from aihwkit_slicing.core.scaling import validate_rule
from aihwkit_slicing.design.encodings import seeded_level_noise
from aihwkit_slicing.integration.catalog import DEFAULT_PER_CHANNEL, DEFAULT_SCALE
from aihwkit_slicing.integration.rpu_configs import MAPPINGS
from aihwkit_slicing.integration.setting import stable_seed
from aihwkit_slicing.experiments.tasks import Task
from aihwkit_slicing.design.allocation import (
    Allocation,
    Sensitivities,
    allocate,
    check_budget,
    check_int,
    choose_tables,
    noise_name,
)
from aihwkit_slicing.design.candidates import (
    DEFAULT_TIMES,
    Candidate,
    candidate_specs,
    times_list,
)


def measure_sensitivities(
    model: nn.Module,
    candidates: Union[None, Sequence[Candidate], Mapping[str, Candidate]] = None,
    noise_model: Any = "pcm",
    times: Sequence[float] = DEFAULT_TIMES,
    task: Optional[Task] = None,
    inputs: Any = None,
    repeats: int = 2,
    seed: int = 0,
    compensation: bool = True,
    scale: str = DEFAULT_SCALE,
    per_channel: bool = DEFAULT_PER_CHANNEL,
    rpu_config: Optional[RPUConfigBase] = None,
    quiet: bool = False,
    threads: Optional[int] = None,
    noise_aware: bool = False,
    mapping: str = "column",
) -> Sensitivities:
    """How much fidelity the network loses when one layer at a time gets a candidate.

    See the module docstring for the method; arguments as for :func:`allocate_tables`.

    Raises:
        ValueError: for a bad argument (naming it).
    """
    from tqdm import tqdm

    times = times_list(times)
    repeats = check_int("repeats", repeats, 1)
    seed = check_int("seed", seed, 0)
    _check_noise_times(noise_model, times)
    specs = candidate_specs(candidates, noise_model, times, seed)
    validate_rule(scale, 99.9)
    threads = None if threads is None else check_int("threads", threads, 1)
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if task is None and inputs is None:
        raise ValueError("task and inputs are both None: give task= (its metric is "
                         "measured) or inputs= (the output error on them is measured)")
    if task is not None and not isinstance(task, Task):
        raise ValueError(f"task must be an aihwkit_slicing.experiments.tasks.Task, got "
                         f"{type(task).__name__}")
    layers = list(weight_layers(model))
    if not layers:
        raise ValueError("model has no Linear or Conv layer to allocate tables to")
    _check_not_shared(model)

    if noise_aware and scale != "mse":
        raise ValueError(f"noise_aware needs scale='mse', got scale={scale!r}")
    if mapping not in MAPPINGS:
        raise ValueError(f"mapping must be one of {', '.join(MAPPINGS)}, got {mapping!r}")
    configs = {}
    for name, spec in specs.items():
        table = table_of(spec)
        level_noise = None
        if noise_aware and table is not None:
            level_noise = seeded_level_noise(table, noise_model, times, compensation)
        converter = make_converter(spec, scale=scale, per_channel=per_channel,
                                   level_noise=level_noise)
        configs[name] = make_rpu_config(converter, noise_model, compensation, "ideal",
                                        mapping, base=rpu_config)
        check_times(times, configs[name].noise_model, noise_name(noise_model))
    score, measure = _scorer(task, inputs)

    start = time.perf_counter()
    work = copy.deepcopy(model).eval()
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    values = torch.zeros(len(layers), len(specs), len(times), repeats, dtype=torch.float64)
    bar = tqdm(total=len(layers) * len(specs) * repeats, disable=quiet, desc="allocate",
               unit="programming")
    random_state = torch.random.get_rng_state()  # restored: the caller's stays as it was
    try:
        with torch.no_grad():
            reference = score(work, None)
        for i, (layer_name, module) in enumerate(layers):
            for k, (candidate, config) in enumerate(configs.items()):
                analog = convert_to_analog(module, config, ensure_analog_root=False).eval()
                with _swapped(work, layer_name, analog) as network, torch.no_grad():
                    for r in range(repeats):
                        unit_seed = stable_seed(seed, "allocation", layer_name, r)
                        torch.manual_seed(unit_seed)
                        analog.program_analog_weights()
                        for j, t in enumerate(times):
                            torch.manual_seed(stable_seed(unit_seed, t))
                            analog.drift_analog_weights(t)
                            values[i, k, j, r] = score(network, reference)
                        bar.update(1)
    finally:
        bar.close()
        torch.set_num_threads(previous_threads)
        torch.random.set_rng_state(random_state)
    return Sensitivities(
        layers=[name for name, _ in layers],
        weights=[int(module.weight.numel()) for _, module in layers],
        candidates=list(specs),
        devices=[devices_of(config.noise_model.g_converter) for config in configs.values()],
        values=values.mean(dim=3),
        spread=values.std(dim=3) if repeats > 1 else torch.zeros(values.shape[:3],
                                                                  dtype=torch.float64),
        times=times, measure=measure, repeats=repeats, seed=seed,
        seconds=time.perf_counter() - start, noise_model=noise_model,
        compensation=bool(compensation), scale=scale, per_channel=bool(per_channel),
        noise_aware=list(times) if noise_aware else None, mapping=mapping,
    )


def _scorer(task: Optional[Task], inputs: Any
            ) -> Tuple[Callable[[nn.Module, Any], Any], str]:
    """``score(network, reference)`` and what it measures.

    ``score(network, None)`` gives the floating-point reference, ``score(network,
    reference)`` the fidelity lost against it.
    """
    if task is not None:
        def metric_drop(network: nn.Module, reference: Any) -> Any:
            value = float(task.evaluate(network)[task.metric])
            return value if reference is None else reference - value

        return metric_drop, f"{task.metric} drop"

    def output_error(network: nn.Module, reference: Any) -> Any:
        if isinstance(inputs, Mapping):
            output = network(**inputs)
        elif isinstance(inputs, tuple):
            output = network(*inputs)
        else:
            output = network(inputs)
        output = _flat_output(output)
        if reference is None:
            return output
        norm = float(reference.square().sum()) or 1.0
        return float((output - reference).square().sum()) / norm

    return output_error, "relative squared output error"


def _flat_output(output: Any) -> Tensor:
    """A model's output (a tensor, or tensors in tuples, lists or dicts) as one
    float64 vector."""
    if isinstance(output, Tensor):
        return output.detach().double().reshape(-1)
    if isinstance(output, Mapping):
        output = list(output.values())
    if isinstance(output, (list, tuple)):
        parts = [_flat_output(o) for o in output if isinstance(o, (Tensor, Mapping, list,
                                                                   tuple))]
        if parts:
            return torch.cat(parts)
    raise ValueError(f"inputs: the model's output ({type(output).__name__}) holds no tensor")


@contextmanager
def _swapped(model: nn.Module, layer_name: str, replacement: nn.Module
             ) -> Iterator[nn.Module]:
    """``model`` with the layer ``layer_name`` replaced, restored afterwards (the
    replacement itself for the root, ``layer_name == ""``)."""
    if not layer_name:
        yield replacement
        return
    parent_name, _, attribute = layer_name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    original = getattr(parent, attribute)
    setattr(parent, attribute, replacement)
    try:
        yield model
    finally:
        setattr(parent, attribute, original)


def _digits_training_images() -> Tensor:
    from aihwkit_slicing.experiments.models.digits import load_digits_split

    return load_digits_split()[0]


#: Tasks whose sensitivities are measured as the output error on inputs of their own,
#: not by their metric: task name -> function returning the inputs. The digits CNN's
#: accuracy on its 540 held-out images moves in steps of one image, too coarse to rank
#: single layers (and those images are for the evaluation): its logits' error on the
#: 1257 training images is measured instead.
PROBE_INPUTS: Dict[str, Callable[[], Any]] = {"digits": _digits_training_images}


def measurement_for(task: Task) -> Dict[str, Any]:
    """The keyword arguments of :func:`allocate_tables` that say how to measure ``task``:
    ``{"inputs": ...}`` for tasks of :data:`PROBE_INPUTS`, else ``{"task": task}``."""
    if task.name in PROBE_INPUTS:
        return {"inputs": PROBE_INPUTS[task.name]()}
    return {"task": task}


def allocate_tables(
    model: nn.Module,
    candidates: Union[None, Sequence[Candidate], Mapping[str, Candidate]] = None,
    devices_per_weight: float = 6.0,
    noise_model: Any = "pcm",
    times: Sequence[float] = DEFAULT_TIMES,
    task: Optional[Task] = None,
    inputs: Any = None,
    repeats: int = 2,
    seed: int = 0,
    compensation: bool = True,
    scale: str = DEFAULT_SCALE,
    per_channel: bool = DEFAULT_PER_CHANNEL,
    rpu_config: Optional[RPUConfigBase] = None,
    quiet: bool = False,
    name: Optional[str] = None,
    threads: Optional[int] = None,
    noise_aware: bool = False,
    mapping: str = "column",
    cache: bool = True,
) -> Allocation:
    """Choose a table per layer: best fidelity at ``times`` within a device budget.

    Measures every layer's sensitivity to every candidate, then solves the knapsack
    (see the module docstring).

    Args:
        model: the floating-point network (left untouched); its ``Linear`` and ``Conv``
            layers become analog.
        candidates: table names, :class:`ProgrammingTable` objects or results of
            :func:`~aihwkit_slicing.design.optimizer.optimize_table`; default
            :func:`default_candidates` for ``noise_model`` and ``times`` (2 to 16 devices:
            binary significance up to 4 pairs, equal beyond).
        devices_per_weight: the budget: devices per weight, averaged over all weights
            of the analog layers (weight counts, not layers).
        noise_model: a name of :data:`~aihwkit_slicing.integration.noise_models.NOISE_MODELS`, a
            factory or a noise model instance.
        times: inference times in seconds after programming to aim at.
        task: scores the network; the drop of ``task.metric`` from floating point is
            measured (the task's ``evaluate`` runs ``len(layers) x len(candidates) x
            repeats x len(times)`` times).
        inputs: instead of ``task``: a batch for ``model`` (a tensor, a tuple of
            positional or a dict of keyword arguments); the squared error of the output
            relative to the floating-point output's is measured.
        repeats: programmings per layer and candidate.
        seed: the measurement depends on the seed only (its own seeds; a sweep's
            evaluation with the same ``seed`` uses different ones).
        compensation: global drift compensation on or off.
        scale, per_channel: scaling of quantized tables (the sweep's default: ``"mse"``
            per output channel).
        rpu_config: rpu_config to start from (default ``TorchInferenceRPUConfig()``);
            peripherals are made ideal (``forward.is_perfect = True``).
        quiet: no progress bar.
        name: the result's display name (default ``"allocation-<budget>dev"``).
        threads: torch threads during the measurement (default: leave as set). One
            thread per process is fastest where other jobs share the cores.
        noise_aware: choose the ``mse`` clip of quantized tables for the error after
            programming and drift at ``times`` (each candidate's level noise simulated
            under ``noise_model``), as ``run_sweep(noise_aware=times)`` does; recorded
            in the result's scaling rule, which a sweep of the assignment applies.
        mapping: aihwkit's weight mapping, ``"column"`` (default, as in sweeps) or
            ``"tensor"``; recorded with the result.
        cache: default candidates only: keep and reuse their tuned encodings (see
            :func:`~aihwkit_slicing.design.candidates.tuned_table`); False simulates
            them afresh.

    Returns:
        An :class:`Allocation`.

    Raises:
        ValueError: for a bad argument (naming it), or a budget below the cheapest
            candidates.
    """
    budget = check_budget(devices_per_weight)
    _check_noise_times(noise_model, times_list(times))
    specs = candidate_specs(candidates, noise_model, times_list(times),
                            check_int("seed", seed, 0), cache)
    layers = list(weight_layers(model)) if isinstance(model, nn.Module) else []
    if layers:  # a budget no allocation can meet fails before the measurement
        choose_tables([m.weight.numel() for _, m in layers],
                      [devices_of(make_converter(s)) for s in specs.values()],
                      [[0.0] * len(specs)] * len(layers), budget)
    measured = measure_sensitivities(model, specs, noise_model, times, task, inputs, repeats,
                                     seed, compensation, scale, per_channel, rpu_config, quiet,
                                     threads, noise_aware, mapping)
    return allocate(measured, specs, budget, name=name)


def _check_noise_times(noise_model: Any, times: List[float]) -> None:
    """Raise ``ValueError`` if the noise model does not know one of ``times``."""
    probe = build_noise_model(noise_model, make_converter("aihwkit-1pair"))
    check_times(times, probe, noise_name(noise_model))


def _check_not_shared(model: nn.Module) -> None:
    shared = shared_weight_layers(model)
    if shared:
        first, names = next(iter(shared.items()))
        raise ValueError(f"layer {first!r} is the same module as {', '.join(map(repr, names[1:]))}"
                         ": aihwkit converts each name into a layer of its own, which an "
                         "allocation by layer cannot give tables to; give each its own module")
