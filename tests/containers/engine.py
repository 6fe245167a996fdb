"""A real container engine for the tests: Debian's Docker (and Podman), a locally built image.

Nothing here needs an image registry. :func:`run_docker` sets up, in order:

1. the Debian packages (``docker.io``, ``debootstrap``) with ``apt-get`` when a command is
   missing (the test fails with apt's output when that is impossible: it never skips);
2. a private ``dockerd`` (no iptables, no bridge; its own socket, data root and exec root,
   never the system's ``/var/run/docker.sock``), stopped by its PID when the block ends;
3. the base image: a ``debootstrap --variant=minbase`` Debian with ``python3`` and
   ``python3-venv``, kept as a tarball in the cache and ``docker import``-ed;
4. the project image: the base plus a venv at :data:`VENV` holding a wheel built from this
   checkout and its dependencies as wheels fetched on the host (``pip download`` for the
   image's Python), installed with ``pip --no-index`` in a container without network;
   ``trio-exec`` is on its PATH. It is tagged by a hash of the checkout, so it is rebuilt
   when the checkout changes.

Everything is cached under :func:`cache_root` (``$TRIO_EXEC_CONTAINER_CACHE``, else
``.cache/containers`` in the working directory, beside ``.cache/reference``). The daemon's data root lives there too, so a warm run finds both images
and only starts the daemon; a second test session that finds the data root in use gets a
temporary one of its own (and imports the cached tarball into it).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Final

import attrs
import pytest

__all__ = [
    "CACHE_ENV_VAR",
    "CHILD_PACKAGES",
    "COMMAND_TIMEOUT",
    "DAEMON_STARTUP_TIMEOUT",
    "DAEMON_STOP_TIMEOUT",
    "DEBIAN_MIRROR",
    "DEBIAN_SUITE",
    "IMAGE_ENV",
    "IMAGE_TIMEOUT",
    "INSTALL_TIMEOUT",
    "PODMAN_RUN_OPTIONS",
    "ROOTFS_TIMEOUT",
    "VENV",
    "WORKDIR",
    "Container",
    "ContainerProcess",
    "Engine",
    "cache_root",
    "ensure_commands",
    "run",
    "run_container",
    "run_docker",
    "run_podman",
]

CACHE_ENV_VAR: Final = "TRIO_EXEC_CONTAINER_CACHE"
"""Environment variable naming the cache directory of the images and the daemon's data."""

INSTALL_TIMEOUT: Final = 600.0
"""Seconds each ``apt-get`` step (and the wait for a concurrent install) may take."""

ROOTFS_TIMEOUT: Final = 900.0
"""Seconds the ``debootstrap`` of the base root file system may take (about 50 s here)."""

IMAGE_TIMEOUT: Final = 300.0
"""Seconds each step of building an image (import, wheels, offline install) may take."""

DAEMON_STARTUP_TIMEOUT: Final = 60.0
"""Seconds ``dockerd`` has to answer on its socket (about 1 s here)."""

DAEMON_STOP_TIMEOUT: Final = 20.0
"""Seconds between SIGTERM and SIGKILL when the daemon is stopped."""

COMMAND_TIMEOUT: Final = 60.0
"""Seconds one ordinary ``docker`` command (run, exec, rm, inspect) may take."""

DEBIAN_SUITE: Final = "bookworm"
"""The Debian release of the base image (its Python is 3.11)."""

DEBIAN_MIRROR: Final = "http://deb.debian.org/debian"
"""Where ``debootstrap`` fetches the packages: the mirror apt uses."""

VENV: Final = "/opt/trio-exec"
"""The venv inside the image that holds the project."""

WORKDIR: Final = "/srv/trio-exec"
"""The image's working directory: the default cwd of what ``docker exec`` runs."""

IMAGE_ENV: Final = {"TRIO_EXEC_IMAGE": "test"}
"""Environment the image sets, so a test can tell the container's environment from ours."""

