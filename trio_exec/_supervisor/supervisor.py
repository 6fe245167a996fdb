"""Supervisor front: Supervisor, open_supervisor, and the ChildHandle of each child."""

from __future__ import annotations

import math
import random
import signal as _signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Final, final

import trio

from .._backend import ExecBackend
from .._local import LocalBackend
from .._util import open_service_nursery
from .child import _Child
from .spec import ChildSpec
from .status import ChildError, ChildState, ChildStatus

__all__ = ["ChildHandle", "Supervisor", "open_supervisor"]

# -- public API -------------------------------------------------------------------------------


@final
class ChildHandle:
    """A supervised child, as returned by :meth:`Supervisor.start`.

    It stays valid after the child finished (it then reports the final status); a later
    :meth:`Supervisor.start` with the same name supervises a new child with a new handle.
    """

    def __init__(self, child: _Child) -> None:
        self._child = child

    def __repr__(self) -> str:
        return f"<ChildHandle {self.name!r} {self._child.state.name}>"

    @property
    def name(self) -> str:
        """The child's name."""
        return self._child.spec.name

    @property
    def state(self) -> ChildState:
        """The child's state now."""
        return self._child.state

    def status(self) -> ChildStatus:
        """A snapshot of the child's status."""
        return self._child.snapshot()

    async def wait_until(self, predicate: Callable[[ChildStatus], bool]) -> ChildStatus:
        """Wait until ``predicate(status)`` is true and return that status.

        The predicate is evaluated at once and then on every change (state, output line,
        exit, run record) as it happens, so a state that lasts no time is not missed.
        It must be quick and must not block.

        Raises:
            ChildError: the child is in a final state and the predicate is false, so it
                can never become true.
            Exception: whatever the predicate raised.

        **Cancellation:** nothing to undo; the child is not affected.
        """
        return await self._child.wait_until(predicate)

    async def wait_state(self, *states: ChildState) -> ChildStatus:
        """Wait until the child is in one of ``states``; see :meth:`wait_until`.

        **Cancellation:** nothing to undo; the child is not affected.
        """
        if not states:
            raise ValueError("wait_state needs at least one state")
        wanted = frozenset(states)
        return await self.wait_until(lambda status: status.state in wanted)

    async def stop(self, grace: float | None = None) -> ChildStatus:
        """Stop the child (SIGTERM to its group, SIGKILL after ``grace``) and return its
        final status.

        ``grace`` defaults to the spec's. A child in ``BACKOFF`` is not started again; a
        child that is finished keeps its state. Never restarts anything.

        **Cancellation:** the stop goes on in the supervisor's task (it cannot be undone);
        only the wait for it is abandoned.
        """
        if grace is not None and not (isinstance(grace, int | float) and 0 <= grace < math.inf):
            raise ValueError(f"grace must be a finite number >= 0 seconds, not {grace!r}")
        self._child.request_stop(grace)
        return await self._child.wait_until(lambda status: status.finished)

    async def signal(self, sig: int | _signal.Signals) -> bool:
        """Send ``sig`` to the current process's group; returns whether there was one.

        A signal that ends the child counts as its exit, like any other (a SIGTERM sent
        this way is a failure for ``on-failure``): use :meth:`stop` to stop it.

        Raises:
            UnsupportedOperation: a remote server cannot send that signal.

        **Cancellation:** the signal may or may not have been sent.
        """
        proc = self._child.current_process()
        if proc is None:
            await trio.lowlevel.checkpoint()
            return False
        await proc.signal(sig)
        return True


