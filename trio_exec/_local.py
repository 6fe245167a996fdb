"""LocalBackend: processes on this machine.

Theory of operation
-------------------
Each child runs in a new session (``setsid``), so its pid is also its process group id
and every signal goes to the whole group. Three kinds of task feed the session's
:class:`~trio_exec._retained.ProcessLog`:

* one **pump** per output stream (stdout and stderr, or the PTY master) reads the
  non-blocking descriptor and appends chunks to the log. ``append_output`` waits while
  a subscription is behind, so a slow consumer stops the pump, the pipe fills, and the
  child blocks in ``write``: backpressure instead of unbounded memory.
* one **reaper** waits on a pidfd for the child's exit. It peeks at the exit status with
  ``waitid(WNOWAIT)`` and leaves the child a zombie until the block is left, so the
  pid (which is also the group id) cannot be reused while we may still signal it.
  Before it sequences ``Exited`` it waits until the pumps have appended every byte that
  was in the pipes when the child exited (``FIONREAD``): output the child wrote before
  exiting always precedes ``Exited`` (invariant 4), while output of grandchildren that
  keeps coming never delays it. It sequences ``Closed`` once every stream is at EOF, or
  :data:`CLOSE_DRAIN_TIMEOUT` after the group was SIGKILLed (then only a process that
  left the group can still hold a stream open; the pumps stop reading it), and then
  closes the session's descriptors (output pipes, PTY master, and the stdin pipe unless
  a job of the group still reads it): a session kept open after its end (the server
  retains finished processes) holds only its log and the zombie that pins the group id.

When the program ignores SIGCHLD (``signal.signal(SIGCHLD, SIG_IGN)``), the kernel reaps
each child as it exits and discards its status, as it does for :mod:`subprocess`: the
session then reports exit code 0, as ``Popen.wait`` and ``trio.run_process`` do. No
zombie pins the pid, so the group id is not pinned either: a signal sent to the group
after the child exited could reach a new group that reused the id once every member is
gone (the reaper stops signalling the group as soon as it sees it empty).

With ``LocalBackend(kill_orphans=True)`` a keeper process (``trio_exec._keeper``) kills
every open session's group if this process dies without leaving the blocks.

Leaving the block releases backpressure (no one will consume any more), terminates a
child that still runs (SIGTERM, SIGKILL after the grace), SIGKILLs whatever is left of
the group, waits a bounded time for the pipes to reach EOF, and reaps the child.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import signal as _signal
import subprocess
import termios
import weakref
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from typing import Final

import attrs
import trio

from . import _pty
from ._backend import (
    DEFAULT_GRACE,
    Arg,
    ExecBackend,
    ExecProcess,
    check_argv,
    check_dimensions,
    check_env,
    check_seconds,
    check_window,
    new_process_id,
)
from ._errors import SpawnError, UnsupportedOperation
from ._events import OutputStream, WriteStatus
from ._keeper import Keeper
from ._retained import DEFAULT_RETAINED_BYTES, ProcessLog
from ._util import open_service_nursery

__all__ = [
    "CLOSE_DRAIN_TIMEOUT",
    "GROUP_EXIT_TIMEOUT",
    "PIPE_BUFFER_BYTES",
    "PTY_EXIT_SETTLE",
    "READ_CHUNK_BYTES",
    "LocalBackend",
    "LocalProcess",
    "open_process",
]

READ_CHUNK_BYTES: Final = 256 * 1024
"""Largest chunk read from a pipe or PTY at once, so the largest ``Output.data`` (256 KiB)."""

PIPE_BUFFER_BYTES: Final = 1024 * 1024
"""Kernel buffer asked for each output pipe (Linux ``F_SETPIPE_SZ``; the default is 64 KiB).
A larger buffer lets the child run ahead of a busy event loop between reads; it counts
toward the bound on memory held for a paused consumer."""

CLOSE_DRAIN_TIMEOUT: Final = 2.0
"""Seconds to wait, once the child exited and its group was SIGKILLed (the block was left,
``signal(SIGKILL)``, or the grace of ``terminate`` ran out), for the child's pipes to reach
end of file. Only a process outside the group (one that called ``setsid``) can keep them
open that long; its later output is then dropped and ``Closed`` is sequenced. An exec
server's session ends the same way when its client terminates or kills the process."""

