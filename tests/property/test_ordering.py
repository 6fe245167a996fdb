"""Property tests: invariants 1 to 4 over generated children on every backend."""

from __future__ import annotations

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import trio_exec as tx
from trio_exec.testing import check_event_stream
from trio_exec.testing.pytest_plugin import BACKEND_KINDS, open_backend
from trio_exec.testing.strategies import ChildProgram, child_programs

from ..conformance.helpers import TIMEOUT

_SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(params=BACKEND_KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    """The backend kind; each hypothesis example opens its own (fixtures span examples)."""
    return str(request.param)


@_SETTINGS
@given(program=child_programs())
async def test_generated_child_streams_are_exact(kind: str, program: ChildProgram) -> None:
    """Random bytes, chunk sizes and endings: the stream is exact and ordered."""
    async with open_backend(kind) as backend, backend.open_process(program.argv()) as proc:
        with trio.fail_after(TIMEOUT):
            events = [event async for event in proc.events]
    summary = check_event_stream(
        events, expected_output=program.expected_output, output_before_exit=True
    )
    assert summary.exited is not None
    assert summary.exited.exit_code == program.expected_exit_code
    assert summary.exited.signal == program.signal


@settings(_SETTINGS, max_examples=100)
@given(
    program=child_programs(max_writes=30, signals=()),
    delay=st.floats(min_value=0.0, max_value=0.03),
    how=st.sampled_from(["terminate", "kill", "leave"]),
)
async def test_killed_at_random_times(
    kind: str, program: ChildProgram, delay: float, how: str
) -> None:
    """Killed at a random moment, the stream still obeys the invariants and what
    arrived is a prefix of what the child meant to write."""
    events: list[tx.Event] = []
    # A child that writes its plan and then waits forever, unless killed first.
    argv = program.argv()
    argv[2] = argv[2].replace('os._exit(plan["exit_code"])', "import time; time.sleep(60)")
    with trio.fail_after(TIMEOUT):
        async with open_backend(kind) as backend, backend.open_process(argv, grace=0.5) as proc:
            subscription = proc.subscribe()
            await trio.sleep(delay)
            if how == "terminate":
                await proc.terminate(grace=0.5)
            elif how == "kill":
                await proc.signal(9)
        events = [event async for event in subscription]
    summary = check_event_stream(events, output_before_exit=True)
    assert summary.exited is not None
    expected_code = {"terminate": 143, "kill": 137, "leave": 143}[how]
    assert summary.exited.exit_code == expected_code
    for stream, data in summary.output.items():
        assert program.expected_output[stream].startswith(data)


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 65536, 65537, 1 << 20])
async def test_exact_sizes(backend: tx.ExecBackend, size: int) -> None:
    program = ChildProgram(writes=((tx.OutputStream.STDOUT, b"\xff" * size),) if size else ())
    async with backend.open_process(program.argv()) as proc:
        with trio.fail_after(TIMEOUT):
            events = [event async for event in proc.events]
    check_event_stream(events, expected_output=program.expected_output, output_before_exit=True)
