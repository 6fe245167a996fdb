"""Spawning a local child: its pipes or terminal, ``Popen`` in a new session (or in this
process's group), in a cgroup of its own where asked, and the mapping of a failed spawn to
:class:`~trio_exec.SpawnError`."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from functools import partial

import attrs
import trio

from . import _pty
from ._cgroup import create_cgroup, remove_cgroup
from ._errors import SpawnError
from ._events import OutputStream
from ._keeper import Keeper

__all__ = ["Child", "spawn"]


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
    a ``preexec_fn``, like the terminal's: one ``write`` on a descriptor, no lock taken.

    **Cancellation:** spawning runs to completion in a worker thread; the caller owns the
    child as soon as this returns.
    """
    child_fds: list[int] = []
    parent_fds: list[int] = []
    outputs: list[tuple[OutputStream, int]] = []
    preexec: Callable[[], None] | None = None
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

        def popen() -> subprocess.Popen[bytes]:
            if keeper is not None:
                keeper.start()
            before_exec = preexec
            procs = -1
            if cgroup_parent is not None:
                cgroup.append(create_cgroup(cgroup_parent))
                procs = os.open(os.path.join(cgroup[0], "cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC)
                before_exec = partial(_enter_cgroup, procs, preexec)
            try:
                child = subprocess.Popen(
                    command,
                    executable=None if arg0 is None else args[0],
                    stdin=stdin,
                    stdout=stdout,
                    stderr=stderr,
                    cwd=cwd,
                    env=env,
                    start_new_session=start_new_session,
                    preexec_fn=before_exec,
                )
            finally:
                if procs >= 0:
                    os.close(procs)
            if keeper is not None:
                keeper.register(child.pid, cgroup[0] if cgroup else None)
            return child

        try:
            child = await trio.to_thread.run_sync(popen)
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
