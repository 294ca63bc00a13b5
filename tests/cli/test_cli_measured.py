"""``aihwkit-slicing sweep --noise-model measured``: each table file's own device model."""

import json

from aihwkit_slicing import DeviceModel, bit_sliced, save_table
from aihwkit_slicing.cli.main import main
from aihwkit_slicing.experiments.results import read_records


def run_in_process(args, capsys):
    try:
        code = main(args)
    except SystemExit as stop:
        code = stop.code
    return code, capsys.readouterr().err


def test_a_table_without_a_device_model_is_refused_in_one_line(tmp_path, capsys):
    code, err = run_in_process(["sweep", "--tables", "seed", "--noise-model", "measured",
                                "--out", str(tmp_path), "--quiet"], capsys)
    assert code == 2
    assert err == ("aihwkit-slicing: error: noise model 'measured' takes each table's device "
                   "model, but table 'seed' has none; give its JSON a \"device\" key "
                   "(docs/devices.md)\n")
    assert not (tmp_path / "results.csv").exists()
    code, err = run_in_process(["sweep", "--noise-model", "measured", "--out", str(tmp_path),
                                "--quiet"], capsys)  # the default tables: aihwkit's first
    assert code == 2 and err.count("\n") == 1
    assert "'aihwkit-1pair' is aihwkit's continuous converter" in err


def test_table_files_are_swept_with_their_own_devices(tmp_path, capsys):
    paths, devices = [], {}
    for name, prog_std in (("quiet", 0.2), ("noisy", 1.5)):
        devices[name] = DeviceModel.constant([0.0, 25 / 3, 50 / 3, 25.0], prog_std=prog_std,
                                             nu_mean=0.05, nu_std=0.01, read_std=0.1)
        paths += ["--table-file", str(tmp_path / f"{name}.json")]
        save_table(bit_sliced(2, 4, name=name).with_device(devices[name]),
                   tmp_path / f"{name}.json")
    out = tmp_path / "out"
    code, err = run_in_process(["sweep", *paths, "--noise-model", "measured", "--times",
                                "86400", "--repeats", "1", "--scale", "max", "--per-tensor",
                                "--out", str(out), "--quiet"], capsys)
    assert code == 0, err
    records = read_records(out / "results.csv")
    for name, device in devices.items():
        params = {r["noise_params"] for r in records if r["table"] == name}
        assert params == {json.dumps({"device_model": device.content_hash()})}
    assert {r["noise_model"] for r in records} == {"measured"}