PTY_EXIT_SETTLE: Final = 0.05
"""Seconds the reaper lets a PTY reach end of file after the child exits before it
measures the terminal's pending input. The kernel hands terminal output to the master
asynchronously; when the child was the last holder of the terminal, end of file comes
first and ordering is exact; otherwise output the kernel is still moving after this
delay may follow ``Exited``."""


GROUP_EXIT_TIMEOUT: Final = 5.0
"""Seconds to wait, after SIGKILL was sent to the group at the end of a session, until no
process of the group is alive. SIGKILL takes effect at once except for a process stuck
in uninterruptible sleep (a hung NFS read, say): such a process may outlive the block."""


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _group_exists(pgid: int) -> bool:
    """Whether process group ``pgid`` has a member (a zombie counts)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _live_group_members(pgid: int) -> bool:
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


async def _wait_group_gone(pgid: int) -> None:
    """Wait (at most :data:`GROUP_EXIT_TIMEOUT`) until no process of the group is alive.

    Called after SIGKILL was sent to the group and its leader was reaped: the common case
    (a group that died with its leader) costs one ``killpg(pgid, 0)``; otherwise ``/proc``
    is scanned for live members.
    """
    delay = 0.001
    with trio.move_on_after(GROUP_EXIT_TIMEOUT):
        while True:
            try:
                os.killpg(pgid, 0)
            except (ProcessLookupError, PermissionError):
                return
            if not _live_group_members(pgid):
                return
            await trio.sleep(delay)
            delay = min(delay * 2, 0.05)


def _grow_pipe(fd: int) -> None:
    """Ask for a :data:`PIPE_BUFFER_BYTES` pipe buffer: fewer wake-ups for a chatty child."""
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BUFFER_BYTES)
    except OSError:  # above /proc/sys/fs/pipe-max-size for an unprivileged user
        pass


def _pending_bytes(fd: int) -> int:
    """Bytes waiting to be read from a pipe or PTY master."""
    try:
        buf = fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0")
    except OSError:
        return 0
    return int.from_bytes(buf, "little", signed=True)


def _exit_status(result: os.waitid_result) -> tuple[int, int | None]:
    """Map a waitid result to ``(exit_code, signal)`` in the shell's convention."""
    if result.si_code == os.CLD_EXITED:
        return result.si_status, None
    return 128 + result.si_status, result.si_status


class _Pump:
    """Reads one output descriptor into the log until end of file."""

    def __init__(self, stream: OutputStream, fd: int, log: ProcessLog) -> None:
        self.stream = stream
        self.fd = fd
        self._log = log
        self.read_total = 0
        """Bytes read from the descriptor."""
        self.appended_total = 0
        """Bytes sequenced into the log."""
        self.at_eof = trio.Event()
        """Set once no more output will be appended: end of file, or :meth:`stop`."""
        self._progress = trio.lowlevel.ParkingLot()
        self._reading = trio.CancelScope()

    async def run(self) -> None:
        with self._reading:
            await self._read_to_eof()
        self.at_eof.set()
        self._progress.unpark_all()

    def stop(self) -> None:
        """Stop reading: what has not been appended yet is dropped; sets :attr:`at_eof`."""
        self._reading.cancel()

    async def _read_to_eof(self) -> None:
        fd = self.fd
        while True:
            try:
                data = os.read(fd, READ_CHUNK_BYTES)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(fd)
                continue
            except OSError as exc:
                # A PTY master reads EIO once every slave descriptor is closed.
                if exc.errno != errno.EIO:
                    raise
                data = b""
            if not data:
                break
            self.read_total += len(data)
            await self._log.append_output(self.stream, data)
            self.appended_total += len(data)
            self._progress.unpark_all()
            await trio.lowlevel.checkpoint()

    async def wait_appended(self, target: int) -> None:
        """Wait until ``target`` bytes were sequenced, or end of file."""
        while self.appended_total < target and not self.at_eof.is_set():
            await self._progress.park()


@attrs.define(kw_only=True)
class _Child:
    """What spawning gives: the Popen object and the parent's ends."""

    popen: subprocess.Popen[bytes]
    outputs: list[tuple[OutputStream, int]]
    stdin: trio.lowlevel.FdStream | None
    master: int | None


