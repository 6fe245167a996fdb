"""Every public async method of a session checkpoints on every path, on every backend.

trio's rule: an ``await`` of a public async function is a checkpoint (a cancel point and
a schedule point) whatever it does, also when it returns at once or raises an operational
error. Each test brings a session to one state and calls every public async method of
the session's class (found by introspection, see :mod:`tests.checkpoints`) under
``trio.testing.assert_checkpoints``:

* ``running``: the child runs (and ignores SIGUSR1, so signalling it keeps it running);
* ``running-tty``: the same on a terminal;
* ``exited``: the child exited but a grandchild still holds its stdout (no Closed yet);
* ``closed``: exited and all output sequenced;
* ``left``: after the session's block was left;
* ``failed``: on a remote backend whose connection broke for good (the websocket server
  cancelled; the stdio server, ``ssh`` or ``docker exec`` killed).

The calls are the same in every state; what they return differs (a status, an error),
and that is the point: each outcome is a path that must checkpoint.
"""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Final

import pytest
import trio

import trio_exec as tx
from trio_exec._stream import LineReader, ProcessStream

from ..checkpoints import BLOCK, CheckpointRecorder, check_all
from ..cluster.node import Cluster
from ..conftest import CLUSTER_KINDS, CONTAINER_KINDS
from ..containers.container import Container
from ..transports.helpers import STDIO_SERVER, ssh_argv
from ..transports.sshd import SshServer
from .helpers import TIMEOUT, wait_failed

RUNNING: Final = ("sh", "-c", 'trap "" USR1; while echo tick; do sleep 0.1; done')
"""Runs until killed, printing; dies of SIGPIPE once nobody reads its output (a killed
stdio server leaves no child behind)."""

EXITED: Final = ("sh", "-c", 'trap "" USR1; echo out; sleep 30 & exit 3')
"""Exits at once; the background ``sleep`` keeps stdout open, so the session stays
exited but not closed until its block kills the group."""

CLOSED: Final = ("sh", "-c", 'trap "" USR1; echo out; exit 3')
"""Exits at once with its output."""

STATES: Final = ("running", "running-tty", "exited", "closed", "left")
"""The states of :func:`test_process_methods_checkpoint` on every backend (``failed``
has a test of its own on the remote backends)."""

REMOTE_KINDS: Final = ("remote", "remote-stdio", "remote-ssh", *CONTAINER_KINDS, *CLUSTER_KINDS)

MAX_EVENTS: Final = 1000
"""Bound on the events a subscription check receives before it stops."""

BreakableOpener = Callable[
    [], AbstractAsyncContextManager[tuple[tx.ExecBackend, Callable[[], None]]]
]


# -- bringing a session to a state ------------------------------------------------------------


async def _first_output(proc: tx.ExecProcess) -> None:
    """Wait until the child printed (so its ``trap`` is installed)."""
    with trio.fail_after(TIMEOUT):
        while not (await proc.read(wait=TIMEOUT)).chunks:
            pass


async def _reach(proc: tx.ExecProcess, state: str) -> None:
    with trio.fail_after(TIMEOUT):
        if state == "exited":
            await proc.wait()
            assert not (await proc.read()).closed, "a grandchild holds stdout: not closed"
        elif state == "closed":
            await proc.wait_closed()
        else:
            await _first_output(proc)


@asynccontextmanager
async def process_in_state(backend: tx.ExecBackend, state: str) -> AsyncIterator[tx.ExecProcess]:
    """A session of ``backend`` in ``state`` (one of :data:`STATES`)."""
    tty = state == "running-tty"
    argv = EXITED if state == "exited" else CLOSED if state == "closed" else RUNNING
    async with backend.open_process(argv, tty=tty, pipe_stdin=not tty) as proc:
        await _reach(proc, state)
        if state != "left":
            yield proc
            return
    yield proc


