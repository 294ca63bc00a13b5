"""Where the bundled device models' numbers come from: published fits, evaluated per level.

The package ships two measured device models (``aihwkit_slicing/core/devices/``, see
``docs/devices.md``). Their per-level numbers are not typed in by hand: this script
evaluates, at 16 evenly spaced levels, the fits that IBM's aihwkit 1.1.0 (and 1.2.0,
unchanged) ships for two measured devices, and writes the JSON files:

* ``pcm-hermes-2023``: the phase-change memory of IBM's HERMES chip, as fitted in
  aihwkit's ``HermesNoiseModel`` for one device per unit cell (``num_devices=1``,
  devices up to 10.35 uS, first read ``t0 = 200 s``), from measurements published in
  M. Le Gallo et al., "A 64-core mixed-signal in-memory compute chip based on
  phase-change memory for deep neural network inference", Nature Electronics 6,
  680-693 (2023), and R. Khaddam-Aljameh et al., IEEE JSSC 57, 1027-1038 (2022).
  Programming error: the fit's cubic polynomial; drift exponent mean and std: the fit's
  branch functions; read noise: the fit's accumulated 1/f noise one day after
  programming (``t_read = 512 ns``) at the level's mean drifted conductance.
* ``reram-wan-2022``: the HfOx ReRAM of the NeuRRAM chip, as fitted in aihwkit's
  ``ReRamWan2022NoiseModel`` (4th-order polynomials over the conductance, 40 uS
  reference) to the figures of W. Wan et al., "A compute-in-memory chip based on
  resistive random-access memory", Nature 608, 504-512 (2022) (aihwkit's authors read
  the figures; we did not). Programming error: the fit at 1 s; no drift of the mean
  (the fit relaxes conductances around their target); "read" noise: the spread the
  relaxation adds by one day, ``sqrt(sigma_1day**2 - sigma_1s**2)``, applied at every
  inference time (Wan et al. report no separate read noise); first read ``t0 = 1 s``.

Neither source reports stuck devices per level, so the bundled models have none.

Run: ``python examples/device_models.py`` prints both models; ``--write`` rewrites the
bundled files; ``--check`` fails if they differ from what this script computes.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Callable, Dict, List, Sequence

from aihwkit_slicing.core.device_model import BUNDLED, DeviceModel

LEVELS = 16

# ------------------------------------------------------------------ HERMES PCM
#: aihwkit 1.1.0 ``HermesNoiseModel``, ``num_devices=1``: characterised range, t_0, t_read.
HERMES_G_MAX, HERMES_T0, HERMES_T_READ = 10.35, 200.0, 512.0e-9
#: Programming error std (uS): ``sum_i c_i x**i``, ``x = g / 10.35``.
HERMES_PROG = (0.15781817, 2.32443916, -2.16310839, 0.68841818)
#: Reference time of the read noise (seconds after programming): one day.
READ_AT = 86400.0


def _poly(coefficients: Sequence[float], x: float) -> float:
    total = 0.0  # left to right, as aihwkit sums (Python 3.12's sum() compensates)
    for i, c in enumerate(coefficients):
        total += c * x ** i
    return total


def hermes_nu(g: float) -> tuple:
    """Drift exponent mean and std of the HERMES fit at ``g`` uS (one device)."""
    x = max(g / HERMES_G_MAX, 1e-7)
    if x < 0.0945:
        mean = min(max(-0.0387 * math.log(x) - 0.0182, 0.0720), 0.13)
    else:
        mean = -0.0436 * x ** 2 - 0.0126 * x + 0.0736
    if x < 0.3039:
        std = min(max(-0.0120 * math.log(x) - 0.0023, 0.0124), 0.04)
    else:
        std = -0.0165 * x ** 2 + 0.0116 * x + 0.0104
    return mean, std


def hermes_read_relative(g: float) -> float:
    """The HERMES fit's 1/f noise coefficient ``q_s`` at ``g`` uS (one device)."""
    x = g / HERMES_G_MAX
    if x < 0.1591:
        return min(max(-0.0078 * math.log(max(x, 1e-300)) + 0.0038, 0.0179), 0.04)
    return 0.0664 * x ** 3 - 0.1352 * x ** 2 + 0.0768 * x + 0.0088


