"""Status snapshots, kept output, waits, names and the supervisor's own life."""

from __future__ import annotations

import pytest
import trio

import trio_exec._supervisor as sv
from trio_exec import OutputStream
from trio_exec._remote import open_remote_backend
from trio_exec._server import ExecServer
from trio_exec._transport import memory_transport_pair

from .helpers import TIMEOUT, has_line, python, sh, spec, texts

State = sv.ChildState


async def test_last_n_lines_are_kept() -> None:
    child = spec("chatty", sh("for i in $(seq 1 50); do echo line $i; done"), keep_lines=5)
    with trio.fail_after(TIMEOUT):
        async with sv.open_supervisor() as supervisor:
            handle = await supervisor.start(child)
            status = await handle.wait_state(State.EXITED)
    assert texts(status) == [f"line {i}" for i in range(46, 51)]
    assert status.text() == "\n".join(f"line {i}" for i in range(46, 51))


async def test_default_keeps_100_lines() -> None:
    child = spec("many", python("for i in range(250): print(i)"))
    with trio.fail_after(TIMEOUT):
        async with sv.open_supervisor() as supervisor:
            handle = await supervisor.start(child)
            status = await handle.wait_state(State.EXITED)
    assert texts(status) == [str(i) for i in range(150, 250)]


async def test_lines_are_tagged_with_stream_and_run_and_flushed_at_exit() -> None:
    child = spec(
        "mixed",
        sh("echo out; echo err >&2; printf 'no newline'; exit 1"),
        max_restarts=1,
    )
    with trio.fail_after(TIMEOUT):
        async with sv.open_supervisor() as supervisor:
            handle = await supervisor.start(child)
            status = await handle.wait_state(State.FAILED)
    by_run = [
        [(line.stream, line.text) for line in status.lines if line.run == run] for run in (1, 2)
    ]
    for lines in by_run:
        assert sorted(lines, key=lambda item: item[1]) == [
            (OutputStream.STDERR, "err"),
            (OutputStream.STDOUT, "no newline"),
            (OutputStream.STDOUT, "out"),
        ]


async def test_long_lines_are_kept_in_pieces_and_bad_utf8_replaced() -> None:
    size = sv.OUTPUT_LINE_BYTES * 2 + 10
    child = spec(
        "long",
        python(f"import sys; sys.stdout.buffer.write(b'x' * {size} + b'\\n\\xff\\r\\n')"),
    )
    with trio.fail_after(TIMEOUT):
        async with sv.open_supervisor() as supervisor:
            handle = await supervisor.start(child)
            status = await handle.wait_state(State.EXITED)
    assert [len(text) for text in texts(status)] == [
        sv.OUTPUT_LINE_BYTES,
        sv.OUTPUT_LINE_BYTES,
        10,
        1,
    ]
    assert texts(status)[-1] == "\ufffd"


async def test_a_line_cut_at_the_limit_does_not_make_an_empty_line() -> None:
    code = (
        "import sys, time; out = sys.stdout.buffer; "
        f"out.write(b'x' * {sv.OUTPUT_LINE_BYTES}); out.flush(); time.sleep(0.1); "
        "out.write(b'\\nnext\\n')"
    )
    with trio.fail_after(TIMEOUT):
        async with sv.open_supervisor() as supervisor:
            handle = await supervisor.start(spec("cut", python(code)))
            status = await handle.wait_state(State.EXITED)
    assert texts(status) == ["x" * sv.OUTPUT_LINE_BYTES, "next"]


async def test_a_crlf_line_of_exactly_the_limit_is_one_line() -> None:
    code = f"import sys; sys.stdout.buffer.write(b'x' * {sv.OUTPUT_LINE_BYTES} + b'\\r\\nnext\\n')"
    with trio.fail_after(TIMEOUT):
        async with sv.open_supervisor() as supervisor:
            handle = await supervisor.start(spec("crlf", python(code)))
            status = await handle.wait_state(State.EXITED)
    assert texts(status) == ["x" * sv.OUTPUT_LINE_BYTES, "next"]


async def test_keep_runs_bounds_the_history() -> None:
    child = spec("hist", sh("exit 1"), keep_runs=2, max_restarts=4, backoff_initial=0.0)
    with trio.fail_after(TIMEOUT):
        async with sv.open_supervisor() as supervisor:
            handle = await supervisor.start(child)
            status = await handle.wait_state(State.FAILED)
    assert status.starts == 5
    assert [run.run for run in status.runs] == [4, 5]
    assert status.last_run is not None
    assert status.last_run.run == 5


async def test_keep_lines_zero_keeps_none_but_readiness_still_matches() -> None:
    child = spec(
        "quiet",
        sh("echo ready; exec sleep 30"),
        keep_lines=0,
        ready=sv.ReadyOnOutput(pattern="ready"),
    )
    with trio.fail_after(TIMEOUT):
        async with sv.open_supervisor() as supervisor:
            handle = await supervisor.start(child)
            assert handle.status().lines == ()


async def test_wait_until_fails_once_the_condition_cannot_hold() -> None:
    child = spec("short", sh("exit 0"))
    with trio.fail_after(TIMEOUT):
        async with sv.open_supervisor() as supervisor:
            handle = await supervisor.start(child)
            with pytest.raises(sv.ChildError, match="is EXITED: exited with code 0") as info:
                await handle.wait_state(State.BACKOFF)
            assert info.value.status.state is State.EXITED
            # Already finished: it fails at once.
            with pytest.raises(sv.ChildError):
                await handle.wait_state(State.RUNNING)
            # A condition that holds is returned at once, even when finished.
            assert (await handle.wait_state(State.EXITED)).state is State.EXITED
            with pytest.raises(ValueError, match="at least one state"):
                await handle.wait_state()


