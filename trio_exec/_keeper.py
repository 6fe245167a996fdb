"""The keeper: a small process that kills a backend's process groups (and removes its
cgroups) when its owner dies.

Theory of operation
-------------------
Leaving a session block (normally, by an error or by cancellation) kills and reaps the
child's process group. What no block survives is the death of the Python process that
owns it: SIGKILL, SIGQUIT (``Ctrl-\\`` on a terminal), a crash, ``os._exit``. Its children are
reparented to init and run on. ``PR_SET_PDEATHSIG`` does not cover that: it fires when
the *thread* that forked exits (spawns run in worker threads) and reaches only the direct
child, not the rest of its group.

A :class:`Keeper` runs one keeper process per :class:`~trio_exec.LocalBackend` that asks
for it, started lazily by the first spawn. The keeper reads the one end of a pipe whose
other end only the owner holds. The owner writes a short record per process group it
spawns (``+PGID``, right after the spawn, in the spawning thread) and one when the group
is gone (``-PGID``); it never waits for an answer, so a spawn costs one small pipe write.
A session in a cgroup of its own (see ``trio_exec._cgroup``) also registers the cgroup
(``>PATH``, in the same write) and forgets it once it is removed (``<PATH``).
When the keeper reads end of file, its owner is dead (the kernel closed the pipe): it
sends SIGKILL to every group still registered, kills every cgroup still registered
(``setsid`` daemons included), removes those cgroups once they are empty, and exits. An explicit :meth:`Keeper.close`
SIGKILLs the keeper first (their blocks still own the groups), then closes the pipe. The
keeper reads in batches (:data:`KEEPER_BATCH_DELAY`): it wakes a few times a second, not
twice per spawn.

The keeper runs ``python -I -S`` on ``trio_exec/_keeper_main.py``, which imports only
``os``, ``signal``, ``sys`` and ``time`` (the cgroup module is loaded once the owner
died), so it starts in about 16 ms (31 ms with this module's imports) and sees no
``PYTHON*`` variable. It runs in its own session, in ``/``, with no descriptor of its
owner but the pipe, and ignores SIGINT, SIGQUIT, SIGTERM and SIGHUP: a terminal's Ctrl-C
or ``Ctrl-\\`` reaches only its owner.

Limits: without a cgroup, a grandchild that left the group (``setsid``) escapes, as it
escapes the end of a block. The keeper runs in its owner's cgroup, not in one of the
sessions': if that cgroup is killed (the owner was itself a session of another backend),
the keeper dies with its owner, and the other backend kills and removes the cgroups below
its own. A group spawned in the instant before the owner dies, between the fork and the
registration write, may escape. A group id is registered while its block is open; if the
owner dies after the group ended and before it wrote ``-PGID``, or while its leader was
already reaped (``SIGCHLD`` ignored), the keeper may signal a group that reused the id.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import subprocess
import sys
import threading
import weakref
from typing import Final

from ._keeper_main import KEEPER_BATCH_DELAY

__all__ = ["KEEPER_BATCH_DELAY", "KEEPER_PIPE_BYTES", "Keeper"]

KEEPER_PIPE_BYTES: Final = 1024 * 1024
"""Kernel buffer asked for the keeper's pipe (Linux ``F_SETPIPE_SZ``): room for tens of
thousands of records, so a keeper that falls behind never makes its owner wait. A record
the pipe has no room for is kept and written with the next one."""


_KEEPER_MAIN: Final = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_keeper_main.py")
"""The keeper process's script (run by path: ``-I`` puts no package on the path)."""

_logger = logging.getLogger("trio_exec.keeper")
_keepers: weakref.WeakSet[Keeper] = weakref.WeakSet()


