"""A real container engine for the tests: Debian's Docker (and Podman), a locally built image.

Nothing here needs an image registry. :func:`run_docker` sets up, in order:

1. the Debian packages (``docker.io``, ``debootstrap``) with ``apt-get`` when a command is
   missing (the test fails with apt's output when that is impossible: it never skips);
2. a private ``dockerd`` (no iptables, no bridge; its own socket, data root and exec root,
   never the system's ``/var/run/docker.sock``), stopped by its PID when the block ends;
3. the base image: a ``debootstrap --variant=minbase`` Debian with ``python3`` and
   ``python3-venv``, kept as a tarball in the cache and ``docker import``-ed;
4. the project image: the base plus a venv at :data:`~tests.containers.images.VENV` holding
   a wheel built from this checkout and its dependencies as wheels fetched on the host
   (``pip download`` for the image's Python), installed with ``pip --no-index`` in a
   container without network; ``trio-exec`` is on its PATH. It is tagged by a hash of the
   checkout, so it is rebuilt when the checkout changes.

:func:`run_podman` does the same with rootful Podman (no daemon). Everything is cached under
:func:`~tests.containers.commands.cache_root` (``$TRIO_EXEC_CONTAINER_CACHE``, else
``.cache/containers`` in the working directory, beside ``.cache/reference``): the rootfs
tarball, the wheels, and the daemon's data root, so a warm run finds both images and only
starts the daemon; a second test session that finds the data root in use gets a temporary
one of its own (and imports the cached tarball into it). The images are built by
:mod:`tests.containers.images`; containers are run by :mod:`tests.containers.container`.
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Final

import attrs
import pytest

from ..helpers import LOG_TAIL, run, stop_process
from .commands import (
    COMMAND_TIMEOUT,
    bounded_by_steps,
    cache_root,
    command_path,
    digest,
    ensure_commands,
    succeeds,
)
from .container import Container, run_container
from .images import VENV, ensure_base, ensure_project, ensure_rootfs

__all__ = [
    "DAEMON_STARTUP_TIMEOUT",
    "DAEMON_STOP_TIMEOUT",
    "PODMAN_RUN_OPTIONS",
    "Engine",
    "run_docker",
    "run_dockerd",
    "run_host_like",
    "run_podman",
]

DAEMON_STARTUP_TIMEOUT: Final = 60.0
"""Seconds ``dockerd`` has to answer on its socket (about 1 s here)."""

DAEMON_STOP_TIMEOUT: Final = 20.0
"""Seconds between SIGTERM and SIGKILL when the daemon is stopped."""


@attrs.frozen(kw_only=True)
class Engine:
    """A container engine of this machine's own (``dockerd`` or ``podman``) and the project
    image built in it."""

    client: tuple[str, ...]
    """The client command prefix that talks to it (``docker -H unix://…``, ``podman
    --root …``)."""
    pid: int | None
    """The daemon's process id (``podman`` has no daemon)."""
    log: Path | None
    """The daemon's log (stdout and stderr)."""
    run_options: tuple[str, ...]
    """Options every ``run`` needs on this machine."""
    image: str
    """The project image: Debian, Python, the project in :data:`VENV`."""
    setup_seconds: float
    """How long the install check, daemon start and image builds took."""
    built: tuple[str, ...]
    """What this setup had to build (``rootfs``, ``base``, ``project``); empty when warm."""

    @contextlib.contextmanager
    def container(
        self,
        *,
        mounts: Sequence[Path] = (),
        read_only: Sequence[Path] = (),
        binds: Mapping[Path, Path] | None = None,
    ) -> Iterator[Container]:
        """A container of :attr:`image` for the block; see :func:`run_container`."""
        with run_container(
            self.client,
            self.image,
            mounts=mounts,
            read_only=read_only,
            binds=binds,
            options=self.run_options,
        ) as container:
            yield container


def _daemon_answers(docker: Sequence[str]) -> bool:
    return succeeds([*docker, "version", "--format", "{{.Server.Version}}"])


def _tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-LOG_TAIL:]
    except OSError as exc:
        return f"(no log: {exc})"


@contextlib.contextmanager
def _data_root(cache: Path, name: str) -> Iterator[Path]:
    """The cached data root ``cache/name``, or a temporary one when another session holds
    it."""
    with (cache / f"{name}.lock").open("a+b") as lock:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            private = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=cache))
            try:
                yield private
            finally:
                shutil.rmtree(private, ignore_errors=True)
            return
        try:
            yield cache / name
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def run_dockerd(data_root: Path) -> Iterator[tuple[tuple[str, ...], subprocess.Popen[bytes], Path]]:
    """Run ``dockerd`` on ``data_root`` for the block, with a socket and exec root of its own
    in a new short directory under /tmp; yield the client prefix, the daemon and its log.
    The daemon is stopped by its PID (SIGTERM; its group SIGKILLed after
    :data:`DAEMON_STOP_TIMEOUT`) and the directory removed when the block ends."""
    # Short: containerd's sockets live under the exec root and a socket path has 108 bytes.
    exec_root = Path(tempfile.mkdtemp(prefix="txd-", dir="/tmp"))
    socket = exec_root / "docker.sock"
    log = exec_root / "dockerd.log"
    docker = (command_path("docker"), "-H", f"unix://{socket}")
    argv = [
        command_path("dockerd"),
        "--iptables=false",
        "--ip6tables=false",
        "--bridge=none",
        "--ip-masq=false",
        "--data-root",
        str(data_root),
        "--exec-root",
        str(exec_root / "x"),
        "-H",
        f"unix://{socket}",
        "--pidfile",
        str(exec_root / "docker.pid"),
    ]
    try:
        with log.open("wb") as log_file:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            deadline = time.monotonic() + DAEMON_STARTUP_TIMEOUT
            while not _daemon_answers(docker):
                if process.poll() is not None:
                    pytest.fail(f"dockerd exited with code {process.returncode}:\n{_tail(log)}")
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"dockerd did not answer within {DAEMON_STARTUP_TIMEOUT:.0f} s:\n"
                        f"{_tail(log)}"
                    )
                time.sleep(0.1)
            yield docker, process, log
        finally:
            # The daemon leads its own group (start_new_session): its containerd goes too.
            stop_process(process, DAEMON_STOP_TIMEOUT, kill_group=True)
    finally:
        shutil.rmtree(exec_root, ignore_errors=True)