def pcm_hermes() -> DeviceModel:
    levels = [HERMES_G_MAX * k / (LEVELS - 1) for k in range(LEVELS)]
    prog, nu_mean, nu_std, read = [], [], [], []
    t = READ_AT + HERMES_T0
    accumulated = math.sqrt(math.log((t + HERMES_T_READ) / (2 * HERMES_T_READ)))
    for g in levels:
        prog.append(_poly(HERMES_PROG, g / HERMES_G_MAX))
        mean, std = hermes_nu(g)
        nu_mean.append(mean)
        nu_std.append(std)
        drifted = g * (t / HERMES_T0) ** -mean
        read.append(hermes_read_relative(g) * accumulated * drifted)
    return DeviceModel(
        levels=tuple(levels), prog_std=tuple(prog), nu_mean=tuple(nu_mean),
        nu_std=tuple(nu_std), read_std=tuple(read), t0=HERMES_T0, name="pcm-hermes-2023",
        source="HERMES PCM, one device per cell: aihwkit 1.1.0 HermesNoiseModel(num_devices=1) "
        "fits to Le Gallo et al., Nat. Electron. 6, 680 (2023) and Khaddam-Aljameh et al., "
        "IEEE JSSC 57, 1027 (2022), evaluated per level by examples/device_models.py; "
        "read_std: accumulated 1/f noise one day after programming")


# ------------------------------------------------------------------ Wan ReRAM
#: aihwkit 1.1.0 ``ReRamWan2022NoiseModel``: reference range (uS) and the std (uS)
#: polynomials ``sum_i c_i x**i``, ``x = g / 40``, at 1 s and one day.
WAN_G_MAX = 40.0
WAN_1S = (0.348, 16.030, -43.853, 45.393, -16.815)
WAN_1DAY = (0.701, 22.086, -50.773, 47.095, -16.458)
WAN_T0 = 1.0


def reram_wan() -> DeviceModel:
    levels = [WAN_G_MAX * k / (LEVELS - 1) for k in range(LEVELS)]
    prog, read = [], []
    for g in levels:
        at_1s, at_1day = _poly(WAN_1S, g / WAN_G_MAX), _poly(WAN_1DAY, g / WAN_G_MAX)
        prog.append(at_1s)
        read.append(math.sqrt(max(at_1day ** 2 - at_1s ** 2, 0.0)))
    zeros = (0.0,) * LEVELS
    return DeviceModel(
        levels=tuple(levels), prog_std=tuple(prog), nu_mean=zeros, nu_std=zeros,
        read_std=tuple(read), t0=WAN_T0, name="reram-wan-2022",
        source="NeuRRAM HfOx ReRAM: aihwkit 1.1.0 ReRamWan2022NoiseModel fits to the figures "
        "of Wan et al., Nature 608, 504 (2022), evaluated per level by "
        "examples/device_models.py; no drift of the mean; read_std: the spread relaxation "
        "adds by one day")


MODELS: Dict[str, Callable[[], DeviceModel]] = {
    "pcm_hermes_2023": pcm_hermes,
    "reram_wan_2022": reram_wan,
}


def text_of(model: DeviceModel) -> str:
    return json.dumps(model.to_dict(), indent=1) + "\n"


def same_numbers(path: Path, model: DeviceModel) -> bool:
    """Whether the file holds ``model`` (its numbers to 1e-12, relative: libm's last bits
    may differ between platforms)."""
    if not path.exists():
        return False
    saved = DeviceModel.from_dict(json.loads(path.read_text()))
    if (saved.name, saved.source, saved.t0) != (model.name, model.source, model.t0):
        return False
    return all(math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15)
               for key in ("levels", "prog_std", "nu_mean", "nu_std", "read_std")
               for a, b in zip(getattr(saved, key), getattr(model, key)))


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite the bundled files")
    parser.add_argument("--check", action="store_true",
                        help="fail if the bundled files differ from the fits")
    args = parser.parse_args(argv)
    differ = []
    for stem, make in MODELS.items():
        model = make()
        path = BUNDLED / f"{stem}.json"
        if args.write:
            path.write_text(text_of(model))
        elif args.check:
            if not same_numbers(path, model):
                differ.append(str(path))
        else:
            print(model.describe(), "\n")
    if differ:
        print(f"differ from the fits: {', '.join(differ)} (run with --write)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
