"""Shared helpers of the hardening tests: child-process checks, a CLI server launcher, TLS."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Final

import attrs
import trio
import trustme

TIMEOUT: Final = 20.0
"""Bound on any single wait in these tests; a hang fails the test instead of the run."""

CLI: Final = (sys.executable, "-m", "trio_exec")
"""The ``trio-exec`` command of this interpreter."""


@attrs.frozen(kw_only=True)
class Child:
    """A process whose parent is the one asked about (see :func:`child_processes`)."""

    pid: int
    state: str
    """The ``ps`` STAT column: ``Z`` for a zombie (exited, not reaped)."""
    args: str


def child_processes(parent: int | None = None) -> list[Child]:
    """The children of ``parent`` (default: this process), from ``ps --ppid``.

    The ``ps`` process itself, a child too, is left out.
    """
    parent = os.getpid() if parent is None else parent
    ps = subprocess.Popen(
        ["ps", "-o", "pid=,stat=,args=", "--ppid", str(parent)],
        stdout=subprocess.PIPE,
        text=True,
    )
    out, _ = ps.communicate(timeout=TIMEOUT)
    children = []
    for line in out.splitlines():
        pid, state, *args = line.split(None, 2)
        if int(pid) != ps.pid:
            children.append(Child(pid=int(pid), state=state, args=" ".join(args)))
    return children


def existing_children() -> frozenset[int]:
    """The pids of this process's children now, for :func:`wait_no_children`."""
    return frozenset(child.pid for child in child_processes())


async def wait_no_children(
    parent: int | None = None,
    timeout: float = TIMEOUT,
    *,
    zombies: bool = True,
    existing: frozenset[int] = frozenset(),
) -> None:
    """Wait until ``parent`` (default: this process) has no child, or only zombies if
    ``zombies`` is false; fail after ``timeout`` seconds. Children whose pids are in
    ``existing`` (started before the test, such as a session's sshd) do not count."""

    def left() -> list[Child]:
        children = [c for c in child_processes(parent) if c.pid not in existing]
        return children if zombies else [c for c in children if not c.state.startswith("Z")]

    with trio.fail_after(timeout):
        while left():  # noqa: ASYNC110 - other processes' state: poll
            await trio.sleep(0.05)


@attrs.frozen(kw_only=True)
class CliServer:
    """A running ``trio-exec serve`` started by :func:`open_cli_server`."""

    url: str
    """The URL it printed first (``ws://`` or ``wss://``)."""
    pid: int
    """Its process id."""
    stderr: bytearray
    """Everything it wrote on stderr so far (it keeps growing while it runs)."""


async def _drain(stream: trio.abc.ReceiveStream, into: bytearray) -> None:
    while data := await stream.receive_some():
        into += data


async def _first_line(stream: trio.abc.ReceiveStream, rest: bytearray) -> bytes:
    buffer = b""
    while b"\n" not in buffer:
        data = await stream.receive_some()
        if not data:
            return buffer
        buffer += data
    line, _, after = buffer.partition(b"\n")
    rest += after
    return line


@asynccontextmanager
async def open_cli_server(
    args: Sequence[str], *, env: Mapping[str, str] | None = None
) -> AsyncIterator[CliServer]:
    """Run ``trio-exec serve ARGS`` in a process of its own; yield it once it printed its URL.

    On exit it gets SIGTERM (it then ends every session and reaps every child) and must
    exit with status 0 within :data:`TIMEOUT`; it is SIGKILLed and reaped in any case.
    """
    process = await trio.lowlevel.open_process(
        [*CLI, "serve", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=None if env is None else dict(env),
    )
    assert process.stdout is not None
    assert process.stderr is not None
    stderr = bytearray()
    stdout_rest = bytearray()
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_drain, process.stderr, stderr)
            with trio.fail_after(TIMEOUT):
                line = (await _first_line(process.stdout, stdout_rest)).decode()
            if not line.startswith(("ws://", "wss://")):
                with trio.fail_after(TIMEOUT):
                    await process.wait()
                raise AssertionError(
                    f"trio-exec serve printed {line!r}, exit status {process.returncode}; "
                    f"stderr: {stderr.decode(errors='replace')}"
                )
            nursery.start_soon(_drain, process.stdout, stdout_rest)
            yield CliServer(url=line, pid=process.pid, stderr=stderr)
            process.send_signal(signal.SIGTERM)
            with trio.fail_after(TIMEOUT):
                await process.wait()
            assert process.returncode == 0, stderr.decode(errors="replace")
    finally:
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                process.kill()
                await process.wait()
            await process.stdout.aclose()
            await process.stderr.aclose()


async def run_cli(*args: str, env: Mapping[str, str] | None = None) -> tuple[int, str, str]:
    """Run ``trio-exec ARGS`` to completion; return its exit status, stdout and stderr."""
    with trio.fail_after(TIMEOUT):
        done = await trio.run_process(
            [*CLI, *args],
            stdin=subprocess.DEVNULL,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=None if env is None else dict(env),
        )
    return done.returncode, done.stdout.decode(), done.stderr.decode()


@attrs.frozen(kw_only=True)
class Tls:
    """A throwaway CA and a certificate for ``127.0.0.1`` signed by it."""

    server_context: ssl.SSLContext
    """Server side, with the certificate and key loaded."""
    client_context: ssl.SSLContext
    """Client side, trusting the CA."""
    cert_file: Path
    """The certificate chain, PEM."""
    key_file: Path
    """The private key, PEM."""


def make_tls(directory: Path) -> Tls:
    """Make a CA and a ``127.0.0.1`` certificate with trustme; write the PEM files."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    cert_file = directory / "cert.pem"
    key_file = directory / "key.pem"
    for index, blob in enumerate(cert.cert_chain_pems):
        blob.write_to_path(str(cert_file), append=index > 0)
    cert.private_key_pem.write_to_path(str(key_file))
    return Tls(
        server_context=server_context,
        client_context=client_context,
        cert_file=cert_file,
        key_file=key_file,
    )
