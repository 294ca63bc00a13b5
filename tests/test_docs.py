"""The docs run as written: every Python block of README.md and docs/*.md executes, every
shell command shown exists, every linked file is there, the front page stays short.

Python blocks of one file run top to bottom as one script (a later block may use what an
earlier one defined), saved as a file in an empty folder and run there with ``python
FILE.py``, as a user who copies them runs them (``python -c`` hides what needs a file:
Dask's worker processes re-import the main script, which then must guard its work with
``if __name__ == "__main__":``); ``AIHWKIT_SLICING_FAST=1`` is set for blocks that offer
a fast mode.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.S)


def blocks(path: Path, language: str) -> list[str]:
    return [code for lang, code in BLOCK.findall(path.read_text()) if lang == language]


def test_the_front_page_is_under_ten_thousand_characters():
    assert len((ROOT / "README.md").read_text()) < 10_000


@pytest.mark.parametrize("path", [p for p in DOCS if blocks(p, "python")],
                         ids=lambda p: p.name)
def test_python_blocks_run_as_written(path, tmp_path):
    script = tmp_path / f"doc_{path.stem.lower().replace('-', '_')}.py"
    script.write_text("\n\n".join(blocks(path, "python")))
    env = dict(os.environ, AIHWKIT_SLICING_FAST="1", OMP_NUM_THREADS="1", MPLBACKEND="Agg",
               HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, script.name], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{path.name} as {script.name}:\n{done.stderr[-3000:]}"


def test_the_readmes_task_factory_runs_from_the_shell_as_shown(tmp_path):
    """The README's own-model block, saved as tasks.py, is what its shell lines load."""
    (block,) = [code for code in blocks(ROOT / "README.md", "python") if "def make_task" in code]
    (tmp_path / "tasks.py").write_text(block)
    shown = [line for _, line in shell_commands() if "--model tasks.py:make_task" in line]
    assert shown, "the README shows no command of tasks.py:make_task"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-m", "aihwkit_slicing.cli.main", "layers", "--model",
                           "tasks.py:make_task"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("mine: 2 layers a sweep makes analog, 320 weights")


def shell_commands() -> list[tuple[str, str]]:
    found = []
    for path in DOCS:
        for code in blocks(path, "bash"):
            for line in code.splitlines():
                line = line.split(" #")[0].strip()
                if line and not line.startswith("#"):
                    found.append((path.name, line))
    return found


def make_targets() -> set[str]:
    return set(re.findall(r"^([\w.-]+):", (ROOT / "Makefile").read_text(), re.M))


@pytest.mark.parametrize("where,line", shell_commands(), ids=lambda v: str(v)[:60])
def test_every_shell_command_shown_exists(where, line):
    from aihwkit_slicing.cli.main import build_parser

    words = shlex.split(line)
    program = words[0]
    if program == "make":
        assert set(words[1:]) <= make_targets(), f"{where}: no make target in {line!r}"
    elif program == "aihwkit-slicing":
        build_parser().parse_args(words[1:])  # exits (status 2) on an unknown option
    elif program in ("python", ".venv/bin/python"):
        script = next(w for w in words[1:] if not w.startswith("-"))
        assert (ROOT / script).exists(), f"{where}: {script} does not exist"
        if script.startswith("benchmarks/") or script.startswith("examples/"):
            options = [w.split("=")[0] for w in words if w.startswith("--")]
            text = (ROOT / script).read_text()
            assert all(f'"{o}"' in text for o in options), f"{where}: {line!r}"
    elif program in ("pip", "git", "cd", "dask", "dask-scheduler", "dask-worker"):
        pass  # other tools: shown for context
    elif program.startswith(".venv/bin/"):
        tool = program.split("/")[-1]
        assert tool in {"jupyter-execute", "aihwkit-slicing"}, f"{where}: {line!r}"
        for word in words[1:]:
            if word.endswith((".ipynb", ".py", ".json")) and "/" in word:
                assert (ROOT / word).exists(), f"{where}: {word} does not exist"
    else:
        pytest.fail(f"{where}: unknown command {line!r}")


def test_every_linked_file_exists():
    for path in DOCS:
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", path.read_text()):
            if target.startswith("http"):
                continue
            assert (path.parent / target).exists(), f"{path.name} links to missing {target}"


def test_every_doc_the_code_mentions_exists():
    """Code, examples, notebooks and benchmarks name docs/ files users must have."""
    places = [ROOT / "aihwkit_slicing", ROOT / "examples", ROOT / "notebooks",
              ROOT / "benchmarks", ROOT / "tests"]
    missing = set()
    for place in places:
        for path in place.rglob("*"):
            if path.suffix in (".py", ".ipynb", ".md"):
                for name in re.findall(r"docs/[\w.-]+\.(?:md|png)", path.read_text()):
                    if not (ROOT / name).exists():
                        missing.add(f"{path.relative_to(ROOT)} mentions {name}")
    assert not missing, sorted(missing)
