"""Helpers of the CLI tests: the console script in a subprocess, in a real terminal, and
the servers it runs against."""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import subprocess
import sys
import termios
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Final

import trio

from ..conformance.helpers import TIMEOUT

CLI: Final = (sys.executable, "-m", "trio_exec")
"""The console script, run by this very interpreter."""


async def run_cli(
    *args: str,
    stdin: bytes = b"",
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``trio-exec ARGS`` to its end (bounded); its stdout and stderr captured."""
    with trio.fail_after(TIMEOUT):
        return await trio.run_process(
            [*CLI, *args],
            stdin=stdin,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=None if env is None else dict(env),
            cwd=cwd,
        )


@asynccontextmanager
async def open_server_printing_url(
    argv: Sequence[str], env: Mapping[str, str] | None = None
) -> AsyncIterator[tuple[trio.Process, str]]:
    """Run a server that prints its URL on its first line of stdout; yield the process (its
    stdout and stderr are pipes) and the URL; kill it and close its pipes on the way out."""
    process = await trio.lowlevel.open_process(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=None if env is None else dict(env),
    )
    try:
        assert process.stdout is not None
        line = b""
        with trio.fail_after(TIMEOUT):
            while not line.endswith(b"\n"):
                data = await process.stdout.receive_some(1)  # the rest stays in the pipe
                assert data, f"the server printed no URL: end of file after {line!r}"
                line += data
        yield process, line.decode().strip()
    finally:
        await reap(process)


async def reap(process: trio.Process) -> None:
    """Kill ``process`` if it still runs, wait for it and close its pipes; shielded, for the
    way out of a test."""
    with trio.CancelScope(shield=True):
        if process.returncode is None:
            process.kill()
        await process.wait()
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                await stream.aclose()


def assert_one_line_error(done: subprocess.CompletedProcess[bytes], status: int) -> str:
    """The run failed with ``status`` and a single line on stderr (no traceback); return it."""
    text = done.stderr.decode()
    assert done.returncode == status, (done.returncode, text)
    assert "Traceback" not in text
    assert text.startswith("trio-exec"), text
    assert text.count("\n") == 1, text
    assert text.endswith("\n"), text
    return text


def set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def take_terminal() -> None:
    """In the child, after ``setsid``: make stdin (the slave) the controlling terminal."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    """The master side of the terminal the CLI runs in."""

    def __init__(self, master: int, process: trio.Process) -> None:
        self.master = master
        self.process = process
        self.output = b""

    async def read_until(self, needle: bytes) -> None:
        while needle not in self.output:
            if not await self._read_some():
                raise AssertionError(f"{needle!r} never came; the terminal got {self.output!r}")

    async def read_to_end(self) -> bytes:
        while await self._read_some():
            pass
        return self.output

    async def _read_some(self) -> bool:
        while True:
            try:
                data = os.read(self.master, 4096)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(self.master)
                continue
            except OSError as exc:  # EIO: every slave descriptor is closed
                if exc.errno != errno.EIO:
                    raise
                return False
            self.output += data
            return bool(data)


@asynccontextmanager
async def cli_in_terminal(args: list[str], rows: int, cols: int) -> AsyncIterator[Terminal]:
    master, slave = os.openpty()
    try:
        set_size(master, rows, cols)
        os.set_blocking(master, False)
        process = await trio.lowlevel.open_process(
            [*CLI, *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
            preexec_fn=take_terminal,
        )
        os.close(slave)
        slave = -1
        try:
            yield Terminal(master, process)
        finally:
            await reap(process)
    finally:
        if slave >= 0:
            os.close(slave)
        trio.lowlevel.notify_closing(master)
        os.close(master)
