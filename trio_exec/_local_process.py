"""LocalProcess: the session of one local child, driven by one task.

See the theory of operation in :mod:`trio_exec._local`.
"""

from __future__ import annotations

import math
import os
import select
import signal as _signal
from typing import Final, final

import trio

from . import _pty
from ._backend import DEFAULT_GRACE, ExecProcess, check_dimensions, check_seconds
from ._errors import UnsupportedOperation
from ._events import WriteStatus
from ._exit import ExitWatch, exit_status
from ._group import ChildCgroup, group_exists, killpg, wait_group_gone
from ._keeper import Keeper
from ._log import ProcessLog
from ._pump import READ_CHUNK_BYTES, Pull, Pump, pending_bytes
from ._spawn import Child

__all__ = ["CLOSE_DRAIN_TIMEOUT", "PTY_EXIT_SETTLE", "LocalProcess"]

CLOSE_DRAIN_TIMEOUT: Final = 2.0
"""Seconds to wait, once the child exited and its group was SIGKILLed (the block was left,
``signal(SIGKILL)``, or the grace of ``terminate`` ran out), for the child's pipes to reach
end of file. Only a process outside the group (one that called ``setsid``) can keep them
open that long; its later output is then dropped and ``Closed`` is sequenced. An exec
server's session ends the same way when its client terminates or kills the process."""

PTY_EXIT_SETTLE: Final = 0.05
"""Seconds the session lets a PTY reach end of file after the child exits before it
measures the terminal's pending input. The kernel hands terminal output to the master
asynchronously; when the child was the last holder of the terminal, end of file comes
first and ordering is exact; otherwise output the kernel is still moving after this
delay may follow ``Exited``."""