_BASE_PACKAGES: Final = ("python3", "python3-venv", "procps")
_BASE_NAME: Final = "localhost/trio-exec-base"
_PROJECT_NAME: Final = "localhost/trio-exec-test"
# Fully qualified: Podman resolves a short name through registries, of which there are none.
_ROOTFS_FILE: Final = f"{DEBIAN_SUITE}-minbase-python3.tar"
# The files that make up the wheel: a change to any of them rebuilds the project image.
_PROJECT_FILES: Final = ("pyproject.toml", "README.md")
_PROJECT_PACKAGE: Final = "trio_exec"

CHILD_PACKAGES: Final = ("mcp",)
"""Packages the tests' children import besides the project (the MCP example's server), put
into :data:`VENV` at the versions installed here."""
_LOG_TAIL: Final = 4000


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
        pytest.fail(f"{what}: `{shown}` took more than {timeout:.0f} s:\n{text[-_LOG_TAIL:]}")
    except OSError as exc:
        pytest.fail(f"{what}: cannot run `{shown}`: {exc}")
    if completed.returncode != 0:
        pytest.fail(
            f"{what}: `{shown}` exited with code {completed.returncode}:\n"
            f"{completed.stdout.strip()[-_LOG_TAIL:]}\n{completed.stderr.strip()[-_LOG_TAIL:]}"
        )
    return completed.stdout


@contextlib.contextmanager
def _locked(path: Path, timeout: float) -> Iterator[None]:
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


def ensure_commands(packages: Mapping[str, str]) -> None:
    """Install with ``apt-get`` the Debian package of each command (``{command: package}``)
    that is not on PATH; fail the test with the precise reason when that cannot be done."""
    missing = {package for command, package in packages.items() if not _which(command)}
    if not missing:
        return
    with _locked(Path(tempfile.gettempdir()) / "trio-exec-apt.lock", INSTALL_TIMEOUT):
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


def _command(name: str) -> str:
    found = _which(name)
    assert found is not None, name
    return found


def cache_root() -> Path:
    """Where the container images and the daemon's data root are cached."""
    configured = os.environ.get(CACHE_ENV_VAR)
    return Path(configured).absolute() if configured else Path.cwd() / ".cache" / "containers"