async def test_wait_until_raises_the_predicates_error() -> None:
    child = spec(
        "p", python("import time; time.sleep(0.1); print('x', flush=True); time.sleep(30)")
    )

    def predicate(status: sv.ChildStatus) -> bool:
        if status.lines:
            raise KeyError("boom")
        return False

    with trio.fail_after(TIMEOUT):
        async with sv.open_supervisor() as supervisor:
            handle = await supervisor.start(child)
            with pytest.raises(KeyError, match="boom"):
                await handle.wait_until(predicate)
            # The supervision goes on.
            assert handle.state is State.RUNNING


async def test_statuses_and_names() -> None:
    with trio.fail_after(TIMEOUT):
        async with sv.open_supervisor() as supervisor:
            a = await supervisor.start(spec("a", sh("exec sleep 30")))
            b = await supervisor.start(spec("b", sh("exit 0")))
            await b.wait_state(State.EXITED)
            statuses = supervisor.statuses()
            assert list(statuses) == ["a", "b"]
            assert statuses["a"].state is State.RUNNING
            assert statuses["b"].state is State.EXITED
            assert a.name == "a"
            assert "RUNNING" in repr(a)
            assert "running with 2 children" in repr(supervisor)
            with pytest.raises(ValueError, match="'a' is already supervised"):
                await supervisor.start(spec("a", sh("exit 0")))
            with pytest.raises(KeyError, match="no child named 'c'"):
                supervisor.status("c")
            with pytest.raises(KeyError):
                await supervisor.stop("c")
            with pytest.raises(TypeError, match="must be a ChildSpec"):
                await supervisor.start("a")  # type: ignore[arg-type]
            # A finished child's name can be reused; the old handle keeps its status.
            b2 = await supervisor.start(spec("b", sh("echo again; exec sleep 30")))
            assert b2.state is State.RUNNING
            assert b.state is State.EXITED
            assert supervisor.status("b").state is State.RUNNING
            await b2.wait_until(has_line("again"))
    final = supervisor.statuses()
    assert {name: status.state for name, status in final.items()} == {
        "a": State.STOPPED,
        "b": State.STOPPED,
    }


async def test_supervisor_life_cycle_errors() -> None:
    supervisor = sv.Supervisor()
    assert "not running" in repr(supervisor)
    with pytest.raises(RuntimeError, match="not running"):
        await supervisor.start(spec("x", sh("exit 0")))
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            await nursery.start(supervisor.run)
            with pytest.raises(RuntimeError, match="only once"):
                await supervisor.run()
            nursery.cancel_scope.cancel()
    with pytest.raises(trio.ClosedResourceError):
        await supervisor.start(spec("x", sh("exit 0")))
    assert "closed" in repr(supervisor)


async def test_open_supervisor_propagates_the_body_error_unwrapped() -> None:
    with trio.fail_after(TIMEOUT):
        handles: list[sv.ChildHandle] = []

        async def body() -> None:
            async with sv.open_supervisor() as supervisor:
                handles.append(await supervisor.start(spec("z", sh("exec sleep 30"))))
                raise ZeroDivisionError

        with pytest.raises(ZeroDivisionError):
            await body()
    assert handles[0].state is State.STOPPED


async def test_stop_rejects_a_bad_grace() -> None:
    with trio.fail_after(TIMEOUT):
        async with sv.open_supervisor() as supervisor:
            handle = await supervisor.start(spec("g", sh("exec sleep 30")))
            with pytest.raises(ValueError, match="grace must be"):
                await handle.stop(grace=-1)
            assert handle.state is State.RUNNING


async def test_remote_backend() -> None:
    """The supervisor only uses the backend interface: it works over our exec server."""
    client_end, server_end = memory_transport_pair()
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ExecServer().serve_connection, server_end)
            async with (
                open_remote_backend(client_end) as backend,
                sv.open_supervisor(backend) as supervisor,
            ):
                assert supervisor.backend is backend
                crash = await supervisor.start(
                    spec("crash", sh("echo boom; exit 4"), max_restarts=1)
                )
                server = await supervisor.start(
                    spec(
                        "server",
                        sh("echo starting; sleep 0.1; echo ready; exec sleep 30"),
                        ready=sv.ReadyOnOutput(pattern="^ready$"),
                    )
                )
                assert texts(server.status()) == ["starting", "ready"]
                failed = await crash.wait_state(State.FAILED)
                assert [run.exit_code for run in failed.runs] == [4, 4]
                assert texts(failed) == ["boom", "boom"]
                stopped = await server.stop()
                assert stopped.state is State.STOPPED
                assert stopped.runs[0].exit_code is not None
            nursery.cancel_scope.cancel()


async def test_a_zero_second_backoff_is_still_observed() -> None:
    child = spec("fast", sh("exit 1"), backoff_initial=0.0, backoff_max=0.0, max_restarts=2)
    seen: list[sv.ChildStatus] = []

    async def starter(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await supervisor.start(child)

    with trio.fail_after(TIMEOUT):
        async with sv.open_supervisor() as supervisor, trio.open_nursery() as nursery:
            await nursery.start(starter)  # the child is registered, not spawned yet
            handle = supervisor.child("fast")
            seen.append(await handle.wait_state(State.BACKOFF))
            seen.append(
                await handle.wait_until(lambda s: s.state is State.BACKOFF and s.starts == 2)
            )
            seen.append(await handle.wait_state(State.FAILED))
    assert [status.state for status in seen] == [State.BACKOFF, State.BACKOFF, State.FAILED]
    assert [status.runs[-1].backoff for status in seen] == [0.0, 0.0, None]
