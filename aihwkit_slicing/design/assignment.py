"""Per-layer tables: which programming table (or converter) each analog layer uses.

A :class:`TableAssignment` maps layer-name patterns to table specs, first match wins::

    TableAssignment({"attention": "seed", "*": "4x4lvl-base"})

* a pattern with a wildcard (``*``, ``?``, ``[``) is matched against the whole layer
  name with :func:`fnmatch.fnmatchcase`; ``"*"`` matches every layer;
* any other pattern matches a layer whose name contains it
  (``"attention"`` matches ``0.auto_model.encoder.layer.3.attention.self.query``).

A spec is anything :func:`aihwkit_slicing.integration.catalog.make_converter` takes: a table name,
a :class:`~aihwkit_slicing.core.tables.ProgrammingTable` or a converter. Layers no pattern
matches raise an error when the model is converted (name a ``"*"`` fallback).

:meth:`TableAssignment.to_dict` / :meth:`from_dict` give the JSON form the command
line reads with ``--assignment`` (tables by name or as table dicts, see
``docs/tables.md``, "The JSON form");
:func:`aihwkit_slicing.experiments.sensitivity.allocate_tables` writes it.
Under the hood, :meth:`TableAssignment.converter_for` feeds aihwkit's
``convert_to_analog(..., specific_rpu_config_fun=...)``.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import numbers
from typing import Any, Callable, Dict, Iterator, List, Mapping, NamedTuple, Optional, Tuple

from aihwkit.inference.converter.base import BaseConductanceConverter
from torch import nn

from aihwkit_slicing.integration.catalog import (
    DEFAULT_PER_CHANNEL,
    DEFAULT_SCALE,
    TableSpec,
    devices_per_weight,
    make_converter,
    spec_hash,
    spec_name,
    table_of,
)
from aihwkit_slicing.integration.rpu_configs import MAPPINGS, PERIPHERALS, make_rpu_config
from aihwkit_slicing.integration.setting import short_hash
from aihwkit_slicing.design.encodings import seeded_level_noise
from aihwkit_slicing.core.scaling import validate_rule
from aihwkit_slicing.core.tables import ProgrammingTable
from aihwkit_slicing.core.validation import validate_times

#: ``format`` field of the JSON form.
FORMAT = "aihwkit-slicing-assignment"
FORMAT_VERSION = 1

_WILDCARDS = set("*?[")
#: Keys of the scaling rule an assignment records.
RULE_KEYS = ("scale", "per_channel", "percentile", "noise_aware")
#: The percentile of ``scale="percentile"`` where a rule leaves it out (as everywhere).
DEFAULT_PERCENTILE = 99.9
#: What else an assignment may record of the setting it was chosen in (an allocation
#: records all of them): the noise model's name and non-default parameters (JSON), drift
#: compensation, aihwkit's weight mapping, the peripherals and the seed.
RECORDED_KEYS = ("noise_model", "noise_params", "compensation", "mapping", "peripherals",
                 "seed")


class ScalingRule(NamedTuple):
    """How quantized tables are scaled: the ``scale`` rule, per output channel or per
    tensor, the percentile of ``"percentile"``, and the inference times in seconds the
    ``mse`` clip is noise-aware for (None: not noise-aware)."""

    scale: str = DEFAULT_SCALE
    per_channel: bool = DEFAULT_PER_CHANNEL
    percentile: float = DEFAULT_PERCENTILE
    noise_aware: Optional[Tuple[float, ...]] = None

    def describe(self) -> str:
        """One phrase: ``"mse per channel, noise-aware at 86400,31536000 s"``."""
        text = self.scale + (f" {self.percentile:g}" if self.scale == "percentile" else "")
        text += " per channel" if self.per_channel else " per tensor"
        if self.noise_aware:
            text += f", noise-aware at {','.join(f'{t:g}' for t in self.noise_aware)} s"
        return text


def check_scaling_rule(rule: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    """An assignment's recorded scaling rule, checked (``ValueError`` naming the key).

    Keys set to None, and an empty ``noise_aware`` list, are left out (not recorded)."""
    if rule is None:
        return {}
    if not isinstance(rule, Mapping):
        raise ValueError(f"an assignment's scaling rule must be a dict with keys "
                         f"{', '.join(RULE_KEYS)}, got {rule!r}")
    checked = {key: value for key, value in rule.items() if value is not None}
    for key in checked:
        if key not in RULE_KEYS:
            raise ValueError(f"unknown key {key!r} in the assignment's scaling rule "
                             f"(keys: {', '.join(RULE_KEYS)})")
    if "scale" in checked or "percentile" in checked:
        validate_rule(checked.get("scale", DEFAULT_SCALE),
                      checked.get("percentile", DEFAULT_PERCENTILE))
    if "per_channel" in checked and not isinstance(checked["per_channel"], bool):
        raise ValueError(f"per_channel must be True or False, got {checked['per_channel']!r}")
    if "noise_aware" in checked:
        times = checked.pop("noise_aware")
        if not isinstance(times, (list, tuple)):
            raise ValueError(f"noise_aware must be a list of seconds, got {times!r}")
        if times:
            try:
                checked["noise_aware"] = validate_times(times)
            except ValueError as error:
                raise ValueError(f"noise_aware: {error}") from None
            if checked.get("scale", DEFAULT_SCALE) != "mse":
                raise ValueError(f"noise_aware needs scale='mse', got "
                                 f"scale={checked['scale']!r}")
    return checked


def check_recorded(recorded: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    """The setting an assignment records besides its scaling rule, checked
    (``ValueError`` naming the key and the value). None values are left out."""
    if recorded is None:
        return {}
    if not isinstance(recorded, Mapping):
        raise ValueError(f"an assignment's recorded setting must be a dict with keys "
                         f"{', '.join(RECORDED_KEYS)}, got {recorded!r}")
    checked = {key: value for key, value in recorded.items() if value is not None}
    for key, value in checked.items():
        if key not in RECORDED_KEYS:
            raise ValueError(f"unknown key {key!r} in the assignment's recorded setting "
                             f"(keys: {', '.join(RECORDED_KEYS)})")
        if key in ("noise_model", "noise_params") and not isinstance(value, str):
            raise ValueError(f"{key} must be a string, got {value!r}")
        if key == "compensation" and not isinstance(value, bool):
            raise ValueError(f"compensation must be true or false, got {value!r}")
        if key == "mapping" and value not in MAPPINGS:
            raise ValueError(f"mapping must be one of {', '.join(MAPPINGS)}, got {value!r}")
        if key == "peripherals" and value not in PERIPHERALS:
            raise ValueError(f"peripherals must be one of {', '.join(PERIPHERALS)}, "
                             f"got {value!r}")
        if key == "seed" and (isinstance(value, bool) or not isinstance(
                value, numbers.Integral) or value < 0):
            raise ValueError(f"seed must be an integer >= 0, got {value!r}")
    return checked


def pattern_matches(pattern: str, layer_name: str) -> bool:
    """Whether ``pattern`` (see the module docstring) matches ``layer_name``."""
    if _WILDCARDS & set(pattern):
        return fnmatch.fnmatchcase(layer_name, pattern)
    return pattern in layer_name


class TableAssignment:
    """Layer-name patterns mapped to table specs (first match wins).

    Args:
        rules: ``{pattern: spec}`` in priority order (a dict keeps its order), or a
            sequence of ``(pattern, spec)`` pairs.
        name: shown in reports (default: ``"pattern=table,..."``).
        scale: scaling rule recorded with the assignment (``{"scale", "per_channel",
            "percentile", "noise_aware"}``, any of them, see :class:`ScalingRule`;
            :func:`~aihwkit_slicing.experiments.sensitivity.allocate_tables` records the rule it
            measured with). Where one is recorded, both :meth:`rpu_config_fun` and a
            sweep apply it to the assignment's tables (keys left out take the package's
            defaults: ``"mse"`` per output channel, percentile 99.9, not noise-aware);
            where none is, a sweep applies its own. Converters given as specs keep
            their own settings either way.
        recorded: the setting the assignment was chosen in (keys
            :data:`RECORDED_KEYS`); :meth:`rpu_config_fun` defaults to it, and a sweep
            of the assignment under another setting warns, naming what differs.

    Raises:
        ValueError: for an empty assignment, a pattern that is not a non-empty string or
            a bad scaling rule or recorded setting (naming the key).
    """

    def __init__(self, rules: Any, name: Optional[str] = None, scale: Optional[Dict] = None,
                 recorded: Optional[Dict] = None):
        pairs = list(rules.items()) if isinstance(rules, Mapping) else list(rules)
        if not pairs:
            raise ValueError("an assignment needs at least one 'pattern: table' rule")
        for pattern, spec in pairs:
            if not isinstance(pattern, str) or not pattern:
                raise ValueError(f"layer patterns must be non-empty strings, got {pattern!r}")
            if not isinstance(spec, (str, ProgrammingTable, BaseConductanceConverter)):
                raise TypeError(f"the table for {pattern!r} must be a name, a "
                                f"ProgrammingTable or a converter, got {type(spec).__name__}")
        self.rules: List[Tuple[str, TableSpec]] = pairs
        self.scale = check_scaling_rule(scale)
        self.recorded = check_recorded(recorded)
        self.name = name or ",".join(f"{p}={spec_name(s)}" for p, s in pairs)

    def __iter__(self) -> Iterator[Tuple[str, TableSpec]]:
        return iter(self.rules)

    def spec_for(self, layer_name: str) -> TableSpec:
        """The spec of the first rule matching ``layer_name``.

        Raises:
            ValueError: if no rule matches (the message names the layer).
        """
        for pattern, spec in self.rules:
            if pattern_matches(pattern, layer_name):
                return spec
        raise ValueError(f"no table is assigned to layer {layer_name!r}; add a rule for it "
                         f"or a '*' fallback (rules: {[p for p, _ in self.rules]})")

    def scaling_rule(self) -> ScalingRule:
        """The recorded rule, the package's defaults for keys it leaves out."""
        recorded = dict(self.scale)
        if recorded.get("noise_aware"):
            recorded["noise_aware"] = tuple(recorded["noise_aware"])
        return ScalingRule(**recorded)

    def converters(self, make: Callable[[TableSpec], BaseConductanceConverter] = make_converter
                   ) -> Dict[str, BaseConductanceConverter]:
        """One fresh converter per distinct spec, by what it programs
        (:func:`~aihwkit_slicing.integration.catalog.spec_hash`), not by name: two
        tables of one name stay two."""
        return {key: make(spec) for key, spec in self.distinct_specs()}

    def distinct_specs(self) -> List[Tuple[str, TableSpec]]:
        """``(key, spec)`` of every distinct table of the rules, in rule order
        (:func:`~aihwkit_slicing.integration.catalog.spec_hash`)."""
        seen: Dict[str, TableSpec] = {}
        for _, spec in self.rules:
            seen.setdefault(spec_hash(spec), spec)
        return list(seen.items())

    def rpu_config_fun(self, base_rpu_config: Any = None, noise_model: Any = None,
                       compensation: Optional[bool] = None, peripherals: Optional[str] = None,
                       mapping: Optional[str] = None) -> Callable[[str, nn.Module, Any], Any]:
        """aihwkit's ``specific_rpu_config_fun``: every layer gets its table's rpu_config::

            analog = convert_to_analog(model, TorchInferenceRPUConfig(),
                                       specific_rpu_config_fun=assignment.rpu_config_fun())

        Quantized tables scale as :attr:`scale` says (``{"scale": ..., "per_channel":
        ..., "noise_aware": [seconds, ...]}``; default ``"mse"`` per output channel, as in
        sweeps; with ``noise_aware``, the clip errs least after programming and drift at
        those times under ``noise_model``, its level noise simulated exactly as a sweep
        does, :func:`~aihwkit_slicing.design.encodings.seeded_level_noise`). Modules
        without weights that aihwkit converts too (``Sequential``) keep the rpu_config
        they are given. A layer converted this way is the layer a sweep of the
        assignment programs.

        Args:
            base_rpu_config: rpu_config every layer's starts from (copied); default: the
                one ``convert_to_analog`` passes (its ``rpu_config`` argument).
            noise_model, compensation, peripherals, mapping: as for
                :func:`aihwkit_slicing.integration.rpu_configs.make_rpu_config`; default:
                what the assignment records (:attr:`recorded`), else PCM, compensation
                on, ideal peripherals and per-column mapping (a sweep's defaults).

        Raises:
            ValueError: while converting, for a layer no rule matches (naming it).
        """
        recorded = self.recorded
        if noise_model is None:
            noise_model = recorded.get("noise_model", "pcm")
        compensation = recorded.get("compensation", True) if compensation is None else (
            compensation)
        peripherals = peripherals or recorded.get("peripherals", "ideal")
        mapping = mapping or recorded.get("mapping", "column")
        rule = self.scaling_rule()

        def converter(spec: TableSpec) -> BaseConductanceConverter:
            table = table_of(spec)
            noise = None
            if rule.noise_aware and table is not None and not isinstance(
                    spec, BaseConductanceConverter):
                noise = seeded_level_noise(table, noise_model, rule.noise_aware,
                                           compensation)
            return make_converter(spec, scale=rule.scale, per_channel=rule.per_channel,
                                  percentile=rule.percentile, level_noise=noise)

        converters = self.converters(converter)

        def specific_rpu_config(layer_name: str, module: nn.Module, rpu_config: Any) -> Any:
            if not is_weight_layer(module):
                return rpu_config
            converter = copy.deepcopy(converters[spec_hash(self.spec_for(layer_name))])
            base = rpu_config if base_rpu_config is None else base_rpu_config
            return make_rpu_config(converter, noise_model, compensation, peripherals,
                                   mapping, base=base)

        return specific_rpu_config

    def layer_tables(self, model: nn.Module) -> Dict[str, str]:
        """``{layer name: table name}`` for the analog-convertible layers of ``model``."""
        return {name: spec_name(self.spec_for(name)) for name, _ in weight_layers(model)}

    def devices_per_weight(self, model: nn.Module,
                           make: Callable[[TableSpec], BaseConductanceConverter] = make_converter
                           ) -> float:
        """Devices per weight averaged over the weights of ``model``'s layers."""
        converters = self.converters(make)
        devices, weights = 0.0, 0
        for name, module in weight_layers(model):
            count = module.weight.numel()
            devices += count * devices_per_weight(converters[spec_hash(self.spec_for(name))])
            weights += count
        if not weights:
            raise ValueError("the model has no Linear or Conv layer to assign tables to")
        return devices / weights

    # ---------------------------------------------------------------- JSON form
    def to_dict(self) -> Dict[str, Any]:
        """The JSON form: tables by name when built in, else as table dicts."""
        rules = []
        for pattern, spec in self.rules:
            if isinstance(spec, str):
                table: Any = spec
            elif isinstance(spec, ProgrammingTable):
                table = spec.to_dict()
            elif hasattr(spec, "table"):
                table = spec.table.to_dict()
            else:
                raise ValueError(f"the converter for {pattern!r} ({type(spec).__name__}) has "
                                 "no JSON form; use a table name or a ProgrammingTable")
            rules.append({"layers": pattern, "table": table})
        data = {"format": FORMAT, "version": FORMAT_VERSION, "name": self.name,
                "scale": self.scale, "rules": rules}
        data.update(self.recorded)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], name: Optional[str] = None
                  ) -> "TableAssignment":
        """Rebuild an assignment from :meth:`to_dict`'s form (raises ``ValueError``)."""
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            raise ValueError(f"not an assignment: expected \"format\": \"{FORMAT}\"")
        if data.get("version") != FORMAT_VERSION:
            raise ValueError(f"unsupported assignment version {data.get('version')!r} "
                             f"(this release reads version {FORMAT_VERSION})")
        rules = data.get("rules")
        if not isinstance(rules, list) or not rules:
            raise ValueError("an assignment needs a non-empty list \"rules\"")
        pairs = []
        for index, rule in enumerate(rules):
            if not isinstance(rule, Mapping) or "layers" not in rule or "table" not in rule:
                raise ValueError(f"rule {index} needs \"layers\" and \"table\"")
            table = rule["table"]
            spec = ProgrammingTable.from_dict(table) if isinstance(table, Mapping) else table
            pairs.append((rule["layers"], spec))
        return cls(pairs, name=name or data.get("name"), scale=data.get("scale"),
                   recorded={key: data.get(key) for key in RECORDED_KEYS})

    def content_hash(self) -> str:
        """16 hex digits of the rules: patterns and what each table programs
        (:func:`~aihwkit_slicing.integration.catalog.spec_hash`; names left out). An
        assignment and its JSON round trip (whose tables are reduced to the columns they
        program) share it."""
        text = json.dumps([[pattern, spec_hash(spec)] for pattern, spec in self.rules])
        return short_hash(text)

    def __repr__(self) -> str:
        return f"TableAssignment({dict(self.rules)!r}, name={self.name!r})"


