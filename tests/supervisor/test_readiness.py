"""Readiness gates ``started``: output patterns, TCP ports, predicates, timeouts."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

import trio_exec._supervisor as sv
from trio_exec import OutputStream

from .helpers import TIMEOUT, free_port, has_line, python, sh, spec, texts

State = sv.ChildState

GATED = 'echo begin; while [ ! -e gate ]; do sleep 0.01; done; echo "$1"; exec sleep 30'
"""A child that prints ``begin``, waits for the file ``gate``, then prints its argument."""


class Starter:
    """Calls :meth:`Supervisor.start` in a task and records when it returns."""

    def __init__(self, supervisor: sv.Supervisor, child: sv.ChildSpec) -> None:
        self.supervisor = supervisor
        self.child = child
        self.handle: sv.ChildHandle | None = None
        self.returned = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        # start() registers the child before its first checkpoint, so when
        # nursery.start returns, supervisor.child(name) exists.
        self.handle = await self.supervisor.start(self.child)
        self.returned.set()


async def test_output_pattern_gates_started(tmp_path: Path) -> None:
    child = spec(
        "ready-line",
        [*sh(GATED), "sh", "ready now"],
        cwd=str(tmp_path),
        ready=sv.ReadyOnOutput(pattern=r"^ready\b"),
    )
    with trio.fail_after(TIMEOUT):
        async with sv.open_supervisor() as supervisor, trio.open_nursery() as nursery:
            starter = Starter(supervisor, child)
            await nursery.start(starter.run)
            handle = supervisor.child("ready-line")
            status = await handle.wait_until(has_line("begin"))
            assert status.state is State.STARTING
            assert not starter.returned.is_set()
            assert supervisor.status("ready-line").state is State.STARTING
            (tmp_path / "gate").touch()
            running = await handle.wait_state(State.RUNNING)
            # At the moment it is reported started, the line is already there.
            assert texts(running) == ["begin", "ready now"]
            await starter.returned.wait()
            assert starter.handle is not None
            assert starter.handle.state is State.RUNNING
    run = running.runs[-1]
    assert run.ready_at is not None
    assert run.ready_at > run.started_at


async def test_output_pattern_on_selected_streams_only(tmp_path: Path) -> None:
    child = spec(
        "stderr-ready",
        sh("echo ready; while [ ! -e gate ]; do sleep 0.01; done; echo ready >&2; exec sleep 30"),
        cwd=str(tmp_path),
        ready=sv.ReadyOnOutput(pattern="ready", streams={OutputStream.STDERR}),
    )
    with trio.fail_after(TIMEOUT):
        async with sv.open_supervisor() as supervisor, trio.open_nursery() as nursery:
            starter = Starter(supervisor, child)
            await nursery.start(starter.run)
            handle = supervisor.child("stderr-ready")
            status = await handle.wait_until(has_line("ready"))
            assert status.state is State.STARTING  # the stdout line does not count
            assert status.lines[0].stream is OutputStream.STDOUT
            (tmp_path / "gate").touch()
            running = await handle.wait_state(State.RUNNING)
            assert running.lines[-1] == sv.OutputLine(
                run=1, stream=OutputStream.STDERR, text="ready"
            )
            await starter.returned.wait()


async def test_output_pattern_on_a_pty() -> None:
    child = spec(
        "pty",
        sh("echo 'pty ready'; exec sleep 30"),
        tty=True,
        ready=sv.ReadyOnOutput(pattern="^pty ready$"),
    )
    with trio.fail_after(TIMEOUT):
        async with sv.open_supervisor() as supervisor:
            handle = await supervisor.start(child)
            status = handle.status()
    assert status.lines[-1] == sv.OutputLine(run=1, stream=OutputStream.PTY, text="pty ready")


SERVER = """
import os, socket, sys, time
port = int(sys.argv[1])
print("begin", flush=True)
while not os.path.exists("gate"):
    time.sleep(0.01)
sock = socket.socket()
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", port))
sock.listen()
print("listening", flush=True)
while True:
    conn, _ = sock.accept()
    conn.close()
