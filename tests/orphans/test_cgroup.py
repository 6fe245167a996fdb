"""Containment by cgroup on a LocalBackend: the capability check, the opt-out, the child
that forks at once, the removal of every cgroup, the kill without ``cgroup.kill``, and the
keeper that kills and removes the cgroups of an owner SIGKILLed with a ``setsid`` daemon.

The conformance side (every backend kind) is tests/conformance/test_containment.py.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Final

import pytest
import trio

import trio_exec as tx
from trio_exec import _cgroup
from trio_exec._command import connect_command

from ..conformance.helpers import TIMEOUT
from ..conformance.test_containment import DAEMON, exists, needs_cgroups, read_lines, wait_gone
from ..transports.helpers import STDIO_SERVER, first_line_numbers, pid_alive
from .helpers import CLEANUP_DEADLINE

ONE_LINE_DAEMON: Final = (
    "d=$(setsid sh -c 'sleep 60 >/dev/null 2>&1 & echo $!'); "
    "echo $$ $PPID $d $(grep '^0::' /proc/self/cgroup); exec sleep 60"
)
"""A ``sh -c`` script: double-forks a daemon into a new session (the ``setsid`` shell
starts a sleep and exits), then prints on one line its group, its parent, the daemon's
pid and its cgroup (``0::/path``), and sleeps."""


def own_cgroup(pid: int | str = "self") -> str:
    """The cgroup v2 path of a process, from ``/proc/PID/cgroup``."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        if line.startswith("0::"):
            return line[3:]
    raise AssertionError("no cgroup v2 line")


def ours(parent: str) -> list[str]:
    """The cgroups this process made under ``parent`` and did not remove."""
    prefix = f"{_cgroup.CGROUP_NAME_PREFIX}{os.getpid()}-"
    return [name for name in os.listdir(parent) if name.startswith(prefix)]


def kill_if_alive(pid: int) -> None:
    if pid and pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# -- the capability check --------------------------------------------------------------------


def test_the_check_finds_this_processs_cgroup() -> None:
    mount = needs_cgroups()
    check = tx.containment()
    assert check == tx.ContainmentCheck(
        tx.Containment.CGROUP, None, os.path.normpath(mount + own_cgroup())
    )
    assert tx.containment() is check  # found once
    assert tx.LocalBackend().containment == check  # the default opts in
    opted_out = tx.LocalBackend(cgroups=False).containment
    assert opted_out.kind is tx.Containment.PROCESS_GROUP
    assert opted_out.reason == "LocalBackend(cgroups=False)"
    same_group = tx.LocalBackend(start_new_session=False).containment
    assert same_group.kind is tx.Containment.CHILD
    assert same_group.reason is not None
    assert "start_new_session=False" in same_group.reason


