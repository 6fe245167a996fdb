"""The connection state of a remote backend, its call path, and the routing of notifications.

Which RPC client takes calls (the current connection), where the session stands (one
:class:`LinkState`, changed in one place by the transition table of :class:`_Link`), how
a call waits for a resume, and how a connection's notifications reach the route of their
process. :class:`_ConnectionState` is the lowest base of
:class:`~trio_exec._remote.backend.RemoteBackend`, whose ``__init__`` sets the state
declared here.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, Final, TypeVar

import trio

from .._errors import ConnectionLost
from .._log import ProcessLog
from .._protocol import (
    METHOD_NOT_FOUND,
    ClosedNotification,
    EnvironmentInfo,
    ExitedNotification,
    InitializedNotification,
    InitializeParams,
    InitializeResult,
    Notification,
    OutputNotification,
    RequestParams,
    RpcDecodeError,
    decode_notification,
)
from .route import _Budget, _Route
from .rpc import CLOSE_TIMEOUT, DISCONNECTED, _RpcClient

__all__ = ["INITIALIZE_TIMEOUT", "LinkState", "_ConnectionState", "_IllegalTransition", "_Link"]

INITIALIZE_TIMEOUT: Final = 10.0
"""Seconds the ``initialize`` handshake may take (as the reference client)."""

_R = TypeVar("_R")


class LinkState(enum.Enum):
    """Where a remote backend's session stands; the value is what ``repr`` shows."""

    CONNECTING = "connecting"
    """The first connection is open; ``initialize`` is not answered yet."""
    READY = "connected"
    """The current connection takes calls."""
    RESUMING = "resuming"
    """The connection was lost and the recovery task reconnects: calls wait."""
    CATCHING_UP = "catching up"
    """Resumed on a new connection, which takes calls, while the recovery reads what the
    processes missed; if that connection breaks too, back to :attr:`RESUMING`."""
    FAILED = "broken"
    """Broken for good (:attr:`_Link.failure` says why): every call raises
    :class:`ConnectionLost`. Leaving the backend block ends here too."""


_TRANSITIONS: Final[Mapping[LinkState, frozenset[LinkState]]] = {
    LinkState.CONNECTING: frozenset({LinkState.READY, LinkState.FAILED}),
    LinkState.READY: frozenset({LinkState.RESUMING, LinkState.FAILED}),
    LinkState.RESUMING: frozenset({LinkState.CATCHING_UP, LinkState.FAILED}),
    LinkState.CATCHING_UP: frozenset({LinkState.READY, LinkState.RESUMING, LinkState.FAILED}),
    LinkState.FAILED: frozenset(),
}


class _IllegalTransition(RuntimeError):
    """A state change that :data:`_TRANSITIONS` does not allow: a bug of the backend."""


class _Link:
    """The :class:`LinkState` of a backend and why it failed; sans-IO.

    :meth:`to` is the only way to change it, and it refuses a transition that
    :data:`_TRANSITIONS` does not list.
    """

    def __init__(self) -> None:
        self.state = LinkState.CONNECTING
        self.failure: str | None = None
        """Why the session broke for good; set exactly in :attr:`LinkState.FAILED`."""

    def __repr__(self) -> str:
        if self.failure is None:
            return self.state.value
        return f"{self.state.value} ({self.failure})"

    def to(self, state: LinkState, failure: str | None = None) -> None:
        """Change to ``state``; ``failure`` is required for (and only for) FAILED.

        Raises:
            _IllegalTransition: the table does not allow it.
        """
        if state not in _TRANSITIONS[self.state]:
            raise _IllegalTransition(f"{self.state.name} -> {state.name}")
        if (state is LinkState.FAILED) != (failure is not None):
            raise _IllegalTransition(f"{state.name} with failure={failure!r}")
        self.state = state
        self.failure = failure

    @property
    def usable(self) -> bool:
        """Whether the current connection takes calls."""
        return self.state in (LinkState.READY, LinkState.CATCHING_UP)

    @property
    def resuming(self) -> bool:
        """Whether the session is being resumed (a call in flight may be sent again)."""
        return self.state in (LinkState.RESUMING, LinkState.CATCHING_UP)


