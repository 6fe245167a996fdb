"""trio's checkpoint rule for the public async names that are not a backend's session.

The session classes (every backend's process, its event subscriptions, ProcessStream,
LineReader) and ``run_process`` are checked on every backend in
``tests/conformance/test_checkpoints.py``; the supervisor, the server entry points and the
inventory of every public async name are checked here.
"""

from __future__ import annotations

import inspect
import signal
import socket
import subprocess
import sys
from typing import Final

import trio

import trio_exec as tx
from trio_exec._log import EventSubscription
from trio_exec._transport import memory_transport_pair

from ..checkpoints import BLOCK, CheckpointRecorder, check_all, public_coroutine_functions

TIMEOUT: Final = 30.0
"""Bound on any single wait in a test; a hang fails the test instead of the run."""

CONFORMANCE: Final = "tests/conformance/test_checkpoints.py"
HERE: Final = "tests/contract/test_checkpoints.py"

CHECKED_CLASSES: Final[dict[type, str]] = {
    tx.ExecProcess: CONFORMANCE,
    tx.LocalProcess: CONFORMANCE,
    tx.RemoteProcess: CONFORMANCE,
    EventSubscription: CONFORMANCE,
    tx.ProcessStream: CONFORMANCE,
    tx.LineReader: CONFORMANCE,
    tx.Supervisor: HERE,
    tx.ChildHandle: HERE,
    tx.ExecServer: HERE,
    tx.LocalBackend: HERE,
}
"""Every class of the public API with public async methods, and where they are checked."""

HANDED_OUT: Final = (EventSubscription,)
"""Classes not exported by name whose instances the API hands out (``proc.events``)."""

CHECKED_FUNCTIONS: Final[dict[str, str]] = {
    "run_process": CONFORMANCE,
    "serve_websocket": HERE,
    "serve_stdio": HERE,
}
"""Every public async function of the package, and where it is checked."""

LONG_RUNNING: Final = ("sh", "-c", 'trap "" USR1; while :; do sleep 0.1; done')


def test_every_public_async_name_is_checked() -> None:
    """A new public async method or function fails here until a checkpoint test calls
    it (each test then compares the names it called with the class's, by introspection)."""
    exported = {getattr(tx, name) for name in tx.__all__}
    classes = {
        obj
        for obj in (*exported, *HANDED_OUT)
        if inspect.isclass(obj) and public_coroutine_functions(obj)
    }
    assert classes == set(CHECKED_CLASSES)
    assert public_coroutine_functions(tx, tx.__all__) == set(CHECKED_FUNCTIONS)
    import trio_exec.testing

    assert not public_coroutine_functions(trio_exec.testing, trio_exec.testing.__all__)


def _fails(status: tx.ChildStatus) -> bool:
    raise RuntimeError("a predicate that fails")


async def _exercise_handle(recorder: CheckpointRecorder, final: tx.ChildState) -> None:
    """Every :class:`ChildHandle` method, for a child that is (or ends) in ``final``."""
    await recorder.call("wait_until", lambda status: True)
    await recorder.call("wait_until", lambda status: False, bound=BLOCK)
    await recorder.call("wait_until", _fails)
    await recorder.call("wait_state", tx.ChildState.RUNNING, final, bound=BLOCK)
    await recorder.call("signal", signal.SIGUSR1)
    await recorder.call("stop", 0.0)
    await recorder.call("stop")
    await recorder.call("wait_state", final)


async def test_supervisor_methods_checkpoint() -> None:
    """Supervisor and ChildHandle: not running, running (a child running, one exited,
    one that failed to start), and shut down."""
    idle = CheckpointRecorder(tx.Supervisor(), "running until cancelled")
    await idle.call("run", bound=BLOCK)
    await idle.call("run")  # only once
    await idle.call("start", tx.ChildSpec(name="late", argv=LONG_RUNNING))  # shut down
    await idle.call("stop", "late")  # unknown

    supervisor = tx.Supervisor()
    sup = CheckpointRecorder(supervisor, "not running")
    await sup.call("start", tx.ChildSpec(name="early", argv=LONG_RUNNING))
    handles: list[CheckpointRecorder] = []
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            await nursery.start(supervisor.run)
            sup.state = "running"
            spec = tx.ChildSpec(name="server", argv=LONG_RUNNING, grace=BLOCK)
            running: tx.ChildHandle = (await sup.call("start", spec)).unwrap()
            await sup.call("start", spec)  # the name is taken
            exits = tx.ChildSpec(name="exits", argv=["true"], restart="never")
            exited: tx.ChildHandle = (await sup.call("start", exits)).unwrap()
            await exited.wait_state(tx.ChildState.EXITED)
            fails = tx.ChildSpec(name="fails", argv=["/nonexistent/program"], restart="never")
            await sup.call("start", fails)  # ChildError
            failed = supervisor.child("fails")
            for handle, state, final in (
                (exited, "exited", tx.ChildState.EXITED),
                (failed, "failed", tx.ChildState.FAILED),
                (running, "running", tx.ChildState.STOPPED),
            ):
                recorder = CheckpointRecorder(handle, state)
                await _exercise_handle(recorder, final)
                handles.append(recorder)
            await sup.call("stop", "exits")  # finished: returns at once
            await sup.call("stop", "nobody")
            await sup.call("run")  # only once
            nursery.cancel_scope.cancel()
    sup.state = "shut down"
    await sup.call("start", spec)
    await sup.call("stop", "server")
    await sup.call("run")
    closed = CheckpointRecorder(running, "supervisor shut down")
    await _exercise_handle(closed, tx.ChildState.STOPPED)
    check_all([idle, sup, *handles, closed])