class LocalProcess(ExecProcess):
    """A process running on this machine; see :class:`ExecProcess`.

    Obtained from :meth:`LocalBackend.open_process`, never built directly.
    """

    def __init__(
        self, process_id: str, child: _Child, log: ProcessLog, keeper: Keeper | None = None
    ) -> None:
        super().__init__(process_id, log)
        self._popen = child.popen
        self.pid: Final = child.popen.pid
        """The child's pid, which is also its process group id."""
        self.tty: Final = child.master is not None
        """Whether the child runs on a pseudo-terminal."""
        self._master = child.master
        self._stdin = child.stdin
        self._stdin_closed = child.stdin is None
        self._write_lock = trio.Lock()
        self._pumps = [_Pump(stream, fd, log) for stream, fd in child.outputs]
        self._child_exited = trio.Event()
        self._reaped = False
        self._done = trio.Event()
        self._tasks_scope = trio.CancelScope(shield=True)
        self._group_gone = False
        self._keeper = keeper
        """The keeper that has the group registered, until the group is forgotten."""
        self._group_killed = trio.Event()

    # -- tasks -----------------------------------------------------------------------------

    async def _run(self) -> None:
        # Shielded: cancelling the block must not stop the reaper and the pumps before
        # _shutdown has terminated and drained the child; _shutdown cancels them last.
        with self._tasks_scope:
            async with trio.open_nursery() as nursery:
                for pump in self._pumps:
                    nursery.start_soon(pump.run)
                nursery.start_soon(self._reap)

    async def _wait_exit(self) -> tuple[int, int | None]:
        """Wait until the child exited; return ``(exit_code, signal)``, leaving a zombie.

        When the program ignores SIGCHLD (``SIG_IGN``), the kernel reaps the child itself
        and its status is lost: ``waitid`` fails with ECHILD. Then, as
        :meth:`subprocess.Popen.wait` and :func:`trio.run_process` do, the exit code is 0.
        """
        try:
            result = await self._wait_exit_status()
        except ChildProcessError:
            self._popen.returncode = 0  # so that Popen never waits for a reused pid
            self._reaped = True
            if not _group_exists(self.pid):
                self._group_gone = True
                self._forget_group()
            return 0, None
        return _exit_status(result)

    async def _wait_exit_status(self) -> os.waitid_result:
        flags = os.WEXITED | os.WNOWAIT
        try:
            pidfd = os.pidfd_open(self.pid)
        except OSError:
            pidfd = -1
        if pidfd < 0:  # kernels before 5.3, or a child already reaped by the kernel
            result = await trio.to_thread.run_sync(
                partial(os.waitid, os.P_PID, self.pid, flags), abandon_on_cancel=True
            )
        else:
            try:
                # The pidfd names our child for sure (not a process that reused its pid):
                # ECHILD here means the kernel reaped it (SIGCHLD ignored).
                result = os.waitid(os.P_PIDFD, pidfd, flags | os.WNOHANG)  # noqa: ASYNC222
                if result is None:
                    await trio.lowlevel.wait_readable(pidfd)
                    # Never blocks: the pidfd said the child exited.
                    result = os.waitid(os.P_PIDFD, pidfd, flags)  # noqa: ASYNC222
            finally:
                trio.lowlevel.notify_closing(pidfd)
                os.close(pidfd)
        assert result is not None
        return result

    async def _reap(self) -> None:
        exit_code, signum = await self._wait_exit()
        self._child_exited.set()
        if self.tty:
            with trio.move_on_after(PTY_EXIT_SETTLE):
                for pump in self._pumps:
                    await pump.at_eof.wait()
        # Everything in the pipes now was written before the exit (or by grandchildren).
        targets = [(pump, pump.read_total + _pending_bytes(pump.fd)) for pump in self._pumps]
        for pump, target in targets:
            await pump.wait_appended(target)
        self._log.set_exited(exit_code, signum)
        await self._wait_output_end()
        self._log.set_closed()
        self._close_descriptors(keep_read_stdin=True)
        self._done.set()

    async def _wait_output_end(self) -> None:
        """Wait until every output stream is at end of file, but once the child exited and
        its group was SIGKILLed (leaving the block, :meth:`signal`, the end of a grace),
        at most :data:`CLOSE_DRAIN_TIMEOUT` more: only a process outside the group (one
        that called ``setsid``) can hold the output open then. The pumps are stopped and
        that process's later output is dropped, so ``Closed`` is sequenced on every path
        where the child's group was killed, remote sessions included."""
        async with trio.open_nursery() as nursery:

            async def all_at_eof() -> None:
                for pump in self._pumps:
                    await pump.at_eof.wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(all_at_eof)
            await self._group_killed.wait()
            await trio.sleep(CLOSE_DRAIN_TIMEOUT)
            for pump in self._pumps:
                pump.stop()

    async def _shutdown(self, grace: float) -> None:
        """Leave the block: terminate, kill the group, drain, reap, wait for the group."""
        self._log.release_backpressure()
        if not self._child_exited.is_set():
            await self._terminate_group(grace)
        self._kill_group(_signal.SIGKILL)
        with trio.move_on_after(CLOSE_DRAIN_TIMEOUT):
            await self._done.wait()
        self._gone = True
        await self._reap_and_wait_group()

    def _kill_group(self, sig: int) -> None:
        """Signal the child's process group, unless it is known to be gone.

        Until the child is reaped its zombie pins its pid, which is also the group id, so
        the id cannot name another group. Once it is reaped the group is only signalled
        again while it is known to have live members (which pin the id in turn).
        """
        if not self._group_gone:
            _killpg(self.pid, sig)
        if sig == _signal.SIGKILL:
            self._group_killed.set()

    async def _reap_and_wait_group(self) -> None:
        """Reap the exited child, then wait until no process of its group is alive.

        Called after SIGKILL was sent to the group. Reaping first makes the common case (a
        group that died with its leader) cost one ``killpg(pgid, 0)``.
        """
        self._popen.poll()  # reaps at once: the child is known to have exited
        self._reaped = True
        if not self._group_gone:
            await _wait_group_gone(self.pid)
            self._group_gone = True
        self._forget_group()

    def _forget_group(self) -> None:
        """Tell the keeper (if any) that the group is gone or no longer ours; idempotent."""
        if self._keeper is not None:
            self._keeper.unregister(self.pid)
            self._keeper = None

    def _close_descriptors(self, *, keep_read_stdin: bool = False) -> None:
        """Close stdin, the pumps' descriptors and the PTY master; idempotent.

        Runs as soon as ``Closed`` is sequenced (every output stream is at end of file),
        so that a session retained after its end holds no descriptor, only its log. A
        write then answers STDIN_CLOSED, a resize does nothing, and signals still reach
        the group, whose id the unreaped child pins until the block is left.

        With ``keep_read_stdin``, a stdin pipe that a process still reads (a job of the
        group that outlives the child, as in a half-closed :class:`ProcessStream`) stays
        open, for writes to reach it, until that reader is gone or the block is left.
        """
        if not (keep_read_stdin and self._stdin_has_reader()):
            self._close_stdin_pipe()
        for pump in self._pumps:
            if pump.fd >= 0:
                trio.lowlevel.notify_closing(pump.fd)
                os.close(pump.fd)
                pump.fd = -1
        if self._master is not None:
            os.close(self._master)
            self._master = None

    def _release(self) -> None:
        """Close every descriptor and reap the child; synchronous and idempotent."""
        self._gone = True
        self._close_descriptors()
        if not self._reaped:
            if self._popen.poll() is None:
                self._kill_group(_signal.SIGKILL)
                self._popen.wait()
            self._reaped = True
        if not self._log.finished:
            if self._log.exited is not None:
                self._log.set_closed()
            else:
                returncode = self._popen.returncode
                signum = -returncode if returncode < 0 else None
                self._log.set_exited(128 + signum if signum else returncode, signum)
                self._log.set_closed()
        self._forget_group()

    def _stdin_has_reader(self) -> bool:
        """Whether the stdin pipe is open and some process holds its read end."""
        if self._stdin is None or self._stdin_closed or self.tty:
            return False
        poller = select.poll()
        poller.register(self._stdin.fileno(), 0)  # a pipe without readers reports POLLERR
        return not any(events & select.POLLERR for _, events in poller.poll(0))

    def _close_stdin_pipe(self) -> None:
        self._stdin_closed = True
        if self._stdin is not None:
            self._stdin.close()  # a write blocked on it gets ClosedResourceError

    async def _terminate_group(self, grace: float) -> None:
        self._kill_group(_signal.SIGTERM)
        self._kill_group(_signal.SIGCONT)
        try:
            with trio.move_on_after(grace):
                await self._child_exited.wait()
        finally:
            if not self._child_exited.is_set():
                self._kill_group(_signal.SIGKILL)
                with trio.CancelScope(shield=True):
                    await self._child_exited.wait()

    # -- operations ------------------------------------------------------------------------

    async def write(self, data: bytes) -> WriteStatus:
        """See :meth:`ExecProcess.write`. Concurrent writes are queued, never interleaved.

        Once ``Closed`` is sequenced the session has released its descriptors: a write
        (or :meth:`close_stdin`) answers STDIN_CLOSED, even on a terminal. The exception
        is a stdin pipe that a process of the group still reads (a job that outlived the
        child): writes reach it until it exits or the block is left.
        """
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"data must be bytes, not {type(data).__name__}")
        if self._gone:
            await trio.lowlevel.checkpoint()
            return WriteStatus.UNKNOWN_PROCESS
        async with self._write_lock:
            if self._stdin is None or self._stdin_closed:
                return WriteStatus.STDIN_CLOSED
            if not data:
                return WriteStatus.ACCEPTED
            try:
                await self._stdin.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                if isinstance(exc, trio.BrokenResourceError) and self._log.closed is not None:
                    self._close_stdin_pipe()  # its last reader is gone: release it
                return WriteStatus.UNKNOWN_PROCESS if self._gone else WriteStatus.STDIN_CLOSED
        return WriteStatus.ACCEPTED

    async def close_stdin(self) -> WriteStatus:
        """See :meth:`ExecProcess.close_stdin`; waits for queued writes first."""
        if self._gone:
            await trio.lowlevel.checkpoint()
            return WriteStatus.UNKNOWN_PROCESS
        if self._master is not None:
            return await self.write(_pty.eof_char(self._master))
        async with self._write_lock:
            if self._stdin is None or self._stdin_closed:
                return WriteStatus.STDIN_CLOSED
            # Closing the pipe always works; a child that already exited had no stdin left.
            exited = self._child_exited.is_set()
            self._stdin_closed = True
            await self._stdin.aclose()
        return WriteStatus.STDIN_CLOSED if exited else WriteStatus.ACCEPTED

    async def signal(self, sig: int | _signal.Signals) -> None:
        """See :meth:`ExecProcess.signal`. Still reaches the group (grandchildren that
        outlive the child) after ``Closed``, until the block is left.

        For SIGKILL, returns once no process of the group is alive any more (at most
        :data:`GROUP_EXIT_TIMEOUT` seconds), so that a kill is complete when it returns;
        ``Closed`` then follows within :data:`CLOSE_DRAIN_TIMEOUT`, even if a process that
        left the group holds the output open.
        """
        signum = _signal.Signals(sig)
        await trio.lowlevel.checkpoint()
        if self._gone:
            return
        self._kill_group(signum)
        if signum is _signal.SIGKILL:
            await self._child_exited.wait()
            await self._reap_and_wait_group()

    async def resize(self, rows: int, cols: int) -> None:
        """See :meth:`ExecProcess.resize`. Does nothing once ``Closed`` is sequenced (the
        terminal is released then)."""
        check_dimensions(rows, cols)
        await trio.lowlevel.checkpoint()
        if not self.tty:
            raise UnsupportedOperation("resize needs a process started with tty=True")
        if self._master is not None and not self._gone:
            _pty.set_window_size(self._master, rows, cols)

    async def terminate(self, grace: float = DEFAULT_GRACE) -> bool:
        """See :meth:`ExecProcess.terminate`. Returns once the child exited (not closed)."""
        check_seconds("grace", grace)
        if self._gone or self._child_exited.is_set():
            await trio.lowlevel.checkpoint()
            return False
        await self._terminate_group(grace)
        return True


