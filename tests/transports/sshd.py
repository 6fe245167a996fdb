"""A real, throwaway OpenSSH server on 127.0.0.1 for the tests that go through ``ssh``.

:func:`run_sshd` installs OpenSSH from the distribution's packages when ``sshd`` is missing
(``apt-get``; the tests fail with apt's output when that fails: they never skip), generates
a host key and a user key in a temporary directory, starts ``sshd -D -e -f CONFIG`` on a
free loopback port, checks that ``ssh ... true`` logs in, and yields the ``ssh`` argv prefix
(ending with ``user@127.0.0.1``). The server is stopped and the directory removed after.

The login is the user running the tests (root in CI containers: the config permits root
with a key only). Nothing outside the temporary directory is touched, except the install
and ``/run/sshd`` (the privilege separation directory sshd insists on).
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import attrs
import pytest

from ..helpers import APT_LOCK, apt_get_install, locked, run, stop_process

__all__ = [
    "INSTALL_TIMEOUT",
    "SSHD",
    "STARTUP_TIMEOUT",
    "SshServer",
    "closed_port_argv",
    "run_sshd",
]

SSHD: Final = "/usr/sbin/sshd"
"""The server binary (sshd must be started by its absolute path: it re-executes itself)."""

INSTALL_TIMEOUT: Final = 600.0
"""Seconds each ``apt-get`` step (and the wait for a concurrent install) may take."""

STARTUP_TIMEOUT: Final = 30.0
"""Seconds sshd may take to accept connections, and the first login to succeed."""

STOP_TIMEOUT: Final = 5.0
"""Seconds between SIGTERM and SIGKILL of sshd at the end of the session."""

_PACKAGES: Final = ("openssh-server", "openssh-client")


@attrs.frozen(kw_only=True)
class SshServer:
    """What :func:`run_sshd` yields."""

    argv: list[str]
    """The ``ssh`` command prefix up to the destination; append the remote command."""
    port: int
    """The port sshd listens on (127.0.0.1)."""
    log: Path
    """sshd's log (its stderr)."""
    setup_seconds: float
    """How long the install check, key generation, start and first login took."""


def _openssh_present() -> bool:
    return (
        os.access(SSHD, os.X_OK)
        and shutil.which("ssh") is not None
        and shutil.which("ssh-keygen") is not None
    )


def ensure_openssh() -> None:
    """Install the OpenSSH server and client with apt-get if ``sshd`` is missing.

    Concurrent test processes serialise on a lock file; apt's own lock is waited for too.
    Fails the test (never skips) when the install is impossible or fails.
    """
    if _openssh_present():
        return
    with locked(APT_LOCK, INSTALL_TIMEOUT):
        if _openssh_present():  # another test process installed it meanwhile
            return
        missing = f"sshd is missing ({SSHD})"
        apt_get_install(_PACKAGES, missing, INSTALL_TIMEOUT, recommends=False)
        if not _openssh_present():
            pytest.fail(f"apt-get installed {', '.join(_PACKAGES)}, but {SSHD} is missing")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def closed_port_argv(server: SshServer) -> list[str]:
    """The ``ssh`` prefix of ``server`` with its port replaced by a loopback port nobody
    listens on: a login through it is refused."""
    argv = list(server.argv)
    argv[argv.index("-p") + 1] = str(_free_port())
    return argv


def _config(directory: Path, port: int) -> str:
    return "\n".join(
        [
            "ListenAddress 127.0.0.1",
            f"Port {port}",
            f"HostKey {directory / 'host_key'}",
            f"AuthorizedKeysFile {directory / 'authorized_keys'}",
            f"PidFile {directory / 'sshd.pid'}",
            "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "StrictModes no",  # the temporary directory's modes are not sshd's business
            "UsePAM no",
            # No AcceptEnv line: by default sshd accepts no environment variable.
            "PermitUserEnvironment no",
            "UseDNS no",
            "PrintMotd no",
            "PrintLastLog no",
            "X11Forwarding no",
            "LogLevel INFO",
            "",
        ]
    )


def _wait_accepting(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        if process.poll() is not None:
            pytest.fail(
                f"sshd exited with code {process.returncode} at startup:\n{log.read_text()}"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail(f"sshd did not accept within {STARTUP_TIMEOUT} s:\n{log.read_text()}")
            time.sleep(0.05)


@contextlib.contextmanager
def run_sshd() -> Iterator[SshServer]:
    """Run a throwaway sshd on 127.0.0.1 and yield how to reach it; see the module docstring."""
    started = time.monotonic()
    ensure_openssh()
    directory = Path(tempfile.mkdtemp(prefix="trio-exec-sshd-"))
    try:
        for name in ("host_key", "user_key"):
            run(
                [
                    "ssh-keygen",
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    name,
                    "-f",
                    str(directory / name),
                ],
                "ssh-keygen",
                STARTUP_TIMEOUT,
            )
        shutil.copyfile(directory / "user_key.pub", directory / "authorized_keys")
        port = _free_port()
        config = directory / "sshd_config"
        config.write_text(_config(directory, port))
        # sshd refuses to start without its privilege separation directory.
        Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
        log = directory / "sshd.log"
        with log.open("wb") as log_file:
            process = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        try:
            _wait_accepting(process, port, log)
            argv = [
                "ssh",
                "-F",
                "/dev/null",
                "-i",
                str(directory / "user_key"),
                "-p",
                str(port),
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "LogLevel=ERROR",
                "-o",
                "BatchMode=yes",
                "-o",
                "ConnectTimeout=10",
                f"{getpass.getuser()}@127.0.0.1",
            ]
            try:
                run([*argv, "true"], "the first ssh login", STARTUP_TIMEOUT)
            except pytest.fail.Exception as exc:
                pytest.fail(f"{exc}\nsshd log:\n{log.read_text()}")
            yield SshServer(argv=argv, port=port, log=log, setup_seconds=time.monotonic() - started)
        finally:
            stop_process(process, STOP_TIMEOUT)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