@pytest.fixture(params=REMOTE_KINDS)
def breakable_opener(request: pytest.FixtureRequest, tmp_path: Path) -> BreakableOpener:
    """How to open a remote backend of this kind together with a function that breaks its
    connection for good, the way connections break: the websocket server goes away (its
    scope is cancelled; the client does not resume), or the stdio server (or ``ssh``) is
    killed with SIGKILL."""
    kind: str = request.param
    if kind == "remote":
        return _breakable_websocket
    server_argv: Sequence[str] = STDIO_SERVER
    if kind == "remote-ssh":
        server: SshServer = request.getfixturevalue("ssh_server")
        server_argv = ssh_argv(server.argv)
    elif kind in CONTAINER_KINDS:
        container: Container = request.getfixturevalue(f"{kind}_container")
        server_argv = container.server_argv()
    elif kind == "kubectl":
        pod: Cluster = request.getfixturevalue("kubectl_pod")
        server_argv = pod.server_argv()
    pid_file = tmp_path / "command.pid"
    # The shell writes its pid, then becomes the command: that pid is the command's.
    argv = ["sh", "-c", 'echo $$ > "$0"; exec "$@"', str(pid_file), *server_argv]

    @asynccontextmanager
    async def open_breakable() -> AsyncIterator[tuple[tx.ExecBackend, Callable[[], None]]]:
        async with tx.connect_command(argv) as backend:
            pid = int(pid_file.read_text())
            yield backend, lambda: os.kill(pid, signal.SIGKILL)

    return open_breakable


