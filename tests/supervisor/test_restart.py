"""Restart policies, backoff, the restart limit and the history of runs."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import trio

import trio_exec._supervisor as sv

from .helpers import TIMEOUT, has_line, sh, spec, texts

State = sv.ChildState


async def test_crashing_child_backs_off_then_fails_with_its_history() -> None:
    jitter = 0.2
    child = spec(
        "crash",
        sh("echo run; exit 3"),
        max_restarts=3,
        backoff_initial=0.05,
        backoff_factor=2.0,
        backoff_max=0.15,
        backoff_jitter=jitter,
    )
    with trio.fail_after(TIMEOUT):
        async with sv.open_supervisor() as supervisor:
            handle = await supervisor.start(child)
            status = await handle.wait_state(State.FAILED)
    assert status.starts == 4
    assert status.restarts == 3
    assert status.reason is not None
    assert status.reason == "exited with code 3; 3 restarts within 60 s"
    assert [run.run for run in status.runs] == [1, 2, 3, 4]
    assert [run.exit_code for run in status.runs] == [3, 3, 3, 3]
    assert all(run.signal is None and run.failure is None for run in status.runs)
    assert all(run.ready and not run.stopped for run in status.runs)
    delays = [run.backoff for run in status.runs]
    assert delays[-1] is None  # no restart after the last one
    for delay, base in zip(delays[:-1], [0.05, 0.10, 0.15], strict=True):
        assert delay is not None
        assert base * (1 - jitter) <= delay <= base * (1 + jitter)
    for before, after in zip(status.runs, status.runs[1:], strict=False):
        assert before.ended_at is not None
        assert before.backoff is not None
        assert after.started_at >= before.ended_at + before.backoff - 1e-9
    assert texts(status) == ["run"] * 4
    assert [line.run for line in status.lines] == [1, 2, 3, 4]
    assert status.process_id is None
    assert status.next_start is None
    assert supervisor.status("crash") == status


async def test_backoff_is_observable_while_it_waits() -> None:
    child = spec("slow", sh("exit 1"), backoff_initial=10.0, backoff_max=10.0, backoff_jitter=0)
    with trio.fail_after(TIMEOUT):
        async with sv.open_supervisor() as supervisor:
            handle = await supervisor.start(child)
            status = await handle.wait_state(State.BACKOFF)
            assert status.next_start is not None
            ended = status.runs[-1].ended_at
            assert ended is not None
            assert status.next_start == pytest.approx(ended + 10.0, abs=0.5)
            assert status.runs[-1].backoff == 10.0
            final = await handle.stop()
    assert final.state is State.STOPPED
    assert final.starts == 1


@pytest.mark.parametrize(
    ("policy", "code", "final", "starts"),
    [
        ("on-failure", 0, State.EXITED, 1),
        ("on-failure", 1, State.FAILED, 3),
        ("always", 0, State.FAILED, 3),
        ("always", 1, State.FAILED, 3),
        ("never", 0, State.EXITED, 1),
        ("never", 1, State.EXITED, 1),
    ],
)
async def test_policies(policy: str, code: int, final: sv.ChildState, starts: int) -> None:
    child = spec("p", sh(f"echo bye; exit {code}"), restart=policy, max_restarts=2)
    with trio.fail_after(TIMEOUT):
        async with sv.open_supervisor() as supervisor:
            handle = await supervisor.start(child)
            status = await handle.wait_until(lambda s: s.finished)
    assert status.state is final
    assert status.starts == starts
    assert [run.exit_code for run in status.runs] == [code] * starts
    if final is State.EXITED:
        assert status.reason == f"exited with code {code}"


async def test_success_codes_are_not_failures() -> None:
    child = spec("ok3", sh("exit 3"), success_codes={0, 3})
    with trio.fail_after(TIMEOUT):
        async with sv.open_supervisor() as supervisor:
            handle = await supervisor.start(child)
            status = await handle.wait_until(lambda s: s.finished)
    assert status.state is State.EXITED
    assert status.starts == 1


async def test_a_signal_exit_is_recorded_and_is_a_failure() -> None:
    child = spec("killed", sh("kill -KILL $$"), max_restarts=1)
    with trio.fail_after(TIMEOUT):
        async with sv.open_supervisor() as supervisor:
            handle = await supervisor.start(child)
            status = await handle.wait_state(State.FAILED)
    assert [(run.exit_code, run.signal) for run in status.runs] == [(137, signal.SIGKILL)] * 2
    assert status.reason == "killed by SIGKILL; 1 restarts within 60 s"


async def test_zero_restarts_allowed() -> None:
    child = spec("once", sh("exit 1"), max_restarts=0)
    with trio.fail_after(TIMEOUT):
        async with sv.open_supervisor() as supervisor:
            handle = await supervisor.start(child)
            status = await handle.wait_state(State.FAILED)
    assert status.starts == 1
    assert status.runs[0].backoff is None


async def test_restarts_older_than_the_window_do_not_count() -> None:
    # Each run lasts longer than the window: the limit (1) is never reached, and the
    # backoff exponent starts again each time.
    child = spec(
        "window",
        sh("sleep 0.3; exit 1"),
        max_restarts=1,
        restart_window=0.2,
        backoff_initial=0.01,
        backoff_jitter=0,
    )
    with trio.fail_after(TIMEOUT):
        async with sv.open_supervisor() as supervisor:
            handle = await supervisor.start(child)
            status = await handle.wait_until(lambda s: s.starts >= 4)
            assert status.state is State.STARTING
    assert [run.backoff for run in status.runs[:3]] == [0.01, 0.01, 0.01]


async def test_spawn_failure_is_a_failed_start() -> None:
    child = spec("missing", ["/nonexistent/program"], max_restarts=1)
    with trio.fail_after(TIMEOUT):
        async with sv.open_supervisor() as supervisor:
            with pytest.raises(sv.ChildError, match="did not start: FAILED") as info:
                await supervisor.start(child)
    status = info.value.status
    assert status.state is State.FAILED
    assert status.starts == 2
    for run in status.runs:
        assert run.process_id is None
        assert run.failure is not None
        assert run.failure.startswith("could not start: SpawnFileNotFoundError:")
        assert not run.ready


async def test_restart_after_running_keeps_the_output_of_each_run() -> None:
    child = spec("runs", sh("echo up; exit 1"), max_restarts=2)
    with trio.fail_after(TIMEOUT):
        async with sv.open_supervisor() as supervisor:
            handle = await supervisor.start(child)
            status = await handle.wait_until(lambda s: s.finished)
    assert [(line.run, line.text) for line in status.lines] == [(1, "up"), (2, "up"), (3, "up")]


async def test_start_returns_at_the_first_ready_run(tmp_path: Path) -> None:
    # The first two starts are never ready; start() waits through the restarts.
    script = (
        "n=$(cat count 2>/dev/null || echo 0); echo $((n + 1)) > count; "
        '[ "$n" -ge 2 ] && echo ready; sleep 30'
    )
    child = spec(
        "third",
        sh(script),
        cwd=str(tmp_path),
        ready=sv.ReadyOnOutput(pattern="^ready$"),
        ready_timeout=0.5,
        grace=0.5,
    )
    with trio.fail_after(TIMEOUT):
        async with sv.open_supervisor() as supervisor:
            handle = await supervisor.start(child)
            status = handle.status()
            assert status.state is State.RUNNING
            assert status.starts == 3
            assert [run.ready for run in status.runs] == [False, False, True]
            assert status.runs[0].failure == "not ready within 0.5 s"
            assert status.runs[0].signal == signal.SIGTERM
            assert has_line("ready")(status)