def test_the_fallback_says_why(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(_cgroup, "_own_cgroup", lambda: (None, "no cgroup2 here"))
    assert _cgroup._probe() == tx.ContainmentCheck(tx.Containment.PROCESS_GROUP, "no cgroup2 here")
    unit = tmp_path / "app.service"
    unit.mkdir()
    monkeypatch.setattr(_cgroup, "_own_cgroup", lambda: (str(unit), ""))
    check = _cgroup._probe()
    assert check.kind is tx.Containment.PROCESS_GROUP
    assert check.reason is not None
    assert "not delegated" in check.reason
    plain = tmp_path / "plain"
    plain.mkdir()
    monkeypatch.setattr(_cgroup, "_own_cgroup", lambda: (str(plain), ""))
    check = _cgroup._probe()
    assert check.kind is tx.Containment.PROCESS_GROUP
    assert check.reason is not None
    assert "cgroup.procs is not writable" in check.reason


# -- opting out, and children in this process's group ---------------------------------------


async def test_opted_out_a_setsid_daemon_outlives_the_block() -> None:
    """The documented fallback: without a cgroup the daemon escapes the group kill."""
    needs_cgroups()
    daemon = 0
    try:
        with trio.fail_after(TIMEOUT):
            async with tx.LocalBackend(cgroups=False).open_process(["sh", "-c", DAEMON]) as proc:
                assert proc.cgroup is None
                _, line, pid = await read_lines(proc, 3)
                daemon = int(pid)
                assert line == f"0::{own_cgroup()}"
            assert pid_alive(daemon)
    finally:
        kill_if_alive(daemon)


async def test_children_in_our_group_stay_in_our_cgroup() -> None:
    needs_cgroups()
    with trio.fail_after(TIMEOUT):
        backend = tx.LocalBackend(start_new_session=False)
        async with backend.open_process(["sh", "-c", "echo $$; exec sleep 60"]) as proc:
            [pid] = await first_line_numbers(proc)
            assert proc.cgroup is None
            assert own_cgroup(pid) == own_cgroup()


# -- the race: nothing the child forks starts outside ---------------------------------------


@pytest.mark.parametrize("sole_spawner", [False, True], ids=["forked", "spawned-inside"])
async def test_a_child_that_forks_at_once_never_runs_outside_its_cgroup(sole_spawner: bool) -> None:
    """``setsid -f`` forks as soon as it runs and its parent exits; the forked shell, in a
    new session, reports its cgroup at once. Many at a time, for the spawn thread and the
    event loop to compete; the child enters its cgroup, or starts in it."""
    needs_cgroups()
    argv = ["setsid", "-f", "sh", "-c", "echo $$ $(grep '^0::' /proc/self/cgroup); exec sleep 60"]
    forked: list[int] = []

    async def one() -> None:
        async with tx.LocalBackend(sole_spawner=sole_spawner).open_process(argv) as proc:
            assert proc.cgroup is not None
            pid, line = (await read_lines(proc, 1))[0].split()
            forked.append(int(pid))
            assert os.path.basename(proc.cgroup) == line.rpartition("/")[2]
            assert os.getsid(int(pid)) != proc.pid
        assert not pid_alive(int(pid))

    try:
        with trio.fail_after(TIMEOUT):
            async with trio.open_nursery() as nursery:
                for _ in range(20):
                    nursery.start_soon(one)
    finally:
        for pid in forked:
            kill_if_alive(pid)


async def test_the_child_is_in_its_cgroup_before_the_spawn_returns(tmp_path: Path) -> None:
    """The spawning thread is held right after ``Popen`` returns (in the keeper's
    registration) until the child has run and recorded its cgroup: nothing done after the
    spawn can be what moved it."""
    mount = needs_cgroups()
    report = tmp_path / "cgroup"
    backend = tx.LocalBackend(kill_orphans=True)
    keeper = backend._keeper
    assert keeper is not None
    register = keeper.register

    def register_once_the_child_ran(pgid: int, cgroup: str | None = None) -> None:
        deadline = time.monotonic() + TIMEOUT
        while not report.read_text().endswith("\n"):  # the child writes it at once
            assert time.monotonic() < deadline, "the child never wrote its cgroup"
            time.sleep(0.001)
        register(pgid, cgroup)

    report.write_text("")
    keeper.register = register_once_the_child_ran  # type: ignore[method-assign]
    argv = ["sh", "-c", f"grep '^0::' /proc/self/cgroup > {report}; exec sleep 60"]
    async with backend:
        with trio.fail_after(TIMEOUT):
            async with backend.open_process(argv) as proc:
                assert proc.cgroup is not None
                line = await trio.to_thread.run_sync(report.read_text)
                assert line == f"0::{proc.cgroup.removeprefix(mount)}\n"


# -- every cgroup is removed -----------------------------------------------------------------


async def test_every_sessions_cgroup_is_removed() -> None:
    """Whatever the end: exit, failed spawn, kill, a daemon holding the output, a tty."""
    check = tx.containment()
    needs_cgroups()
    assert check.parent is not None
    async with tx.LocalBackend(kill_orphans=True) as backend:
        with trio.fail_after(TIMEOUT):
            await tx.run_process(["true"], backend=backend)
            with pytest.raises(tx.SpawnFileNotFoundError):
                await tx.run_process(["/nonexistent/program"], backend=backend)
            with pytest.raises(tx.SpawnFileNotFoundError):
                await tx.run_process(["true"], backend=backend, cwd="/nonexistent")
            async with backend.open_process(["sleep", "60"]) as proc:
                await proc.signal(signal.SIGKILL)
                assert proc.cgroup is None  # removed by the kill
            holding = "setsid sh -c 'sleep 60' & echo $!; exec sleep 60"  # holds stdout
            async with backend.open_process(["sh", "-c", holding], grace=0) as proc:
                [daemon] = await first_line_numbers(proc)
                cgroup = proc.cgroup
                assert cgroup is not None
                entered = time.monotonic()
            # The daemon was killed with the cgroup: no wait for its pipe to close.
            assert time.monotonic() - entered < 1.0
            assert not pid_alive(daemon)
            assert not exists(Path(cgroup))
            await tx.run_process(["sh", "-c", "sleep 60 & echo tty"], backend=backend, tty=True)
            keeper = backend._keeper
            assert keeper is not None
            assert keeper._cgroups == set()
    assert ours(check.parent) == []


async def test_without_cgroup_kill_the_cgroup_is_frozen_and_killed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fallback for kernels before 5.14: freeze, SIGKILL each member, thaw."""
    mount = needs_cgroups()
    monkeypatch.setattr("trio_exec._group.kill_at_once", lambda path: False)
    daemon = 0
    try:
        with trio.fail_after(TIMEOUT):
            async with tx.LocalBackend().open_process(["sh", "-c", DAEMON]) as proc:
                _, line, pid = await read_lines(proc, 3)
                daemon = int(pid)
            await wait_gone(daemon, Path(mount + line.removeprefix("0::")))
    finally:
        kill_if_alive(daemon)


# -- the keeper ------------------------------------------------------------------------------

EMBEDDED: Final = """
import os, sys
import trio
import trio_exec as tx

async def main() -> None:
    backend = tx.LocalBackend(kill_orphans=True)
    async with backend.open_process(["sh", "-c", sys.argv[1]]) as proc:
        async for event in proc.events:
            os.write(1, event.data)
            await trio.sleep_forever()

trio.run(main)
"""


@asynccontextmanager
async def stdio_server_owner() -> AsyncIterator[str]:
    """Our stdio server runs :data:`ONE_LINE_DAEMON`; yields its line."""
    async with (
        connect_command(STDIO_SERVER) as backend,
        backend.open_process(["sh", "-c", ONE_LINE_DAEMON]) as proc,
    ):
        yield (await read_lines(proc, 1))[0]


@asynccontextmanager
async def embedding_owner() -> AsyncIterator[str]:
    """A program embedding ``LocalBackend(kill_orphans=True)`` runs
    :data:`ONE_LINE_DAEMON`; yields its line."""
    owner = await trio.lowlevel.open_process(
        [sys.executable, "-c", EMBEDDED, ONE_LINE_DAEMON],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    assert owner.stdout is not None
    try:
        data = b""
        with trio.fail_after(TIMEOUT):
            while not data.endswith(b"\n"):
                chunk = await owner.stdout.receive_some()
                assert chunk, data
                data += chunk
        yield data.decode()
    finally:
        with trio.CancelScope(shield=True):
            owner.kill()
            await owner.wait()
            await owner.stdout.aclose()


@pytest.mark.parametrize("owner", [stdio_server_owner, embedding_owner], ids=["server", "embedded"])
async def test_a_killed_owners_keeper_kills_and_removes_the_cgroups(owner: object) -> None:
    mount = needs_cgroups()
    daemon = 0
    try:
        async with owner() as line:  # type: ignore[operator]
            _, parent, pid, path = line.split()
            daemon = int(pid)
            cgroup = Path(mount + path.removeprefix("0::"))
            assert exists(cgroup)
            assert pid_alive(daemon)
            since = time.monotonic()
            os.kill(int(parent), signal.SIGKILL)
            elapsed = await wait_gone(daemon, cgroup)
        assert elapsed < CLEANUP_DEADLINE
        print(
            f"owner SIGKILLed: daemon gone, cgroup removed after {time.monotonic() - since:.3f} s"
        )
    finally:
        kill_if_alive(daemon)