async def _spawn(
    args: list[str],
    *,
    cwd: str | os.PathLike[str] | None,
    env: dict[str, str] | None,
    tty: bool,
    pipe_stdin: bool,
    arg0: str | None,
    window: tuple[int, int] | None = None,
    keeper: Keeper | None = None,
) -> _Child:
    """Start the child in a new session with its pipes or terminal.

    A terminal gets its size (``window``, else 24x80) before the child is forked, so the
    child never sees another one. With a ``keeper``, the worker thread starts it if
    needed before the spawn and registers the child's group right after it.

    **Cancellation:** spawning runs to completion in a worker thread; the caller owns the
    child as soon as this returns.
    """
    child_fds: list[int] = []
    parent_fds: list[int] = []
    outputs: list[tuple[OutputStream, int]] = []
    preexec: Callable[[], None] | None = None
    stdin_w: int | None = None
    master: int | None = None
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
            err_r, stderr = os.pipe()
            parent_fds.append(err_r)
            child_fds.append(stderr)
            outputs += [(OutputStream.STDOUT, out_r), (OutputStream.STDERR, err_r)]
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
            child = subprocess.Popen(
                command,
                executable=None if arg0 is None else args[0],
                stdin=stdin,
                stdout=stdout,
                stderr=stderr,
                cwd=cwd,
                env=env,
                start_new_session=True,
                preexec_fn=preexec,
            )
            if keeper is not None:
                keeper.register(child.pid)
            return child

        child = await trio.to_thread.run_sync(popen)
    except OSError as exc:
        for fd in parent_fds:
            os.close(fd)
        filename = exc.filename if exc.filename is not None else args[0]
        raise SpawnError(exc.errno, exc.strerror or str(exc), os.fsdecode(filename)) from None
    except BaseException:
        for fd in parent_fds:
            os.close(fd)
        raise
    finally:
        for fd in child_fds:
            os.close(fd)
    for _, fd in outputs:
        os.set_blocking(fd, False)
        if not tty:
            _grow_pipe(fd)
    return _Child(
        popen=child,
        outputs=outputs,
        stdin=None if stdin_w is None else trio.lowlevel.FdStream(stdin_w),
        master=master,
    )


