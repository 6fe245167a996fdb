"""Spawning a local child: its pipes or terminal, ``Popen`` in a new session (or in this
process's group), in a cgroup of its own where asked, and the mapping of a failed spawn to
:class:`~trio_exec.SpawnError`."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING, Final, TypeAlias, TypeVar

import attrs
import trio

from . import _pty
from ._cgroup import create_cgroup, move_self, remove_cgroup
from ._errors import SpawnError
from ._events import OutputStream
from ._keeper import Keeper

if TYPE_CHECKING:
    from outcome import Outcome  # trio's own outcomes, as start_thread_soon hands them

__all__ = ["Child", "spawn"]

_T = TypeVar("_T")

Preexec: TypeAlias = "Callable[[], None] | None"
_Start: TypeAlias = "Callable[[Preexec], subprocess.Popen[bytes]]"


class _SpawnGate:
    """The spawns of this process: any number at once, or one alone.

    A spawn that moves this process into a cgroup (:func:`_start_inside`) runs alone: a
    child that another spawn started meanwhile would start in that cgroup too. The
    others run together. Held by worker threads, around ``Popen`` only.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._together = 0
        self._alone = False

    @contextmanager
    def together(self) -> Iterator[None]:
        """Hold the gate with the other spawns that do not move this process."""
        with self._changed:
            self._changed.wait_for(lambda: not self._alone)
            self._together += 1
        try:
            yield
        finally:
            with self._changed:
                self._together -= 1
                self._changed.notify_all()

    @contextmanager
    def alone(self) -> Iterator[None]:
        """Hold the gate with no other spawn."""
        with self._changed:
            self._changed.wait_for(lambda: not self._alone and not self._together)
            self._alone = True
        try:
            yield
        finally:
            with self._changed:
                self._alone = False
                self._changed.notify_all()


_GATE: Final = _SpawnGate()
"""Every spawn of trio_exec in this process passes it (the keeper's included)."""

_stranded: str | None = None
"""The cgroup this process could not move back out of, if that ever happened (see
:func:`_start_inside`); from then on cgroup children are forked into their cgroup."""


@attrs.define(kw_only=True)
class Child:
    """What spawning gives: the Popen object and the parent's ends."""

    popen: subprocess.Popen[bytes]
    outputs: list[tuple[OutputStream, int]]
    stdin: trio.lowlevel.FdStream | None
    master: int | None
    own_group: bool = True
    """Whether the child leads a new session and process group (its pid is the group id)."""
    cgroup: str | None = None
    """The directory of the child's own cgroup, which it entered before it ran, or None."""