@final
class LocalProcess(ExecProcess):
    """A process running on this machine; see :class:`ExecProcess`.

    Obtained from :meth:`LocalBackend.open_process`, never built directly.
    """

    def __init__(
        self,
        process_id: str,
        child: Child,
        log: ProcessLog,
        keeper: Keeper | None = None,
        behind_chunk_bytes: int = READ_CHUNK_BYTES,
    ) -> None:
        super().__init__(process_id, log)
        self._popen = child.popen
        self.pid: Final = child.popen.pid
        """The child's pid, which is also its process group id (unless the backend was
        made with ``start_new_session=False``)."""
        self._tty: Final = child.master is not None
        self._master = child.master
        self._stdin = child.stdin
        self._stdin_closed = child.stdin is None
        self._write_lock = trio.Lock()
        self._pumps = [Pump(stream, fd, log, behind_chunk_bytes) for stream, fd in child.outputs]
        self._child_exited = trio.Event()
        self._reaped = False
        self._done = trio.Event()
        self._tasks_scope = trio.CancelScope(shield=True)
        self._helpers_scope = trio.CancelScope(shield=True)
        self._helpers = False
        """Whether a helper task runs in ``_helpers_scope`` (the ``waitid`` thread)."""
        self._ran = False
        """Whether the session's task (:meth:`_run`) has ended."""
        self._group_gone = False
        self._own_group = child.own_group
        """Whether the child leads a group of its own; if not, only the child is signalled."""
        self._keeper = keeper
        """The keeper that has the group registered, until the group is forgotten."""
        self._killed_at: float | None = None
        """When the group was first SIGKILLed (trio's clock), or None."""
        self._drain_scope: trio.CancelScope | None = None
        """The scope of the wait for the end of output, which a SIGKILL bounds."""
        self._nursery: trio.Nursery
        """Where a held-back stream's task runs (the block's nursery)."""
        self._cgroup = None if child.cgroup is None else ChildCgroup(child.cgroup, keeper)
        """The child's own cgroup, if it has one."""

    @property
    def tty(self) -> bool:
        """See :attr:`ExecProcess.tty`."""
        return self._tty

    # -- tasks -----------------------------------------------------------------------------

    async def _run(self, nursery: trio.Nursery) -> None:
        """The session's task: read the outputs, wait for the exit, sequence Exited and
        Closed. ``nursery`` takes the task of a stream that a slow subscription holds
        back (see :class:`~trio_exec._pump.Pump`)."""
        # Shielded: cancelling the block must not stop the session's task and its pumps before
        # _shutdown has terminated and drained the child; _shutdown cancels them last.
        with self._tasks_scope:
            self._nursery = nursery
            poller = select.epoll()
            try:
                await self._drive(poller)
            finally:
                trio.lowlevel.notify_closing(poller.fileno())
                poller.close()
                self._ran = True

    async def _drive(self, poller: select.epoll) -> None:
        # One epoll of our own watches the outputs and the exit, so that the session
        # waits in one place: no task per stream, one wait_readable per wake-up.
        active = {pump.fd: pump for pump in self._pumps}
        for fd in active:
            poller.register(fd, select.EPOLLIN)
        watch = ExitWatch(self.pid, self._nursery, self._helpers_scope)
        self._helpers = watch.waits_in_thread
        try:
            poller.register(watch.fd, select.EPOLLIN)
            try:
                exited = False
                while not exited:
                    exited = await self._pull_ready(poller, active, exit_fd=watch.fd)
            finally:
                # Before closing it: a child forked meanwhile (another session's spawn)
                # may hold a copy of the descriptor, which would keep it in the poller.
                poller.unregister(watch.fd)
            exit_code, signum = self._exit_status(watch)
        finally:
            watch.close()
        self._child_exited.set()
        if self.tty:
            with trio.move_on_after(PTY_EXIT_SETTLE):
                await self._pull_to_eof(poller, active)
        # Everything in the pipes now was written before the exit (or by grandchildren).
        targets = [
            (pump, pump.read_total + (0 if pump.at_eof.is_set() else pending_bytes(pump.fd)))
            for pump in self._pumps
        ]
        for pump, target in targets:
            while pump.fd in active and pump.appended_total < target:
                if self._pull(pump, poller, active) is Pull.DRAINED:
                    break
                await trio.lowlevel.checkpoint()  # after a CHECKPOINT_BYTES run
            await pump.wait_appended(target)  # a stream held back goes on in its own task
        self._log.set_exited(exit_code, signum)
        await self._wait_output_end(poller, active)
        self._log.set_closed()
        self._close_descriptors(keep_read_stdin=True)
        self._done.set()

    async def _pull_ready(
        self, poller: select.epoll, active: dict[int, Pump], exit_fd: int = -1
    ) -> bool:
        """Wait until a descriptor of ``poller`` is readable and pull the pumps that are;
        return whether ``exit_fd`` (registered too, if given) was readable."""
        await trio.lowlevel.wait_readable(poller.fileno())
        exited = False
        for fd, _ in poller.poll(0):
            if fd == exit_fd:
                exited = True
            else:
                self._pull(active[fd], poller, active)
        return exited

    def _pull(self, pump: Pump, poller: select.epoll, active: dict[int, Pump]) -> Pull:
        """Pull ``pump`` (the session's task reads it); one that is done, or held back by a
        slow subscription, leaves the poller (the latter for a task of its own)."""
        pulled = pump.pull()
        if pulled is Pull.EOF or pulled is Pull.HELD:
            poller.unregister(pump.fd)
            del active[pump.fd]
            if pulled is Pull.HELD:
                self._nursery.start_soon(pump.run)
        return pulled

    async def _pull_to_eof(self, poller: select.epoll, active: dict[int, Pump]) -> None:
        """Read every output until end of file (in a task of its own for a held one)."""
        while active:
            await self._pull_ready(poller, active)
        for pump in self._pumps:
            await pump.at_eof.wait()

    def _exit_status(self, watch: ExitWatch) -> tuple[int, int | None]:
        """The exit of the child, which exited; ``(exit_code, signal)``, leaving a zombie.

        When the program ignores SIGCHLD (``SIG_IGN``), the kernel reaps the child itself
        and its status is lost: ``waitid`` fails with ECHILD. Then, as
        :meth:`subprocess.Popen.wait` and :func:`trio.run_process` do, the exit code is 0.
        """
        try:
            result = watch.status()
        except ChildProcessError:
            self._popen.returncode = 0  # so that Popen never waits for a reused pid
            self._reaped = True
            if not (self._own_group and group_exists(self.pid)):
                self._group_gone = True
                self._forget_group()
            return 0, None
        return exit_status(result)

    async def _wait_output_end(self, poller: select.epoll, active: dict[int, Pump]) -> None:
        """Wait until every output stream is at end of file, but once the child exited and
        its group was SIGKILLed (leaving the block, :meth:`signal`, the end of a grace),
        at most :data:`CLOSE_DRAIN_TIMEOUT` more: only a process outside the group (one
        that called ``setsid``) can hold the output open then. The pumps are stopped and
        that process's later output is dropped, so ``Closed`` is sequenced on every path
        where the child's group was killed, remote sessions included."""
        if all(pump.at_eof.is_set() for pump in self._pumps):
            return  # the session's task goes on to Closed in the same step
        killed_at = self._killed_at
        deadline = math.inf if killed_at is None else killed_at + CLOSE_DRAIN_TIMEOUT
        with trio.CancelScope(deadline=deadline) as scope:
            self._drain_scope = scope  # a SIGKILL of the group sets its deadline
            await self._pull_to_eof(poller, active)
        self._drain_scope = None
        if scope.cancelled_caught:  # drop what a process outside the group still writes
            for pump in self._pumps:
                pump.stop()

    def _shutdown_at_once(self) -> bool:
        """Leave the block without waiting, if that can be done: the session ended
        (``Closed`` is sequenced), the child has no cgroup, and its group died with it.
        Then the group is SIGKILLed and the child reaped, and True is returned; otherwise
        False, and :meth:`_shutdown` does the rest."""
        if not self._done.is_set() or self.cgroup is not None:
            return False
        self._kill_group(_signal.SIGKILL)
        self._gone = True
        return self._reap()

    async def _shutdown(self, grace: float) -> None:
        """Leave the block: terminate, kill the group, drain, reap, wait for the group."""
        self._log.release_backpressure()
        if not self._child_exited.is_set():
            await self._terminate_group(grace)
        self._kill_group(_signal.SIGKILL)
        if self._cgroup is not None:
            await self._cgroup.kill()
        if not self._done.is_set():
            with trio.move_on_after(CLOSE_DRAIN_TIMEOUT):
                await self._done.wait()
        self._gone = True
        await self._reap_and_wait_group()
        if self._cgroup is not None:
            await self._cgroup.remove_when_empty()

    def _stop_tasks(self) -> None:
        """Stop the session's tasks: its own (:meth:`_run`), the reading of held-back
        streams, and the ``waitid`` thread where there is no pidfd."""
        for pump in self._pumps:
            pump.stop()
        if not self._ran:  # running, or not started yet: then it starts cancelled
            self._tasks_scope.cancel()
            self._helpers_scope.cancel()
        elif self._helpers:  # the waitid thread's task may outlive the session's
            self._helpers_scope.cancel()

    def _kill_group(self, sig: int) -> None:
        """Signal the child's process group, unless it is known to be gone.

        Until the child is reaped its zombie pins its pid, which is also the group id, so
        the id cannot name another group. Once it is reaped the group is only signalled
        again while it is known to have live members (which pin the id in turn).

        A child in this process's group (``start_new_session=False``) is signalled alone,
        and only until it is reaped (then its pid may name another process).
        """
        if not self._own_group:
            if not self._reaped:
                try:
                    os.kill(self.pid, sig)
                except ProcessLookupError:  # pragma: no cover - the zombie pins the pid
                    pass
        elif not self._group_gone:
            killpg(self.pid, sig)
        if sig == _signal.SIGKILL and self._killed_at is None:
            self._killed_at = trio.current_time()
            if self._drain_scope is not None:
                self._drain_scope.deadline = self._killed_at + CLOSE_DRAIN_TIMEOUT

    async def _reap_and_wait_group(self) -> None:
        """Reap the exited child, then wait until no process of its group is alive.

        Called after SIGKILL was sent to the group. Reaping first makes the common case (a
        group that died with its leader) cost one ``killpg(pgid, 0)``.
        """
        if not self._reap():
            await wait_group_gone(self.pid)
            self._group_gone = True
            self._forget_group()

    def _reap(self) -> bool:
        """Reap the exited child (at once); return whether its group is known to be gone
        (else it is still registered with the keeper)."""
        self._popen.poll()
        self._reaped = True
        if self._own_group and not self._group_gone:
            if group_exists(self.pid):  # rare: a process of the group outlived its leader
                return False
            self._group_gone = True
        self._forget_group()
        return True

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
                if pump.ran:  # its task waited on the descriptor through trio
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
        if self._cgroup is not None:  # not left by _shutdown: the block ended before it ran
            self._cgroup.kill_now()
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
        outlive the child) after ``Closed``, until the block is left. A child in this
        process's group (``LocalBackend(start_new_session=False)``) is signalled alone.

        For SIGKILL, returns once no process of the group is alive any more (at most
        :data:`GROUP_EXIT_TIMEOUT` seconds), so that a kill is complete when it returns;
        ``Closed`` then follows within :data:`CLOSE_DRAIN_TIMEOUT`, even if a process that
        left the group holds the output open. Where the session has a cgroup
        (:attr:`cgroup`), SIGKILL kills the whole cgroup, processes that left the group
        included, as leaving the block does, and removes it once it is empty (at most
        :data:`~trio_exec._cgroup.CGROUP_EMPTY_TIMEOUT` seconds): an exec server's
        client ends a block so.
        """
        signum = _signal.Signals(sig)
        await trio.lowlevel.checkpoint()
        if self._gone:
            return
        self._kill_group(signum)
        if signum is _signal.SIGKILL:
            if self._cgroup is not None:
                await self._cgroup.kill()
            await self._child_exited.wait()
            await self._reap_and_wait_group()
            if self._cgroup is not None:
                await self._cgroup.remove_when_empty()

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

    @property
    def cgroup(self) -> str | None:
        """The directory of the child's own cgroup (see :func:`trio_exec.containment`)
        until the end of the block removes it; None for a child without one."""
        return None if self._cgroup is None else self._cgroup.path
