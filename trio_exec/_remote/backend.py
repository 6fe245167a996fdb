"""RemoteBackend, the front of a connection to an exec server: its public state and
``open_process`` (start, the probe of a start cut off by a lost connection)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Final, Unpack, final

import attrs
import trio

from .._backend import (
    Arg,
    ExecBackend,
    ProcessOptions,
    check_argv,
    check_env,
    check_seconds,
    check_window,
    new_process_id,
    process_options,
)
from .._errors import ConnectionLost, RemoteError, UnsupportedOperation
from .._log import ProcessLog
from .._protocol import (
    EnvironmentInfo,
    Extension,
    StartParams,
    StartResult,
    WindowSize,
    path_to_file_uri,
)
from .connection import _Link
from .errors import _start_error
from .process import SHUTDOWN_TIMEOUT, RemoteProcess
from .resume import _Connector, _Resuming
from .route import READ_AHEAD_BYTES, _Budget, _Route
from .rpc import _RpcClient

__all__ = ["FALLBACK_CWD", "RemoteBackend", "RemoteStatistics"]

FALLBACK_CWD: Final = "/"
"""Where a child runs when neither the caller nor the server names a directory.

A server tells its working directory in the ``initialize`` result (``environmentInfo.cwd``),
and a child started without ``cwd`` runs there. A server that does not (older releases of
the reference) gets the root directory, which exists on every POSIX host, rather than this
client's directory, which may not exist there (in a container, say) and would make every
spawn fail with a misleading "No such file or directory"."""


@attrs.frozen(kw_only=True)
class RemoteStatistics:
    """What :meth:`RemoteBackend.statistics` returns."""

    requests_in_flight: int
    """Requests sent (or queued) whose response has not come yet."""
    max_requests_in_flight: int
    """The cap on :attr:`requests_in_flight` (:data:`MAX_IN_FLIGHT_REQUESTS`)."""
    open_processes: int
    """Process blocks currently open on this backend."""
    routed_processes: int
    """Processes whose events are still being received (not yet closed or failed)."""
    failure: str | None
    """Why the connection broke for good, or None while it works (or is being resumed)."""
    recovering: bool = False
    """Whether the connection was lost and the session is being resumed."""
    resumes: int = 0
    """Sessions resumed successfully on a new connection so far."""


# The connection state and the call path are in _ConnectionState (connection.py), the
# connections and the resume in _Resuming (resume.py); this class sets their state.
@final
class RemoteBackend(_Resuming, ExecBackend):
    """Runs processes on an exec server; obtained from :func:`connect` or
    :func:`open_remote_backend`, never built directly.

    It works with any server of the protocol, and uses a trio_exec extension only when the
    server advertises it (:attr:`extensions`). Against the reference ``codex exec-server``
    0.169, which advertises none: :meth:`RemoteProcess.close_stdin`, :meth:`~RemoteProcess.resize`
    and signals other than SIGINT raise :class:`UnsupportedOperation`; terminate is an
    immediate SIGKILL of the process group (no grace); ``Exited.signal`` is None (only the
    ``exitSignal`` extension reports it); and a child on a terminal killed by any signal
    reports exit code 1.

    A backend from :func:`connect` resumes its session after a lost connection (see the
    package docstring); an exit caught up by a read after a resume has ``signal=None``,
    since ``process/read`` does not report it.
    """

    def __init__(self, connector: _Connector, *, client_name: str, resume_deadline: float) -> None:
        self._connector = connector
        self._client_name = client_name
        self.resume_deadline: Final = resume_deadline
        """Seconds a lost connection is resumed for; 0: never (see :data:`RESUME_DEADLINE`)."""
        self._rpc: _RpcClient  # the current connection; set by _open_backend
        self._link = _Link()  # the session's state; changed by self._enter only
        self._link_changed = trio.lowlevel.ParkingLot()  # calls waiting for a usable state
        self._resumes = 0
        self._budget = _Budget(READ_AHEAD_BYTES)
        self._routes: dict[str, _Route] = {}  # taking notifications
        self._publishing: set[_Route] = set()  # publisher task running
        self._nursery: trio.Nursery | None = None  # for the publishers and the recovery
        # For the connection tasks: not cancelled when the block is left, so that each
        # transport closes cleanly (with a close handshake) once its RPC client stopped.
        self._connections: trio.Nursery | None = None
        self._left = trio.Event()  # the backend block is left: _run_tasks ends the tasks
        self._live: set[str] = set()
        self.session_id: str | None = None
        """The server's session id (what a resume asks for), once initialized."""
        self.extensions: frozenset[str] = frozenset()
        """The protocol extensions the server advertised (see :class:`Extension`)."""
        self.environment_info: EnvironmentInfo | None = None
        """What the server told of its side in ``initialize`` (its working directory,
        home, shell, ...), or None if it told nothing."""

    def __repr__(self) -> str:
        return (
            f"<RemoteBackend {self._link!r} session={self.session_id!r} "
            f"extensions={sorted(self.extensions)} with {len(self._live)} open sessions>"
        )

    def supports(self, extension: Extension) -> bool:
        """Whether the server advertised ``extension``."""
        return extension.value in self.extensions

    @property
    def failure(self) -> str | None:
        """Why the connection broke for good, or None while it works or is being resumed."""
        return self._link.failure

    def statistics(self) -> RemoteStatistics:
        """Counters of this connection, for tests and monitoring."""
        return RemoteStatistics(
            requests_in_flight=self._rpc.in_flight,
            max_requests_in_flight=self._rpc.max_in_flight,
            open_processes=len(self._live),
            routed_processes=len(self._routes),
            failure=self._link.failure,
            recovering=self._link.resuming,
            resumes=self._resumes,
        )

    async def _require(self, extension: Extension, what: str) -> None:
        """Raise :class:`UnsupportedOperation`, after a checkpoint, unless the server
        advertised ``extension``; return at once (no checkpoint) if it did."""
        if not self.supports(extension):
            await trio.lowlevel.checkpoint()
            raise UnsupportedOperation(
                f"{what} needs the exec server's `{extension.value}` protocol extension, "
                f"which this server does not advertise (codex exec-server 0.169 has none)"
            )

    # -- processes -------------------------------------------------------------------------

    def open_process(
        self, argv: Sequence[Arg], **options: Unpack[ProcessOptions]
    ) -> AbstractAsyncContextManager[RemoteProcess]:
        """See :meth:`ExecBackend.open_process`. Differences on a remote server:

        Args:
            cwd: an absolute path *on the server*, sent as a ``file://`` URI; a relative
                path raises ValueError. Default: the server's working directory, which
                it reported in ``initialize`` (:attr:`environment_info`); from a server
                that reported none, :data:`FALLBACK_CWD`. Never this client's directory.
            env: the child's exact environment, sent as is. Default: the *server's*
                environment, whole: the request carries ``env: {}`` and the ``envPolicy``
                ``{inherit: "all", ignoreDefaultExcludes: true}``, so the server does not
                drop its variables named like ``*KEY*``, ``*SECRET*`` or ``*TOKEN*``
                (the reference's default excludes); the reference still leaves out its
                own launch variables (``CODEX_EXEC_SERVER_*``, ``NODE_REPL_AUTH_TOKEN``,
                ...). Nothing of this client's environment is sent.
            extra_env: added over ``env`` when it is given; otherwise sent as the
                policy's ``set``: the server's environment plus these variables.
            window: with the ``windowSize`` extension, sent in ``process/start``. A
                server with ``resize`` but not ``windowSize`` (an older trio_exec) starts
                the terminal at 24x80 and is resized before the block is entered, so the
                child may see 24x80 first and then get SIGWINCH. A server with neither
                (the reference) raises :class:`UnsupportedOperation`.
            grace: used only when the server advertises ``gracefulTerminate``; otherwise
                leaving the block with the child running kills its group at once.

        Raises:
            SpawnError: the server could not start the program (JSON-RPC error -32603);
                ``errno`` is parsed from the message's ``(os error N)`` (the errno's
                subclass, as locally: ``FileNotFoundError``, ...). ``filename`` is the
                file at fault when the server says which (trio_exec's server does, in the
                error's data); the reference's message alone cannot tell a bad program
                from a bad ``cwd``, so then ``filename`` is None and the message names
                both.
            ValueError: bad arguments, here or on the server (-32602); an argv item that
                is not valid UTF-8 (the protocol carries text); a process id that is
                already open on this backend.
            UnsupportedOperation: ``window`` with a server that cannot size a terminal.
            RemoteError: any other error answer (e.g. a process id the server still
                retains).
            ConnectionLost: the connection is broken.

        Leaving the block with the child running sends ``process/terminate`` (with
        ``graceMs`` when supported) and waits for the exit and the end of output, at most
        ``grace`` (when graceful) plus :data:`SHUTDOWN_TIMEOUT` seconds. With the
        ``signals`` extension, the server is also asked to SIGKILL what is left of the
        process group (grandchildren) once the child exited, as a local session does,
        and a trio_exec server then ends the output within its ``CLOSE_DRAIN_TIMEOUT``
        even if a process that left the group holds it open; if the child had already
        exited, the wait is then at most :data:`SHUTDOWN_TIMEOUT` seconds. Without it
        (the reference) grandchildren that outlive the child are the server's to clean up
        (the reference kills them when the session expires), and if the child had already
        exited the wait for the end of output is at most :data:`CLOSE_TIMEOUT` seconds. If
        the server does not answer in time, the process's log fails and the block is left
        anyway. After a connection loss, leaving never waits.

        **Cancellation:** if cancelled while starting, the client waits (shielded, at most
        :data:`SHUTDOWN_TIMEOUT` seconds) for the start to finish and terminates the
        process.
        """
        opts = process_options(options)
        cwd, env, tty, pipe_stdin = opts["cwd"], opts["env"], opts["tty"], opts["pipe_stdin"]
        arg0, process_id, grace = opts["arg0"], opts["process_id"], opts["grace"]
        extra_env, window = opts["extra_env"], opts["window"]
        args = check_argv(argv, text=True)
        check_seconds("grace", grace)
        if arg0 is not None and (not isinstance(arg0, str) or "\0" in arg0):
            raise ValueError("arg0 must be a str without NUL")
        if process_id is not None and not isinstance(process_id, str):
            raise TypeError(f"process_id must be a str, not {type(process_id).__name__}")
        size = check_window(window, bool(tty))
        resize_after_start: tuple[int, int] | None = None
        if size is not None and not self.supports(Extension.WINDOW_SIZE):
            if not self.supports(Extension.RESIZE):
                raise UnsupportedOperation(
                    "window= needs the exec server's `windowSize` (or `resize`) protocol "
                    "extension, which this server does not advertise (codex exec-server "
                    "0.169 has none: its terminals are 24x80)"
                )
            resize_after_start, size = size, None
        extra = {} if extra_env is None else check_env(extra_env)
        params = StartParams(
            process_id=new_process_id() if process_id is None else process_id,
            argv=tuple(args),
            cwd=self._cwd_uri(cwd),
            env={} if env is None else {**check_env(env), **extra},
            tty=bool(tty),
            pipe_stdin=bool(pipe_stdin),
            arg0=arg0,
            env_policy=None if env is not None else _inherit_server_environment(extra),
            window_size=None if size is None else WindowSize(rows=size[0], cols=size[1]),
        )
        return self._open(
            params,
            grace=grace,
            log=ProcessLog(retain_bytes=opts["retain_bytes"]),
            resize_after_start=resize_after_start,
        )

    def _cwd_uri(self, cwd: str | os.PathLike[str] | None) -> str:
        """The ``cwd`` of ``process/start``: the caller's, else the server's own."""
        if cwd is None:
            info = self.environment_info
            if info is not None and info.cwd is not None:
                return info.cwd
            return path_to_file_uri(FALLBACK_CWD)
        directory = os.fspath(cwd)
        if not isinstance(directory, str):
            raise TypeError("cwd must be a str path")
        if not os.path.isabs(directory):
            raise ValueError(f"cwd must be an absolute path on the server, not {directory!r}")
        return path_to_file_uri(directory)

    @asynccontextmanager
    async def _open(
        self,
        params: StartParams,
        *,
        grace: float,
        log: ProcessLog,
        resize_after_start: tuple[int, int] | None = None,
    ) -> AsyncIterator[RemoteProcess]:
        process_id = params.process_id
        if process_id in self._live:
            raise ValueError(f"process id {process_id!r} is already open on this backend")
        if self._link.failure is not None:
            await trio.lowlevel.checkpoint()  # entering checkpoints even when it fails
            self._check()
        self._live.add(process_id)
        try:
            # Registered before the request: the server may send events before answering.
            route = self._route(process_id, log)
            proc = RemoteProcess(process_id, self, log, route, tty=params.tty)
            try:
                await self._start(proc, params)
            except BaseException:
                self._unroute(route)
                route.stop()
                raise
            try:
                if resize_after_start is not None:
                    await proc.resize(*resize_after_start)
                yield proc
            finally:
                with trio.CancelScope(shield=True):
                    await proc._shutdown(grace)
        finally:
            self._live.discard(process_id)

    async def _start(self, proc: RemoteProcess, params: StartParams) -> None:
        while True:
            rpc = await self._usable_rpc()
            try:
                call = await rpc.start_call(params)
            except ConnectionLost:
                continue  # not sent: wait for the resume (or fail for good)
            try:
                await call.done.wait()
            except BaseException:
                # Cancelled: the server may be starting it. Wait (bounded) for the answer,
                # then make sure nothing is left running.
                with trio.CancelScope(shield=True):
                    with trio.move_on_after(SHUTDOWN_TIMEOUT):
                        await call.done.wait()
                    if call.reply is None:
                        rpc.abandon(call)
                    if call.reply is None or call.reply.error is None:
                        await proc._shutdown(0.0, started=call.reply is not None)
                raise
            try:
                call.result(StartResult)
            except RemoteError as exc:
                raise _start_error(exc, params, default_cwd=self._cwd_uri(None)) from None
            except ConnectionLost:
                if not self._link.resuming:
                    raise
                # The connection broke before the answer: once resumed, a read tells
                # whether the start reached the server (then its events are caught up).
                if await self._probe_start(proc._route):
                    return
                continue  # it did not: start it again
            proc._route.started = True
            return

    async def _probe_start(self, route: _Route) -> bool:
        """After a resume: whether the server has ``route``'s process (then caught up)."""
        while True:
            rpc = await self._usable_rpc()
            try:
                return await self._catch_up(rpc, route)
            except ConnectionLost:
                self._check()


def _inherit_server_environment(extra: dict[str, str]) -> dict[str, object]:
    """The ``envPolicy`` that gives a child the server's whole environment plus ``extra``.

    Every field is sent: the reference requires all five. ``ignoreDefaultExcludes``, since
    the reference's default excludes (``*KEY*``, ``*SECRET*``, ``*TOKEN*``) would also drop
    variables such as ``GPG_KEY``, ``KEYTIMEOUT`` or ``GITHUB_TOKEN`` that the user set on
    the server on purpose, which ``ssh`` and ``docker exec`` pass on.
    """
    return {
        "inherit": "all",
        "ignoreDefaultExcludes": True,
        "exclude": [],
        "set": extra,
        "includeOnly": [],
    }
