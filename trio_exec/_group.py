"""Process groups (and cgroups): signalling a child's group and waiting until no member of
it (or of its cgroup) is alive; a child's own cgroup until it is removed."""

from __future__ import annotations

import contextlib
import os
from functools import partial
from typing import Final

import trio

from ._cgroup import CGROUP_EMPTY_TIMEOUT, is_populated, kill_at_once, kill_cgroup, remove_cgroup
from ._keeper import Keeper

__all__ = [
    "GROUP_EXIT_TIMEOUT",
    "ChildCgroup",
    "group_exists",
    "killpg",
    "live_group_members",
    "wait_cgroup_empty",
    "wait_group_gone",
]

GROUP_EXIT_TIMEOUT: Final = 5.0
"""Seconds to wait, after SIGKILL was sent to the group at the end of a session, until no
process of the group is alive. SIGKILL takes effect at once except for a process stuck
in uninterruptible sleep (a hung NFS read, say): such a process may outlive the block."""


def killpg(pgid: int, sig: int) -> None:
    """Send ``sig`` to process group ``pgid``; a group that is gone (or not ours) is ignored."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def group_exists(pgid: int) -> bool:
    """Whether process group ``pgid`` has a member (a zombie counts)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def live_group_members(pgid: int) -> bool:
    """Whether a process of group ``pgid`` is alive (zombies waiting for init are not)."""
    with os.scandir("/proc") as entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as stat:
                    fields = stat.read().rpartition(b")")[2].split()
            except OSError:
                continue
            if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
                return True
    return False


async def wait_group_gone(pgid: int) -> None:
    """Wait (at most :data:`GROUP_EXIT_TIMEOUT`) until no process of the group is alive.

    Called after SIGKILL was sent to the group and its leader was reaped: the common case
    (a group that died with its leader) costs one ``killpg(pgid, 0)`` and returns without
    a checkpoint (its caller, the end of a block, has one after it: a trip through the
    scheduler here would lengthen every session's end); otherwise ``/proc`` is scanned
    for live members.
    """
    if not group_exists(pgid):  # the common case, without a timeout scope
        return
    delay = 0.001
    with trio.move_on_after(GROUP_EXIT_TIMEOUT):
        while True:
            try:
                os.killpg(pgid, 0)
            except (ProcessLookupError, PermissionError):
                return
            if not live_group_members(pgid):
                return
            await trio.sleep(delay)
            delay = min(delay * 2, 0.05)


async def wait_cgroup_empty(path: str) -> bool:
    """Wait (at most :data:`~trio_exec._cgroup.CGROUP_EMPTY_TIMEOUT`) until no process is
    left in cgroup ``path``, which was killed; return whether it is empty.

    ``cgroup.events`` is read with a growing delay: a killed cgroup is usually empty by
    the first read.
    """
    delay = 0.001
    with trio.move_on_after(CGROUP_EMPTY_TIMEOUT):
        while is_populated(path):
            await trio.sleep(delay)
            delay = min(delay * 2, 0.05)
        return True
    return False


class ChildCgroup:
    """A local child's own cgroup, which the keeper (if any) has registered, until it is
    removed: :attr:`path` is None from then on."""

    def __init__(self, path: str, keeper: Keeper | None) -> None:
        self.path: str | None = path
        self._keeper = keeper

    async def kill(self) -> None:
        """SIGKILL everything in the cgroup (the child's group and whatever left it)."""
        if self.path is not None and not kill_at_once(self.path):
            await trio.to_thread.run_sync(partial(kill_cgroup, self.path, use_kill_file=False))

    def kill_now(self) -> None:
        """SIGKILL the cgroup where that takes one write (``cgroup.kill``), then remove it
        if it is already empty; else the keeper (if any) keeps it."""
        if self.path is not None:
            with contextlib.suppress(OSError):
                kill_at_once(self.path)
            self.forget()

    async def remove_when_empty(self) -> None:
        """Once the killed cgroup is empty, remove it and tell the keeper. One still
        populated after :data:`~trio_exec._cgroup.CGROUP_EMPTY_TIMEOUT` stays (and stays
        registered with the keeper)."""
        if self.path is not None and await wait_cgroup_empty(self.path):
            self.forget()

    def forget(self) -> None:
        """Remove the (empty) cgroup and unregister it from the keeper; idempotent."""
        path = self.path
        if path is None:
            return
        try:
            removed = remove_cgroup(path)
        except OSError:  # pragma: no cover - our empty cgroup can be removed
            removed = False
        if removed:
            self.path = None
            if self._keeper is not None:
                self._keeper.unregister_cgroup(path)
                self._keeper = None