async def spawn(
    args: list[str],
    *,
    cwd: str | os.PathLike[str] | None,
    env: dict[str, str] | None,
    tty: bool,
    pipe_stdin: bool,
    arg0: str | None,
    window: tuple[int, int] | None = None,
    keeper: Keeper | None = None,
    start_new_session: bool = True,
    inherit_stderr: bool = False,
    cgroup_parent: str | None = None,
    sole_spawner: bool = False,
) -> Child:
    """Start the child in a new session with its pipes or terminal.

    With ``start_new_session=False`` (not with ``tty``, which needs a session of its own)
    the child stays in this process's session and process group. With
    ``inherit_stderr`` a non-tty child writes its stderr to this process's descriptor 2
    instead of a pipe (so the session has no stderr output). A terminal gets its size (``window``, else 24x80) before the child is forked, so the
    child never sees another one. With a ``keeper``, the worker thread starts it if
    needed before the spawn and registers the child's group (and cgroup) right after it.

    With ``cgroup_parent`` the child gets a new cgroup under that directory, and enters it
    between fork and exec (it writes ``0`` into the cgroup's ``cgroup.procs``, opened by
    the parent): nothing it runs, nothing it forks, ever runs outside it. That step runs as
    a ``preexec_fn``, like the terminal's: one ``write`` on a descriptor, no lock taken;
    but a ``preexec_fn`` makes ``Popen`` fork a copy of this process rather than
    ``vfork``. With ``sole_spawner`` as well, the child starts in its cgroup instead: this
    process moves itself there for the spawn and back (:func:`_start_inside`), while
    every other spawn of trio_exec in this process waits (:data:`_GATE`).

    **Cancellation:** spawning runs to completion in a worker thread; the caller owns the
    child as soon as this returns.
    """
    child_fds: list[int] = []
    parent_fds: list[int] = []
    outputs: list[tuple[OutputStream, int]] = []
    preexec: Preexec = None
    stdin_w: int | None = None
    master: int | None = None
    cgroup: list[str] = []
    try:
        if tty:
            rows, cols = window or (_pty.DEFAULT_ROWS, _pty.DEFAULT_COLS)
            master, slave = _pty.open_pty(rows, cols)
            parent_fds.append(master)
            child_fds.append(slave)
            stdin: int = slave
            stdout = stderr = slave
            preexec = _pty.make_controlling_terminal
            outputs.append((OutputStream.PTY, os.dup(master)))
            parent_fds.append(outputs[-1][1])
            stdin_w = os.dup(master)
        else:
            out_r, stdout = os.pipe()
            parent_fds.append(out_r)
            child_fds.append(stdout)
            outputs.append((OutputStream.STDOUT, out_r))
            if inherit_stderr:
                stderr = 2
            else:
                err_r, stderr = os.pipe()
                parent_fds.append(err_r)
                child_fds.append(stderr)
                outputs.append((OutputStream.STDERR, err_r))
            if pipe_stdin:
                stdin, stdin_w = os.pipe()
                child_fds.append(stdin)
            else:
                stdin = subprocess.DEVNULL
        if stdin_w is not None:
            parent_fds.append(stdin_w)
        command = args if arg0 is None else [arg0, *args[1:]]

        def start(preexec_fn: Preexec) -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                command,
                executable=None if arg0 is None else args[0],
                stdin=stdin,
                stdout=stdout,
                stderr=stderr,
                cwd=cwd,
                env=env,
                start_new_session=start_new_session,
                preexec_fn=preexec_fn,
            )

        inside = sole_spawner and cgroup_parent is not None and _stranded is None

        def popen() -> subprocess.Popen[bytes]:
            with _GATE.alone() if inside else _GATE.together():
                if keeper is not None:
                    keeper.start()
                if cgroup_parent is None:
                    child = start(preexec)
                else:
                    cgroup.append(create_cgroup(cgroup_parent))
                    if inside:
                        child = _start_inside(cgroup[0], cgroup_parent, start, preexec)
                    else:
                        child = _start_entering(cgroup[0], start, preexec)
            if keeper is not None:
                keeper.register(child.pid, cgroup[0] if cgroup else None)
            return child

        try:
            child = await _in_worker_thread(popen)
        except subprocess.SubprocessError:  # only a failed preexec_fn raises it
            if not cgroup:
                raise
            raise SpawnError(None, f"the child could not enter its cgroup {cgroup[0]}") from None
    except OSError as exc:
        _remove_new_cgroup(cgroup)
        for fd in parent_fds:
            os.close(fd)
        filename = exc.filename if exc.filename is not None else args[0]
        raise SpawnError(exc.errno, exc.strerror or str(exc), os.fsdecode(filename)) from None
    except BaseException:
        _remove_new_cgroup(cgroup)
        for fd in parent_fds:
            os.close(fd)
        raise
    finally:
        for fd in child_fds:
            os.close(fd)
    for _, fd in outputs:
        os.set_blocking(fd, False)
    return Child(
        popen=child,
        outputs=outputs,
        stdin=None if stdin_w is None else trio.lowlevel.FdStream(stdin_w),
        master=master,
        own_group=start_new_session,
        cgroup=cgroup[0] if cgroup else None,
    )


