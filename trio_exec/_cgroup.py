"""Cgroup containment: whether this process can give each child a cgroup v2 of its own,
and that cgroup's life (made, entered by the child before it runs, killed, removed).

Theory of operation
-------------------
A process group holds only the processes that stay in it: a daemon that calls ``setsid``
(or double-forks into a new session) leaves it and outlives every ``killpg``. A cgroup
holds every descendant, whatever its session, and cgroup v2 kills a whole cgroup at once
(``cgroup.kill``, Linux 5.14). So where this process may create cgroups under its own
(root, or a subtree delegated to its user), each local session gets one:
``<own cgroup>/trio-exec-<pid>-<n>``. :func:`containment` finds out once per process.

The child is in its cgroup before it runs any code of its own, so nothing it forks can
start outside. Either it enters it between fork and exec (it writes ``0``, itself, into
a ``cgroup.procs`` descriptor the parent opened), or, in a process that spawns only
through trio_exec (``LocalBackend(sole_spawner=True)``), it starts there: this process
moves itself into the new cgroup (:func:`move_self`), spawns with ``vfork``, and moves
back. Leaving the block writes ``1`` into ``cgroup.kill``, waits
(:data:`CGROUP_EMPTY_TIMEOUT` at most) until ``cgroup.events`` says the cgroup is empty,
and removes the directory (sub-cgroups first: a nested exec server makes its own). Where
``cgroup.kill`` is missing, the cgroup is frozen, every member SIGKILLed and then
thawed, until it is empty.

This module uses the standard library only: the keeper process (``trio_exec._keeper_main``)
loads it to kill and remove the cgroups of an owner that died.
"""

from __future__ import annotations

import enum
import errno
import itertools
import os
import signal
import time
from dataclasses import dataclass
from typing import Final, final

__all__ = [
    "CGROUP_EMPTY_TIMEOUT",
    "CGROUP_NAME_PREFIX",
    "Containment",
    "ContainmentCheck",
    "containment",
    "create_cgroup",
    "is_populated",
    "kill_and_remove",
    "kill_at_once",
    "kill_cgroup",
    "move_self",
    "remove_cgroup",
]

CGROUP_EMPTY_TIMEOUT: Final = 5.0
"""Seconds to wait, once a session's cgroup was killed, until no process is left in it;
then its directory is removed. A killed process leaves at once unless it is stuck in
uninterruptible sleep (a hung NFS read, say); a cgroup still populated after this long
is left in place (its directory cannot be removed) and the block ends anyway."""

CGROUP_NAME_PREFIX: Final = "trio-exec-"
"""Prefix of the directory name of every session's cgroup: ``trio-exec-<pid>-<n>``, made
in the cgroup of the process that spawns (``<pid>``)."""

_counter = itertools.count()


@final
class Containment(enum.Enum):
    """What ends with a local session's block: see :func:`containment`."""

    CGROUP = "cgroup"
    """The child runs in a cgroup of its own; leaving the block kills the whole cgroup,
    processes that left the child's process group (``setsid``, daemons) included."""

    PROCESS_GROUP = "process-group"
    """The child leads a process group; leaving the block kills that group. A process that
    left it (``setsid``) outlives the block."""

    CHILD = "child"
    """The child stays in this process's group and cgroup
    (``LocalBackend(start_new_session=False)``): only the child itself is signalled and
    killed; what it leaves behind outlives the block."""


@final
@dataclass(frozen=True)
class ContainmentCheck:
    """The answer of :func:`containment` (and of :attr:`LocalBackend.containment`)."""

    kind: Containment
    """What contains each session's processes."""

    reason: str | None = None
    """Why it is not :attr:`Containment.CGROUP` (None for that)."""

    parent: str | None = None
    """The directory of the cgroup under which the sessions' cgroups are made (this
    process's own cgroup), for :attr:`Containment.CGROUP`; else None."""