class _ConnectionState:
    """The connection state, the call path and the routes of a :class:`RemoteBackend`."""

    if TYPE_CHECKING:
        # Set by RemoteBackend.__init__, which documents them.
        _rpc: _RpcClient
        _link: _Link
        _link_changed: trio.lowlevel.ParkingLot
        _budget: _Budget
        _routes: dict[str, _Route]
        _publishing: set[_Route]
        _nursery: trio.Nursery | None
        _connections: trio.Nursery | None
        _left: trio.Event
        session_id: str | None
        extensions: frozenset[str]
        environment_info: EnvironmentInfo | None

    def _check(self) -> None:
        """Raise :class:`ConnectionLost` if the connection broke for good."""
        if self._link.failure is not None:
            raise ConnectionLost(self._link.failure)

    def _enter(self, state: LinkState, failure: str | None = None) -> None:
        """The one place the state changes: apply it and wake the calls waiting for it."""
        self._link.to(state, failure)
        self._link_changed.unpark_all()

    # -- connections -----------------------------------------------------------------------

    async def _run_tasks(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Host the backend's tasks until its block is left; the task of :func:`_open_backend`.

        The connections (RPC reader and writer), the publishers and the recovery run in
        :attr:`_connections` and :attr:`_nursery`, shielded from a cancellation of the
        scope around the backend block, as a local process's task is: when
        that scope is cancelled, the process blocks nested in the backend block shut
        down (shielded), and their terminate requests, the answers and the exit events
        must still get through. Once the backend block is left (every process block in
        it was left before), the publishers and the recovery are cancelled, and the
        connections, whose RPC clients are closed by then, get :data:`CLOSE_TIMEOUT`
        seconds to close their transports.
        """
        with trio.CancelScope(shield=True):
            async with trio.open_nursery() as connections:
                self._connections = connections
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    task_status.started()
                    await self._left.wait()
                    nursery.cancel_scope.cancel()
                # A close handshake takes at most WEBSOCKET_DISCONNECT_TIMEOUT; bound it anyway.
                connections.cancel_scope.deadline = trio.current_time() + CLOSE_TIMEOUT

    async def _initialize(self, client_name: str) -> None:
        with trio.move_on_after(INITIALIZE_TIMEOUT):
            result = await self._rpc.call(
                InitializeParams(client_name=client_name), InitializeResult
            )
            self.session_id = result.session_id
            self.extensions = frozenset(result.extensions)
            self.environment_info = result.environment_info
            self._rpc.notify(InitializedNotification())
            if self._link.state is LinkState.CONNECTING:  # not broken meanwhile
                self._enter(LinkState.READY)
            return
        self._rpc.close(f"no answer to initialize within {INITIALIZE_TIMEOUT} s")
        self._check()

    def _fail_for_good(self, message: str) -> None:
        """The session is lost: fail every process and every waiting and later call."""
        if self._link.state is LinkState.FAILED:
            return
        self._enter(LinkState.FAILED, message)  # wakes the waiting calls: they see it
        rpc: _RpcClient | None = getattr(self, "_rpc", None)
        if rpc is not None:
            rpc.close(message.removeprefix(f"{DISCONNECTED}: "))
        self._fail_routes(message)

    def _close(self, reason: str) -> None:
        """The block is left: no resume any more; everything fails with ``reason``.

        The current connection is closed with ``reason`` (its pending calls fail with
        the same message), after the state is FAILED, so that it is not resumed.
        """
        message = f"{DISCONNECTED}: {reason}"
        self._fail_for_good(message)
        self._finish_routes(message)

    async def _usable_rpc(self) -> _RpcClient:
        """The connection to send a call on; waits while the session is being resumed.

        Raises:
            ConnectionLost: the connection broke for good.
        """
        while True:
            failure = self._link.failure
            if failure is not None:
                await trio.lowlevel.checkpoint()  # failing at once is a checkpoint too
                raise ConnectionLost(failure)
            if self._link.usable:
                return self._rpc
            await self._link_changed.park()

    async def _call(
        self,
        params: RequestParams,
        result_type: type[_R],
        *,
        resend: bool = False,
        route: _Route | None = None,
    ) -> _R:
        """Send a request, on the current connection, and return its typed result.

        A call made while the session is being resumed waits for the resume. ``resend``:
        the call is safe to repeat, so if the connection breaks before the answer, it is
        sent again on the resumed session; otherwise that raises ConnectionLost.

        Raises:
            ConnectionLost: the connection broke (for good, or during a call that is not
                resent), or ``route``'s process could not be recovered after a resume.
            RemoteError: the server answered with an error.
        """
        while True:
            rpc = await self._usable_rpc()
            if route is not None and route.lost is not None:
                await trio.lowlevel.checkpoint()
                raise ConnectionLost(route.lost)
            try:
                call = await rpc.start_call(params)
            except ConnectionLost:
                continue  # nothing was sent; wait for the resume (or fail for good)
            try:
                return await rpc.wait(call, result_type)
            except ConnectionLost:
                if not resend or not self._link.resuming:
                    raise

    # -- notifications ---------------------------------------------------------------------

    async def _dispatch(self, message: Notification) -> None:
        try:
            params = decode_notification(message)
        except RpcDecodeError as exc:
            if exc.code != METHOD_NOT_FOUND:  # unknown methods are ignored
                self._bad_notification(message, exc)
            return
        match params:
            case InitializedNotification():
                pass
            case OutputNotification() | ExitedNotification() | ClosedNotification():
                route = self._routes.get(params.process_id)
                if route is None:
                    return  # unknown or finished process
                route.push(params)
                if not route.receiving:
                    del self._routes[params.process_id]
                await self._budget.wait_below_limit()

    def _bad_notification(self, message: Notification, exc: RpcDecodeError) -> None:
        """A process notification that did not decode fails its process, if known."""
        params = message.params
        process_id = params.get("processId") if isinstance(params, dict) else None
        if not isinstance(process_id, str):
            return
        route = self._routes.pop(process_id, None)
        if route is not None:
            route.fail(f"protocol error: bad `{message.method}` notification: {exc.message}")

    def _fail_routes(self, message: str) -> None:
        for route in {*self._routes.values(), *self._publishing}:
            route.fail(message)
        self._routes.clear()

    def _finish_routes(self, message: str) -> None:
        """The backend is closing: every log gets what arrived, then fails (unless closed)."""
        for route in {*self._routes.values(), *self._publishing}:
            route.finish_now(message)
        self._routes.clear()

    def _route(self, process_id: str, log: ProcessLog) -> _Route:
        """Register a route for ``process_id`` and start its publisher."""
        route = _Route(process_id, log, self._budget)
        self._routes[process_id] = route
        self._publishing.add(route)
        assert self._nursery is not None, "the backend is not running"
        self._nursery.start_soon(partial(self._publish, route))
        return route

    async def _publish(self, route: _Route) -> None:
        try:
            await route.publish()
        finally:
            self._publishing.discard(route)

    def _unroute(self, route: _Route) -> None:
        if self._routes.get(route.process_id) is route:
            del self._routes[route.process_id]
