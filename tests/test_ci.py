"""CI (``.ci/run``) tests both supported interpreters, each in an environment of its own.

``.ci/run`` runs here with stand-ins for ``make`` (it records its arguments) and for the
interpreters (they answer the version check as told), so nothing is installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def stand_in(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


def run_ci(tmp_path: Path, python3_is_311: bool = True) -> tuple[int, list[list[str]], str]:
    """``(exit status, arguments of every make call, stderr)`` of ``.ci/run``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "make.log"
    stand_in(bin_dir, "make", f'echo "$*" >> "{log}"')
    stand_in(bin_dir, "python3", "exit 0" if python3_is_311 else "exit 1")
    stand_in(bin_dir, "python3.12", "exit 0")
    env = {key: value for key, value in os.environ.items() if key != "PYTHON312"}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    done = subprocess.run(["bash", str(ROOT / ".ci" / "run")], env=env, capture_output=True,
                          text=True, timeout=60)
    calls = [line.split() for line in log.read_text().splitlines()] if log.exists() else []
    return done.returncode, calls, done.stderr


def test_ci_runs_the_whole_suite_on_python_3_11_then_on_python_3_12(tmp_path):
    status, calls, stderr = run_ci(tmp_path)
    assert status == 0, stderr
    assert calls == [
        ["venv"],
        ["test"],
        ["venv", "PYTHON=python3.12", "VENV=.venv-python3.12"],
        ["test", "PYTHON=python3.12", "VENV=.venv-python3.12"],
    ]


def test_ci_refuses_to_run_when_python3_is_not_python_3_11(tmp_path):
    status, calls, stderr = run_ci(tmp_path, python3_is_311=False)
    assert status != 0 and calls == []
    assert "must be Python 3.11" in stderr


@pytest.mark.parametrize(("arguments", "venv"), [
    ([], ".venv"),
    (["PYTHON=python3.12"], ".venv-python3.12"),
    (["PYTHON=/opt/python/bin/python3.12"], ".venv-python3.12"),
    (["PYTHON=python3.12", "VENV=.venv-py312"], ".venv-py312"),
])
def test_each_interpreter_gets_its_own_environment(arguments, venv):
    """`make test PYTHON=python3.12` must not reuse the 3.11 .venv.

    Runs in an environment without the settings of a calling make: inside CI's Python 3.12
    leg, ``make test PYTHON=...`` passes its variables on to sub-makes through MAKEFLAGS
    (and PYTHON/VENV may be exported), which would choose the environment for this call.
    """
    inherited = {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "PYTHON", "VENV"}
    env = {key: value for key, value in os.environ.items() if key not in inherited}
    done = subprocess.run(["make", "-n", "test", *arguments], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert f"{venv}/bin/python -m pytest" in done.stdout