class Keeper:
    """The owner's side of a keeper process; thread-safe; see the module docstring.

    :meth:`start` and :meth:`register` run in the thread that spawns (they may fork);
    :meth:`unregister` never waits on the keeper (only, rarely, on a concurrent start of
    it), so it runs in the event loop.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._fd = -1
        self._groups: set[int] = set()
        self._cgroups: set[str] = set()
        self._unsent = bytearray()
        _keepers.add(self)

    def __repr__(self) -> str:
        state = "stopped" if self._process is None else f"pid {self._process.pid}"
        return f"<Keeper {state}, {len(self._groups)} groups>"

    @property
    def pid(self) -> int | None:
        """The keeper process's pid while it runs, else None."""
        process = self._process
        return None if process is None else process.pid

    def start(self) -> None:
        """Start the keeper process unless it runs; may block for a fork and exec.

        Raises:
            OSError: the keeper could not be started (its ``filename`` is the interpreter).
        """
        with self._lock:
            if self._fd < 0:
                self._start_locked()

    def register(self, pgid: int, cgroup: str | None = None) -> None:
        """Have the keeper kill group ``pgid`` (and cgroup ``cgroup``, a directory) if the
        owner dies; call right after the spawn.

        Never raises: if the keeper died, a new one is started and told every group; if
        that fails too, the error is logged and the next registration tries again.
        """
        with self._lock:
            self._groups.add(pgid)
            record = b"+%d\n" % pgid
            if cgroup is not None:
                self._cgroups.add(cgroup)
                record += b">%s\n" % os.fsencode(cgroup)
            if self._fd >= 0:
                self._unsent += record
                if self._flush_locked():
                    return
            try:
                self._start_locked()
            except OSError as exc:
                _logger.error("cannot restart the keeper process: %s", exc)

    def unregister(self, pgid: int) -> None:
        """Forget group ``pgid`` (it is gone); never waits on the keeper."""
        with self._lock:
            if pgid not in self._groups:
                return
            self._groups.discard(pgid)
            if self._fd >= 0:
                self._unsent += b"-%d\n" % pgid
                self._flush_locked()  # a dead keeper is replaced by the next register

    def unregister_cgroup(self, cgroup: str) -> None:
        """Forget cgroup ``cgroup`` (it is removed); never waits on the keeper."""
        with self._lock:
            if cgroup not in self._cgroups:
                return
            self._cgroups.discard(cgroup)
            if self._fd >= 0:
                self._unsent += b"<%s\n" % os.fsencode(cgroup)
                self._flush_locked()

    def close(self) -> None:
        """Stop the keeper without it killing anything: their blocks still own the groups.

        The keeper is SIGKILLed and reaped *before* its pipe is closed, so it never reads
        end of file (which would make it kill the groups). Blocks for the kill and the
        reap, which take no time. A later :meth:`start` starts a new keeper and tells it
        the groups still registered. Idempotent.
        """
        with self._lock:
            process = self._process
            self._process = None
            if process is not None:
                process.kill()
                process.wait()
            self._close_locked()

    def abandon(self) -> None:
        """Close the pipe as the owner's death would: the keeper kills the groups still
        registered (sessions never ended) and exits; it is reaped in the background.

        For a finalizer: never blocks.
        """
        with self._lock:
            self._close_locked()

    # -- under the lock ----------------------------------------------------------------------

    def _start_locked(self) -> None:
        self._close_locked()
        read_fd, write_fd = os.pipe()  # both close-on-exec: no child inherits them
        try:
            try:
                fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, KEEPER_PIPE_BYTES)
            except OSError:  # above /proc/sys/fs/pipe-max-size for an unprivileged user
                pass
            os.set_blocking(write_fd, False)
            self._process = subprocess.Popen(
                [sys.executable, "-I", "-S", _KEEPER_MAIN],
                stdin=read_fd,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd="/",
                start_new_session=True,
            )
        except OSError as exc:
            os.close(write_fd)
            text = exc.strerror or str(exc)
            raise OSError(
                exc.errno, f"cannot start the keeper process: {text}", sys.executable
            ) from None
        finally:
            os.close(read_fd)
        self._fd = write_fd
        self._unsent = bytearray(b"".join(b"+%d\n" % pgid for pgid in self._groups))
        self._unsent += b"".join(b">%s\n" % os.fsencode(path) for path in self._cgroups)
        self._flush_locked()

    def _flush_locked(self) -> bool:
        """Write what the pipe takes now; False (and the pipe closed) if the keeper is gone."""
        while self._unsent:
            try:
                written = os.write(self._fd, self._unsent)
            except BlockingIOError:
                return True
            except OSError as exc:
                if exc.errno != errno.EPIPE:
                    _logger.error("cannot write to the keeper process: %s", exc)
                self._close_locked()
                return False
            del self._unsent[:written]
        return True

    def _close_locked(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._process is not None:
            _reap_in_background(self._process)
            self._process = None
        self._unsent.clear()

    def _after_fork(self) -> None:
        """In a child made by ``os.fork``: drop the pipe, which is the parent's, unwritten."""
        self._lock = threading.Lock()
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = -1
        self._process = None
        self._groups.clear()
        self._cgroups.clear()
        self._unsent.clear()


def _reap_in_background(process: subprocess.Popen[bytes]) -> None:
    """Reap a keeper whose pipe is closed (it exits at once) without waiting for it."""
    if process.poll() is None:
        threading.Thread(target=process.wait, name="trio_exec keeper reaper", daemon=True).start()


def _after_fork_in_child() -> None:
    for keeper in list(_keepers):
        keeper._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