@final
class Supervisor:
    """Keeps long-running children alive: restarts, readiness, graceful stops, history.

    Run it in a nursery, then start children::

        supervisor = Supervisor()
        async with trio.open_nursery() as nursery:
            await nursery.start(supervisor.run)
            ready = ReadyOnPort(port=8080)
            spec = ChildSpec(name="web", argv=[...], ready=ready)
            web = await supervisor.start(spec)
            ...
            nursery.cancel_scope.cancel()   # stops every child, gracefully

    (:func:`open_supervisor` does exactly that around an ``async with`` block.)

    Args:
        backend: where children run (default: a new :class:`~trio_exec.LocalBackend`).
    """

    def __init__(self, backend: ExecBackend | None = None) -> None:
        self.backend: Final[ExecBackend] = LocalBackend() if backend is None else backend
        """Where the children run."""
        self._children: dict[str, _Child] = {}
        self._nursery: trio.Nursery | None = None
        self._used = False
        self._closed = False
        self._rng = random.Random()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "running" if self._nursery else "not running"
        return f"<Supervisor {state} with {len(self._children)} children>"

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Supervise children until cancelled; start it with ``nursery.start``.

        It reports started at once; children are added with :meth:`start`. It can run
        only once per supervisor.

        **Cancellation:** the way to shut the supervisor down. Every child is stopped
        concurrently (SIGTERM to its group, SIGKILL after its grace), shielded, so the
        stops complete and no process is left behind; nothing is restarted meanwhile
        (not a child that crashes during the shutdown, not one in backoff). Every child
        ends ``STOPPED`` (or the final state it had already) before Cancelled propagates.
        """
        if self._used:
            await trio.lowlevel.checkpoint()
            raise RuntimeError("Supervisor.run can run only once")
        self._used = True
        try:
            async with open_service_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                try:
                    await trio.sleep_forever()
                finally:
                    self._closed = True
        finally:
            self._nursery = None
            self._closed = True

    async def start(self, spec: ChildSpec) -> ChildHandle:
        """Supervise a new child and return its handle once it is ready (``RUNNING``).

        Starts that fail (spawn error, readiness timeout, exit before readiness) are
        retried under the restart policy while this waits, so it returns after the first
        start that became ready.

        Raises:
            ChildError: the child ended in a final state without ever becoming ready
                (too many failed starts, a failed start under ``never``, or it was
                stopped); ``exc.status`` has its runs and output.
            ValueError: a child with that name is supervised and not finished. (A
                finished one is replaced; its handle keeps its final status.)
            RuntimeError: :meth:`run` has not started.
            trio.ClosedResourceError: the supervisor has shut down.

        **Cancellation:** the child is stopped (in the supervisor's task, with its grace;
        it ends ``STOPPED``) and Cancelled propagates without waiting for that.
        """
        if not isinstance(spec, ChildSpec):
            raise TypeError(f"spec must be a ChildSpec, not {type(spec).__name__}")
        # The child is registered before the first checkpoint (so that child(name) finds
        # it at once); a refusal (shut down, not running, the name taken) checkpoints.
        try:
            nursery = self._running_nursery()
            old = self._children.get(spec.name)
            if old is not None and not old.finished:
                raise ValueError(
                    f"a child named {spec.name!r} is already supervised ({old.state.name})"
                )
        except (trio.ClosedResourceError, RuntimeError, ValueError):
            await trio.lowlevel.checkpoint()
            raise
        child = _Child(spec, self.backend, self._rng)
        self._children[spec.name] = child
        nursery.start_soon(child.supervise, name=f"supervise {spec.name}")
        handle = ChildHandle(child)
        ready = False
        try:
            await child.wait_until(lambda status: status.state is ChildState.RUNNING)
            ready = True
        except ChildError as exc:
            status = exc.status
            last = status.last_run
            detail = status.reason or (last.failure if last is not None else None) or ""
            raise ChildError(
                f"child {spec.name!r} did not start: {status.state.name}"
                + (f": {detail}" if detail else ""),
                status,
            ) from None
        finally:
            if not ready:
                child.request_stop(None)
        return handle

    async def stop(self, name: str, grace: float | None = None) -> ChildStatus:
        """Stop the child ``name`` and return its final status; see :meth:`ChildHandle.stop`.

        Raises:
            KeyError: no child has that name.

        **Cancellation:** the stop goes on in the supervisor's task (it cannot be undone);
        only the wait for it is abandoned.
        """
        try:
            child = self._child(name)
        except KeyError:
            await trio.lowlevel.checkpoint()
            raise
        return await ChildHandle(child).stop(grace)

    def child(self, name: str) -> ChildHandle:
        """The handle of the child ``name`` (finished ones too), even while :meth:`start`
        still waits for it to become ready. Raises KeyError if unknown."""
        return ChildHandle(self._child(name))

    def status(self, name: str) -> ChildStatus:
        """A snapshot of the child ``name`` (finished ones too). Raises KeyError if unknown."""
        return self._child(name).snapshot()

    def statuses(self) -> dict[str, ChildStatus]:
        """Snapshots of every child, finished ones too, by name, in start order."""
        return {name: child.snapshot() for name, child in self._children.items()}

    def _child(self, name: str) -> _Child:
        try:
            return self._children[name]
        except KeyError:
            raise KeyError(f"no child named {name!r}") from None

    def _running_nursery(self) -> trio.Nursery:
        if self._closed:
            raise trio.ClosedResourceError("the supervisor has shut down")
        if self._nursery is None:
            raise RuntimeError("the supervisor is not running: await nursery.start(supervisor.run)")
        return self._nursery


@asynccontextmanager
async def open_supervisor(backend: ExecBackend | None = None) -> AsyncIterator[Supervisor]:
    """Run a :class:`Supervisor` for the duration of an ``async with`` block.

    Leaving the block (normally, by an exception or by cancellation) shuts it down:
    every child is stopped gracefully and concurrently, and no process is left behind.
    An exception of the block propagates as itself, not wrapped in an exception group.

    **Cancellation:** as leaving the block: the children are stopped (shielded) before
    Cancelled propagates.
    """
    supervisor = Supervisor(backend)
    async with open_service_nursery() as nursery:
        await nursery.start(supervisor.run)
        try:
            yield supervisor
        finally:
            nursery.cancel_scope.cancel()