def _own_cgroup() -> tuple[str | None, str]:
    """This process's cgroup v2 directory, or None and why not."""
    try:
        with open("/proc/self/cgroup", encoding="utf-8", errors="surrogateescape") as file:
            lines = file.read().splitlines()
    except OSError as exc:
        return None, f"cannot read /proc/self/cgroup: {exc.strerror}"
    paths = [line[3:] for line in lines if line.startswith("0::")]
    if not paths:
        return None, "this process is in no cgroup v2 hierarchy (cgroup v1 only)"
    own = paths[0]
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as file:
            mounts = file.read().splitlines()
    except OSError as exc:
        return None, f"cannot read /proc/self/mountinfo: {exc.strerror}"
    for line in mounts:
        fields, _, tail = line.partition(" - ")
        parts = fields.split()
        if tail.split()[:1] != ["cgroup2"] or len(parts) < 5:
            continue
        root, point = (_unescape(part) for part in parts[3:5])
        relative = os.path.relpath(own, root)
        if relative == ".." or relative.startswith("../"):
            continue  # this mount shows another part of the hierarchy
        return os.path.normpath(os.path.join(point, relative)), ""
    return None, "no cgroup2 file system is mounted"


def _unescape(field: str) -> str:
    """Undo mountinfo's octal escapes (``\\040`` for a space, ...)."""
    if "\\" not in field:
        return field
    return field.encode("latin-1", "surrogateescape").decode("unicode_escape")


def _systemd_refuses(directory: str) -> str | None:
    """Why systemd forbids making cgroups here: a unit's cgroup not delegated to us."""
    name = os.path.basename(directory)
    if not name.endswith((".service", ".scope", ".slice")):
        return None
    for attribute in ("trusted.delegate", "user.delegate"):
        try:
            if os.getxattr(directory, attribute) == b"1":
                return None
        except OSError:
            continue
    return f"{directory} is a systemd unit's cgroup that is not delegated (Delegate=yes)"


def _probe() -> ContainmentCheck:
    def fallback(reason: str) -> ContainmentCheck:
        return ContainmentCheck(Containment.PROCESS_GROUP, reason)

    own, reason = _own_cgroup()
    if own is None:
        return fallback(reason)
    if "\n" in own:
        return fallback(f"the cgroup path {own!r} has a newline")
    refusal = _systemd_refuses(own)
    if refusal is not None:
        return fallback(refusal)
    if not os.access(os.path.join(own, "cgroup.procs"), os.W_OK):
        return fallback(f"{own}/cgroup.procs is not writable: cannot move a child out of it")
    try:
        probe = create_cgroup(own)
    except OSError as exc:
        return fallback(f"cannot create a cgroup in {own}: {exc.strerror}")
    try:
        if not os.access(os.path.join(probe, "cgroup.procs"), os.W_OK):
            return fallback(f"cgroups made in {own} are not writable")
        files = os.listdir(probe)
        if "cgroup.kill" not in files and "cgroup.freeze" not in files:
            return fallback("the kernel has neither cgroup.kill nor cgroup.freeze (Linux 5.2)")
    finally:
        os.rmdir(probe)
    return ContainmentCheck(Containment.CGROUP, None, own)


_checked: ContainmentCheck | None = None


def containment() -> ContainmentCheck:
    """Whether local sessions get a cgroup each, on this machine and for this process.

    :attr:`Containment.CGROUP` where this process is in a cgroup v2 hierarchy (found from
    ``/proc/self/mountinfo`` and ``/proc/self/cgroup``), may create cgroups under its
    own cgroup and move processes into them (as root, or in a delegated subtree), and
    the kernel can kill a cgroup (``cgroup.kill``, or ``cgroup.freeze`` and a signal to
    each member). A systemd unit's cgroup counts only if it is delegated to the unit.
    Otherwise :attr:`Containment.PROCESS_GROUP`, with the reason. The answer is found
    once (by making and removing a cgroup) and kept for the life of this process.
    """
    global _checked
    if _checked is None:
        _checked = _probe()
    return _checked


