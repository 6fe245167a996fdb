"""Running the commands of the container setup: apt-get, locks, the cache directory."""

from __future__ import annotations

import contextlib
import faulthandler
import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Final

import pytest

__all__ = [
    "CACHE_ENV_VAR",
    "COMMAND_TIMEOUT",
    "INSTALL_TIMEOUT",
    "LOG_TAIL",
    "bounded_by_steps",
    "cache_root",
    "command_path",
    "digest",
    "ensure_commands",
    "locked",
    "run",
]

CACHE_ENV_VAR: Final = "TRIO_EXEC_CONTAINER_CACHE"
"""Environment variable naming the cache directory of the images and the daemon's data."""

INSTALL_TIMEOUT: Final = 600.0
"""Seconds each ``apt-get`` step (and the wait for a concurrent install) may take."""

COMMAND_TIMEOUT: Final = 60.0
"""Seconds one ordinary ``docker`` command (run, exec, rm, inspect) may take."""

LOG_TAIL: Final = 4000
"""Characters of a failed command's output (or a log) that a failure message shows."""


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


@contextlib.contextmanager
def locked(path: Path, timeout: float) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (waiting up to ``timeout`` seconds)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+b") as lock:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"waited {timeout:.0f} s for the lock {path}")
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def bounded_by_steps() -> None:
    """Stop the ``faulthandler_timeout`` traceback dump for the test being set up: a cold
    setup (apt-get, debootstrap, an image build) takes longer than that on a loaded machine,
    and each of its steps is bounded by a timeout of its own (:func:`run`)."""
    faulthandler.cancel_dump_traceback_later()


def ensure_commands(packages: Mapping[str, str]) -> None:
    """Install with ``apt-get`` the Debian package of each command (``{command: package}``)
    that is not on PATH; fail the test with the precise reason when that cannot be done."""
    missing = {package for command, package in packages.items() if not _which(command)}
    if not missing:
        return
    with locked(Path(tempfile.gettempdir()) / "trio-exec-apt.lock", INSTALL_TIMEOUT):
        missing = {package for command, package in packages.items() if not _which(command)}
        if not missing:
            return
        names = ", ".join(sorted(missing))
        if shutil.which("apt-get") is None:
            pytest.fail(f"{names} missing and there is no apt-get to install them")
        if os.geteuid() != 0:
            pytest.fail(f"{names} missing; installing them with apt-get needs root")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        lock_wait = f"DPkg::Lock::Timeout={int(INSTALL_TIMEOUT)}"
        run(["apt-get", "-o", lock_wait, "update"], "apt-get update", INSTALL_TIMEOUT, env=env)
        run(
            ["apt-get", "-o", lock_wait, "install", "-y", *sorted(missing)],
            f"installing {names}",
            INSTALL_TIMEOUT,
            env=env,
        )
        still = [command for command in packages if not _which(command)]
        if still:
            pytest.fail(f"apt-get installed {names}, but {', '.join(still)} is still missing")


def _which(command: str) -> str | None:
    # dockerd and debootstrap live in sbin, which a non-login PATH may lack.
    return shutil.which(command) or shutil.which(command, path="/usr/sbin:/sbin")


def command_path(name: str) -> str:
    """The path of a command :func:`ensure_commands` made sure of."""
    found = _which(name)
    assert found is not None, name
    return found


def cache_root() -> Path:
    """Where the container images and the daemon's data root are cached."""
    configured = os.environ.get(CACHE_ENV_VAR)
    return Path(configured).absolute() if configured else Path.cwd() / ".cache" / "containers"


def digest(parts: Sequence[str | bytes]) -> str:
    """A short hex digest of ``parts`` (each length-prefixed, so none runs into the next)."""
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()[:16]
