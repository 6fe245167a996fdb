"""The spawn's trip to a worker thread (``trio_exec._spawn._in_worker_thread``): the
result or the exception comes back, the default thread limiter bounds it, and it is
not abandoned when cancelled."""

from __future__ import annotations

import threading

import pytest
import trio
import trio.testing

from trio_exec._spawn import _in_worker_thread

from ..conformance.helpers import TIMEOUT


async def test_the_result_and_the_exception_come_back_from_another_thread() -> None:
    here = threading.get_ident()
    assert await _in_worker_thread(threading.get_ident) != here

    def fail() -> None:
        raise OSError(2, "no such program")

    with pytest.raises(OSError, match="no such program"):
        await _in_worker_thread(fail)


async def test_a_caller_cancelled_already_never_starts_the_call() -> None:
    ran: list[bool] = []
    with trio.CancelScope() as scope:
        scope.cancel()
        await _in_worker_thread(lambda: ran.append(True))
    assert scope.cancelled_caught
    assert ran == []


async def test_a_started_call_runs_to_completion_when_cancelled() -> None:
    release = threading.Event()
    done: list[str] = []

    def blocking() -> str:
        release.wait(TIMEOUT)
        done.append("done")
        return "result"

    results: list[str] = []
    scope = trio.CancelScope()
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:

            async def call() -> None:
                with scope:
                    results.append(await _in_worker_thread(blocking))

            nursery.start_soon(call)
            await trio.testing.wait_all_tasks_blocked()
            scope.cancel()  # not abandoned: the call goes on
            await trio.sleep(0.01)
            assert done == []
            release.set()
    assert done == ["done"]
    assert results == ["result"]
    assert not scope.cancelled_caught  # nothing after the call was a checkpoint


async def test_the_default_thread_limiter_bounds_the_calls() -> None:
    limiter = trio.to_thread.current_default_thread_limiter()
    saved = limiter.total_tokens
    limiter.total_tokens = 1
    try:
        release = threading.Event()
        running: list[int] = []
        most = 0

        def blocking() -> None:
            nonlocal most
            running.append(1)
            most = max(most, len(running))
            release.wait(TIMEOUT)
            running.pop()

        with trio.fail_after(TIMEOUT):
            async with trio.open_nursery() as nursery:
                for _ in range(3):
                    nursery.start_soon(_in_worker_thread, blocking)
                await trio.testing.wait_all_tasks_blocked()
                assert limiter.borrowed_tokens == 1
                assert limiter.statistics().tasks_waiting == 2
                release.set()
        assert most == 1
        assert limiter.borrowed_tokens == 0
    finally:
        limiter.total_tokens = saved
