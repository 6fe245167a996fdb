"""Watching a local child for its exit: a descriptor that becomes readable when it exits
(its pidfd, or an eventfd that a worker thread's ``waitid`` signals), and its status in
the shell's convention."""

from __future__ import annotations

import os
from functools import partial

import trio

__all__ = ["ExitWatch", "exit_status"]


def exit_status(result: os.waitid_result) -> tuple[int, int | None]:
    """Map a waitid result to ``(exit_code, signal)`` in the shell's convention."""
    if result.si_code == os.CLD_EXITED:
        return result.si_status, None
    return 128 + result.si_status, result.si_status


class ExitWatch:
    """A descriptor, :attr:`fd`, that becomes readable once child ``pid`` exited.

    Its pidfd where the kernel has them (Linux 5.3); else (or for a child the kernel
    already reaped) an eventfd that a worker thread's ``waitid`` signals, the thread's
    task running in ``nursery`` within ``scope`` (shielded by the caller; cancelling it
    abandons the thread). Close it with :meth:`close`.
    """

    def __init__(self, pid: int, nursery: trio.Nursery, scope: trio.CancelScope) -> None:
        self._pid = pid
        self._waited: os.waitid_result | ChildProcessError | None = None
        try:
            self.fd = os.pidfd_open(pid)
            self._pidfd = True
        except OSError:
            self.fd = os.eventfd(0, os.EFD_CLOEXEC)
            self._pidfd = False
            nursery.start_soon(self._wait_in_thread, scope)

    async def _wait_in_thread(self, scope: trio.CancelScope) -> None:
        with scope:
            try:
                self._waited = await trio.to_thread.run_sync(
                    partial(os.waitid, os.P_PID, self._pid, os.WEXITED | os.WNOWAIT),
                    abandon_on_cancel=True,
                )
            except ChildProcessError as exc:
                self._waited = exc
            finally:
                os.eventfd_write(self.fd, 1)

    @property
    def waits_in_thread(self) -> bool:
        """Whether a worker thread's ``waitid`` stands in for a pidfd (its task runs in
        the ``scope`` given)."""
        return not self._pidfd

    def status(self) -> os.waitid_result:
        """The exited child's status, leaving it a zombie; call once :attr:`fd` is readable.

        Raises:
            ChildProcessError: the kernel reaped the child (the program ignores SIGCHLD).
        """
        if self._pidfd:
            # The pidfd names our child for sure (not a process that reused its pid):
            # ECHILD here means the kernel reaped it. Never blocks: the pidfd said the
            # child exited.
            result = os.waitid(os.P_PIDFD, self.fd, os.WEXITED | os.WNOWAIT)
            assert result is not None  # no WNOHANG
            return result
        waited = self._waited
        if isinstance(waited, ChildProcessError):
            raise waited
        assert waited is not None
        return waited

    def close(self) -> None:
        """Close the descriptor."""
        os.close(self.fd)
