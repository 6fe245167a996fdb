"""Property-test your own consumer of process events with trio_exec's testing kit.

``LineCollector`` stands for the code *you* write on top of trio_exec: it turns a process's
events into complete lines per stream and the exit code. The tests below check it three
ways, each in a few lines:

1. on every valid event stream hypothesis can think of (``event_streams``), with no process
   at all: it must keep every byte, and its input must pass ``check_event_stream``;
2. on any chunking of the same output (``chunkings``): its lines must not depend on where
   the reads happened to split the bytes;
3. on real children (``child_programs``: generated writes to stdout and stderr, exit codes
   and deadly signals), run on a local backend and through an exec server (``open_backend``):
   its lines and exit code must be exactly what the child produced.

Run it like any test module (the ``trio`` marks make it work without ``trio_mode``):

    python -m pytest examples/property_test_consumer.py

It needs pytest, pytest-trio and hypothesis, beyond the library's own dependencies: the
``examples`` extra installs them, ``python -m pip install '.[examples]'`` in a checkout
(the ``test`` extra has them too).

The fixtures and ``open_backend`` come from trio_exec's pytest plugin, which pytest loads by
itself through its entry point (with plugin autoloading disabled, add
``-p trio_exec.testing.pytest_plugin -p pytest_trio.plugin``).
"""

from __future__ import annotations

import attrs
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import trio_exec as tx
from trio_exec.testing import check_event_stream
from trio_exec.testing.pytest_plugin import BACKEND_KINDS, open_backend
from trio_exec.testing.strategies import ChildProgram, child_programs, chunkings, event_streams

# -- the code under test: what an application would write ----------------------------------


@attrs.define
class LineCollector:
    """Collects complete lines per stream (a partial last line is kept at the end)."""

    lines: dict[tx.OutputStream, list[bytes]] = attrs.field(factory=dict)
    exit_code: int | None = None
    _partial: dict[tx.OutputStream, bytes] = attrs.field(factory=dict)

    def feed(self, event: tx.Event) -> None:
        match event:
            case tx.Output(stream=stream, data=data):
                *complete, rest = (self._partial.pop(stream, b"") + data).split(b"\n")
                self.lines.setdefault(stream, []).extend(line + b"\n" for line in complete)
                if rest:
                    self._partial[stream] = rest
            case tx.Exited(exit_code=code):
                self.exit_code = code
            case tx.Closed() | tx.Failed():
                for stream, rest in self._partial.items():
                    self.lines.setdefault(stream, []).append(rest)
                self._partial.clear()

    def text(self, stream: tx.OutputStream) -> bytes:
        return b"".join(self.lines.get(stream, []))


def collect(events: list[tx.Event]) -> LineCollector:
    collector = LineCollector()
    for event in events:
        collector.feed(event)
    return collector


# -- the property tests --------------------------------------------------------------------


@given(events=event_streams())
def test_keeps_every_byte_of_any_valid_stream(events: list[tx.Event]) -> None:
    summary = check_event_stream(events)  # the generated input obeys the ordering contract
    collector = collect(events)
    assert collector.exit_code == summary.exit_code
    for stream, data in summary.output.items():
        assert collector.text(stream) == data


@given(st.data())
def test_lines_do_not_depend_on_chunking(data: st.DataObject) -> None:
    parts = st.lists(st.sampled_from([b"a", b"bc", b"\n"]), max_size=100)
    output = data.draw(parts.map(b"".join))
    pieces = data.draw(chunkings(output))
    events: list[tx.Event] = [
        tx.Output(seq=seq, stream=tx.OutputStream.STDOUT, data=piece)
        for seq, piece in enumerate(pieces, start=1)
    ]
    events += [tx.Exited(seq=len(pieces) + 1, exit_code=0), tx.Closed(seq=len(pieces) + 2)]
    check_event_stream(events)
    whole = tx.Output(seq=1, stream=tx.OutputStream.STDOUT, data=output)
    once: list[tx.Event] = [whole, tx.Exited(seq=2, exit_code=0), tx.Closed(seq=3)]
    if not output:
        once = events
    assert collect(events).lines == collect(once).lines


@pytest.mark.trio
@pytest.mark.parametrize("kind", BACKEND_KINDS)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(program=child_programs(max_writes=6, max_write_bytes=20_000))
async def test_real_children(kind: str, program: ChildProgram) -> None:
    async with open_backend(kind) as backend, backend.open_process(program.argv()) as proc:
        with trio.fail_after(30):
            events = [event async for event in proc.events]
    check_event_stream(events, expected_output=program.expected_output)
    collector = collect(events)
    assert collector.exit_code == program.expected_exit_code
    for stream, data in program.expected_output.items():
        assert collector.text(stream) == data
