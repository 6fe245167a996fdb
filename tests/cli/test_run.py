"""``trio-exec run``: live output, exit status, --json, stdin and Ctrl-C forwarding."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import trio

from trio_exec.testing.reference import open_server_process

from ..conformance.helpers import TIMEOUT
from .helpers import CLI, reap, run_cli


async def test_streams_go_to_their_places_and_status_is_the_childs() -> None:
    done = await run_cli("run", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (done.returncode, done.stdout, done.stderr) == (3, b"out\n", b"err\n")


async def test_signal_death_status() -> None:
    done = await run_cli("run", "--", "sh", "-c", "kill -TERM $$")
    assert done.returncode == 128 + signal.SIGTERM


async def test_json_prints_one_event_per_line() -> None:
    done = await run_cli("run", "--json", "--", "sh", "-c", "printf hi; exit 4")
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert lines[0] == {"event": "output", "seq": 1, "stream": "stdout", "text": "hi"}
    assert lines[1] == {"event": "exited", "seq": 2, "exitCode": 4, "signal": None}
    assert lines[2] == {"event": "closed", "seq": 3}
    assert done.returncode == 4


async def test_stdin_is_forwarded_and_closed() -> None:
    done = await run_cli("run", "--", "sh", "-c", "cat; echo end", stdin=b"piped\n")
    assert done.stdout == b"piped\nend\n"
    assert done.returncode == 0


async def test_tty_runs_on_a_terminal() -> None:
    done = await run_cli("run", "--tty", "--", "sh", "-c", "test -t 1 && echo yes")
    assert done.stdout == b"yes\r\n"


async def test_missing_program_fails_clearly() -> None:
    done = await run_cli("run", "--", "/nonexistent/program")
    assert done.returncode == 127
    assert b"No such file or directory" in done.stderr


async def test_missing_argv_is_a_usage_error() -> None:
    done = await run_cli("run")
    assert done.returncode == 2


async def test_ctrl_c_is_forwarded_to_the_child() -> None:
    script = "trap 'echo got-int; exit 7' INT; echo ready; while :; do sleep 0.01; done"
    proc = await trio.lowlevel.open_process(
        [*CLI, "run", "--", "sh", "-c", script],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
    )
    try:
        with trio.fail_after(TIMEOUT):
            assert proc.stdout is not None
            output = b""
            while b"ready\n" not in output:
                output += await proc.stdout.receive_some(1024)
            proc.send_signal(signal.SIGINT)
            while chunk := await proc.stdout.receive_some(1024):
                output += chunk
            assert await proc.wait() == 7
    finally:
        # A failure must not leave the CLI behind (its keeper then ends the child too).
        await reap(proc)
    assert output == b"ready\ngot-int\n"


async def test_remote_run_uses_the_servers_directory_and_environment(tmp_path: Path) -> None:
    # From a directory the server is not in, with a variable the server does not have.
    server_dir = tmp_path / "server"
    server_dir.mkdir()
    server_env = dict(os.environ, TRIO_EXEC_TEST_SERVER_SIDE="server")
    server = [*CLI, "serve", "--listen", "ws://127.0.0.1:0"]
    script = 'pwd -P; echo "${TRIO_EXEC_TEST_SERVER_SIDE-unset} ${TRIO_EXEC_TEST_CLIENT-unset}"'
    with trio.fail_after(TIMEOUT):
        async with open_server_process(server, env=server_env, cwd=server_dir) as url:
            done = await trio.run_process(
                [*CLI, "run", "--remote", url, "--", "sh", "-c", script],
                env=dict(os.environ, TRIO_EXEC_TEST_CLIENT="client"),
                cwd=tmp_path,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
    assert (done.returncode, done.stderr) == (0, b"")
    real_dir = await trio.Path(server_dir).resolve()
    assert done.stdout.decode() == f"{real_dir}\nserver unset\n"