def create_cgroup(parent: str) -> str:
    """Make a new cgroup ``trio-exec-<pid>-<n>`` under ``parent``; return its directory."""
    while True:
        path = os.path.join(parent, f"{CGROUP_NAME_PREFIX}{os.getpid()}-{next(_counter)}")
        try:
            os.mkdir(path)
        except FileExistsError:
            continue  # left by an earlier process that had this pid
        return path


def move_self(path: str) -> None:
    """Move this whole process (every thread) into cgroup ``path``; raises OSError.

    What it forks from then on starts there. The writer needs write access to
    ``cgroup.procs`` of the cgroup that holds both the old and the new one, as for
    moving a child.
    """
    procs = os.path.join(path, "cgroup.procs")
    if not _write(procs, b"0"):  # 0: the writing process
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), procs)


def is_populated(path: str) -> bool:
    """Whether a live process is in cgroup ``path`` or below (False once it is removed)."""
    try:
        with open(os.path.join(path, "cgroup.events"), "rb") as file:
            return b"populated 1" in file.read()
    except FileNotFoundError:
        return False


def _write(path: str, data: bytes) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    return True


def _members(path: str) -> list[int]:
    """The pids in cgroup ``path`` and below."""
    found: list[int] = []
    for directory, _, _ in os.walk(path):
        try:
            with open(os.path.join(directory, "cgroup.procs"), "rb") as file:
                found += [int(pid) for pid in file.read().split()]
        except (FileNotFoundError, ValueError):
            continue
    return found


def kill_at_once(path: str) -> bool:
    """SIGKILL every process in cgroup ``path`` and below by ``cgroup.kill``, which the
    kernel does at once; False if the file is missing (Linux before 5.14, or a cgroup that
    is gone): then :func:`kill_cgroup` is the way."""
    try:
        return _write(os.path.join(path, "cgroup.kill"), b"1")
    except OSError as exc:
        if exc.errno == errno.ENOENT:  # pragma: no cover - removed in between
            return False
        raise


def kill_cgroup(path: str, *, use_kill_file: bool = True) -> None:
    """SIGKILL every process in cgroup ``path`` and below; a cgroup that is gone is ignored.

    With ``cgroup.kill`` (and ``use_kill_file``) the kernel does it at once. Otherwise the
    cgroup is frozen (nothing in it can fork meanwhile), each member is SIGKILLed, and it
    is thawed (the kernel of a frozen process must run to exit); this repeats until no
    member is left, at most :data:`CGROUP_EMPTY_TIMEOUT` seconds. That may block: run it
    in a thread.
    """
    if use_kill_file and kill_at_once(path):
        return
    freeze = os.path.join(path, "cgroup.freeze")
    deadline = time.monotonic() + CGROUP_EMPTY_TIMEOUT
    delay = 0.001
    while (members := _members(path)) and time.monotonic() < deadline:
        frozen = _write(freeze, b"1")
        for pid in members:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if frozen:
            _write(freeze, b"0")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def remove_cgroup(path: str) -> bool:
    """Remove cgroup ``path`` and the cgroups below it; True once none of them is left.

    A cgroup that still has a live process cannot be removed (EBUSY): False.
    """
    for directory, _, _ in os.walk(path, topdown=False):
        try:
            os.rmdir(directory)
        except FileNotFoundError:
            continue
        except OSError as exc:
            if exc.errno == errno.EBUSY:
                return False
            raise
    return not os.path.exists(path)


def kill_and_remove(paths: list[str]) -> None:
    """Kill every cgroup of ``paths``, wait (at most :data:`CGROUP_EMPTY_TIMEOUT` in all)
    until they are empty, and remove them; blocking, for the keeper. Never raises."""
    for path in paths:
        try:
            kill_cgroup(path)
        except OSError:
            pass
    deadline = time.monotonic() + CGROUP_EMPTY_TIMEOUT
    delay = 0.001
    while any(map(is_populated, paths)) and time.monotonic() < deadline:
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    for path in paths:
        try:
            remove_cgroup(path)
        except OSError:
            pass