# -- the daemon -------------------------------------------------------------------------------


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
    probe = subprocess.run(
        [*docker, "version", "--format", "{{.Server.Version}}"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    return probe.returncode == 0


def _tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-_LOG_TAIL:]
    except OSError as exc:
        return f"(no log: {exc})"


def _stop_daemon(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the daemon by its PID, SIGKILL its group after :data:`DAEMON_STOP_TIMEOUT`."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(DAEMON_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            # The daemon leads its own group (start_new_session): its containerd goes too.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
    process.wait()


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
def _dockerd(data_root: Path) -> Iterator[tuple[tuple[str, ...], subprocess.Popen[bytes], Path]]:
    # Short: containerd's sockets live under the exec root and a socket path has 108 bytes.
    exec_root = Path(tempfile.mkdtemp(prefix="txd-", dir="/tmp"))
    socket = exec_root / "docker.sock"
    log = exec_root / "dockerd.log"
    docker = (_command("docker"), "-H", f"unix://{socket}")
    argv = [
        _command("dockerd"),
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
            _stop_daemon(process)
    finally:
        shutil.rmtree(exec_root, ignore_errors=True)


# -- the images -------------------------------------------------------------------------------


def _ensure_rootfs(cache: Path) -> tuple[Path, bool]:
    """The base root file system as a tarball (debootstrap on first use), and whether it was
    built now."""
    tarball = cache / _ROOTFS_FILE
    if tarball.is_file():
        return tarball, False
    with _locked(cache / f"{_ROOTFS_FILE}.lock", ROOTFS_TIMEOUT):
        if tarball.is_file():
            return tarball, False
        work = Path(tempfile.mkdtemp(prefix="rootfs-", dir=cache))
        try:
            rootfs = work / "rootfs"
            run(
                [
                    _command("debootstrap"),
                    "--variant=minbase",
                    f"--include={','.join(_BASE_PACKAGES)}",
                    DEBIAN_SUITE,
                    rootfs,
                    DEBIAN_MIRROR,
                ],
                "debootstrap of the base image",
                ROOTFS_TIMEOUT,
            )
            # apt's package cache is of no use in the image.
            for cached in (rootfs / "var/cache/apt/archives").glob("*.deb"):
                cached.unlink()
            partial = work / _ROOTFS_FILE
            run(["tar", "-C", rootfs, "-cf", partial, "."], "tar of the base image", IMAGE_TIMEOUT)
            partial.replace(tarball)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return tarball, True


def _image_exists(docker: Sequence[str], tag: str) -> bool:
    inspect = subprocess.run(
        [*docker, "image", "inspect", "--format", "{{.Id}}", tag],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    return inspect.returncode == 0


def _ensure_base(docker: Sequence[str], tarball: Path) -> tuple[str, bool]:
    stat = tarball.stat()
    tag = f"{_BASE_NAME}:{_digest([tarball.name, str(stat.st_size), str(stat.st_mtime_ns)])}"
    if _image_exists(docker, tag):
        return tag, False
    run([*docker, "import", tarball, tag], "docker import of the base image", IMAGE_TIMEOUT)
    return tag, True


def _digest(parts: Sequence[str | bytes]) -> str:
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()[:16]


def _project_digest(project: Path, base: str, pinned: Sequence[str]) -> str:
    parts: list[str | bytes] = [base, *pinned]
    files = [project / name for name in _PROJECT_FILES]
    files += sorted(
        path
        for path in (project / _PROJECT_PACKAGE).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    )
    for path in files:
        parts += [str(path.relative_to(project)), path.read_bytes()]
    return _digest(parts)


def _ensure_project(
    docker: Sequence[str], base: str, project: Path, run_options: Sequence[str]
) -> tuple[str, bool]:
    pinned = [f"{name}=={importlib.metadata.version(name)}" for name in CHILD_PACKAGES]
    tag = f"{_PROJECT_NAME}:{_project_digest(project, base, pinned)}"
    if _image_exists(docker, tag):
        return tag, False
    version = run(
        [
            *docker,
            "run",
            "--rm",
            "--network",
            "none",
            *run_options,
            base,
            "python3",
            "-c",
            "import sys; print('%d.%d' % sys.version_info[:2])",
        ],
        "the base image's Python version",
        COMMAND_TIMEOUT,
    ).strip()
    with tempfile.TemporaryDirectory(prefix="trio-exec-wheels-") as wheels:
        pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
        run(
            [*pip, "wheel", "--no-deps", "-q", "-w", wheels, project],
            "building the project's wheel",
            IMAGE_TIMEOUT,
        )
        (wheel,) = Path(wheels).glob("*.whl")
        run(
            [
                *pip,
                "download",
                "-q",
                "--only-binary=:all:",
                "--python-version",
                version,
                "-d",
                wheels,
                wheel,
                *pinned,
            ],
            f"fetching the dependencies' wheels for Python {version}",
            IMAGE_TIMEOUT,
        )
        builder = f"trio-exec-build-{os.getpid()}-{secrets.token_hex(4)}"
        script = (
            f"python3 -m venv {VENV} && "
            f"{VENV}/bin/pip install -q --no-index --find-links /wheels "
            f"/wheels/{wheel.name} {' '.join(pinned)} && "
            f"ln -s {VENV}/bin/trio-exec /usr/local/bin/trio-exec && mkdir -p {WORKDIR}"
        )
        try:
            run(
                [
                    *docker,
                    "run",
                    "--name",
                    builder,
                    "--network",
                    "none",
                    "-v",
                    f"{wheels}:/wheels:ro",
                    *run_options,
                    base,
                    "sh",
                    "-c",
                    script,
                ],
                "installing the project into the image, offline",
                IMAGE_TIMEOUT,
            )
            changes = [f"WORKDIR {WORKDIR}"]
            changes += [f"ENV {name}={value}" for name, value in IMAGE_ENV.items()]
            run(
                [*docker, "commit", *(f"--change={change}" for change in changes), builder, tag],
                "docker commit of the project image",
                IMAGE_TIMEOUT,
            )
        finally:
            subprocess.run(
                [*docker, "rm", "-f", builder],
                capture_output=True,
                timeout=COMMAND_TIMEOUT,
                check=False,
            )
    _remove_other_tags(docker, _PROJECT_NAME, keep=tag)
    return tag, True


def _remove_other_tags(docker: Sequence[str], name: str, keep: str) -> None:
    """Remove the images of earlier checkouts, so the cache does not grow without bound."""
    listed = run(
        [*docker, "image", "ls", name, "--format", "{{.Repository}}:{{.Tag}}"],
        "docker image ls",
        COMMAND_TIMEOUT,
    )
    stale = [tag for tag in listed.split() if tag != keep]
    if stale:
        subprocess.run(
            [*docker, "rmi", *stale], capture_output=True, timeout=COMMAND_TIMEOUT, check=False
        )


def _built(**done: bool) -> tuple[str, ...]:
    return tuple(what for what, built in done.items() if built)


@contextlib.contextmanager
def run_docker(project: Path) -> Iterator[Engine]:
    """Run a private Docker daemon holding the project image of the checkout ``project``;
    see the module docstring. The daemon is stopped by its PID when the block ends."""
    started = time.monotonic()
    ensure_commands({"dockerd": "docker.io", "docker": "docker.io", "debootstrap": "debootstrap"})
    cache = cache_root()
    cache.mkdir(parents=True, exist_ok=True)
    tarball, rootfs_built = _ensure_rootfs(cache)
    with _data_root(cache, "docker") as data_root, _dockerd(data_root) as (docker, process, log):
        base, base_built = _ensure_base(docker, tarball)
        image, project_built = _ensure_project(docker, base, project, ())
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
    # Debian's podman looks for catatonit where Debian does not put it; tini does the same.
    ensure_commands({"podman": "podman", "tini-static": "tini", "debootstrap": "debootstrap"})
    run_options = (*PODMAN_RUN_OPTIONS, f"--init-path={_command('tini-static')}")
    cache = cache_root()
    cache.mkdir(parents=True, exist_ok=True)
    tarball, rootfs_built = _ensure_rootfs(cache)
    with _data_root(cache, "podman") as storage:
        # Podman's database records its run root: one stable (short) path per storage.
        run_root = Path("/tmp") / f"txp-{_digest([str(storage)])[:8]}"
        run_root.mkdir(exist_ok=True)
        try:
            podman = (
                _command("podman"),
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
            base, base_built = _ensure_base(podman, tarball)
            image, project_built = _ensure_project(podman, base, project, run_options)
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


# -- containers -------------------------------------------------------------------------------


@attrs.frozen
class ContainerProcess:
    """One process inside a container, as its ``/proc`` shows it."""

    pid: int
    pgid: int
    state: str
    argv: tuple[str, ...]


# Lists /proc inside the container as "pid pgid state NUL-joined-argv" lines, leaving out
# itself (the lister) and its parent (the runtime's exec shim has none inside).
_LIST_PROCESSES: Final = r"""
import os
me = os.getpid()
for name in os.listdir('/proc'):
    if not name.isdigit() or int(name) == me:
        continue
    try:
        stat = open(f'/proc/{name}/stat').read()
        argv = open(f'/proc/{name}/cmdline', 'rb').read().rstrip(b'\0').split(b'\0')
    except OSError:
        continue
    fields = stat.rpartition(')')[2].split()
    print(name, fields[2], fields[0], '\x1f'.join(a.decode(errors='replace') for a in argv))
"""


@attrs.frozen(kw_only=True)
class Container:
    """A running container of the project image (PID 1 is ``docker-init``)."""

    engine: tuple[str, ...]
    """The client command prefix (``docker -H …`` or ``podman --root …``)."""
    name: str

    def exec_argv(self, *argv: str, options: Sequence[str] = ()) -> list[str]:
        """``docker exec -i OPTIONS… NAME ARGV…``: runs ``argv`` inside, its stdin and
        stdout ours."""
        return [*self.engine, "exec", "-i", *options, self.name, *argv]

    def server_argv(self, options: Sequence[str] = ()) -> list[str]:
        """Our exec server on the stdin / stdout of ``docker exec -i OPTIONS…``."""
        return self.exec_argv("trio-exec", "serve", "--listen", "stdio", options=options)

    def list_argv(self) -> list[str]:
        """The command that prints the container's processes (see :meth:`parse`)."""
        return [*self.engine, "exec", self.name, "python3", "-c", _LIST_PROCESSES]

    @staticmethod
    def parse(listing: str) -> list[ContainerProcess]:
        """The processes in the output of :meth:`list_argv`."""
        found = []
        for line in listing.splitlines():
            pid, pgid, state, argv = line.split(" ", 3)
            found.append(ContainerProcess(int(pid), int(pgid), state, tuple(argv.split("\x1f"))))
        return found

    def processes(self) -> list[ContainerProcess]:
        """The processes inside the container now, zombies included (state ``Z``)."""
        return self.parse(
            run(self.list_argv(), "listing the container's processes", COMMAND_TIMEOUT)
        )

    def run(self, *argv: str) -> str:
        """Run ``argv`` inside the container to completion; its stdout."""
        return run([*self.engine, "exec", self.name, *argv], "docker exec", COMMAND_TIMEOUT)

    def group_alive(self, pgid: int) -> bool:
        """Whether any process of group ``pgid`` inside is alive (a zombie is not)."""
        return any(p.pgid == pgid and p.state != "Z" for p in self.processes())

    def getpgid(self, pid: int) -> int:
        """The process group of process ``pid`` inside (a pid of the container's namespace)."""
        for process in self.processes():
            if process.pid == pid:
                return process.pgid
        raise ProcessLookupError(pid)

    def kill(self, pid: int, signum: int) -> None:
        """Send ``signum`` to process ``pid`` inside."""
        self.run("kill", f"-{signum}", str(pid))


@contextlib.contextmanager
def run_container(
    engine: Sequence[str],
    image: str,
    *,
    mounts: Sequence[Path] = (),
    read_only: Sequence[Path] = (),
    binds: Mapping[Path, Path] | None = None,
    options: Sequence[str] = (),
) -> Iterator[Container]:
    """Run a container of ``image`` without network for the block, each of ``mounts`` (and
    of ``read_only``) bound at the same path inside, each key of ``binds`` read-only at its
    value; it is removed (with all its processes) when the block ends."""
    name = f"trio-exec-{os.getpid()}-{secrets.token_hex(4)}"
    volumes = [f"--volume={path}:{path}" for path in mounts]
    volumes += [f"--volume={path}:{path}:ro" for path in read_only]
    volumes += [f"--volume={source}:{inside}:ro" for source, inside in (binds or {}).items()]
    run(
        [
            *engine,
            "run",
            "--detach",
            "--init",
            "--network",
            "none",
            "--name",
            name,
            *volumes,
            *options,
            image,
            "sleep",
            "infinity",
        ],
        "starting a container",
        COMMAND_TIMEOUT,
    )
    try:
        yield Container(engine=tuple(engine), name=name)
    finally:
        subprocess.run(
            [*engine, "rm", "--force", name],
            capture_output=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
