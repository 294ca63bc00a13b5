"""Per-level error statistics (``design/encodings.py``) through a measured device model:
the Monte Carlo programs and drifts each device as a tile does, stuck devices included."""

from __future__ import annotations

import torch

from aihwkit_slicing import DeviceModel, single_pair
from aihwkit_slicing.design.encodings import level_error_report, simulate_columns

LEVELS_4 = (0.0, 25 / 3, 50 / 3, 25.0)


def test_a_stuck_device_drifts_with_its_stuck_level_in_the_monte_carlo():
    device = DeviceModel(levels=LEVELS_4, prog_std=(0.0,) * 4, nu_mean=(0.0, 0.0, 0.0, 0.1),
                         nu_std=(0.0,) * 4, read_std=(0.0,) * 4, stuck=(0.0, 0.0, 0.0, 0.3),
                         t0=20.0)
    table = single_pair(4).with_device(device)
    zero = table.selected_columns[table.n_levels // 2]  # both devices at 0 uS
    assert table.conductances[:, zero].tolist() == [0.0, 0.0]
    weights = simulate_columns(table, "measured", 1000.0, [zero], n_samples=4000, seed=1)[0]
    drifted = 25.0 * (1020.0 / 20.0) ** -0.1
    values = set(torch.round(weights, decimals=4).tolist())
    assert values == {0.0, round(drifted, 4), round(-drifted, 4)}
    stuck_plus = float((weights > 0).double().mean())
    assert abs(stuck_plus - 0.3 * 0.7) < 0.03  # gp stuck, gm not


def test_the_level_report_sees_the_devices_noise():
    quiet = DeviceModel.constant(LEVELS_4, prog_std=0.1)
    noisy = DeviceModel.constant(LEVELS_4, prog_std=1.0)
    rms = {}
    for name, device in (("quiet", quiet), ("noisy", noisy)):
        report = level_error_report(single_pair(4).with_device(device), "measured", 0.0,
                                    n_samples=4000, compensation=False)
        rms[name] = max(row["rms"] for row in report)
    # one device at a level > 0 (error std s) and one at 0 uS, clipped at 0 (mean square
    # s**2 / 2): the largest rms error of a level is s * sqrt(1.5), relative to 25 uS
    assert abs(rms["quiet"] - 1.5 ** 0.5 * 0.1 / 25) < 0.05 * rms["quiet"]
    assert abs(rms["noisy"] - 1.5 ** 0.5 * 1.0 / 25) < 0.05 * rms["noisy"]
