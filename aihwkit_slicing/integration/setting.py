"""What was simulated: one immutable value per setting, one canonical JSON form, one hash.

A number is only as good as the description of what produced it. A
:class:`SimulatedSetting` holds every input that changes a simulated number: the task and
a hash of its model's weights, what the tiles are programmed with (a table, a converter
or a per-layer assignment: its content hash, devices and levels), the scaling rule of
quantized tables, the noise model and its parameters, drift compensation, peripherals,
weight mapping, the rest of the rpu_config, and the seed. It is made in one place
(:func:`describe_setting`) and read everywhere:

* every sweep record carries its fields and :attr:`SimulatedSetting.setting_id`, and
  summaries group by that id (a string: it compares equal after a CSV round trip or a
  Dask worker's pickle, which NaN fields never did);
* a resumed sweep compares the settings it finds with its own field by field
  (:meth:`SimulatedSetting.differences`) and names the field that differs;
* allocations and assignments record the setting they were measured with.

The display name (:attr:`SimulatedSetting.table`) is shown but is not part of the id:
renaming a table changes nothing but its name. No field is NaN: "not applicable" is
None (an empty cell in a CSV file).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch
from torch import nn

#: Fields of a setting, in the order records and CSV files show them.
SETTING_FIELDS: Tuple[str, ...] = (
    "task", "model_hash", "table", "table_hash", "n_devices", "n_levels", "scale",
    "per_channel", "percentile", "level_noise", "noise_model", "noise_params",
    "compensation", "peripherals", "mapping", "rpu_config", "seed",
)
#: Fields a setting's id leaves out: the display name.
NOT_IDENTITY = ("table",)

_FLOAT_FIELDS = ("n_devices", "n_levels", "percentile")


def stable_seed(*parts: Any) -> int:
    """A seed (``0 <= seed < 2**63``) that depends on ``parts`` only.

    ``parts`` are turned into text with ``repr`` (floats print exactly) and hashed with
    SHA-256: the same parts give the same seed in every process and Python version.
    """
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def short_hash(text: str, digits: int = 16) -> str:
    """The first ``digits`` hex digits of the SHA-256 of ``text``."""
    return hashlib.sha256(text.encode()).hexdigest()[:digits]


@dataclass(frozen=True)
class SimulatedSetting:
    """Everything that decides a simulated number, but the repeat and the time.

    Attributes:
        task: the task's name.
        model_hash: :func:`model_hash` of the floating-point model's weights.
        table: display name of what the tiles are programmed with (not part of the id).
        table_hash: content hash of the table (what it programs), the converter or the
            per-layer assignment.
        n_devices: devices per weight (weight-averaged for an assignment).
        n_levels: weight levels of a table; None for continuous converters and
            assignments.
        scale: the scaling rule of quantized tables (``"max"``, ``"percentile"``,
            ``"mse"``); None where no quantized table is used.
        per_channel: one scale per output channel (None where ``scale`` is None).
        percentile: for ``scale="percentile"`` only, else None.
        level_noise: ``""`` (plain clip), the inference times in seconds the clip is
            noise-aware for (``"86400,31536000"``), or ``"given:<hash>"`` for a converter
            passed with its own level noise.
        noise_model: the noise model's display name.
        noise_params: JSON of its parameters that differ from its class defaults.
        compensation: global drift compensation on or off.
        peripherals: ``"ideal"`` or ``"realistic"``.
        mapping: aihwkit's weight mapping, ``"column"`` or ``"tensor"``.
        rpu_config: the rpu_config's class and a hash of its other settings
            (:func:`rpu_config_id`).
        seed: the seed every random draw derives from.
    """

    task: str
    model_hash: str
    table: str
    table_hash: str
    n_devices: float
    n_levels: Optional[float]
    scale: Optional[str]
    per_channel: Optional[bool]
    percentile: Optional[float]
    level_noise: str
    noise_model: str
    noise_params: str
    compensation: bool
    peripherals: str
    mapping: str
    rpu_config: str
    seed: int

    def __post_init__(self) -> None:
        for name in _FLOAT_FIELDS:
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (int, float))
                                      or isinstance(value, bool) or math.isnan(value)):
                raise ValueError(f"setting field {name} must be a number or None, "
                                 f"got {value!r}")
            if value is not None:
                object.__setattr__(self, name, float(value))

    # ------------------------------------------------------------ canonical form
    def to_json(self) -> Dict[str, Any]:
        """The canonical JSON form: plain values, no NaN (None for not applicable)."""
        return {name: getattr(self, name) for name in SETTING_FIELDS}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "SimulatedSetting":
        """The setting of :meth:`to_json`'s form (also a record, whose other keys are
        left out).

        Raises:
            ValueError: naming a missing field.
        """
        missing = [name for name in SETTING_FIELDS if name not in data]
        if missing:
            raise ValueError(f"a setting needs the field(s) {', '.join(missing)}")
        return cls(**{name: data[name] for name in SETTING_FIELDS})

    @property
    def setting_id(self) -> str:
        """16 hex digits: equal for settings that simulate the same (name left out)."""
        identity = {k: v for k, v in self.to_json().items() if k not in NOT_IDENTITY}
        return short_hash(json.dumps(identity, sort_keys=True, allow_nan=False))

    def differences(self, other: "SimulatedSetting") -> List[str]:
        """``"field: mine != other's"`` for every field that differs."""
        return [f"{name}: {getattr(self, name)!r} != {getattr(other, name)!r}"
                for name in SETTING_FIELDS if getattr(self, name) != getattr(other, name)]

    def record(self) -> Dict[str, Any]:
        """The record fields: every field and ``setting_id``."""
        fields = self.to_json()
        fields["setting_id"] = self.setting_id
        return fields


# ================================================================ identities
def model_hash(model: nn.Module) -> str:
    """16 hex digits of the model's floating-point state (every tensor of its
    ``state_dict``, names, shapes, dtypes and values): the same for the same weights in
    every process."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        if not isinstance(tensor, torch.Tensor):
            continue
        data = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(data.shape)}:{data.dtype}:".encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes()
                      if data.numel() else b"")
    return digest.hexdigest()[:16]