"""


async def test_tcp_port_gates_started(tmp_path: Path) -> None:
    port = free_port()
    child = spec(
        "server",
        [*python(SERVER), str(port)],
        cwd=str(tmp_path),
        ready=sv.ReadyOnPort(port=port, interval=0.02),
    )
    with trio.fail_after(TIMEOUT):
        async with sv.open_supervisor() as supervisor, trio.open_nursery() as nursery:
            starter = Starter(supervisor, child)
            await nursery.start(starter.run)
            handle = supervisor.child("server")
            status = await handle.wait_until(has_line("begin"))
            assert status.state is State.STARTING
            assert not starter.returned.is_set()
            (tmp_path / "gate").touch()
            await starter.returned.wait()
            assert handle.state is State.RUNNING
            # The port accepts connections now.
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            await stream.aclose()


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_callable_gates_started(kind: str) -> None:
    gate = trio.Event()
    calls = 0

    def check_sync() -> bool:
        nonlocal calls
        calls += 1
        return gate.is_set()

    async def check_async() -> bool:
        nonlocal calls
        calls += 1
        await gate.wait()
        return True

    check = check_sync if kind == "sync" else check_async
    child = spec(
        "pred",
        sh("echo begin; exec sleep 30"),
        ready=sv.ReadyOnCheck(check=check, interval=0.01),
    )
    with trio.fail_after(TIMEOUT):
        async with sv.open_supervisor() as supervisor, trio.open_nursery() as nursery:
            starter = Starter(supervisor, child)
            await nursery.start(starter.run)
            handle = supervisor.child("pred")
            status = await handle.wait_until(lambda s: has_line("begin")(s) and calls >= 1)
            assert status.state is State.STARTING
            assert not starter.returned.is_set()
            gate.set()
            await starter.returned.wait()
            assert handle.state is State.RUNNING


async def test_callable_oserror_means_not_yet() -> None:
    attempts = 0

    def check() -> bool:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise ConnectionRefusedError("not yet")
        return True

    child = spec("oserror", sh("exec sleep 30"), ready=sv.ReadyOnCheck(check=check, interval=0.01))
    with trio.fail_after(TIMEOUT):
        async with sv.open_supervisor() as supervisor:
            handle = await supervisor.start(child)
            assert handle.state is State.RUNNING
    assert attempts == 3


async def test_callable_error_fails_the_start() -> None:
    def check() -> bool:
        raise ValueError("broken check")

    child = spec(
        "bad-check", sh("exec sleep 30"), ready=sv.ReadyOnCheck(check=check), restart="never"
    )
    with trio.fail_after(TIMEOUT):
        async with sv.open_supervisor() as supervisor:
            with pytest.raises(sv.ChildError, match="broken check") as info:
                await supervisor.start(child)
    status = info.value.status
    assert status.state is State.FAILED
    assert status.runs[0].failure == "the readiness check raised ValueError: broken check"
    assert status.runs[0].exit_code == 143  # terminated after the failed start


async def test_readiness_timeout_fails_the_start_and_terminates_the_child() -> None:
    child = spec(
        "never-ready",
        sh("echo $$; exec sleep 30"),
        ready=sv.ReadyOnOutput(pattern="ready"),
        ready_timeout=0.3,
        restart="never",
    )
    with trio.fail_after(TIMEOUT):
        async with sv.open_supervisor() as supervisor:
            before = trio.current_time()
            with pytest.raises(
                sv.ChildError,
                match=r"did not start: FAILED: not ready within 0\.3 s; "
                r"the restart policy is 'never'",
            ) as info:
                await supervisor.start(child)
            assert trio.current_time() - before >= 0.3
    status = info.value.status
    run = status.runs[0]
    assert run.failure == "not ready within 0.3 s"
    assert run.ready_at is None
    assert (run.exit_code, run.signal) == (143, 15)
    assert not run.stopped


async def test_readiness_timeout_is_retried_under_the_policy() -> None:
    child = spec(
        "retry",
        sh("exec sleep 30"),
        ready=sv.ReadyOnCheck(check=lambda: False),
        ready_timeout=0.1,
        max_restarts=2,
    )
    with trio.fail_after(TIMEOUT):
        async with sv.open_supervisor() as supervisor:
            with pytest.raises(sv.ChildError, match="2 restarts within 60 s") as info:
                await supervisor.start(child)
    status = info.value.status
    assert status.starts == 3
    assert [run.failure for run in status.runs] == ["not ready within 0.1 s"] * 3


async def test_exit_before_ready_is_a_failed_start() -> None:
    child = spec(
        "quitter",
        sh("echo bye; exit 0"),
        ready=sv.ReadyOnOutput(pattern="ready"),
        restart="never",
    )
    with trio.fail_after(TIMEOUT):
        async with sv.open_supervisor() as supervisor:
            with pytest.raises(sv.ChildError, match="exited before it was ready") as info:
                await supervisor.start(child)
    status = info.value.status
    assert status.state is State.FAILED
    assert status.runs[0].exit_code == 0
    assert texts(status) == ["bye"]


async def test_ready_then_exit_is_an_ordinary_exit() -> None:
    child = spec(
        "brief",
        sh("echo ready; exit 0"),
        ready=sv.ReadyOnOutput(pattern="ready"),
        restart="on-failure",
    )
    with trio.fail_after(TIMEOUT):
        async with sv.open_supervisor() as supervisor:
            handle = await supervisor.start(child)
            status = await handle.wait_until(lambda s: s.finished)
    assert status.state is State.EXITED
    assert status.runs[0].ready
