"""One-line errors, never a traceback: malformed ``--remote`` URLs, a closed stdout
(``| head -1``), a server that is not an exec server, options that need another."""

from __future__ import annotations

import os
import subprocess
from functools import partial
from pathlib import Path

import pytest
import trio

from trio_exec._cli.status import EXIT_CONNECTION, EXIT_STDOUT_CLOSED, EXIT_USAGE

from ..conformance.helpers import TIMEOUT
from .helpers import CLI, assert_one_line_error, reap, run_cli


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("notaurl", "expected ws://HOST:PORT"),
        ("http://127.0.0.1:4444", "ws://"),
        ("127.0.0.1:4444", "did you mean ws://127.0.0.1:4444?"),
        ("ws://127.0.0.1:99999", "the port '99999' is not a number from 1 to 65535"),
        ("ws://127.0.0.1:abc", "the port 'abc' is not a number from 1 to 65535"),
        ("ws://127.0.0.1:0", "the port 0"),
        ("ws://", "no host"),
    ],
)
async def test_malformed_remote_url(url: str, says: str) -> None:
    done = await run_cli("run", "--remote", url, "--", "true")
    line = assert_one_line_error(done, EXIT_USAGE)
    assert says in line
    assert repr(url) in line


async def test_token_file_without_remote_is_a_usage_error(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("secret\n")
    done = await run_cli("run", "--token-file", str(token), "--", "true")
    line = assert_one_line_error(done, EXIT_USAGE)
    assert "--token-file needs --remote" in line
    done = await run_cli("run", "--server-command", "x", "--", "true")
    assert "--server-command needs --via" in assert_one_line_error(done, EXIT_USAGE)


async def test_unreadable_token_file_is_a_usage_error(our_url: str) -> None:
    done = await run_cli("run", "--remote", our_url, "--token-file", "/nonexistent", "--", "true")
    assert "cannot read the token file" in assert_one_line_error(done, EXIT_USAGE)


async def test_stdout_closed_by_its_reader_ends_quietly(where: list[str]) -> None:
    """``trio-exec run -- yes | head -1``: no message, the status of a SIGPIPE death (141,
    as ``cat``), and the command is ended."""
    read, write = os.pipe()
    with trio.fail_after(TIMEOUT):
        process = await trio.lowlevel.open_process(
            [*CLI, "run", *where, "--", "yes"],
            stdin=subprocess.DEVNULL,
            stdout=write,
            stderr=subprocess.PIPE,
        )
        os.close(write)
        try:
            head = trio.lowlevel.FdStream(read)
            assert (await head.receive_some(2))[:1] == b"y"
            await head.aclose()  # `head -1` exits
            assert process.stderr is not None
            stderr = b""
            while chunk := await process.stderr.receive_some():
                stderr += chunk
            status = await process.wait()
        finally:
            await reap(process)
    assert status == EXIT_STDOUT_CLOSED
    # The reference cannot close stdin (it says so once); nothing else is said.
    assert stderr in (b"", NO_CLOSE_STDIN), stderr


NO_CLOSE_STDIN = (
    b"trio-exec run: this exec server cannot close the command's stdin (it lacks the "
    b"`closeStdin` extension): the command will not see the end of its input\n"
)


async def test_shell_pipeline_into_head_is_quiet() -> None:
    """The same in a real shell pipeline, as a user types it."""
    command = f"{' '.join(CLI)} run -- yes | head -1"
    with trio.fail_after(TIMEOUT):
        done = await trio.run_process(
            ["sh", "-c", command], capture_stdout=True, capture_stderr=True, check=False
        )
    assert (done.returncode, done.stdout, done.stderr) == (0, b"y\n", b"")


async def test_a_server_that_is_not_an_exec_server(nursery: trio.Nursery) -> None:
    """A web server answers the upgrade with a page: one line, not its HTML body."""
    page = b"<!DOCTYPE html>\n<html><body>\n<h1>Directory listing</h1>\n</body></html>\n"

    async def web_server(stream: trio.SocketStream) -> None:
        request = b""
        while b"\r\n\r\n" not in request:
            data = await stream.receive_some()
            if not data:
                return
            request += data
        head = (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(page)
        )
        await stream.send_all(head + page)
        await stream.aclose()

    listeners = await nursery.start(partial(trio.serve_tcp, web_server, 0, host="127.0.0.1"))
    port = listeners[0].socket.getsockname()[1]
    done = await run_cli("run", "--remote", f"ws://127.0.0.1:{port}", "--", "true")
    line = assert_one_line_error(done, EXIT_CONNECTION)
    assert "HTTP 200" in line
    assert "not an exec server" in line
    assert "<" not in line
    nursery.cancel_scope.cancel()
