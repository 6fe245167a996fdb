"""Running an example script in a subprocess, bounded in time."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

import attrs
import trio

ROOT: Final = Path(__file__).resolve().parent.parent.parent
"""The repository: the working directory of every example run."""

EXAMPLES: Final = ROOT / "examples"

TIMEOUT: Final = 60.0
"""Bound on one example run; a hang fails the test instead of the suite."""


@attrs.frozen(kw_only=True)
class Run:
    """How an example run ended."""

    exit_code: int
    stdout: bytes
    stderr: bytes

    @property
    def out(self) -> str:
        return self.stdout.decode()

    @property
    def err(self) -> str:
        return self.stderr.decode()


async def run_python(
    args: Sequence[str],
    *,
    cwd: Path = ROOT,
    env: Mapping[str, str] | None = None,
    timeout: float = TIMEOUT,
) -> Run:
    """``sys.executable ARGS...`` to completion, with its output captured."""
    full_env = None if env is None else {**os.environ, **env}
    with trio.fail_after(timeout):
        done = await trio.run_process(
            [sys.executable, *args],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            cwd=cwd,
            env=full_env,
        )
    return Run(exit_code=done.returncode, stdout=done.stdout, stderr=done.stderr)


async def run_example(name: str, *args: str, timeout: float = TIMEOUT) -> Run:
    """Run ``examples/NAME ARGS...``."""
    return await run_python([str(EXAMPLES / name), *args], timeout=timeout)