def rpu_config_id(rpu_config: Any) -> str:
    """``"<class>:<hash>"``: the rpu_config's class and a hash of all its settings but
    the noise model and drift compensation (recorded on their own), see
    :func:`rpu_config_parts`."""
    parts = rpu_config_parts(rpu_config)
    return f"{parts['class']}:{short_hash(json.dumps(parts, sort_keys=True), 12)}"


def jsonable(value: Any) -> bool:
    """Whether ``value`` is standard JSON (no NaN)."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def plain_value(value: Any) -> Any:
    """``value`` with numpy scalars and arrays, torch tensors and tuples as plain numbers
    and lists (as JSON records them), so that one setting given either way is one."""
    if hasattr(value, "tolist") and callable(value.tolist):
        value = value.tolist()
    if isinstance(value, (tuple, list)):
        return [plain_value(item) for item in value]
    if isinstance(value, dict):
        return {str(key): plain_value(item) for key, item in value.items()}
    return value


def noise_params(noise_model: Any) -> str:
    """JSON of the noise model's parameters that differ from its class defaults, or what
    its own ``recorded_params()`` says (a measured device model: its content hash)."""
    recorded = getattr(noise_model, "recorded_params", None)
    if callable(recorded):
        return recorded()
    try:
        default = type(noise_model)()
    except TypeError:
        default = None
    changed = {}
    for key, value in sorted(vars(noise_model).items()):
        if key == "g_converter":
            continue
        value = plain_value(value)
        if not jsonable(value):
            raise ValueError(f"noise model {type(noise_model).__name__}: setting {key!r} is "
                             f"a {type(value).__name__}, which cannot be recorded; give it as "
                             "a number, a string or a list of them")
        if default is None or plain_value(getattr(default, key, object())) != value:
            changed[key] = value
    return json.dumps(changed, sort_keys=True) if changed else ""


def rpu_config_parts(rpu_config: Any) -> Dict[str, str]:
    """Per field of an rpu_config (a dataclass), a short hash of its value, the noise
    model and drift compensation left out (recorded on their own): two configs differ in
    exactly the fields whose hashes differ, so a mismatch can be named."""
    if not dataclasses.is_dataclass(rpu_config):
        return {"class": type(rpu_config).__name__}
    parts = {"class": type(rpu_config).__name__}
    for item in dataclasses.fields(rpu_config):
        if item.name in ("noise_model", "drift_compensation"):
            continue
        parts[item.name] = short_hash(repr(getattr(rpu_config, item.name)), 12)
    return parts
