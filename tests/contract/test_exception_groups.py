"""The one rule for exception groups (trio_exec._util): one error comes as itself, several
as a group, and nothing is dropped, Cancelled least of all."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trio_exec._util import leaf_exceptions, open_service_nursery, sole_exception

from ..conformance.helpers import TIMEOUT


async def fail(exc: BaseException) -> None:
    raise exc  # at once, before any checkpoint: sibling tasks started with it fail too


def test_sole_exception() -> None:
    one = KeyError("one")
    two = ValueError("two")
    assert sole_exception(one) is one
    assert sole_exception(ExceptionGroup("g", [one])) is one
    assert sole_exception(ExceptionGroup("g", [ExceptionGroup("h", [one])])) is one
    several = ExceptionGroup("g", [one, ExceptionGroup("h", [two])])
    assert sole_exception(several) is several
    assert leaf_exceptions(several) == [one, two]
    nested_pair = ExceptionGroup("g", [ExceptionGroup("h", [one, two])])
    assert sole_exception(nested_pair) is nested_pair


async def test_a_task_error_comes_as_itself() -> None:
    error = KeyError("task")

    async def run() -> None:
        async with open_service_nursery() as nursery:
            nursery.start_soon(fail, error)
            await trio.sleep_forever()  # cancelled by the failing task

    with trio.fail_after(TIMEOUT), pytest.raises(KeyError, match="task") as info:
        await run()
    assert info.value is error
    assert info.value.__context__ is None  # not "during handling of" a group or Cancelled


async def test_a_body_error_comes_as_itself_with_its_context() -> None:
    error = KeyError("body")

    async def run() -> None:
        async with open_service_nursery() as nursery:
            nursery.start_soon(trio.sleep_forever)
            try:
                raise ValueError("first")
            except ValueError:
                raise error from None

    with trio.fail_after(TIMEOUT), pytest.raises(KeyError, match="body") as info:
        await run()
    assert info.value is error
    assert isinstance(error.__context__, ValueError)
    assert error.__suppress_context__


async def test_several_errors_stay_a_group() -> None:
    first, second = KeyError("first"), ValueError("second")
    with trio.fail_after(TIMEOUT), pytest.RaisesGroup(KeyError, ValueError) as info:
        async with open_service_nursery() as nursery:
            nursery.start_soon(fail, first)
            nursery.start_soon(fail, second)
            await trio.testing.wait_all_tasks_blocked()
    assert set(map(id, leaf_exceptions(info.value))) == {id(first), id(second)}


async def test_cancellation_is_not_swallowed() -> None:
    with trio.fail_after(TIMEOUT):
        with trio.move_on_after(0) as scope:
            async with open_service_nursery() as nursery:
                nursery.start_soon(trio.sleep_forever)
                await trio.sleep_forever()
    assert scope.cancelled_caught
    # An error while being cancelled is kept with the Cancelled: neither is dropped.
    outer = trio.CancelScope()
    with trio.fail_after(TIMEOUT), outer, pytest.RaisesGroup(trio.Cancelled, KeyError):
        async with open_service_nursery() as nursery:

            async def fail_once_cancelled() -> None:
                try:
                    await trio.sleep_forever()
                finally:
                    raise KeyError("in cleanup")

            nursery.start_soon(fail_once_cancelled)
            await trio.testing.wait_all_tasks_blocked()
            outer.cancel()
            await trio.sleep_forever()


async def test_wait_on_error_lets_the_tasks_finish() -> None:
    finished = []
    error = KeyError("body")

    async def finish_gracefully(done: trio.Event) -> None:
        await done.wait()
        await trio.lowlevel.checkpoint()  # still running after the body's error
        finished.append(True)

    async def run() -> None:
        done = trio.Event()
        async with open_service_nursery(wait_on_error=True) as nursery:
            nursery.start_soon(finish_gracefully, done)
            try:
                raise error
            finally:
                done.set()

    with trio.fail_after(TIMEOUT), pytest.raises(KeyError, match="body") as info:
        await run()
    assert info.value is error
    assert finished == [True]


async def test_wait_on_error_keeps_a_task_error_too() -> None:
    async def fail_when(done: trio.Event) -> None:
        await done.wait()
        raise ValueError("task")

    done = trio.Event()
    with trio.fail_after(TIMEOUT), pytest.RaisesGroup(KeyError, ValueError):
        async with open_service_nursery(wait_on_error=True) as nursery:
            nursery.start_soon(fail_when, done)
            try:
                raise KeyError("body")
            finally:
                done.set()


async def test_wait_on_error_does_not_hold_back_a_cancellation() -> None:
    # The body cancelled because a task failed: that Cancelled belongs to the nursery.
    async def run() -> None:
        async with open_service_nursery(wait_on_error=True) as nursery:
            nursery.start_soon(fail, ValueError("task"))
            await trio.sleep_forever()

    with trio.fail_after(TIMEOUT), pytest.raises(ValueError, match="task"):
        await run()
