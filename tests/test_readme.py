"""The README's runnable snippets run (those that end in ``trio.run(...)``), and its quick
start says how to get ``trio-exec`` and how CI checks the project."""

from __future__ import annotations

import os
import re
import shlex
import sys
import sysconfig
from pathlib import Path

import pytest
import trio

from .conformance.helpers import TIMEOUT

README = Path(__file__).parent.parent / "README.md"
BLOCKS = [
    block
    for block in re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    if "trio.run(" in block
]


def test_the_readme_has_runnable_snippets() -> None:
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
async def test_snippet_runs(block: str) -> None:
    with trio.fail_after(TIMEOUT):
        done = await trio.run_process(
            [sys.executable, "-c", block], capture_stdout=True, capture_stderr=True, check=False
        )
    assert done.returncode == 0, done.stderr.decode()


QUICK_START = re.search(r"^## Quick start\n(.*?)^## ", README.read_text(), re.DOTALL | re.MULTILINE)
CI_SCRIPT = Path(__file__).parent.parent / ".ci" / "run"


def _quick_start_commands() -> list[str]:
    """The ``$`` lines of the quick start's console blocks, without the prompt and comment."""
    assert QUICK_START is not None, "README.md has no '## Quick start' section"
    blocks = re.findall(r"```console\n(.*?)```", QUICK_START[1], flags=re.DOTALL)
    return [
        line[2:].split("  #")[0].strip()
        for block in blocks
        for line in block.splitlines()
        if line.startswith("$ ")
    ]


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    """The quick start's second command is the whole check, and CI runs exactly it."""
    suite = _quick_start_commands()[1]
    assert "nox -s lint typecheck docs tests" in suite
    assert suite in CI_SCRIPT.read_text().splitlines()


async def test_the_quick_start_says_how_trio_exec_gets_on_path() -> None:
    """The quick start installs the package with pip into an activated virtual environment
    and then runs ``trio-exec``: pip puts the script in this Python's scripts folder, and
    with only that folder (and the system's) on PATH, the README's command runs."""
    commands = _quick_start_commands()
    installs = [command for command in commands if command.startswith("python3 -m pip install .")]
    assert installs, commands
    assert any("bin/activate" in command for command in commands[: commands.index(installs[0])])
    runs = [command for command in commands if command.startswith("trio-exec ")]
    assert runs, commands
    scripts = Path(sysconfig.get_path("scripts"))
    assert (scripts / "trio-exec").is_file()
    env = {**os.environ, "PATH": os.pathsep.join([str(scripts), "/usr/bin", "/bin"])}
    for command in runs:
        with trio.fail_after(TIMEOUT):
            done = await trio.run_process(
                shlex.split(command), env=env, capture_stdout=True, capture_stderr=True, check=False
            )
        assert done.returncode == 0, (command, done.stderr.decode())
        assert done.stdout, command