def _built(**done: bool) -> tuple[str, ...]:
    return tuple(what for what, built in done.items() if built)


@contextlib.contextmanager
def run_docker(project: Path) -> Iterator[Engine]:
    """Run a private Docker daemon holding the project image of the checkout ``project``;
    see the module docstring. The daemon is stopped by its PID when the block ends."""
    started = time.monotonic()
    bounded_by_steps()
    ensure_commands({"dockerd": "docker.io", "docker": "docker.io", "debootstrap": "debootstrap"})
    cache = cache_root()
    cache.mkdir(parents=True, exist_ok=True)
    tarball, rootfs_built = ensure_rootfs(cache)
    with _data_root(cache, "docker") as data_root, run_dockerd(data_root) as (docker, process, log):
        base, base_built = ensure_base(docker, tarball)
        image, project_built = ensure_project(docker, cache, base, project, ())
        yield Engine(
            client=docker,
            pid=process.pid,
            log=log,
            run_options=(),
            image=image,
            setup_seconds=time.monotonic() - started,
            built=_built(rootfs=rootfs_built, base=base_built, project=project_built),
        )


PODMAN_RUN_OPTIONS: Final = ("--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096")
"""What ``podman run`` needs on this machine. Podman asks for its default limits (1048576
open files and processes), above the hard limits this machine grants (20000 and 96364 here),
and runc fails: ``error setting rlimit type 7: operation not permitted``."""


@contextlib.contextmanager
def run_podman(project: Path) -> Iterator[Engine]:
    """Rootful Podman with its own storage in the cache holding the project image of the
    checkout ``project`` (the same base tarball as :func:`run_docker`); Podman has no daemon,
    so nothing runs once the block's containers are removed."""
    started = time.monotonic()
    bounded_by_steps()
    # Debian's podman looks for catatonit where Debian does not put it; tini does the same.
    ensure_commands({"podman": "podman", "tini-static": "tini", "debootstrap": "debootstrap"})
    run_options = (*PODMAN_RUN_OPTIONS, f"--init-path={command_path('tini-static')}")
    cache = cache_root()
    cache.mkdir(parents=True, exist_ok=True)
    tarball, rootfs_built = ensure_rootfs(cache)
    with _data_root(cache, "podman") as storage:
        # Podman's database records its run root: one stable (short) path per storage.
        run_root = Path("/tmp") / f"txp-{digest([str(storage)])[:8]}"
        run_root.mkdir(exist_ok=True)
        try:
            podman = (
                command_path("podman"),
                "--root",
                str(storage),
                "--runroot",
                str(run_root / "run"),
                "--tmpdir",
                str(run_root / "libpod"),
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "file",
            )
            run([*podman, "info"], "podman info", COMMAND_TIMEOUT)
            base, base_built = ensure_base(podman, tarball)
            image, project_built = ensure_project(podman, cache, base, project, run_options)
            yield Engine(
                client=podman,
                pid=None,
                log=None,
                run_options=run_options,
                image=image,
                setup_seconds=time.monotonic() - started,
                built=_built(rootfs=rootfs_built, base=base_built, project=project_built),
            )
        finally:
            shutil.rmtree(run_root, ignore_errors=True)


_IMAGE_DIRECTORIES: Final = frozenset({"/", "/usr", "/usr/local", "/opt"})
"""Directories of the image that the interpreter's view must not hide."""


@contextlib.contextmanager
def run_host_like(
    engine: Engine, *, basetemp: Path, checkout: Path, interpreter: Path
) -> Iterator[Container]:
    """A container of the project image where the tests' paths mean what they mean here.

    The pytest session's temporary directory ``basetemp`` is bound at the same path, the
    files of the ``checkout`` too (read-only: the tests' own files and examples; its hidden
    directories, virtual environments among them, left out), and ``interpreter`` runs the
    image's Python in the image's venv: a view of that venv (``pyvenv.cfg``, and links to
    its ``lib`` and interpreter) is bound over the interpreter's environment directory.
    """
    basetemp = basetemp.resolve()
    interpreter = interpreter.absolute()
    environment = interpreter.parent.parent
    if str(environment) in _IMAGE_DIRECTORIES:
        pytest.fail(
            f"the container binds a view of the image's venv over {environment} to give "
            f"{interpreter} a meaning inside, which would hide the image's own files there; "
            "run the suite from a virtual environment (nox, or python -m venv)"
        )
    view = Path(tempfile.mkdtemp(prefix="container-python-", dir=basetemp))
    (view / "bin").mkdir()
    (view / "bin" / interpreter.name).symlink_to(f"{VENV}/bin/python")
    (view / "lib").symlink_to(f"{VENV}/lib")
    (view / "pyvenv.cfg").write_text("home = /usr/bin\ninclude-system-site-packages = false\n")
    files = [
        entry
        for entry in sorted(checkout.iterdir())
        if not entry.name.startswith(".") and not environment.is_relative_to(entry)
    ]
    with engine.container(mounts=[basetemp], read_only=files, binds={view: environment}) as c:
        yield c