@asynccontextmanager
async def _breakable_websocket() -> AsyncIterator[tuple[tx.ExecBackend, Callable[[], None]]]:
    server_scope = trio.CancelScope()

    async def serve(*, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        with server_scope:
            await tx.serve_websocket("127.0.0.1", 0, task_status=task_status)

    async with trio.open_nursery() as nursery:
        url: str = await nursery.start(serve)
        async with tx.connect(url, resume_deadline=0) as backend:
            yield backend, server_scope.cancel
        server_scope.cancel()


# -- what is called in every state ----------------------------------------------------------


async def exercise_process(proc: tx.ExecProcess, state: str) -> CheckpointRecorder:
    """Call every public async method of ``proc``; check the recorder afterwards."""
    recorder = CheckpointRecorder(proc, state)
    next_seq = proc.statistics().next_seq
    # From the start; at the last event but one (in state exited: the output before
    # Exited, which makes the read return at once); at the end.
    for after_seq in (0, max(next_seq - 2, 0), next_seq - 1):
        await recorder.call("read", after_seq=after_seq, wait=BLOCK)
    await recorder.call("read", after_seq=next_seq - 1, max_bytes=1)
    await recorder.call("write", b"ping\n")
    await recorder.call("write", b"")
    await recorder.call("signal", signal.SIGWINCH)  # the protocol has no name for it
    await recorder.call("signal", signal.SIGUSR1)  # ignored by the child
    await recorder.call("resize", 30, 100)
    await recorder.call("close_stdin")
    await recorder.call("write", b"late\n")
    await recorder.call("close_stdin")
    await recorder.call("wait", bound=BLOCK)
    await recorder.call("wait_closed", bound=BLOCK)
    await recorder.call("terminate", BLOCK)
    await recorder.call("terminate", BLOCK)
    return recorder


async def exercise_subscription(proc: tx.ExecProcess, state: str) -> CheckpointRecorder:
    """Receive from a new subscription to the end (or until it blocks), then close it."""
    events = proc.subscribe()
    recorder = CheckpointRecorder(events, state)
    for _ in range(MAX_EVENTS):
        got = await recorder.call("receive", bound=BLOCK)
        if got.error is not None or got.value is None:  # the end, or nothing more now
            break
    await recorder.call("receive", bound=BLOCK)  # after the end: EndOfChannel again
    await recorder.call("aclose")
    await recorder.call("receive")  # closed
    await recorder.call("aclose")
    return recorder


async def exercise_stream(
    stream: ProcessStream, state: str
) -> tuple[CheckpointRecorder, CheckpointRecorder]:
    """Every public async method of a :class:`ProcessStream` and of a :class:`LineReader`
    on it: open, after ``send_eof``, after ``aclose``."""
    lines = LineReader(stream)
    on_stream = CheckpointRecorder(stream, state)
    on_lines = CheckpointRecorder(lines, state)
    for phase in ("open", "eof sent"):
        on_stream.state = on_lines.state = f"{state}, {phase}"
        await on_stream.call("send_all", b"ping\n")
        await on_stream.call("send_all", b"")
        await on_stream.call("wait_send_all_might_not_block")
        await on_lines.call("receive", bound=BLOCK)
        await on_stream.call("receive_some", bound=BLOCK)
        await on_stream.call("send_eof")
    on_stream.state = on_lines.state = f"{state}, closed"
    await on_lines.call("aclose")  # closes the stream
    await on_stream.call("aclose")
    await on_stream.call("send_all", b"ping\n")
    await on_stream.call("wait_send_all_might_not_block")
    await on_stream.call("send_eof")
    await on_stream.call("receive_some")
    await on_lines.call("receive")
    await on_lines.call("aclose")
    return on_stream, on_lines


# -- tests --------------------------------------------------------------------------------------


@pytest.mark.parametrize("state", STATES)
async def test_process_methods_checkpoint(backend: tx.ExecBackend, state: str) -> None:
    async with process_in_state(backend, state) as proc:
        recorders = [await exercise_subscription(proc, state), await exercise_process(proc, state)]
    check_all(recorders)


async def test_process_methods_checkpoint_when_failed(breakable_opener: BreakableOpener) -> None:
    async with breakable_opener() as (backend, break_connection):
        async with backend.open_process(RUNNING, pipe_stdin=True) as proc:
            await _first_output(proc)
            break_connection()
            await wait_failed(proc)
            recorders = [
                await exercise_subscription(proc, "failed"),
                await exercise_process(proc, "failed"),
            ]
        recorders.append(await exercise_process(proc, "failed, left"))
    check_all(recorders)


@pytest.mark.parametrize("state", ["running", "exited", "closed"])
async def test_stream_methods_checkpoint(backend: tx.ExecBackend, state: str) -> None:
    argv = EXITED if state == "exited" else CLOSED if state == "closed" else RUNNING
    async with tx.open_stream(backend, argv, eof_timeout=BLOCK, grace=BLOCK) as stream:
        await _reach(stream.process, state)
        recorders = await exercise_stream(stream, state)
    check_all(recorders)


async def test_stream_methods_checkpoint_when_failed(breakable_opener: BreakableOpener) -> None:
    async with (
        breakable_opener() as (backend, break_connection),
        tx.open_stream(backend, RUNNING, eof_timeout=BLOCK, grace=BLOCK) as stream,
    ):
        await _first_output(stream.process)
        break_connection()
        await wait_failed(stream.process)
        recorders = await exercise_stream(stream, "failed")
    check_all(recorders)


async def _run_processes(recorder: CheckpointRecorder, backend: tx.ExecBackend) -> None:
    await recorder.call("run_process", ["sh", "-c", "echo out"], backend=backend)
    await recorder.call("run_process", ["sh", "-c", "cat"], backend=backend, input=b"in")
    await recorder.call("run_process", ["sh", "-c", "exit 3"], backend=backend)  # check
    await recorder.call("run_process", ["/nonexistent/program"], backend=backend)


async def test_run_process_checkpoints(backend: tx.ExecBackend) -> None:
    recorder = CheckpointRecorder(tx, "running")
    with trio.fail_after(TIMEOUT):
        await _run_processes(recorder, backend)
    recorder.check({"run_process"})


async def test_run_process_checkpoints_when_failed(breakable_opener: BreakableOpener) -> None:
    recorder = CheckpointRecorder(tx, "failed")
    async with breakable_opener() as (backend, break_connection):
        async with backend.open_process(RUNNING) as proc:
            await _first_output(proc)
            break_connection()
            await wait_failed(proc)
        with trio.fail_after(TIMEOUT):
            await _run_processes(recorder, backend)
    recorder.check({"run_process"})