async def _in_worker_thread(call: Callable[[], _T]) -> _T:
    """Run ``call`` in one of trio's worker threads and return its result (or raise its
    exception), as ``trio.to_thread.run_sync(call)`` does, under the same default
    limiter: without its trip through the scheduler before the thread starts when the
    limiter has room (about a tenth of a ``/bin/true`` spawn), nor the context copy and
    the bookkeeping that a call back into trio from the thread needs (``call`` makes
    none).

    **Cancellation:** as ``run_sync`` without ``abandon_on_cancel``: a caller cancelled
    already gets ``Cancelled`` before ``call`` starts; once it started, it runs to
    completion and its result is returned.
    """
    await trio.lowlevel.checkpoint_if_cancelled()
    limiter = trio.to_thread.current_default_thread_limiter()
    borrower = object()
    try:
        limiter.acquire_on_behalf_of_nowait(borrower)
    except trio.WouldBlock:
        await limiter.acquire_on_behalf_of(borrower)
    try:
        task = trio.lowlevel.current_task()
        token = trio.lowlevel.current_trio_token()

        def deliver(result: Outcome[_T]) -> None:
            # The task resumes with the result: the value, or the exception raised.
            with contextlib.suppress(trio.RunFinishedError):  # the run ended meanwhile
                token.run_sync_soon(trio.lowlevel.reschedule, task, result)

        trio.lowlevel.start_thread_soon(call, deliver)
        value: _T = await trio.lowlevel.wait_task_rescheduled(lambda _: trio.lowlevel.Abort.FAILED)
    finally:
        limiter.release_on_behalf_of(borrower)
    return value


def _start_entering(path: str, start: _Start, preexec: Preexec) -> subprocess.Popen[bytes]:
    """Fork a child that enters cgroup ``path`` before it runs anything (see :func:`spawn`)."""
    procs = os.open(os.path.join(path, "cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC)
    try:
        return start(partial(_enter_cgroup, procs, preexec))
    finally:
        os.close(procs)


def _start_inside(path: str, home: str, start: _Start, preexec: Preexec) -> subprocess.Popen[bytes]:
    """Start a child in cgroup ``path`` by spawning from inside it: this process moves
    into it, spawns (``vfork`` unless a terminal needs a ``preexec``), and moves back to
    ``home``. The caller holds :data:`_GATE` alone, so no other spawn of ours starts
    meanwhile.

    Should this process fail to move back (it cannot: ``home`` holds ``path``, and the
    move in was allowed), it stays in ``path``, which then must never be killed: the
    child is SIGKILLed and reaped, OSError is raised, and later spawns fork instead.
    """
    global _stranded
    move_self(path)
    child: subprocess.Popen[bytes] | None = None
    try:
        child = start(preexec)
    finally:
        try:
            move_self(home)
        except OSError as exc:
            _stranded = path
            if child is not None:
                _kill_and_reap(child)
            raise OSError(
                exc.errno,
                f"this process could not move back out of the cgroup it spawned in "
                f"({exc.strerror}); it stays there, and later spawns fork instead",
                path,
            ) from exc
    return child


def _kill_and_reap(child: subprocess.Popen[bytes]) -> None:
    """SIGKILL a child that must not run, with its group, and reap it (a child that gets a
    cgroup always leads a group: its pid, pinned until it is reaped)."""
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()


def _enter_cgroup(procs: int, then: Callable[[], None] | None) -> None:
    """In the child, between fork and exec: move into the cgroup (``0`` is the writer)."""
    os.write(procs, b"0")
    if then is not None:
        then()


def _remove_new_cgroup(cgroup: list[str]) -> None:
    """Remove the cgroup made for a child that did not start (it holds no process)."""
    if cgroup:
        try:
            remove_cgroup(cgroup[0])
        except OSError:  # pragma: no cover - an empty cgroup of ours can be removed
            pass
