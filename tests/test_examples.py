"""Every example runs, and says what it should."""

from __future__ import annotations

import sys
from pathlib import Path

import trio

from .conformance.helpers import TIMEOUT

EXAMPLES = Path(__file__).parent.parent / "examples"


async def run_example(name: str, *args: str) -> tuple[int, str]:
    with trio.fail_after(TIMEOUT):
        done = await trio.run_process(
            [sys.executable, str(EXAMPLES / name), *args], capture_stdout=True, check=False
        )
    return done.returncode, done.stdout.decode()


async def test_embedded_server_runs_a_process_remotely() -> None:
    code, out = await run_example("embedded_server.py")
    lines = out.splitlines()
    assert lines[0].startswith("exec server listening on ws://127.0.0.1:")
    assert "stream=<OutputStream.STDOUT: 'stdout'>, data=b'hello from" in out
    assert "stream=<OutputStream.STDERR: 'stderr'>, data=b'a line on stderr\\n')" in out
    assert "Exited(seq=4, exit_code=0, signal=None)" in out
    assert lines[-2] == "  Closed(seq=5)"
    assert lines[-1] == "exit code 0"
    assert code == 0


async def test_embedded_server_takes_a_command() -> None:
    code, out = await run_example("embedded_server.py", "sh", "-c", "printf x; exit 5")
    assert "Output(seq=1, stream=<OutputStream.STDOUT: 'stdout'>, data=b'x')" in out
    assert code == 5
