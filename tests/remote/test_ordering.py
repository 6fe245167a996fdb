"""Property tests of the remote client's ordering, over an in-memory transport.

A fake server task, written here and speaking the raw protocol, replays generated event
streams (:func:`trio_exec.testing.strategies.event_streams`) for one to three processes,
with everything the client must survive: notifications before the start response,
arrival out of order (a permutation within a window, at the client's input), duplicates,
noise (unknown process ids, unknown methods, events after ``closed``), and random batching
of the delivery against the client's progress. Whatever the delivery, each consumer must
see exactly the original stream, and invariants 1 to 4 must hold
(:func:`trio_exec.testing.check_event_stream`).

A fake server is right here: it isolates the client layer, which test_reference_client.py
also tests against the real reference server.
"""

from __future__ import annotations

from typing import Final

import attrs
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import trio_exec as tx
from trio_exec.testing import check_event_stream
from trio_exec.testing.strategies import chunkings, event_streams

from .fake_server import TIMEOUT, FakeServer, JsonDict, generic_result, notification, open_fake

EXAMPLES: Final = 150
"""Examples per property (two properties: 300 in all)."""

SETTINGS: Final = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@attrs.frozen(kw_only=True)
class Item:
    """One step of a delivery."""

    kind: str
    """``event``, ``start`` (the start response of process ``index``) or ``noise``."""
    index: int = 0
    """The process the step is about."""
    message: JsonDict | None = None
    """For ``event`` and ``noise``: the raw message."""


@attrs.frozen(kw_only=True)
class Delivery:
    """What the fake server sends, in order, and where it lets the client catch up."""

    streams: tuple[tuple[tx.Event, ...], ...]
    """The original stream of each process."""
    items: tuple[Item, ...]
    """Every message, in the order sent."""
    pauses: frozenset[int]
    """Before the item at each of these positions, the server waits until the client
    has processed everything sent so far (``wait_all_tasks_blocked``)."""


def process_id(index: int) -> str:
    return f"p{index}"


@st.composite
def deliveries(
    draw: st.DrawFn, streams: st.SearchStrategy[list[list[tx.Event]]] | None = None
) -> Delivery:
    if streams is None:
        streams = st.lists(event_streams(max_chunks=12), min_size=1, max_size=3)
    originals = draw(streams)
    # Interleave the processes' streams, each in its own order.
    cursors = [0] * len(originals)
    merged: list[Item] = []
    while any(cursor < len(stream) for cursor, stream in zip(cursors, originals, strict=True)):
        open_ = [i for i, stream in enumerate(originals) if cursors[i] < len(stream)]
        index = draw(st.sampled_from(open_))
        event = originals[index][cursors[index]]
        cursors[index] += 1
        merged.append(
            Item(kind="event", index=index, message=notification(process_id(index), event))
        )
    # Out-of-order arrival: each message may swap with one up to `window - 1` places later.
    window = draw(st.integers(1, 8))
    for position in range(len(merged)):
        other = draw(st.integers(position, min(len(merged) - 1, position + window - 1)))
        merged[position], merged[other] = merged[other], merged[position]
    # Duplicates, anywhere after (or even before) the original.
    for _ in range(draw(st.integers(0, 4))):
        if merged:
            copy = draw(st.sampled_from(merged))
            merged.insert(draw(st.integers(0, len(merged))), copy)
    # Noise the client must ignore.
    for _ in range(draw(st.integers(0, 3))):
        noise = draw(
            st.sampled_from(
                [
                    notification(
                        "nobody", tx.Output(seq=1, stream=tx.OutputStream.STDOUT, data=b"?")
                    ),
                    {"method": "process/futureThing", "params": {"processId": process_id(0)}},
                    {"method": "initialized"},
                ]
            )
        )
        merged.insert(draw(st.integers(0, len(merged))), Item(kind="noise", message=noise))
    # Events after Closed (a higher seq), which the client must drop.
    for index, stream in enumerate(originals):
        if draw(st.booleans()):
            late = tx.Output(seq=stream[-1].seq + 1, stream=tx.OutputStream.STDOUT, data=b"late")  # type: ignore[union-attr]
            merged.insert(
                draw(st.integers(0, len(merged))),
                Item(kind="noise", index=index, message=notification(process_id(index), late)),
            )
    # The start responses: anywhere, so events may precede them.
    for index in range(len(originals)):
        merged.insert(draw(st.integers(0, len(merged))), Item(kind="start", index=index))
    pauses = draw(st.frozensets(st.integers(0, len(merged)), max_size=6))
    return Delivery(
        streams=tuple(tuple(stream) for stream in originals),
        items=tuple(merged),
        pauses=pauses,
    )


