"""The ``process/*`` methods, performed on a session's process table.

One function per method, each run in its own handler task of the connection that received
the request (see :mod:`trio_exec._server.connection`); a request that cannot be served
raises a :class:`~trio_exec.RemoteError` (the class of its wire code), which the handler
answers. ``process/start`` owns the process block in a task of the session, so a process
outlives the connection that started it.

The methods use the server's backend through the :class:`~trio_exec.ExecBackend` and
:class:`~trio_exec.ExecProcess` interface only, so any backend serves, a
:class:`~trio_exec.RemoteBackend` too (a relay). What a backend raises is answered with
the code that says it (:func:`_backend_errors`): a :class:`~trio_exec.RemoteError` of a
remote backend keeps its code, :class:`~trio_exec.ConnectionLost` (the backend lost the
process or its connection) is -32603, :class:`~trio_exec.UnsupportedOperation` (the
backend cannot do it, e.g. a server without the extension) is -32600.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Final

import trio

from .._backend import ExecProcess
from .._errors import ConnectionLost, RemoteError, SpawnError, UnsupportedOperation
from .._events import WriteStatus
from .._protocol import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    CloseStdinParams,
    CloseStdinResult,
    ListParams,
    ListResult,
    ProcessInfo,
    ReadParams,
    RequestParams,
    RequestResult,
    ResizeParams,
    ResizeResult,
    SignalParams,
    SignalResult,
    StartParams,
    TerminateParams,
    TerminateResult,
    WriteParams,
    WriteResult,
)
from .env_methods import EnvironmentParams, _os_error_text, environment_call
from .environment import _child_env_options
from .session import _Entry, _PendingWrite, _Session, _subscribe

if TYPE_CHECKING:  # the connection that started a process is told apart, not used
    from .connection import _Connection

__all__ = [
    "CLOSED_PROCESS_RETENTION",
    "MAX_PROCESSES_PER_SESSION",
    "MAX_READ_WAIT",
    "call",
    "kill_group",
    "start_process",
]

CLOSED_PROCESS_RETENTION: Final = 80.0
"""Seconds a closed process stays readable, and its id reserved, after it closed.

The same as the reference server 0.169 (its source says 30 s; the binary keeps 80 s). A
long retention lets a client read the tail of a process it was not watching; a process
that never closes (a grandchild keeps its output open) is kept until the session ends.
"""

MAX_PROCESSES_PER_SESSION: Final = 256
"""Processes one session's table may hold: starting, running, and closed but retained.

When the table is full, a ``process/start`` forgets the earliest started process that has
already closed (its retention is cut short) to make room; when none has closed, the start
is refused with -32600 ``too many processes ...``. The bound caps a session's retained
output at this times ``retain_bytes`` (256 MiB by default) and its children, pipes and
tasks at this many processes. The reference has no such limit.
"""

MAX_READ_WAIT: Final = 30.0
"""The longest a ``process/read`` long-polls, in seconds; a larger ``waitMs`` is clamped.