class LocalBackend(ExecBackend):
    """Runs processes on this machine, each in its own process group.

    Process ids must be unique among the sessions of one backend that are open at once.

    Args:
        kill_orphans: also when this Python process dies without leaving the blocks
            (SIGKILL, SIGQUIT from ``Ctrl-\\``, a crash, ``os._exit``), kill the process group
            of every session still open, within milliseconds. A *keeper* process does it:
            started by the first spawn, in its own session, deaf to terminal signals, it
            learns each group by one pipe write per spawn and per end, and SIGKILLs the
            groups it knows when the pipe reaches end of file (see ``trio_exec._keeper``).
            ``trio-exec serve`` and ``trio-exec run`` use it. A grandchild that left the
            group (``setsid``) is not covered, as it is not when a block ends.

    A program that ignores SIGCHLD (``signal.signal(SIGCHLD, SIG_IGN)``) has its children
    reaped by the kernel, which discards their exit status: sessions then report exit
    code 0, as :mod:`subprocess` and :func:`trio.run_process` do, and the group id is not
    pinned by a zombie (a signal to the group after the child exited may, in the worst
    case, reach a new group that reused the id once every member is gone).

    The keeper lives until :meth:`aclose` (or the end of ``async with LocalBackend(...)``),
    until the backend is garbage collected, or until this process exits; then it exits
    too, and kills first, in the last two cases, the groups of sessions never ended.
    Without ``kill_orphans`` the backend holds no resource and needs no closing.
    """

    def __init__(self, *, kill_orphans: bool = False) -> None:
        self._live: set[str] = set()
        self._keeper = Keeper() if kill_orphans else None
        if self._keeper is not None:
            # Collected with sessions never ended: the keeper kills them. Not at exit,
            # where closing the pipe is the kernel's job and has that effect anyway.
            weakref.finalize(self, self._keeper.abandon).atexit = False

    def __repr__(self) -> str:
        return f"<LocalBackend with {len(self._live)} open sessions>"

    @property
    def kill_orphans(self) -> bool:
        """Whether a keeper kills the sessions' groups if this process dies."""
        return self._keeper is not None

    async def aclose(self) -> None:
        """Stop and reap the keeper process, if one was started; idempotent.

        Open sessions are unaffected (their blocks still end them), but lose the
        protection against this process's death until the next spawn, which starts a new
        keeper and registers them with it.

        **Cancellation:** the keeper is stopped and reaped anyway (SIGKILL, which takes
        effect at once).
        """
        if self._keeper is None or self._keeper.pid is None:
            await trio.lowlevel.checkpoint()
            return
        await trio.to_thread.run_sync(self._keeper.close)

    async def __aenter__(self) -> LocalBackend:
        """Return the backend; :meth:`aclose` runs at the end of the block."""
        await trio.lowlevel.checkpoint()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Run :meth:`aclose`."""
        await self.aclose()

    def open_process(
        self,
        argv: Sequence[Arg],
        *,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        tty: bool = False,
        pipe_stdin: bool = False,
        arg0: str | None = None,
        process_id: str | None = None,
        grace: float = DEFAULT_GRACE,
        retain_bytes: int = DEFAULT_RETAINED_BYTES,
        extra_env: Mapping[str, str] | None = None,
        window: tuple[int, int] | None = None,
    ) -> AbstractAsyncContextManager[LocalProcess]:
        """See :meth:`ExecBackend.open_process`. Also raises ValueError for a process id
        that is already open on this backend.

        Without ``env``, the child inherits ``os.environ`` as it is when this is called
        (plus ``extra_env``); without ``cwd``, this process's working directory.
        """
        args = check_argv(argv)
        check_seconds("grace", grace)
        if arg0 is not None and (not isinstance(arg0, str) or "\0" in arg0):
            raise ValueError("arg0 must be a str without NUL")
        size = check_window(window, tty)
        child_env = None if env is None else check_env(env)
        if extra_env is not None:
            child_env = {**(os.environ if child_env is None else child_env)}
            child_env.update(check_env(extra_env))
        return self._open(
            args,
            cwd=cwd,
            env=child_env,
            tty=tty,
            pipe_stdin=pipe_stdin,
            arg0=arg0,
            process_id=process_id,
            grace=grace,
            log=ProcessLog(retain_bytes=retain_bytes),
            window=size,
        )

    @asynccontextmanager
    async def _open(
        self,
        args: list[str],
        *,
        cwd: str | os.PathLike[str] | None,
        env: dict[str, str] | None,
        tty: bool,
        pipe_stdin: bool,
        arg0: str | None,
        process_id: str | None,
        grace: float,
        log: ProcessLog,
        window: tuple[int, int] | None,
    ) -> AsyncIterator[LocalProcess]:
        pid = new_process_id() if process_id is None else process_id
        if pid in self._live:
            raise ValueError(f"process id {pid!r} is already open on this backend")
        self._live.add(pid)
        try:
            child = await _spawn(
                args,
                cwd=cwd,
                env=env,
                tty=tty,
                pipe_stdin=pipe_stdin,
                arg0=arg0,
                window=window,
                keeper=self._keeper,
            )
            proc = LocalProcess(pid, child, log, self._keeper)
            try:
                async with open_service_nursery() as nursery:
                    nursery.start_soon(proc._run)
                    try:
                        yield proc
                    finally:
                        with trio.CancelScope(shield=True):
                            await proc._shutdown(grace)
                        proc._tasks_scope.cancel()
            finally:
                proc._release()
        finally:
            self._live.discard(pid)


def open_process(
    argv: Sequence[Arg],
    *,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    tty: bool = False,
    pipe_stdin: bool = False,
    arg0: str | None = None,
    process_id: str | None = None,
    grace: float = DEFAULT_GRACE,
    retain_bytes: int = DEFAULT_RETAINED_BYTES,
    extra_env: Mapping[str, str] | None = None,
    window: tuple[int, int] | None = None,
) -> AbstractAsyncContextManager[LocalProcess]:
    """Open a process session on this machine: ``LocalBackend().open_process(...)``.

    See :meth:`ExecBackend.open_process` for the arguments, errors and cancellation.
    """
    return LocalBackend().open_process(
        argv,
        cwd=cwd,
        env=env,
        tty=tty,
        pipe_stdin=pipe_stdin,
        arg0=arg0,
        process_id=process_id,
        grace=grace,
        retain_bytes=retain_bytes,
        extra_env=extra_env,
        window=window,
    )
