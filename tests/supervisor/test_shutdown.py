"""Stopping: graceful stops, and cancellation that stops everything and restarts nothing."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import trio
import trio.testing

import trio_exec._supervisor as sv
from trio_exec import OutputStream

from .helpers import (
    TIMEOUT,
    first_int_line,
    group_alive,
    has_int_line,
    has_line,
    python,
    sh,
    spec,
    texts,
)

State = sv.ChildState

GROUP = "echo $$; sleep 60 & sleep 60 & "
"""Start of a script: print the process group, and leave two grandchildren in it."""


async def test_cancel_during_backoff_stops_everything_and_restarts_nothing() -> None:
    child = spec("crashy", sh(GROUP + "exit 1"), backoff_initial=30.0, backoff_max=30.0)
    with trio.fail_after(TIMEOUT):
        async with sv.open_supervisor() as supervisor:
            handle = await supervisor.start(child)
            status = await handle.wait_state(State.BACKOFF)
            pgid = first_int_line(status)
            before = trio.current_time()
        # Leaving the block cancelled the supervisor; it ended the 30 s sleep at once.
        assert trio.current_time() - before < 10
    final = handle.status()
    assert final.state is State.STOPPED
    assert final.reason == "the supervisor shut down"
    assert final.starts == 1
    assert not group_alive(pgid)  # the grandchildren went with the crashed run


async def test_cancel_while_starting_leaves_nothing_alive() -> None:
    child = spec("slowstart", sh(GROUP + "exec sleep 60"), ready=sv.ReadyOnOutput(pattern="never"))
    with trio.fail_after(TIMEOUT):
        async with sv.open_supervisor() as supervisor:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(supervisor.start, child)
                await trio.testing.wait_all_tasks_blocked()
                handle = supervisor.child("slowstart")
                status = await handle.wait_until(has_int_line)
                assert status.state is State.STARTING
                pgid = first_int_line(status)
                assert group_alive(pgid)
                nursery.cancel_scope.cancel()  # cancels start(): the child is stopped
            final = await handle.wait_until(lambda s: s.finished)
            assert final.state is State.STOPPED
            assert final.reason == "stopped"
            assert not group_alive(pgid)
    assert final.starts == 1
    assert final.runs[0].stopped
    assert final.runs[0].signal == signal.SIGTERM


async def test_supervisor_cancel_while_starting() -> None:
    child = spec(
        "starting", sh(GROUP + "exec sleep 60"), ready=sv.ReadyOnCheck(check=lambda: False)
    )
    supervisor = sv.Supervisor()
    errors: list[sv.ChildError] = []

    async def starter() -> None:
        try:
            await supervisor.start(child)
        except sv.ChildError as exc:
            errors.append(exc)

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as outer, trio.open_nursery() as inner:
            await inner.start(supervisor.run)
            outer.start_soon(starter)
            await trio.testing.wait_all_tasks_blocked()
            handle = supervisor.child("starting")
            status = await handle.wait_until(has_int_line)
            assert status.state is State.STARTING
            inner.cancel_scope.cancel()
    final = handle.status()
    assert final.state is State.STOPPED
    assert final.reason == "the supervisor shut down"
    assert final.starts == 1
    assert not group_alive(first_int_line(final))
    [error] = errors
    assert str(error) == "child 'starting' did not start: STOPPED: the supervisor shut down"
    assert error.status == final


async def test_crash_during_shutdown_is_not_restarted() -> None:
    # TERM makes the child "crash" (exit 1): under "always" with no backoff, only the
    # shutdown keeps it from being restarted.
    child = spec(
        "crash-on-term",
        sh('trap "echo crashing; exit 1" TERM; echo $$; while :; do sleep 0.05; done'),
        restart="always",
        backoff_initial=0.0,
        backoff_max=0.0,
    )
    with trio.fail_after(TIMEOUT):
        async with sv.open_supervisor() as supervisor:
            handle = await supervisor.start(child)
            status = await handle.wait_until(has_int_line)
    final = handle.status()
    assert final.state is State.STOPPED
    assert final.starts == 1
    assert final.runs[0].exit_code == 1
    assert final.runs[0].stopped
    assert "crashing" in texts(final)
    assert not group_alive(first_int_line(status))


async def test_children_are_stopped_concurrently_on_shutdown() -> None:
    stubborn = sh('trap "" TERM; echo $$; while :; do sleep 0.05; done')
    with trio.fail_after(TIMEOUT):
        async with sv.open_supervisor() as supervisor:
            handles = [await supervisor.start(spec(f"s{i}", stubborn, grace=1.0)) for i in range(3)]
            groups = [first_int_line(await h.wait_until(has_int_line)) for h in handles]
            before = trio.current_time()
        elapsed = trio.current_time() - before
    assert 1.0 <= elapsed < 3.0  # one grace, not three
    for handle, pgid in zip(handles, groups, strict=True):
        run = handle.status().runs[-1]
        assert run.signal == signal.SIGKILL
        assert not group_alive(pgid)


async def test_graceful_stop_runs_the_term_trap() -> None:
    child = spec(
        "trapper",
        sh('trap "echo trapped; exit 0" TERM; echo $$; while :; do sleep 0.05; done'),
        grace=10.0,
    )
    with trio.fail_after(TIMEOUT):
        async with sv.open_supervisor() as supervisor:
            handle = await supervisor.start(child)
            status = await handle.wait_until(has_int_line)
            final = await supervisor.stop("trapper")
            assert supervisor.status("trapper") == final
    assert final.state is State.STOPPED
    assert final.reason == "stopped"
    stdout = [line.text for line in final.lines if line.stream is OutputStream.STDOUT]
    assert stdout[-1] == "trapped"  # (sh may report the killed sleep on stderr)
    run = final.runs[0]
    assert (run.exit_code, run.signal, run.stopped) == (0, None, True)
    assert not group_alive(first_int_line(status))


async def test_stop_kills_a_child_that_ignores_term_after_the_grace() -> None:
    child = spec("stubborn", sh('trap "" TERM; echo $$; while :; do sleep 0.05; done'), grace=10.0)
    with trio.fail_after(TIMEOUT):
        async with sv.open_supervisor() as supervisor:
            handle = await supervisor.start(child)
            status = await handle.wait_until(has_int_line)
            before = trio.current_time()
            final = await handle.stop(grace=0.3)  # overrides the spec's 10 s
            elapsed = trio.current_time() - before
    assert 0.3 <= elapsed < 5
    run = final.runs[0]
    assert (run.exit_code, run.signal) == (137, signal.SIGKILL)
    assert not group_alive(first_int_line(status))


async def test_stop_during_backoff_prevents_the_restart() -> None:
    child = spec("b", sh("exit 2"), backoff_initial=30.0, backoff_max=30.0)
    with trio.fail_after(TIMEOUT):
        async with sv.open_supervisor() as supervisor:
            handle = await supervisor.start(child)
            await handle.wait_state(State.BACKOFF)
            final = await handle.stop()
            assert final.state is State.STOPPED
            assert final.starts == 1
            assert final.next_start is None
            # Stopping again, or stopping a finished child, changes nothing.
            assert (await handle.stop()) == final


async def test_stop_of_an_exited_child_keeps_its_state() -> None:
    child = spec("done", sh("exit 0"))
    with trio.fail_after(TIMEOUT):
        async with sv.open_supervisor() as supervisor:
            handle = await supervisor.start(child)
            await handle.wait_state(State.EXITED)
            assert (await handle.stop()).state is State.EXITED


async def test_stopping_state_is_reported(tmp_path: Path) -> None:
    child = spec(
        "slowstop",
        sh('trap "touch stopping; sleep 0.3; exit 0" TERM; echo $$; while :; do sleep 0.05; done'),
        cwd=str(tmp_path),
    )
    seen: list[sv.ChildState] = []
    with trio.fail_after(TIMEOUT):
        async with sv.open_supervisor() as supervisor:
            handle = await supervisor.start(child)
            await handle.wait_until(has_int_line)
            async with trio.open_nursery() as nursery:

                async def watch() -> None:
                    status = await handle.wait_state(State.STOPPING)
                    seen.append(status.state)

                nursery.start_soon(watch)
                await trio.testing.wait_all_tasks_blocked()
                await handle.stop()
    assert seen == [State.STOPPING]


async def test_a_process_id_is_reported_while_running() -> None:
    child = spec("pid", python("import time; print('up', flush=True); time.sleep(30)"))
    with trio.fail_after(TIMEOUT):
        async with sv.open_supervisor() as supervisor:
            handle = await supervisor.start(child)
            status = await handle.wait_until(has_line("up"))
            assert status.process_id is not None
            assert status.process_id == status.runs[0].process_id
            final = await handle.stop()
    assert final.process_id is None


@pytest.mark.parametrize("sig", [signal.SIGUSR1])
async def test_signal_reaches_the_child(sig: signal.Signals) -> None:
    child = spec(
        "usr1", sh(f'trap "echo got {sig.name}" USR1; echo up; while :; do sleep 0.05; done')
    )
    with trio.fail_after(TIMEOUT):
        async with sv.open_supervisor() as supervisor:
            handle = await supervisor.start(child)
            await handle.wait_until(has_line("up"))
            assert await handle.signal(sig)
            await handle.wait_until(has_line(f"got {sig.name}"))
            await handle.stop()
            assert not await handle.signal(sig)  # no process any more
