"""Running the commands of the container setup: apt-get, locks, the cache directory."""

from __future__ import annotations

import faulthandler
import hashlib
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

import pytest

from ..helpers import APT_LOCK, apt_get_install, locked

__all__ = [
    "CACHE_ENV_VAR",
    "COMMAND_TIMEOUT",
    "INSTALL_TIMEOUT",
    "bounded_by_steps",
    "cache_root",
    "command_path",
    "digest",
    "ensure_commands",
    "succeeds",
]

CACHE_ENV_VAR: Final = "TRIO_EXEC_CONTAINER_CACHE"
"""Environment variable naming the cache directory of the images and the daemon's data."""

INSTALL_TIMEOUT: Final = 600.0
"""Seconds each ``apt-get`` step (and the wait for a concurrent install) may take."""

COMMAND_TIMEOUT: Final = 60.0
"""Seconds one ordinary ``docker`` command (run, exec, rm, inspect) may take."""


def succeeds(argv: Sequence[str], timeout: float = COMMAND_TIMEOUT) -> bool:
    """Run ``argv`` with its output discarded and return whether it exited with code 0: a
    probe, or a clean-up whose failure (nothing left to remove) does not matter."""
    completed = subprocess.run(
        list(argv),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    return completed.returncode == 0


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
    with locked(APT_LOCK, INSTALL_TIMEOUT):
        missing = {package for command, package in packages.items() if not _which(command)}
        if not missing:
            return
        names = ", ".join(sorted(missing))
        apt_get_install(sorted(missing), f"{names} missing", INSTALL_TIMEOUT)
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
