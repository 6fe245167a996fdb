"""``trio-exec run --cwd``, ``--env NAME=VALUE`` (added to the environment of the side that
runs the command), and ``trio-exec --version``."""

from __future__ import annotations

import os
from pathlib import Path

import trio

import trio_exec

from .helpers import run_cli


async def test_cwd(where: list[str], tmp_path: Path) -> None:
    done = await run_cli("run", *where, "--cwd", str(tmp_path), "--", "pwd", "-P")
    real = await trio.Path(tmp_path).resolve()
    assert (done.returncode, done.stdout) == (0, f"{real}\n".encode()), done


async def test_env_is_added_to_the_environment_of_the_side_that_runs(where: list[str]) -> None:
    """``--env`` variables are set; the rest of the environment (PATH, and a variable the
    CLI's own environment lacks) is the runner's: here, the CLI's."""
    script = 'echo "$TRIO_EXEC_A|$TRIO_EXEC_B|${TRIO_EXEC_CLI_ONLY-unset}"; command -v sh'
    done = await run_cli(
        "run",
        *where,
        "--env",
        "TRIO_EXEC_A=1",
        "--env",
        "TRIO_EXEC_B=x=y z",
        "--",
        "sh",
        "-c",
        script,
        env=dict(os.environ, TRIO_EXEC_CLI_ONLY="cli"),
    )
    assert done.returncode == 0, done
    first, second = done.stdout.decode().splitlines()
    expected_cli_only = "unset" if where else "cli"
    assert first == f"1|x=y z|{expected_cli_only}"
    assert second.endswith("/sh")


async def test_version() -> None:
    done = await run_cli("--version")
    assert (done.returncode, done.stdout) == (0, f"trio-exec {trio_exec.__version__}\n".encode())
