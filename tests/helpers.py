"""Setup helpers shared by test packages: a checked command run, a file lock, an apt-get
install, and the fixtures of the real reference server."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, Final, Literal

import pytest
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from trio_exec.testing.reference import (
    ensure_reference,
    file_lock,
    open_reference_server,
    open_server_process,
)

__all__ = [
    "APT_LOCK",
    "LOG_TAIL",
    "OUR_SERVER",
    "apt_get_install",
    "locked",
    "open_exec_server",
    "open_websocket",
    "reference_binary",
    "reference_url",
    "run",
    "stop_process",
]

LOG_TAIL: Final = 4000
"""Characters of a failed command's output (or a log) that a failure message shows."""

OUR_SERVER: Final = (sys.executable, "-m", "trio_exec", "serve", "--listen", "ws://127.0.0.1:0")
"""``trio-exec serve`` on a free loopback port, run by this very interpreter; it prints its
URL first."""

APT_LOCK: Final = Path(tempfile.gettempdir()) / "trio-exec-apt.lock"
"""The lock file on which the test processes' ``apt-get`` installs wait for each other."""


def run(
    argv: Sequence[str | os.PathLike[str]],
    what: str,
    timeout: float,
    *,
    env: Mapping[str, str] | None = None,
    stdin: int | None = subprocess.DEVNULL,
) -> str:
    """Run ``argv`` and return its stdout; fail the test with its output if it fails or
    takes longer than ``timeout`` seconds."""
    shown = " ".join(str(arg) for arg in argv)
    try:
        completed = subprocess.run(
            [str(arg) for arg in argv],
            stdin=stdin,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            env=None if env is None else dict(env),
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        output = (exc.stdout or b"") + (exc.stderr or b"")
        text = output.decode("utf-8", "replace") if isinstance(output, bytes) else output
        pytest.fail(f"{what}: `{shown}` took more than {timeout:.0f} s:\n{text[-LOG_TAIL:]}")
    except OSError as exc:
        pytest.fail(f"{what}: cannot run `{shown}`: {exc}")
    if completed.returncode != 0:
        pytest.fail(
            f"{what}: `{shown}` exited with code {completed.returncode}:\n"
            f"{completed.stdout.strip()[-LOG_TAIL:]}\n{completed.stderr.strip()[-LOG_TAIL:]}"
        )
    return completed.stdout


def stop_process(
    process: subprocess.Popen[bytes], grace: float, *, kill_group: bool = False
) -> None:
    """SIGTERM ``process`` by its PID; SIGKILL it (with ``kill_group``, its whole process
    group: it must lead one) if it has not ended after ``grace`` seconds; reap it."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            if not kill_group:
                process.kill()
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@contextlib.contextmanager
def locked(path: Path, timeout: float) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (waiting up to ``timeout`` seconds); fail the
    test when it is not free by then."""
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(file_lock(path, timeout))
        except RuntimeError as exc:
            pytest.fail(str(exc))
        yield


def apt_get_install(
    packages: Sequence[str], missing: str, timeout: float, *, recommends: bool = True
) -> None:
    """``apt-get update``, then ``apt-get install -y PACKAGES`` (without the recommended
    ones unless ``recommends``), each step and its wait for apt's own lock bounded by
    ``timeout``. Fails the test with apt's output when a step fails, and at once, starting
    with ``missing`` (what is missing), when there is no apt-get or the tests are not root.

    Callers hold :data:`APT_LOCK` (:func:`locked`) and look again for what is missing once
    they have it: another test process may have installed it meanwhile."""
    if shutil.which("apt-get") is None:
        pytest.fail(f"{missing} and there is no apt-get to install them")
    if os.geteuid() != 0:
        pytest.fail(f"{missing}; installing them with apt-get needs root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    lock_wait = f"DPkg::Lock::Timeout={int(timeout)}"
    run(["apt-get", "-o", lock_wait, "update"], "apt-get update", timeout, env=env)
    options = [] if recommends else ["--no-install-recommends"]
    run(
        ["apt-get", "-o", lock_wait, "install", "-y", *options, *packages],
        f"installing {', '.join(packages)}",
        timeout,
        env=env,
    )


@pytest.fixture(scope="session")
def reference_binary() -> Path:
    """The reference ``codex`` binary, installed with npm on first use (never skipped)."""
    return ensure_reference()


@pytest.fixture
async def reference_url(reference_binary: Path) -> AsyncIterator[str]:
    """A fresh reference server (``codex exec-server`` 0.169) for one test."""
    async with open_reference_server(reference_binary) as url:
        yield url


def open_exec_server(
    kind: Literal["ours", "reference"], cwd: Path
) -> AbstractAsyncContextManager[str]:
    """An exec server subprocess working in ``cwd`` for an ``async with`` block, which yields
    its URL: ``trio-exec serve`` (:data:`OUR_SERVER`) or the reference (installed on first
    use)."""
    if kind == "ours":
        return open_server_process(OUR_SERVER, cwd=cwd)
    return open_reference_server(ensure_reference(), cwd=cwd)


@asynccontextmanager
async def open_websocket(url: str, **options: Any) -> AsyncIterator[WebSocketConnection]:
    """``trio_websocket.open_websocket_url(url, **options)``, whose TCP stream is closed on
    the way out, whoever closed the websocket.

    trio-websocket 0.12 leaves the stream open when the peer started the close, or dropped
    the connection without one (code 1006, as the reference does on an unknown
    notification): its ``aclose`` returns early once a close reason is set. The socket
    would leak until collected, a ResourceWarning in whatever test runs then.
    """
    connection: WebSocketConnection | None = None
    try:
        async with open_websocket_url(url, **options) as connection:
            yield connection
    finally:
        stream = getattr(connection, "_stream", None)
        if stream is not None:
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)
