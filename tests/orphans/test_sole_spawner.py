"""``LocalBackend(sole_spawner=True)``: each child starts in its cgroup (this process moves
itself there for a ``vfork`` and back), no other spawn of ours starts in that cgroup
meanwhile, a failed spawn leaves this process where it was, and the move back that
fails strands nothing that runs.

The fork path (the child enters its cgroup itself) is tests/orphans/test_cgroup.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio

import trio_exec as tx
from trio_exec import _cgroup, _spawn

from ..conformance.helpers import TIMEOUT
from ..conformance.test_containment import DAEMON, needs_cgroups, read_lines, wait_gone
from ..transports.helpers import pid_alive
from .test_cgroup import kill_if_alive, ours, own_cgroup


def this_cgroup(mount: str) -> str:
    """The directory of this process's cgroup."""
    return os.path.normpath(mount + own_cgroup())


def members(cgroup: str) -> list[str]:
    """The pids in ``cgroup`` itself."""
    return Path(cgroup, "cgroup.procs").read_text().split()


def test_the_backend_says_what_it_was_made_with() -> None:
    assert tx.LocalBackend().sole_spawner is False
    assert tx.LocalBackend(sole_spawner=True).sole_spawner is True


@pytest.mark.parametrize("tty", [False, True], ids=["pipes", "tty"])
async def test_the_child_starts_in_its_cgroup_and_this_process_stays_home(tty: bool) -> None:
    """Pipes take the ``vfork``; a terminal still forks (its ``preexec`` makes it the
    controlling terminal), from inside the cgroup. Either way a ``setsid`` daemon of the
    child dies with the block, and this process never left its cgroup for longer than
    the spawn."""
    mount = needs_cgroups()
    home = own_cgroup()
    daemon = 0
    try:
        with trio.fail_after(TIMEOUT):
            backend = tx.LocalBackend(sole_spawner=True)
            async with backend.open_process(["sh", "-c", DAEMON], tty=tty) as proc:
                assert proc.cgroup is not None
                assert own_cgroup() == home
                _, line, pid = (line.strip() for line in await read_lines(proc, 3))
                daemon = int(pid)
                assert line == f"0::{proc.cgroup.removeprefix(mount)}"
                assert own_cgroup(daemon) == line.removeprefix("0::")
            await wait_gone(daemon, Path(mount + line.removeprefix("0::")))
        assert own_cgroup() == home
    finally:
        kill_if_alive(daemon)


async def test_other_spawns_never_start_in_a_sole_spawners_cgroup() -> None:
    """Spawns of a sole spawner and of backends without cgroups, many at once: each child
    is where its backend puts it. The spawn that moves this process runs alone."""
    mount = needs_cgroups()
    home = own_cgroup()
    argv = ["sh", "-c", "grep '^0::' /proc/self/cgroup"]
    sole = tx.LocalBackend(sole_spawner=True)
    plain = tx.LocalBackend(cgroups=False)
    same_group = tx.LocalBackend(start_new_session=False)
    seen: list[tuple[str, str | None, str]] = []

    async def one(backend: tx.LocalBackend) -> None:
        async with backend.open_process(argv) as proc:
            expected = None if proc.cgroup is None else proc.cgroup.removeprefix(mount)
            [line] = await read_lines(proc, 1)
            seen.append((line.removeprefix("0::"), expected, repr(backend)))

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            for _ in range(20):
                for backend in (sole, plain, same_group):
                    nursery.start_soon(one, backend)
    assert len(seen) == 60
    for line, expected, which in seen:
        assert line == (home if expected is None else expected), which
    assert len({line for line, _, _ in seen}) == 21  # home and 20 cgroups of their own
    assert own_cgroup() == home


async def test_a_failed_spawn_leaves_this_process_home_and_no_cgroup() -> None:
    needs_cgroups()
    home = own_cgroup()
    parent = tx.containment().parent
    assert parent is not None
    backend = tx.LocalBackend(sole_spawner=True)
    with trio.fail_after(TIMEOUT):
        with pytest.raises(tx.SpawnFileNotFoundError) as missing:
            await tx.run_process(["/nonexistent/program"], backend=backend)
        assert missing.value.program == "/nonexistent/program"
        with pytest.raises(tx.SpawnFileNotFoundError):
            await tx.run_process(["true"], backend=backend, cwd="/nonexistent")
        assert (await tx.run_process(["true"], backend=backend)).exit_code == 0
    assert own_cgroup() == home
    assert ours(parent) == []


async def test_a_failed_move_back_kills_the_child_and_later_spawns_fork(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The move back cannot fail in practice (this process may write the cgroup that
    holds both); made to fail, this process stays in the child's cgroup, so the child
    is killed and reaped (nothing of it runs there), the spawn raises, and the next
    spawns fork into their cgroups instead: the cgroup that holds this process is never
    one a block kills."""
    mount = needs_cgroups()
    home = own_cgroup()
    parent = tx.containment().parent
    assert parent is not None
    real_move = _cgroup.move_self

    def move_in_only(path: str) -> None:
        if path == parent:
            raise PermissionError(13, "Permission denied", path)
        real_move(path)

    monkeypatch.setattr(_spawn, "move_self", move_in_only)
    backend = tx.LocalBackend(sole_spawner=True)
    stranded = ""
    try:
        with trio.fail_after(TIMEOUT):
            with pytest.raises(tx.SpawnPermissionError) as error:
                await tx.run_process(["sleep", "60"], backend=backend)
            stranded = this_cgroup(mount)
            assert _spawn._stranded == stranded
            assert "could not move back out of the cgroup" in str(error.value)
            assert error.value.program == stranded
            # Only this process is left in it: the child was killed and reaped.
            assert members(stranded) == [str(os.getpid())]
            async with backend.open_process(["sh", "-c", DAEMON]) as proc:
                assert proc.cgroup is not None
                _, line, pid = await read_lines(proc, 3)
                assert line == f"0::{proc.cgroup.removeprefix(mount)}"
                assert pid_alive(int(pid))
            await wait_gone(int(pid), Path(mount + line.removeprefix("0::")))
            assert this_cgroup(mount) == stranded  # never killed
    finally:
        real_move(parent)
        monkeypatch.setattr(_spawn, "_stranded", None)
        if stranded:
            os.rmdir(stranded)
    assert own_cgroup() == home
    assert ours(parent) == []
