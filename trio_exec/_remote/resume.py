"""Resuming a remote backend's session after a lost connection.

Opening a connection, deciding when one breaks whether to resume the session or fail it
for good, the attempts (reconnect, ``initialize {resumeSessionId}``, backoff) and the
catch-up reads of every process; see the package docstring. :class:`_Resuming` is a base
of :class:`~trio_exec._remote.backend.RemoteBackend`.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Final

import trio

from .._errors import ConnectionLost, RemoteError, TrioExecError
from .._events import ReadResult
from .._protocol import (
    SESSION_ALREADY_ATTACHED,
    InitializedNotification,
    InitializeParams,
    InitializeResult,
    ReadParams,
    TerminateParams,
    TerminateResult,
)
from .._transport import MessageTransport, is_transport_error
from .connection import LinkState, _ConnectionState
from .process import SHUTDOWN_TIMEOUT
from .route import _Route
from .rpc import DISCONNECTED, _RpcClient

__all__ = [
    "CATCH_UP_READ_BYTES",
    "RESUME_ATTEMPT_TIMEOUT",
    "RESUME_BACKOFF_INITIAL",
    "RESUME_BACKOFF_JITTER",
    "RESUME_BACKOFF_MAX",
    "RESUME_DEADLINE",
    "_Connector",
    "_Resuming",
]

RESUME_DEADLINE: Final = 25.0
"""Seconds a :func:`connect` backend keeps trying to resume its session after the
connection was lost (as the reference client), before it gives up: then every open
process fails and every call raises :class:`ConnectionLost`. It fits inside the server's
detach time (``trio-exec serve``: 30 s, the reference: 80 s)."""

RESUME_ATTEMPT_TIMEOUT: Final = 5.0
"""Seconds one resume attempt may take to connect (TCP, TLS, upgrade) and to get the
answer to ``initialize``; then the next attempt starts. Shorter than a first connection's
timeouts: after a blip, a fresh attempt is likelier to get through than a hanging one
(trio-websocket 0.12 even waits for its handshake forever when the peer resets the
connection during it)."""

RESUME_BACKOFF_INITIAL: Final = 0.1
"""Seconds before the second resume attempt (the first one is immediate); each further
wait doubles, up to :data:`RESUME_BACKOFF_MAX`."""

RESUME_BACKOFF_MAX: Final = 2.0
"""The longest wait between two resume attempts, in seconds."""

RESUME_BACKOFF_JITTER: Final = 0.5
"""Each wait is drawn uniformly from ``[(1 - JITTER) * wait, wait]``, so clients cut off
together do not come back in lockstep."""

CATCH_UP_READ_BYTES: Final = 1024 * 1024
"""``maxBytes`` of each catch-up ``process/read`` after a resume (1 MiB, about 1.4 MB of
base64, well under the 16 MiB message limit however much the server retains)."""


class _Retry(Exception):
    """A resume attempt failed in a way that another attempt may fix."""


class _GiveUp(Exception):
    """The session cannot be resumed."""


_Connector = Callable[[], AbstractAsyncContextManager[MessageTransport]]
"""Opens a transport to the server; :func:`connect` reopens one to resume."""


class _Resuming(_ConnectionState):
    """The connections of a :class:`RemoteBackend`, and the resume of its session."""

    if TYPE_CHECKING:
        # Set by RemoteBackend.__init__, which documents them.
        _connector: _Connector
        _client_name: str
        _resumes: int

        @property
        def resume_deadline(self) -> float: ...

    # -- connections -----------------------------------------------------------------------

    async def _run_connection(
        self,
        *,
        first: bool = False,
        task_status: trio.TaskStatus[_RpcClient] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Open a transport and run an RPC client on it until it breaks; a backend task.

        ``first``: the backend's first connection, current from the start (a resume
        attempt's becomes current once the session is resumed).

        Raises (before ``task_status.started``): ConnectionLost if it cannot be opened.
        """
        started = False
        try:
            async with self._connector() as transport:
                rpc = _RpcClient(
                    transport,
                    on_notification=self._dispatch,
                    on_failure=lambda message: self._on_rpc_failure(rpc, message),
                )
                if first:
                    self._rpc = rpc  # it may fail as soon as it runs
                async with trio.open_nursery() as nursery:
                    await nursery.start(rpc.run)
                    task_status.started(rpc)
                    started = True
        except Exception as exc:
            # Once started, the RPC client has already failed for the same reason: closing
            # a dead transport may complain, which must not break the backend.
            if not started or not is_transport_error(exc):
                raise

    def _on_rpc_failure(self, rpc: _RpcClient, message: str) -> None:
        """A connection broke (synchronously, before any caller sees its error)."""
        state = self._link.state
        if rpc is not getattr(self, "_rpc", None) or state is LinkState.FAILED:
            # A resume attempt's connection (the recovery task sees it), or the first
            # connection failing before it was installed (its opening raises).
            return
        if state is LinkState.CATCHING_UP:
            # The new connection broke during the catch-up: the recovery task retries.
            self._enter(LinkState.RESUMING)
            return
        if state is LinkState.RESUMING:
            return  # the lost connection again: the recovery task is at work
        if (
            state is not LinkState.READY  # the handshake never finished: nothing to resume
            or self.resume_deadline <= 0
            or not rpc.resumable
            or self.session_id is None
            or self._nursery is None
        ):
            self._fail_for_good(message)
            return
        self._enter(LinkState.RESUMING)
        for route in self._routes.values():
            route.order.begin_catch_up()
        self._nursery.start_soon(self._recover, message)

    # -- resume ----------------------------------------------------------------------------

    async def _recover(self, lost: str) -> None:
        """Resume the session on a new connection, or fail it for good; a backend task."""
        deadline = trio.current_time() + self.resume_deadline
        last_error = "no attempt finished"
        attempt = 0
        with trio.move_on_at(deadline):
            while True:
                if attempt:
                    await trio.sleep(_backoff_delay(attempt))
                attempt += 1
                try:
                    await self._resume_once()
                except _Retry as exc:
                    last_error = str(exc)
                    continue
                except _GiveUp as exc:
                    self._fail_for_good(f"{lost}; {exc}")
                    return
                if self._link.state is LinkState.CATCHING_UP:  # as it always is here
                    self._enter(LinkState.READY)
                self._resumes += 1
                for route in self._routes.values():
                    route.end_catch_up()
                return
        self._fail_for_good(
            f"{lost}; the session could not be resumed within {self.resume_deadline:g} s "
            f"({attempt} attempts; the last one: {last_error})"
        )

    async def _resume_once(self) -> None:
        """One attempt: connect, ``initialize {resumeSessionId}``, catch up every process.

        Raises:
            _Retry: worth another attempt (cannot connect, -32010, the connection broke).
            _GiveUp: the server no longer has the session.
        """
        assert self._connections is not None
        assert self.session_id is not None
        if self._link.state is LinkState.CATCHING_UP:  # the last attempt's connection is bad
            self._enter(LinkState.RESUMING)
        for route in self._routes.values():
            route.order.begin_catch_up()
        deadline = trio.current_time() + RESUME_ATTEMPT_TIMEOUT
        rpc: _RpcClient | None = None
        with trio.move_on_at(deadline):
            try:
                rpc = await self._connections.start(self._run_connection)
            except ConnectionLost as exc:
                raise _Retry(str(exc)) from None
        if rpc is None:
            raise _Retry(f"not connected within {RESUME_ATTEMPT_TIMEOUT} s")
        try:
            result: InitializeResult | None = None
            with trio.move_on_at(deadline):
                result = await rpc.call(
                    InitializeParams(
                        client_name=self._client_name, resume_session_id=self.session_id
                    ),
                    InitializeResult,
                )
            if result is None:
                raise _Retry(f"no answer to initialize within {RESUME_ATTEMPT_TIMEOUT} s")
            if result.session_id != self.session_id:
                raise _GiveUp(
                    f"the server answered the resume of session {self.session_id} with "
                    f"session {result.session_id}"
                )
            rpc.notify(InitializedNotification())
            if self._link.state is not LinkState.RESUMING:
                raise _GiveUp(self._link.failure or "the session failed meanwhile")
        except RemoteError as exc:
            rpc.close("the resume was refused")
            if exc.code == SESSION_ALREADY_ATTACHED:
                raise _Retry(exc.message) from None
            raise _GiveUp(
                f"the server refused to resume session {self.session_id}: {exc.message}"
            ) from None
        except ConnectionLost as exc:
            if rpc.server_shut_down:
                raise _GiveUp(str(exc)) from None
            raise _Retry(str(exc)) from None
        except BaseException:
            rpc.close("the resume attempt was abandoned")
            raise
        self.extensions = frozenset(result.extensions)
        self._rpc = rpc
        self._enter(LinkState.CATCHING_UP)  # calls go on the new connection meanwhile
        broken = False

        async def catch_up(route: _Route) -> None:
            nonlocal broken
            try:
                await self._catch_up(rpc, route)
            except ConnectionLost:
                broken = True

        async with trio.open_nursery() as nursery:
            for route in list(self._routes.values()):
                if route.started:
                    nursery.start_soon(catch_up, route)
        if rpc.server_shut_down:
            raise _GiveUp(rpc.failure or "the exec server shut down")
        if broken or rpc.failure is not None:
            raise _Retry(rpc.failure or "the connection broke during the catch-up")

    async def _catch_up(self, rpc: _RpcClient, route: _Route) -> bool:
        """Read what ``route``'s process missed and splice it in; see the package docstring.

        Returns False if the server does not know the process (a start that did not
        reach it). A process whose history is gone is failed and terminated.

        Raises:
            ConnectionLost: the connection broke.
        """
        process_id = route.process_id
        while route.receiving:
            after = route.order.last_seq
            final = route.order.caught_up
            # The last read (one chunk at most) also tells the server that the client has
            # everything up to the live events, which releases what it held for us.
            params = ReadParams(
                process_id=process_id,
                after_seq=after,
                max_bytes=0 if final else CATCH_UP_READ_BYTES,
            )
            try:
                result = await rpc.call(params, ReadResult)
            except RemoteError as exc:
                if "is starting" in exc.message:  # the reference, still spawning it
                    await trio.sleep(0.01)
                    continue
                if not route.started:
                    return False
                self._lose(route, f"the server no longer knows it ({exc.message})")
                return True
            problem = route.splice(result, after)
            if problem is not None:
                self._lose(route, problem)
                return True
            if route.stopped():
                self._unroute(route)  # its Closed was ordered
            if final or not result.chunks:
                break
            await self._budget.wait_below_limit()
        route.started = True
        route.end_catch_up()
        return True

    def _lose(self, route: _Route, problem: str) -> None:
        """A process could not be recovered: fail it and terminate it on the server."""
        message = f"{DISCONNECTED}: failed to recover process {route.process_id!r}: {problem}"
        route.lost = message
        self._unroute(route)
        route.fail(message)
        assert self._nursery is not None
        self._nursery.start_soon(self._terminate_quietly, route.process_id)

    async def _terminate_quietly(self, process_id: str) -> None:
        with trio.move_on_after(SHUTDOWN_TIMEOUT):
            try:
                await self._call(TerminateParams(process_id=process_id), TerminateResult)
            except TrioExecError:
                pass


def _backoff_delay(attempt: int) -> float:
    """Seconds to wait before resume attempt ``attempt + 1`` (``attempt`` >= 1)."""
    delay = min(RESUME_BACKOFF_MAX, RESUME_BACKOFF_INITIAL * 2.0 ** (attempt - 1))
    return delay * random.uniform(1 - RESUME_BACKOFF_JITTER, 1)
