"""A running container of the project image, and the processes inside it."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Final

import attrs

from ..helpers import run
from .commands import COMMAND_TIMEOUT, succeeds

__all__ = ["Container", "ContainerProcess", "run_container"]


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
        succeeds([*engine, "rm", "--force", name])