#: The layer classes aihwkit's ``convert_to_analog`` makes analog. It matches the exact
#: class, so subclasses (``nn.MultiheadAttention``'s ``out_proj``, a
#: ``NonDynamicallyQuantizableLinear``) stay digital, and get no table here either.
WEIGHT_LAYER_CLASSES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def is_weight_layer(module: nn.Module) -> bool:
    """A Linear or Conv layer (exactly that class, as aihwkit converts) with weights:
    what gets a table."""
    return type(module) in WEIGHT_LAYER_CLASSES and getattr(module, "weight", None) is not None


def weight_layers(model: nn.Module) -> Iterator[Tuple[str, nn.Module]]:
    """The Linear and Conv layers aihwkit's ``convert_to_analog`` converts, by name."""
    for name, module in model.named_modules():
        if is_weight_layer(module):
            yield name, module


def shared_weight_layers(model: nn.Module) -> Dict[str, List[str]]:
    """Weight layers reachable under more than one name: first name -> all names.

    aihwkit converts every path into a layer of its own, so such a layer is several
    analog layers while ``named_modules()`` lists it once.
    """
    paths: Dict[int, List[str]] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        if is_weight_layer(module):
            paths.setdefault(id(module), []).append(name)
    return {names[0]: names for names in paths.values() if len(names) > 1}
