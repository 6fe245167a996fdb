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
  left the group can still hold a stream open; the pumps stop reading it).

Leaving the block releases backpressure (no one will consume any more), terminates a
child that still runs (SIGTERM, SIGKILL after the grace), SIGKILLs whatever is left of
the group, waits a bounded time for the pipes to reach EOF, and reaps the child.
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal as _signal
import subprocess
import termios
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from typing import Final

import attrs
import trio

from . import _pty
from ._backend import (
    DEFAULT_GRACE,
    ExecBackend,
    ExecProcess,
    check_argv,
    check_dimensions,
    check_env,
    check_seconds,
    new_process_id,
)
from ._errors import SpawnError, UnsupportedOperation
from ._events import OutputStream, WriteStatus
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

    def __init__(self, process_id: str, child: _Child, log: ProcessLog) -> None:
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

    async def _wait_exit(self) -> os.waitid_result:
        try:
            pidfd = os.pidfd_open(self.pid)
        except OSError:
            pidfd = -1
        if pidfd < 0:  # kernels before 5.3
            result = await trio.to_thread.run_sync(
                partial(os.waitid, os.P_PID, self.pid, os.WEXITED | os.WNOWAIT),
                abandon_on_cancel=True,
            )
        else:
            try:
                await trio.lowlevel.wait_readable(pidfd)
            finally:
                trio.lowlevel.notify_closing(pidfd)
                os.close(pidfd)
            # Never blocks: the pidfd said the child exited.
            result = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOWAIT)  # noqa: ASYNC222
        assert result is not None
        return result

    async def _reap(self) -> None:
        exit_code, signum = _exit_status(await self._wait_exit())
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

    def _release(self) -> None:
        """Close every descriptor and reap the child; synchronous and idempotent."""
        self._gone = True
        if self._stdin is not None:
            self._stdin.close()
        for pump in self._pumps:
            if pump.fd >= 0:
                trio.lowlevel.notify_closing(pump.fd)
                os.close(pump.fd)
                pump.fd = -1
        if self._master is not None:
            os.close(self._master)
            self._master = None
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
        """See :meth:`ExecProcess.write`. Concurrent writes are queued, never interleaved."""
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
            except (trio.BrokenResourceError, trio.ClosedResourceError):
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
        """See :meth:`ExecProcess.signal`.

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
        """See :meth:`ExecProcess.resize`."""
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
) -> _Child:
    """Start the child in a new session with its pipes or terminal.

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
            master, slave = _pty.open_pty()
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
            return subprocess.Popen(
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
    """

    def __init__(self) -> None:
        self._live: set[str] = set()

    def __repr__(self) -> str:
        return f"<LocalBackend with {len(self._live)} open sessions>"

    def open_process(
        self,
        argv: Sequence[str],
        *,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        tty: bool = False,
        pipe_stdin: bool = False,
        arg0: str | None = None,
        process_id: str | None = None,
        grace: float = DEFAULT_GRACE,
        retain_bytes: int = DEFAULT_RETAINED_BYTES,
    ) -> AbstractAsyncContextManager[LocalProcess]:
        """See :meth:`ExecBackend.open_process`. Also raises ValueError for a process id
        that is already open on this backend."""
        args = check_argv(argv)
        check_seconds("grace", grace)
        if arg0 is not None and (not isinstance(arg0, str) or "\0" in arg0):
            raise ValueError("arg0 must be a str without NUL")
        return self._open(
            args,
            cwd=cwd,
            env=None if env is None else check_env(env),
            tty=tty,
            pipe_stdin=pipe_stdin,
            arg0=arg0,
            process_id=process_id,
            grace=grace,
            log=ProcessLog(retain_bytes=retain_bytes),
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
    ) -> AsyncIterator[LocalProcess]:
        pid = new_process_id() if process_id is None else process_id
        if pid in self._live:
            raise ValueError(f"process id {pid!r} is already open on this backend")
        self._live.add(pid)
        try:
            child = await _spawn(args, cwd=cwd, env=env, tty=tty, pipe_stdin=pipe_stdin, arg0=arg0)
            proc = LocalProcess(pid, child, log)
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
    argv: Sequence[str],
    *,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    tty: bool = False,
    pipe_stdin: bool = False,
    arg0: str | None = None,
    process_id: str | None = None,
    grace: float = DEFAULT_GRACE,
    retain_bytes: int = DEFAULT_RETAINED_BYTES,
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
    )