The read then returns what is there after this long, perhaps nothing new, which a
long-poll client must handle anyway (it reads again from ``nextSeq``). Clamping bounds
how long a request holds one of the connection's :data:`MAX_IN_FLIGHT_REQUESTS` slots.
The reference accepts any ``waitMs``.
"""


async def start_process(session: _Session, params: StartParams, starter: _Connection) -> _Entry:
    """Spawn the process of a ``process/start`` into the session's table.

    The process block is owned by a task of the session (:func:`_run_process`). The caller
    queues the start response, then sets the entry's ``announced``: the notifications of
    the process follow the response.

    Raises:
        RemoteError: the id is taken, ``envPolicy`` is malformed, the table is full, or the
            spawn failed.
    """
    process_id = params.process_id
    if process_id in session.processes:
        raise RemoteError(INVALID_REQUEST, f"process {process_id} already exists")
    try:
        env, extra_env = _child_env_options(params, session.server.backend)
    except ValueError as exc:
        raise RemoteError(INVALID_PARAMS, str(exc)) from None
    _make_room(session)
    entry = _Entry(process_id, params.argv)
    session.processes[process_id] = entry
    assert session.nursery is not None
    try:
        # The process task belongs to the session: it outlives a lost connection.
        with _backend_errors():
            await session.nursery.start(
                _run_process, session, entry, params, env, extra_env, starter
            )
    except SpawnError as exc:
        raise RemoteError(INTERNAL_ERROR, _os_error_text(exc), _spawn_error_data(exc)) from None
    except (ValueError, TypeError) as exc:
        raise RemoteError(INVALID_PARAMS, str(exc)) from None
    finally:
        entry.settled.set()
        if entry.proc is None and session.processes.get(process_id) is entry:
            del session.processes[process_id]
    return entry


async def call(session: _Session, params: RequestParams) -> RequestResult:
    """Perform a request other than ``initialize`` and ``process/start``; its result."""
    with _backend_errors():
        return await _call(session, params)


@contextmanager
def _backend_errors() -> Iterator[None]:
    """Answer what the backend raises with the wire code that says it.

    A :class:`RemoteError` (a remote backend's server refused) keeps its code and message;
    :class:`ConnectionLost` (the backend lost the process, or its connection broke for
    good) is -32603, :class:`UnsupportedOperation` (e.g. a remote backend whose server
    lacks the extension) is -32600, each with the backend's message.
    """
    try:
        yield
    except ConnectionLost as exc:
        raise RemoteError(INTERNAL_ERROR, f"the server's backend failed: {exc}") from None
    except UnsupportedOperation as exc:
        raise RemoteError(INVALID_REQUEST, f"the server's backend cannot do it: {exc}") from None


async def _call(session: _Session, params: RequestParams) -> RequestResult:
    match params:
        case ReadParams():
            return await _read(session, params)
        case WriteParams():
            return await _write(session, params)
        case CloseStdinParams():
            return await _close_stdin(session, params)
        case SignalParams():
            return await _signal(session, params)
        case TerminateParams():
            return await _terminate(session, params)
        case ResizeParams():
            return await _resize(session, params)
        case ListParams():
            await trio.lowlevel.checkpoint()
            return _list(session)
        case _ if isinstance(params, EnvironmentParams):
            return await environment_call(session, params)
        case _:  # StartParams is handled before; InitializeParams by the reader
            raise AssertionError(f"unexpected params {params!r}")


async def _lookup(session: _Session, process_id: str) -> ExecProcess | None:
    """The process with this id, once spawned; None if unknown or its start failed."""
    entry = session.processes.get(process_id)
    if entry is None:
        await trio.lowlevel.checkpoint()
        return None
    await entry.settled.wait()
    return entry.proc


def _make_room(session: _Session) -> None:
    """Keep the table under ``max_processes``: forget a closed process, or refuse."""
    limit = session.server.max_processes
    if len(session.processes) < limit:
        return
    for entry in session.processes.values():
        if entry.closed:  # the earliest started of the closed ones
            del session.processes[entry.process_id]
            entry.forget.set()
            return
    raise RemoteError(
        INVALID_REQUEST,
        f"too many processes: this session already has {limit} processes that have not "
        "closed (the server's limit); wait for one to close or terminate one",
    )


async def _run_process(
    session: _Session,
    entry: _Entry,
    params: StartParams,
    env: dict[str, str] | None,
    extra_env: dict[str, str] | None,
    starter: _Connection,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Own the process block: spawn, forward events, retain, forget. A session task."""
    server = session.server
    size = params.window_size
    async with server.backend.open_process(
        params.argv,
        cwd=params.cwd_path,
        env=env,
        extra_env=extra_env,
        tty=params.tty,
        pipe_stdin=params.pipe_stdin,
        arg0=params.arg0,
        grace=server.session_end_grace,
        retain_bytes=server.retain_bytes,
        window=None if size is None else (size.rows, size.cols),
    ) as proc:
        # Subscribe before anything can be sequenced: no event is missed. The forwarder
        # is a task of the attached connection, so leaving this block never waits for
        # a slow client to take the notifications.
        subscription = _subscribe(proc)
        entry.proc = proc
        entry.settled.set()
        session.adopt(entry, subscription, starter)
        task_status.started()
        try:
            await proc.wait_closed()
        except ConnectionLost as exc:
            # The backend lost the process (a remote backend's connection broke for
            # good): its events end with Failed, which no notification carries.
            session.lose(entry, str(exc))
        entry.closed = True
        # The entry stays readable for the retention time, and the session open: the
        # rest of the child's process group (grandchildren that outlive it) lives on,
        # as it does in a local block, until the client signals or terminates it, the
        # retention ends (or is cut short by _make_room) or the session ends. Then the
        # group is killed and reaped.
        with trio.move_on_after(server.retention):
            await entry.forget.wait()
    entry.release_hold()
    if session.processes.get(entry.process_id) is entry:
        del session.processes[entry.process_id]


async def _read(session: _Session, params: ReadParams) -> RequestResult:
    proc = await _lookup(session, params.process_id)
    entry = session.processes.get(params.process_id)
    if proc is None or entry is None:
        raise RemoteError(INVALID_REQUEST, f"unknown process id {params.process_id}")
    # The client has everything up to afterSeq: a hold need not keep it any more.
    entry.acknowledge(params.after_seq or 0)
    wait = min((params.wait_ms or 0) / 1000, session.server.max_read_wait)  # MAX_READ_WAIT
    return await proc.read(params.after_seq or 0, params.max_bytes, wait)


async def _write(session: _Session, params: WriteParams) -> WriteResult:
    entry = session.processes.get(params.process_id)
    proc = await _lookup(session, params.process_id)
    if entry is None or proc is None:
        return WriteResult(status=WriteStatus.UNKNOWN_PROCESS)
    if params.write_id in entry.write_ids:
        return WriteResult(status=WriteStatus.ACCEPTED)
    pending = entry.writes.get(params.write_id)
    if pending is None:
        # Performed by a session task, so that a connection lost mid-write does not
        # cut it; a resend with this writeId waits for it instead of writing again.
        pending = _PendingWrite()
        entry.writes[params.write_id] = pending
        assert session.nursery is not None
        session.nursery.start_soon(_perform_write, entry, proc, params, pending)
    await pending.done.wait()
    if pending.error is not None:
        raise pending.error
    return WriteResult(status=pending.status)


async def _close_stdin(session: _Session, params: CloseStdinParams) -> CloseStdinResult:
    proc = await _lookup(session, params.process_id)
    if proc is None:
        return CloseStdinResult(status=WriteStatus.UNKNOWN_PROCESS)
    return CloseStdinResult(status=_known(await proc.close_stdin()))


async def _signal(session: _Session, params: SignalParams) -> SignalResult:
    proc = await _lookup(session, params.process_id)
    if proc is not None:
        if params.signal.signum == signal.SIGKILL:
            await kill_group(proc)
        else:
            await proc.signal(params.signal.signum)
    return SignalResult()


async def _terminate(session: _Session, params: TerminateParams) -> TerminateResult:
    proc = await _lookup(session, params.process_id)
    if proc is None:
        return TerminateResult(running=False)
    if params.grace_ms is not None:
        return TerminateResult(running=await proc.terminate(params.grace_ms / 1000))
    running = proc.exit_code is None
    if running:
        # The reference's terminate: SIGKILL to the whole group at once, no grace.
        await kill_group(proc)
    return TerminateResult(running=running)


async def kill_group(proc: ExecProcess) -> None:
    """SIGKILL the process group of ``proc``.

    A backend that cannot send SIGKILL (a remote one whose server lacks the ``signals``
    extension, such as the reference) is asked to terminate the process instead, which
    such a server does by killing the group at once; once the child exited, that server
    has no way to reach the rest of the group, which its session's end kills.
    """
    try:
        await proc.signal(signal.SIGKILL)
    except UnsupportedOperation:
        await proc.terminate(0.0)


async def _resize(session: _Session, params: ResizeParams) -> ResizeResult:
    proc = await _lookup(session, params.process_id)
    if proc is not None:
        if not proc.tty:
            message = f"process {params.process_id} has no terminal (started without tty)"
            raise RemoteError(INVALID_PARAMS, message)
        await proc.resize(params.rows, params.cols)
    return ResizeResult()


def _list(session: _Session) -> ListResult:
    return ListResult(
        processes=tuple(
            ProcessInfo(
                process_id=entry.process_id,
                argv=entry.argv,
                running=entry.running,
                exit_code=None if entry.proc is None else entry.proc.exit_code,
            )
            for entry in session.processes.values()
        )
    )


async def _perform_write(
    entry: _Entry, proc: ExecProcess, params: WriteParams, pending: _PendingWrite
) -> None:
    """Write one ``process/write`` to the child; a task of the session."""
    try:
        pending.status = _known(await proc.write(params.chunk))
        if pending.status is WriteStatus.ACCEPTED:
            entry.write_ids.add(params.write_id)
    except Exception as exc:  # answered by the handlers waiting for it
        pending.error = exc
    finally:
        if entry.writes.get(params.write_id) is pending:
            del entry.writes[params.write_id]
        pending.done.set()


def _known(status: WriteStatus) -> WriteStatus:
    """The status for a process the table knows: a finished block has no stdin any more."""
    return WriteStatus.STDIN_CLOSED if status is WriteStatus.UNKNOWN_PROCESS else status


def _spawn_error_data(exc: SpawnError) -> dict[str, object] | None:
    """The ``data`` of a spawn error: ``errno`` and the ``filename`` at fault (the program
    or the working directory), which the message alone does not tell (an extension; a
    peer may ignore it)."""
    data: dict[str, object] = {}
    if exc.errno is not None:
        data["errno"] = exc.errno
    if exc.filename is not None:
        data["filename"] = os.fsdecode(exc.filename)
    return data or None
