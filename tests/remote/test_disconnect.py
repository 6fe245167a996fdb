"""Connection loss: the server dies (SIGKILL) or the transport closes mid-stream.

Whatever the cause, every pending and every later call raises ConnectionLost, every open
process's event stream ends with Failed within a second, read() returns ``closed`` with
the failure, and leaving the blocks never hangs. (``connect`` backends here are made with
``resume_deadline=0``: by default they try to resume the session first, see tests/resume.)
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest
import trio
import trio.testing

import trio_exec as tx
from trio_exec._remote import DISCONNECTED, MAX_IN_FLIGHT_REQUESTS, RemoteProcess, connect
from trio_exec.testing import check_event_stream
from trio_exec.testing.reference import open_reference_server

from .fake_server import TIMEOUT, answer_start, open_fake
from .helpers import process_alive, reference_server_pids

PROMPT = 1.0
"""How soon after the loss the failure must be seen (the issue's bound)."""

# Prints its pid, then ticks until its stdout breaks (the server died): EPIPE or SIGPIPE.
TICKER = (
    "import os, sys, time\n"
    "print(os.getpid(), flush=True)\n"
    "while True:\n"
    "    print('tick', flush=True)\n"
    "    time.sleep(0.02)\n"
)


async def drain_until_failed(events: trio.abc.ReceiveChannel[tx.Event]) -> list[tx.Event]:
    """Receive until the channel ends; the last event must be Failed."""
    received = [event async for event in events]
    assert isinstance(received[-1], tx.Failed)
    return received


async def check_later_calls_fail(proc: RemoteProcess) -> None:
    with pytest.raises(tx.ConnectionLost, match=DISCONNECTED):
        await proc.write(b"x")
    with pytest.raises(tx.ConnectionLost, match=DISCONNECTED):
        await proc.signal(signal.SIGINT)
    with pytest.raises(tx.ConnectionLost, match=DISCONNECTED):
        await proc.terminate()
    with pytest.raises(tx.ConnectionLost, match=DISCONNECTED):
        await proc.wait()
    result = await proc.read()
    assert result.closed
    assert result.failure is not None
    assert result.failure.startswith(DISCONNECTED)
    with pytest.raises(tx.ConnectionLost, match=DISCONNECTED):
        async with proc.backend.open_process(["true"]):
            raise AssertionError("must not start")


# -- the reference server, SIGKILLed ---------------------------------------------------------


@pytest.mark.reference
async def test_reference_killed_mid_stream(reference_binary: Path) -> None:
    child_pid = 0
    try:
        async with open_reference_server(reference_binary) as url:
            (server_pid,) = reference_server_pids(reference_binary)
            with trio.fail_after(TIMEOUT):
                async with connect(url, resume_deadline=0) as backend:
                    async with backend.open_process([sys.executable, "-c", TICKER]) as proc:
                        events = proc.events
                        first = await events.receive()
                        assert isinstance(first, tx.Output)
                        child_pid = int(first.data.split()[0])
                        pending: list[BaseException] = []

                        async def call(function: object) -> None:
                            try:
                                await function()  # type: ignore[operator]
                            except tx.ConnectionLost as exc:
                                pending.append(exc)

                        async with trio.open_nursery() as nursery:
                            # The reference serves one request at a time: a long-poll read
                            # holds the connection, so the write queued behind it is pending
                            # too when the server dies.
                            nursery.start_soon(call, lambda: proc._server_read(10**9, None, 60))
                            await trio.testing.wait_all_tasks_blocked()
                            nursery.start_soon(call, lambda: proc.write(b"never answered"))
                            await trio.testing.wait_all_tasks_blocked()
                            assert backend.statistics().requests_in_flight == 2
                            os.kill(server_pid, signal.SIGKILL)
                            with trio.fail_after(PROMPT):
                                received = await drain_until_failed(events)
                        assert len(pending) == 2
                        assert all(str(exc).startswith(DISCONNECTED) for exc in pending)
                        summary = check_event_stream([first, *received], complete=True)
                        assert summary.failure is not None
                        assert summary.failure.startswith(DISCONNECTED)
                        with trio.fail_after(PROMPT):
                            await check_later_calls_fail(proc)
                        leave_start = trio.current_time()
                    # Leaving the blocks after the loss never waits.
                    assert trio.current_time() - leave_start < PROMPT
                    assert backend.failure is not None
                assert trio.current_time() - leave_start < PROMPT
        # The orphaned child dies of its broken stdout (polled: nothing to wait on).
        with trio.fail_after(TIMEOUT):
            for _ in range(int(TIMEOUT * 100)):
                if not process_alive(child_pid):
                    break
                await trio.sleep(0.01)
    finally:
        if child_pid and process_alive(child_pid):
            os.kill(child_pid, signal.SIGKILL)
    assert not process_alive(child_pid)


@pytest.mark.reference
async def test_reference_killed_between_processes(reference_binary: Path) -> None:
    async with open_reference_server(reference_binary) as url:
        (server_pid,) = reference_server_pids(reference_binary)
        with trio.fail_after(TIMEOUT):
            async with connect(url, resume_deadline=0) as backend:
                async with backend.open_process(["echo", "fine"]) as proc:
                    check_event_stream(await _collect(proc))
                os.kill(server_pid, signal.SIGKILL)
                with trio.fail_after(PROMPT):
                    # The reader task notices the loss; polled, there is nothing to wait on.
                    for _ in range(int(PROMPT * 1000)):
                        if backend.failure is not None:
                            break
                        await trio.sleep(0.001)
                assert backend.failure is not None
                with pytest.raises(tx.ConnectionLost, match=DISCONNECTED):
                    async with backend.open_process(["true"]):
                        raise AssertionError("must not start")
                # A process finished before the loss keeps its complete stream.
                assert proc.exit_code == 0
                assert (await proc.read()).failure is None


async def _collect(proc: tx.ExecProcess) -> list[tx.Event]:
    with trio.fail_after(TIMEOUT):
        return [event async for event in proc.events]


# -- an in-memory transport, closed ------------------------------------------------------------


async def test_memory_transport_closed_mid_stream() -> None:
    async with open_fake() as (backend, server, nursery):
        nursery.start_soon(answer_start, server)
        async with backend.open_process(["x"], process_id="p") as proc:
            events = proc.events
            await server.send(
                {
                    "method": "process/output",
                    "params": {"processId": "p", "seq": 1, "stream": "stdout", "chunk": "aGk="},
                }
            )
            first = await events.receive()
            assert first == tx.Output(seq=1, stream=tx.OutputStream.STDOUT, data=b"hi")
            errors: list[tx.ConnectionLost] = []

            async def pending_write() -> None:
                try:
                    await proc.write(b"unanswered")
                except tx.ConnectionLost as exc:
                    errors.append(exc)

            async with trio.open_nursery() as calls:
                calls.start_soon(pending_write)
                await server.request("process/write")  # received, never answered
                await server.aclose()
                with trio.fail_after(PROMPT):
                    received = await drain_until_failed(events)
            assert len(errors) == 1
            assert str(errors[0]).startswith(DISCONNECTED)
            assert "memory transport" in str(errors[0])
            check_event_stream([first, *received])
            with trio.fail_after(PROMPT):
                await check_later_calls_fail(proc)
            leave_start = trio.current_time()
        assert trio.current_time() - leave_start < PROMPT
        assert backend.statistics().routed_processes == 0
        # After the block: local statuses, no error.
        assert await proc.write(b"x") is tx.WriteStatus.UNKNOWN_PROCESS


async def test_calls_waiting_for_a_slot_fail_too() -> None:
    total = MAX_IN_FLIGHT_REQUESTS + 10
    async with open_fake() as (backend, server, nursery):
        nursery.start_soon(answer_start, server)
        async with backend.open_process(["x"]) as proc:
            errors: list[tx.ConnectionLost] = []

            async def call() -> None:
                try:
                    await proc.signal(signal.SIGINT)
                except tx.ConnectionLost as exc:
                    errors.append(exc)

            with trio.fail_after(PROMPT):
                async with trio.open_nursery() as calls:
                    for _ in range(total):
                        calls.start_soon(call)
                    await trio.testing.wait_all_tasks_blocked()
                    assert backend.statistics().requests_in_flight == MAX_IN_FLIGHT_REQUESTS
                    await server.aclose()
            assert len(errors) == total
            assert backend.statistics().requests_in_flight == 0


async def test_loss_while_starting() -> None:
    async with open_fake() as (backend, server, nursery):

        async def die_on_start() -> None:
            await server.request("process/start")
            await server.aclose()

        nursery.start_soon(die_on_start)
        with trio.fail_after(PROMPT), pytest.raises(tx.ConnectionLost, match=DISCONNECTED):
            async with backend.open_process(["x"]):
                raise AssertionError("must not start")
        assert backend.statistics().open_processes == 0


async def test_loss_during_a_graceful_shutdown_does_not_hang() -> None:
    async with open_fake(["gracefulTerminate"]) as (backend, server, nursery):

        async def die_on_terminate() -> None:
            await answer_start(server)
            await server.request("process/terminate")
            await server.aclose()

        nursery.start_soon(die_on_terminate)
        with trio.fail_after(PROMPT):
            async with backend.open_process(["x"], grace=60) as proc:
                events = proc.events
        received = [event async for event in events]
        assert isinstance(received[-1], tx.Failed)
        assert received[-1].message.startswith(DISCONNECTED)
