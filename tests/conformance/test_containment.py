"""Containment by cgroup: a daemon that left the child's process group (``setsid`` after a
double fork) is gone once the block is left, and the session's cgroup is removed.

The server of every remote kind runs on this machine with the default ``LocalBackend``,
so each session has a cgroup wherever :func:`trio_exec.containment` finds one (as root
with a cgroup2 mount, this machine included). Elsewhere the process group is the
documented fallback, with which a ``setsid`` daemon does escape: see
tests/orphans/test_cgroup.py for the fallback's own tests.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Final

import pytest
import trio

import trio_exec as tx

from .. import conftest
from ..transports.helpers import pid_alive
from .helpers import TIMEOUT

GONE_DEADLINE: Final = 5.0
"""Seconds after the block was left within which the daemon must be dead and the cgroup
removed (a remote server ends its session after the client's block)."""

DAEMON: Final = (
    "echo $$; grep '^0::' /proc/self/cgroup; "
    "(setsid sh -c 'sleep 60 >/dev/null 2>&1 & echo $!' &); "
    "exec sleep 60"
)
"""A ``sh -c`` script: prints its pid (its group) and its cgroup (``0::/path``), then double-forks a daemon (a
subshell starts ``setsid sh`` in the background and exits; that shell, in a new session,
starts a sleep and prints its pid) and sleeps."""


def cgroup2_mount() -> str | None:
    """The mount point of the cgroup2 file system shown at its root, if any."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields, _, tail = line.partition(" - ")
        if tail.split()[:1] == ["cgroup2"]:
            return fields.split()[4]
    return None


def needs_cgroups() -> str:
    """The cgroup2 mount point; skips where the machine cannot contain by cgroup (not root,
    or no cgroup2 mount), and fails if it should but :func:`tx.containment` says not."""
    mount = cgroup2_mount()
    if os.geteuid() != 0 or mount is None:
        pytest.skip(f"no cgroup containment here: {tx.containment().reason}")
    check = tx.containment()
    assert check.kind is tx.Containment.CGROUP, check
    return mount


async def read_lines(proc: tx.ExecProcess, count: int) -> list[str]:
    """The first ``count`` lines of output (which may follow ``Exited``)."""
    data = b""
    events = proc.events
    with trio.fail_after(TIMEOUT):
        while data.count(b"\n") < count:
            event = await events.receive()
            if isinstance(event, tx.Exited):
                continue
            assert isinstance(event, tx.Output), event
            data += event.data
    return data.decode().splitlines()[:count]


def exists(path: Path) -> bool:
    """Whether ``path`` exists (a cgroup directory, which only the kernel fills)."""
    return path.exists()


def cgroup_line(pid: int) -> str:
    """The cgroup v2 line (``0::/path``) of process ``pid``."""
    lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    return next(line for line in lines if line.startswith("0::"))


async def wait_gone(daemon: int, cgroup: Path) -> float:
    """Wait until ``daemon`` is dead and ``cgroup`` removed; return the seconds it took."""
    since = time.monotonic()
    with trio.fail_after(TIMEOUT):
        while pid_alive(daemon) or exists(cgroup):  # another process's state: poll it
            elapsed = time.monotonic() - since
            assert elapsed < GONE_DEADLINE, (
                f"{GONE_DEADLINE} s after the block: daemon alive {pid_alive(daemon)}, "
                f"cgroup {cgroup} there {exists(cgroup)}"
            )
            await trio.sleep(0.01)
    return time.monotonic() - since


@pytest.fixture
def children_here(request: pytest.FixtureRequest) -> None:
    """Skip a backend whose children run in a container (``conftest.CONTAINER_KINDS``):
    this machine's ``/proc`` and cgroups do not show them. Asked before ``backend``, so
    that such a backend is not even opened."""
    kind = request.node.callspec.params.get("backend_opener")
    if kind in getattr(conftest, "CONTAINER_KINDS", ()):
        pytest.skip(f"the {kind} backend's children are not in this machine's process table")


@pytest.mark.parametrize("how", ["leave", "cancel", "exited"])
async def test_setsid_daemon_is_gone_after_the_block(
    children_here: None, backend: tx.ExecBackend, how: str
) -> None:
    mount = needs_cgroups()
    daemon = 0
    try:
        with trio.fail_after(TIMEOUT), trio.CancelScope() as scope:
            async with backend.open_process(["sh", "-c", DAEMON], grace=0.5) as proc:
                child, line, pid = map(str.strip, await read_lines(proc, 3))
                daemon = int(pid)
                cgroup = Path(mount + line.removeprefix("0::"))
                assert cgroup.name.startswith("trio-exec-"), cgroup
                assert exists(cgroup)
                assert pid_alive(daemon)
                # It did escape the group and the session: only the cgroup holds it.
                assert os.getsid(daemon) == os.getpgid(daemon) != int(child)
                assert cgroup_line(daemon) == line
                if how == "exited":
                    await proc.signal(signal.SIGTERM)
                    assert await proc.wait() == 128 + signal.SIGTERM
                    assert pid_alive(daemon)  # a signal reaches the group, not the daemon
                elif how == "cancel":
                    scope.cancel()
                    await trio.sleep_forever()
        elapsed = await wait_gone(daemon, cgroup)
    finally:
        if daemon and pid_alive(daemon):
            with contextlib.suppress(ProcessLookupError):
                os.kill(daemon, signal.SIGKILL)
    print(f"daemon gone and cgroup removed {elapsed:.3f} s after the block")