async def test_serve_connection_checkpoints() -> None:
    """A peer that is already gone, and one that stays silent until cancelled."""
    server = tx.ExecServer()
    recorder = CheckpointRecorder(server, "peer gone")
    client, ours = memory_transport_pair()
    await client.aclose()
    with trio.fail_after(TIMEOUT):
        await recorder.call("serve_connection", ours)
    recorder.state = "silent peer"
    client, ours = memory_transport_pair()
    with trio.fail_after(TIMEOUT):
        await recorder.call("serve_connection", ours, bound=BLOCK)
    await client.aclose()
    recorder.state = "stopping with a live session"
    client, ours = memory_transport_pair()
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.serve_connection, ours)
            await client.send('{"id": 1, "method": "initialize", "params": {"clientName": "t"}}')
            assert '"sessionId"' in await client.receive()
            await recorder.call("aclose")
    await client.aclose()
    recorder.state = "stopped"
    with trio.fail_after(TIMEOUT):
        await recorder.call("aclose")
        await recorder.call("serve_connection", memory_transport_pair()[1])
    recorder.check()


async def test_local_backend_methods_checkpoint() -> None:
    """Without a keeper, with a keeper started by a spawn, and closed."""
    plain = CheckpointRecorder(tx.LocalBackend(), "no keeper")
    await plain.call("aclose")
    backend = tx.LocalBackend(kill_orphans=True)
    kept = CheckpointRecorder(backend, "keeper running")
    with trio.fail_after(TIMEOUT):
        await tx.run_process(["true"], backend=backend)
        await kept.call("aclose")
        kept.state = "closed"
        await kept.call("aclose")
    check_all([plain, kept])


async def test_serve_websocket_checkpoints() -> None:
    """Serving until cancelled, and failing to bind a port in use."""
    recorder = CheckpointRecorder(tx, "serving")
    with trio.fail_after(TIMEOUT):
        await recorder.call("serve_websocket", "127.0.0.1", 0, bound=BLOCK)
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            recorder.state = "port in use"
            outcome = await recorder.call("serve_websocket", "127.0.0.1", taken.getsockname()[1])
    assert isinstance(outcome.error, OSError), outcome
    assert not recorder.failures, "\n".join(recorder.failures)
    assert recorder.called == {"serve_websocket"}


SERVE_STDIO_CHECKED: Final = """
import sys, trio, trio.testing
from trio_exec import serve_stdio

async def main():
    with trio.testing.assert_checkpoints():
        await serve_stdio()

trio.run(main)
"""


async def test_serve_stdio_checkpoints() -> None:
    """In a child interpreter (it serves its own stdin / stdout): end of file at once, and
    end of file after a session answered ``initialize``."""
    argv = [sys.executable, "-c", SERVE_STDIO_CHECKED]
    with trio.fail_after(TIMEOUT):
        result = await trio.run_process(argv, stdin=b"", capture_stderr=True, check=False)
        assert result.returncode == 0, result.stderr.decode(errors="replace")

        process = await trio.lowlevel.open_process(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        try:
            assert process.stdin is not None
            assert process.stdout is not None
            await process.stdin.send_all(
                b'{"id": 1, "method": "initialize", "params": {"clientName": "t"}}\n'
            )
            answer = b""
            while not answer.endswith(b"\n"):
                data = await process.stdout.receive_some()
                assert data, "serve_stdio closed its stdout"
                answer += data
            assert b'"sessionId"' in answer
            await process.stdin.aclose()
            assert await process.wait() == 0
        finally:
            if process.returncode is None:
                process.kill()
                with trio.CancelScope(shield=True):
                    await process.wait()