async def fake_server(server: FakeServer, delivery: Delivery) -> None:
    """Take every start request, send the delivery, then answer whatever comes."""
    starts: dict[str, JsonDict] = {}
    while len(starts) < len(delivery.streams):
        request = await server.request("process/start")
        starts[request["params"]["processId"]] = request
    for position, item in enumerate(delivery.items):
        if position in delivery.pauses:
            await trio.testing.wait_all_tasks_blocked()
        if item.kind == "start":
            request = starts[process_id(item.index)]
            await server.respond(request, generic_result(request))
        else:
            assert item.message is not None
            await server.send(item.message)
    await server.serve_generic()


async def run_delivery(delivery: Delivery, extensions: tuple[str, ...] = ()) -> None:
    results: dict[int, list[tx.Event]] = {}
    reads: dict[int, tx.ReadResult] = {}
    exit_codes: dict[int, int] = {}
    with trio.fail_after(TIMEOUT):
        async with open_fake(extensions) as (backend, server, nursery):
            nursery.start_soon(fake_server, server, delivery)

            async def consume(index: int) -> None:
                async with backend.open_process(["x"], process_id=process_id(index)) as proc:
                    results[index] = [event async for event in proc.events]
                    reads[index] = await proc.read()
                    exit_codes[index] = await proc.wait()

            async with trio.open_nursery() as consumers:
                for index in range(len(delivery.streams)):
                    consumers.start_soon(consume, index)
            assert backend.failure is None
            assert backend.statistics().routed_processes == 0
    for index, original in enumerate(delivery.streams):
        events = results[index]
        assert events == list(original)
        expected: dict[tx.OutputStream, bytes] = {}
        for event in original:
            if isinstance(event, tx.Output):
                expected[event.stream] = expected.get(event.stream, b"") + event.data
        summary = check_event_stream(events, expected_output=expected)
        assert summary.exited is not None
        assert exit_codes[index] == summary.exited.exit_code
        read = reads[index]
        assert list(read.chunks) == [e for e in original if isinstance(e, tx.Output)]
        assert read.closed
        assert read.failure is None
        assert read.next_seq == len(original) + 1


@SETTINGS
@given(delivery=deliveries(), signals=st.booleans())
async def test_every_delivery_is_published_in_seq_order(delivery: Delivery, signals: bool) -> None:
    await run_delivery(delivery, ("signals",) if signals else ())


def split(data: bytes, max_pieces: int) -> st.SearchStrategy[list[bytes]]:
    # chunkings() cannot split a single byte (it draws a cut from an empty range).
    return st.just([data]) if len(data) == 1 else chunkings(data, max_pieces=max_pieces)


@st.composite
def chunked_streams(draw: st.DrawFn) -> list[list[tx.Event]]:
    """One process whose stdout and stderr payloads are split at random points."""
    out = draw(st.binary(min_size=0, max_size=2000))
    err = draw(st.binary(min_size=0, max_size=500))
    out_pieces = draw(split(out, 40))
    err_pieces = draw(split(err, 10))
    # Interleave the two streams, each keeping its own order.
    flags = draw(st.permutations([True] * len(out_pieces) + [False] * len(err_pieces)))
    out_iter, err_iter = iter(out_pieces), iter(err_pieces)
    pieces = [
        (tx.OutputStream.STDOUT, next(out_iter))
        if is_out
        else (tx.OutputStream.STDERR, next(err_iter))
        for is_out in flags
    ]
    exit_at = len(pieces) - draw(st.integers(0, min(3, len(pieces))))
    exit_code = draw(st.integers(0, 255))
    events: list[tx.Event] = []
    for index, (stream, data) in enumerate(pieces):
        if index == exit_at:
            events.append(tx.Exited(seq=len(events) + 1, exit_code=exit_code))
        events.append(tx.Output(seq=len(events) + 1, stream=stream, data=data))
    if exit_at == len(pieces):
        events.append(tx.Exited(seq=len(events) + 1, exit_code=exit_code))
    events.append(tx.Closed(seq=len(events) + 1))
    return [events]


@SETTINGS
@given(delivery=deliveries(chunked_streams()))
async def test_chunked_output_arrives_whole_in_any_order(delivery: Delivery) -> None:
    await run_delivery(delivery)
