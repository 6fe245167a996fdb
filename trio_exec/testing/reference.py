"""Install and run the reference exec server, ``codex exec-server`` 0.169, for interop tests.

trio_exec speaks the process protocol of ``codex exec-server`` (see ``PROTOCOL.md``). This
module gets the real thing so that tests can drive it side by side with ``trio-exec serve``:

* :func:`ensure_reference` installs the pinned npm package (once per cache directory, guarded
  by a file lock so that parallel test processes share one install) and returns the path of
  the native ``codex`` binary inside it.
* :func:`open_reference_server` runs ``codex exec-server --listen ws://127.0.0.1:0`` for the
  duration of an ``async with`` block and yields the websocket URL it bound.

Typical use in a test module::

    @pytest.fixture(scope="session")
    def reference_binary() -> Path:
        return ensure_reference()

    @pytest.fixture
    async def reference_url(
        reference_binary: Path,
    ) -> AsyncIterator[str]:
        async with open_reference_server(reference_binary) as url:
            yield url

The install needs ``npm`` and the npm registry. When either is missing,
:func:`ensure_reference` raises :class:`RuntimeError` with npm's own output: the interop
tests are meant to fail loudly, not to skip quietly.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path

import trio

from .._util import open_service_nursery

__all__ = [
    "CACHE_ENV_VAR",
    "INSTALL_TIMEOUT",
    "LOCK_POLL_INTERVAL",
    "REFERENCE_PACKAGE",
    "REFERENCE_VERSION",
    "SHUTDOWN_GRACE",
    "STARTUP_TIMEOUT",
    "default_cache_dir",
    "ensure_reference",
    "file_lock",
    "open_reference_server",
    "open_server_process",
]

REFERENCE_PACKAGE = "@openai/codex"
"""The npm package that ships the reference server."""

REFERENCE_VERSION = "0.169.0"
"""The pinned version of :data:`REFERENCE_PACKAGE`; the protocol documents this release."""

CACHE_ENV_VAR = "TRIO_EXEC_REFERENCE_CACHE"
"""Environment variable naming the cache directory used when none is passed."""

INSTALL_TIMEOUT = 900.0
"""Seconds that one ``npm install`` (and the wait for another process's install) may take."""

STARTUP_TIMEOUT = 30.0
"""Seconds to wait for the server to print its bound URL on stdout."""

SHUTDOWN_GRACE = 5.0
"""Seconds between SIGTERM and SIGKILL when the server is stopped."""

_STDERR_TAIL_BYTES = 16 * 1024
_STAMP_NAME = ".trio-exec-installed"

# (sys.platform, platform.machine()) -> the Rust target triple of the vendored binary, which is
# how @openai/codex names its per-platform folders (vendor/<triple>/bin/codex).
_TARGET_TRIPLES: dict[tuple[str, str], str] = {
    ("linux", "x86_64"): "x86_64-unknown-linux-musl",
    ("linux", "amd64"): "x86_64-unknown-linux-musl",
    ("linux", "aarch64"): "aarch64-unknown-linux-musl",
    ("linux", "arm64"): "aarch64-unknown-linux-musl",
    ("darwin", "x86_64"): "x86_64-apple-darwin",
    ("darwin", "arm64"): "aarch64-apple-darwin",
}


def default_cache_dir() -> Path:
    """The cache directory :func:`ensure_reference` uses when it is given none.

    ``$TRIO_EXEC_REFERENCE_CACHE`` when set, else ``.cache/reference`` under the current
    working directory (the repository root when the tests run from a checkout).
    """
    configured = os.environ.get(CACHE_ENV_VAR)
    if configured:
        return Path(configured)
    return Path.cwd() / ".cache" / "reference"


def _target_triple() -> str:
    key = (sys.platform, platform.machine().lower())
    try:
        return _TARGET_TRIPLES[key]
    except KeyError:
        raise RuntimeError(
            f"{REFERENCE_PACKAGE}@{REFERENCE_VERSION} ships no binary for "
            f"platform {key[0]!r} / machine {key[1]!r}"
        ) from None


def _find_binary(prefix: Path) -> Path | None:
    triple = _target_triple()
    # The platform package is an npm alias (e.g. @openai/codex-linux-x64); glob rather than
    # spell its name, and accept the layout of older releases that vendored into the main one.
    candidates = sorted(prefix.glob(f"node_modules/@openai/codex*/vendor/{triple}/bin/codex"))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


LOCK_POLL_INTERVAL = 0.2
"""Seconds :func:`file_lock` sleeps between two attempts at a lock another process holds."""


@contextlib.contextmanager
def file_lock(path: Path, timeout: float) -> Iterator[None]:
    """Hold an exclusive ``fcntl.flock`` on the file ``path`` for the ``with`` block.

    The file and its parent directories are created if missing; the file is left in place.
    Every process (or thread) that locks the same path waits for the holder: this is how
    concurrent test processes share one install. A synchronous, blocking context manager
    for setup code, never for a Trio task that should stay responsive.

    Raises:
        RuntimeError: the lock was not free within ``timeout`` seconds.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+b") as lock_file:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise RuntimeError(
                        f"timed out after {timeout:.0f} s waiting for the lock {path}"
                    ) from None
                time.sleep(LOCK_POLL_INTERVAL)
            else:
                break
        try:
            yield
        finally:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)


def ensure_reference(cache_dir: Path | None = None) -> Path:
    """Return the path of the reference ``codex`` binary, installing it with npm if needed.

    The package goes to ``<cache_dir>/codex-<REFERENCE_VERSION>`` via ``npm install --prefix``;
    *cache_dir* defaults to :func:`default_cache_dir`. A later call (in this or any other
    process) finds the finished install and returns at once. Concurrent callers, for example
    pytest-xdist workers, serialise on an ``fcntl`` lock file next to the install, so only one
    of them runs npm.

    This is a synchronous, blocking function: call it once per test session (a session-scoped
    fixture), never from inside a Trio task that should stay responsive.

    Raises:
        RuntimeError: npm is not installed, npm failed (the message carries its stderr), the
            install produced no binary for this machine, or the lock could not be taken within
            :data:`INSTALL_TIMEOUT`.
    """
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    root = root.absolute()
    prefix = root / f"codex-{REFERENCE_VERSION}"
    stamp = prefix / _STAMP_NAME

    def installed() -> Path | None:
        binary = _find_binary(prefix)
        if binary is not None and stamp.is_file():
            return binary
        return None

    found = installed()
    if found is not None:
        return found

    with file_lock(root / f"codex-{REFERENCE_VERSION}.lock", INSTALL_TIMEOUT):
        found = installed()  # another process may have finished while we waited
        if found is not None:
            return found
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError(
                f"npm is not on PATH; it is needed to install {REFERENCE_PACKAGE}@"
                f"{REFERENCE_VERSION}, the reference exec server the interop tests run"
            )
        if prefix.exists():
            # No stamp: an earlier install was interrupted. Start clean.
            shutil.rmtree(prefix)
        prefix.mkdir(parents=True)
        argv = [
            npm,
            "install",
            "--no-fund",
            "--no-audit",
            "--no-save",
            "--prefix",
            str(prefix),
            f"{REFERENCE_PACKAGE}@{REFERENCE_VERSION}",
        ]
        try:
            completed = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=INSTALL_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(
                f"`{' '.join(argv)}` did not finish within {INSTALL_TIMEOUT:.0f} s"
            ) from exc
        if completed.returncode != 0:
            raise RuntimeError(
                f"`{' '.join(argv)}` failed with exit code {completed.returncode}; "
                f"npm stderr:\n{completed.stderr.strip()}\nnpm stdout:\n{completed.stdout.strip()}"
            )
        binary = _find_binary(prefix)
        if binary is None:
            raise RuntimeError(
                f"npm installed {REFERENCE_PACKAGE}@{REFERENCE_VERSION} into {prefix}, but no "
                f"codex binary for {_target_triple()} was found under node_modules/@openai/"
            )
        stamp.write_text(f"{REFERENCE_PACKAGE}@{REFERENCE_VERSION}\n")
        return binary


class _OutputTail:
    """Keeps the last bytes a pipe produced, for error messages."""

    def __init__(self, limit: int = _STDERR_TAIL_BYTES) -> None:
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._limit = limit

    def add(self, data: bytes | bytearray) -> None:
        self._chunks.append(bytes(data))
        self._size += len(data)
        while self._size > self._limit and len(self._chunks) > 1:
            self._size -= len(self._chunks.popleft())

    def text(self) -> str:
        return b"".join(self._chunks)[-self._limit :].decode("utf-8", "replace").strip()


async def _drain(
    stream: trio.abc.ReceiveStream,
    tail: _OutputTail,
    forward: bool,
    done: trio.Event | None = None,
) -> None:
    """Read *stream* to EOF so the server never blocks on a full pipe; then set *done*."""
    try:
        while True:
            try:
                data = await stream.receive_some()
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                return
            if not data:
                return
            tail.add(data)
            if forward:
                sys.stderr.write(data.decode("utf-8", "replace"))
                sys.stderr.flush()
    finally:
        if done is not None:
            done.set()


async def _read_url(stream: trio.abc.ReceiveStream, tail: _OutputTail) -> tuple[str, bytes]:
    """Read stdout lines until one is a ``ws://`` URL; returns it and any bytes after it."""
    buffer = b""
    while True:
        newline = buffer.find(b"\n")
        if newline >= 0:
            line, buffer = buffer[:newline], buffer[newline + 1 :]
            text = line.decode("utf-8", "replace").strip()
            if text.startswith("ws://"):
                return text, buffer
            tail.add(line + b"\n")
            continue
        data = await stream.receive_some()
        if not data:
            raise EOFError
        buffer += data


async def _stop(process: trio.Process) -> None:
    """SIGTERM, wait up to SHUTDOWN_GRACE, then SIGKILL; always reaps. Run shielded."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        with trio.move_on_after(SHUTDOWN_GRACE):
            await process.wait()
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


@contextlib.asynccontextmanager
async def open_reference_server(
    binary: Path | str,
    *,
    extra_args: Sequence[str] = (),
    forward_stderr: bool = False,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> AsyncIterator[str]:
    """Run the reference server on a free loopback port and yield its ``ws://`` URL.

    Starts ``<binary> exec-server --listen ws://127.0.0.1:0 <extra_args...>`` with
    ``CODEX_HOME`` set to a fresh temporary directory (removed afterwards), stdin from
    ``/dev/null``, and waits up to :data:`STARTUP_TIMEOUT` seconds for the URL line that the
    server prints on stdout. The server's stderr (its logs) and any further stdout are read
    continuously, so a full pipe can never block it; the last 16 KiB are kept for error
    messages, and with ``forward_stderr=True`` stderr is also copied to :data:`sys.stderr`.

    Args:
        binary: the ``codex`` executable, e.g. from :func:`ensure_reference`.
        extra_args: more ``exec-server`` options, e.g. ``["--concurrent-requests", "4"]``.
        forward_stderr: copy the server's log output to this process's stderr.
        cwd: the server's working directory (default: this process's); its children
            run there when a client gives no ``cwd``.
        env: the server's environment (default: this process's), to which
            ``CODEX_HOME`` is added.

    Raises:
        RuntimeError: the server exited, or printed no URL within :data:`STARTUP_TIMEOUT`
            seconds (the message carries the tail of its output).

    Cancellation:
        Leaving the block by any route, including cancellation during startup or inside the
        block, stops the server: SIGTERM (the reference then kills the process groups of the
        children it started), SIGKILL after :data:`SHUTDOWN_GRACE` seconds if it is still
        alive, and always reaps it before the block is left. This cleanup is shielded from
        cancellation, so it can delay a cancelled caller by up to :data:`SHUTDOWN_GRACE`
        seconds. Children of a server that had to be SIGKILLed may outlive it.
    """
    argv = [os.fspath(binary), "exec-server", "--listen", "ws://127.0.0.1:0", *extra_args]
    with tempfile.TemporaryDirectory(prefix="trio-exec-codex-home-") as codex_home:
        server_env = dict(os.environ if env is None else env)
        server_env["CODEX_HOME"] = codex_home
        async with open_server_process(
            argv, env=server_env, forward_stderr=forward_stderr, cwd=cwd
        ) as url:
            yield url


@contextlib.asynccontextmanager
async def open_server_process(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    forward_stderr: bool = False,
    cwd: str | os.PathLike[str] | None = None,
) -> AsyncIterator[str]:
    """Run an exec server command that prints its ``ws://`` URL on stdout; yield the URL.

    Used for the reference server and for ``trio-exec serve`` alike (see
    :func:`open_reference_server` for the details: output draining, startup timeout,
    and the shielded SIGTERM / SIGKILL / reap on the way out). ``env`` and ``cwd`` are
    the command's (default: this process's).

    **Cancellation:** the server is stopped and reaped, shielded.
    """
    argv = list(argv)
    tail = _OutputTail()
    process = await trio.lowlevel.open_process(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=None if env is None else dict(env),
        cwd=cwd,
    )
    try:
        async with open_service_nursery() as nursery:
            url = await _start(argv, process, tail, nursery, forward_stderr)
            try:
                yield url
            finally:
                with trio.CancelScope(shield=True):
                    await _stop(process)
                nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await _stop(process)
            for stream in (process.stdout, process.stderr):
                if stream is not None:
                    await stream.aclose()


async def _start(
    argv: list[str],
    process: trio.Process,
    tail: _OutputTail,
    nursery: trio.Nursery,
    forward_stderr: bool,
) -> str:
    """Wait for the URL line; keep both pipes drained in *nursery* from then on."""
    assert process.stdout is not None
    assert process.stderr is not None
    stderr_done = trio.Event()
    nursery.start_soon(_drain, process.stderr, tail, forward_stderr, stderr_done)
    try:
        with trio.fail_after(STARTUP_TIMEOUT):
            url, rest = await _read_url(process.stdout, tail)
    except (trio.TooSlowError, EOFError) as exc:
        reason = (
            f"printed no URL within {STARTUP_TIMEOUT:.0f} s"
            if isinstance(exc, trio.TooSlowError)
            else "closed its stdout without printing a URL"
        )
        with trio.CancelScope(shield=True):
            await _stop(process)
            # Let the stderr drain reach EOF so the message has the server's last words.
            with trio.move_on_after(1.0):
                await stderr_done.wait()
        raise RuntimeError(
            f"`{' '.join(argv)}` {reason} (exit status {process.returncode}); "
            f"its output:\n{tail.text()}"
        ) from exc
    tail.add(rest)
    nursery.start_soon(_drain, process.stdout, tail, False)
    return url
