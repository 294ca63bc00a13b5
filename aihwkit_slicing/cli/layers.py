"""``aihwkit-slicing layers``: the layers a sweep makes analog, by the names rules use.

::

    aihwkit-slicing layers --model digits
    aihwkit-slicing layers --model mypackage.tasks:make_task --json

One line per Linear or Conv layer aihwkit's ``convert_to_analog`` converts: its name
(what ``sweep --layer-tables`` patterns, assignments and allocations match), its class,
the shape of its weight and its number of weights. Kept apart from
:mod:`aihwkit_slicing.cli.main`, which registers it.
"""

from __future__ import annotations

import argparse
import json
from typing import Any, Dict, List

from torch import nn

from aihwkit_slicing.cli.parsing import check_model, load_model, model_help


def add_layers_parser(commands: argparse._SubParsersAction,  # pylint: disable=protected-access
                      parser: argparse.ArgumentParser) -> None:
    """Add the ``layers`` subcommand to ``commands`` (errors go through ``parser``)."""
    layers = commands.add_parser(
        "layers", help="list the layers a sweep makes analog (the names rules match)",
        description="List the Linear and Conv layers a sweep converts to analog tiles: "
        "name (what --layer-tables patterns, assignments and allocations match), type, "
        "weight shape and number of weights.")
    layers.error = parser.error  # type: ignore[method-assign]
    layers.add_argument("--model", default="digits", help=model_help())
    layers.add_argument("--json", action="store_true",
                        help="print the layers as a JSON list instead of a table")


def describe_layers(model: nn.Module) -> List[Dict[str, Any]]:
    """Per analog-convertible layer of ``model``: ``name``, ``type``, ``shape`` (of the
    weight) and ``weights`` (their number), in the order aihwkit converts them."""
    from aihwkit_slicing.design.assignment import weight_layers

    return [{"name": name, "type": type(module).__name__,
             "shape": list(module.weight.shape), "weights": int(module.weight.numel())}
            for name, module in weight_layers(model)]


def run_layers_command(args: argparse.Namespace) -> int:
    """``aihwkit-slicing layers``: print the table (or JSON) of the task's layers."""
    from aihwkit_slicing.design.assignment import shared_weight_layers
    from aihwkit_slicing.integration.setting import model_hash

    check_model(args.model)
    task = load_model(args.model)
    layers = describe_layers(task.model)
    if args.json:
        print(json.dumps(layers, indent=1))
        return 0
    total = sum(layer["weights"] for layer in layers)
    print(f"{task.name}: {len(layers)} layer{'s' if len(layers) != 1 else ''} a sweep makes "
          f"analog, {total} weights (model hash {model_hash(task.model)})")
    if not layers:
        print("nothing to program: the model has no Linear or Conv layer aihwkit converts")
        return 0
    width = max(len("name"), *(len(layer["name"]) for layer in layers))
    type_width = max(len("type"), *(len(layer["type"]) for layer in layers))
    shapes = [" x ".join(str(size) for size in layer["shape"]) for layer in layers]
    shape_width = max(len("weight shape"), *(len(shape) for shape in shapes))
    print(f"{'name':<{width}s}  {'type':<{type_width}s}  {'weight shape':<{shape_width}s}  "
          f"{'weights':>9s}  share")
    for layer, shape in zip(layers, shapes):
        print(f"{layer['name'] or '(the model itself)':<{width}s}  "
              f"{layer['type']:<{type_width}s}  {shape:<{shape_width}s}  "
              f"{layer['weights']:>9d}  {100.0 * layer['weights'] / total:4.1f} %")
    for first, names in shared_weight_layers(task.model).items():
        print(f"note: {first} is also reachable as {', '.join(names[1:])}; aihwkit converts "
              "each name into a layer of its own")
    print("\n--layer-tables patterns and assignments match these names: a pattern with "
          "*, ? or [ the whole name, any other pattern a name containing it")
    return 0
