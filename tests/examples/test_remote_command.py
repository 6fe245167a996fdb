"""``examples/remote_command.py`` against a real ``python -m trio_exec serve`` process."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import pytest
import trio

from trio_exec.testing.reference import open_server_process

from .helpers import EXAMPLES, ROOT, TIMEOUT, run_example

SERVE = [sys.executable, "-m", "trio_exec", "serve"]
TOKEN = "s3cret-token-for-the-example"


@pytest.fixture
async def server_url() -> AsyncIterator[str]:
    async with open_server_process(SERVE) as url:
        yield url


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    return path


@pytest.fixture
async def token_server_url(token_file: Path) -> AsyncIterator[str]:
    argv = [*SERVE, "--ws-auth", "capability-token", "--ws-token-file", str(token_file)]
    async with open_server_process(argv) as url:
        yield url


async def test_streams_both_outputs_and_exits_with_the_child_code(server_url: str) -> None:
    run = await run_example(
        "remote_command.py", server_url, "--", "sh", "-c", "echo out; echo err >&2; exit 7"
    )
    assert run.exit_code == 7
    assert run.stdout == b"out\n"
    assert run.stderr == b"err\n"


async def test_output_is_copied_byte_for_byte(server_url: str) -> None:
    code = "import sys; sys.stdout.buffer.write(bytes(range(256)) * 4000)"
    run = await run_example("remote_command.py", server_url, "--", sys.executable, "-c", code)
    assert run.exit_code == 0, run.err
    assert run.stdout == bytes(range(256)) * 4000


async def test_a_signal_death_is_128_plus_n(server_url: str) -> None:
    code = "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"
    run = await run_example("remote_command.py", server_url, "--", sys.executable, "-c", code)
    assert run.exit_code == 128 + signal.SIGTERM


async def test_token_file_is_sent_as_bearer_token(token_server_url: str, token_file: Path) -> None:
    run = await run_example(
        "remote_command.py", token_server_url, "--token-file", str(token_file), "--", "echo", "in"
    )
    assert (run.exit_code, run.stdout) == (0, b"in\n"), run.err


async def test_missing_or_wrong_token_is_refused(token_server_url: str, tmp_path: Path) -> None:
    run = await run_example("remote_command.py", token_server_url, "--", "echo", "in")
    assert run.exit_code == 255
    assert run.stdout == b""
    assert "HTTP 401 missing websocket bearer token" in run.err
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-token")
    run = await run_example(
        "remote_command.py", token_server_url, "--token-file", str(wrong), "--", "echo", "in"
    )
    assert run.exit_code == 255
    assert "HTTP 401 invalid websocket bearer token" in run.err
    assert "not-the-token" not in run.err


async def test_spawn_failure_and_unreachable_server_exit_255(server_url: str) -> None:
    run = await run_example("remote_command.py", server_url, "--", "no-such-program-here")
    assert run.exit_code == 255
    assert "No such file or directory" in run.err
    with socket.socket() as sock:  # a port nothing listens on once it is closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    run = await run_example("remote_command.py", f"ws://127.0.0.1:{port}", "--", "true")
    assert run.exit_code == 255
    assert f"cannot connect to ws://127.0.0.1:{port}" in run.err


async def test_missing_command_is_a_usage_error() -> None:
    run = await run_example("remote_command.py", "ws://127.0.0.1:1")
    assert run.exit_code == 2
    assert "missing the command" in run.err


async def test_ctrl_c_is_forwarded_to_the_remote_child(server_url: str) -> None:
    child = (
        "import signal, sys, time\n"
        "def stop(*_):\n"
        "    print('interrupted', flush=True); sys.exit(3)\n"
        "signal.signal(signal.SIGINT, stop)\n"
        "print('ready', flush=True)\n"
        "time.sleep(30)\n"
    )
    argv = [sys.executable, str(EXAMPLES / "remote_command.py"), server_url, "--"]
    argv += [sys.executable, "-c", child]
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            process: trio.Process = await nursery.start(
                partial(trio.run_process, argv, stdout=subprocess.PIPE, check=False, cwd=ROOT)
            )
            assert process.stdout is not None
            out = b""
            while b"ready\n" not in out:
                chunk = await process.stdout.receive_some()
                assert chunk, f"the example ended early: {out!r}"
                out += chunk
            process.send_signal(signal.SIGINT)  # what Ctrl-C does to the example
            while chunk := await process.stdout.receive_some():
                out += chunk
            assert await process.wait() == 3
    assert out == b"ready\ninterrupted\n"
