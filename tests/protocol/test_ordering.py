"""The seq order of one process's events and the catch-up splice, without I/O."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_exec._events import Closed, Event, Exited, Output, OutputStream, ReadResult
from trio_exec._protocol import (
    MAX_REORDER_BYTES,
    MAX_REORDER_EVENTS,
    ClosedNotification,
    EventOrder,
    ExitedNotification,
    HistoryLost,
    Ordered,
    OutputNotification,
    ProcessNotification,
    ProtocolViolation,
)
from trio_exec.testing.strategies import event_streams

P = "p"
OUT = OutputStream.STDOUT
ERR = OutputStream.STDERR


def out(seq: int, data: bytes = b"x", stream: OutputStream = OUT) -> OutputNotification:
    return OutputNotification(process_id=P, seq=seq, stream=stream, chunk=data)


def exited(seq: int, code: int = 0) -> ExitedNotification:
    return ExitedNotification(process_id=P, seq=seq, exit_code=code)


def closed(seq: int) -> ClosedNotification:
    return ClosedNotification(process_id=P, seq=seq)


def push_all(order: EventOrder, events: Iterable[ProcessNotification]) -> list[ProcessNotification]:
    """Push every event live; return what was released, asserting no rule broke."""
    released: list[ProcessNotification] = []
    for event in events:
        ordered = order.push(event)
        assert ordered.failure is None, ordered.failure
        released += ordered.events
    return released


def catch_up_state(order: EventOrder) -> tuple[int | None, bool, bool]:
    """``(first_live_seq, catching_up, caught_up)``."""
    return order.first_live_seq, order.catching_up, order.caught_up


def read_result(
    chunks: Sequence[OutputNotification] = (),
    *,
    next_seq: int,
    exit_code: int | None = None,
    closed: bool = False,
    first_retained_seq: int | None = None,
    failure: str | None = None,
) -> ReadResult:
    return ReadResult(
        chunks=tuple(chunk.to_event() for chunk in chunks),
        next_seq=next_seq,
        exited=exit_code is not None,
        exit_code=exit_code,
        closed=closed,
        failure=failure,
        first_retained_seq=first_retained_seq,
    )


# -- the rules ------------------------------------------------------------------------------


def test_events_in_order_are_released_at_once() -> None:
    order = EventOrder(P)
    assert order.push(out(1)) == Ordered(events=(out(1),))
    assert order.push(exited(2, 3)) == Ordered(events=(exited(2, 3),))
    assert order.last_seq == 2
    assert order.receiving


def test_an_early_event_waits_for_the_ones_before_it() -> None:
    order = EventOrder(P)
    assert order.push(out(3, b"c")) == Ordered()
    assert order.push(out(2, b"b")) == Ordered()
    assert order.last_seq == 0
    assert order.push(out(1, b"a")) == Ordered(events=(out(1, b"a"), out(2, b"b"), out(3, b"c")))
    assert order.last_seq == 3


def test_duplicates_and_old_seqs_are_dropped() -> None:
    order = EventOrder(P)
    push_all(order, [out(1, b"a"), out(3, b"c")])
    assert order.push(out(3, b"other")) == Ordered()  # a duplicate of a held event
    assert order.push(out(1, b"again")) == Ordered()  # at the last released seq
    assert order.push(out(0, b"zero")) == Ordered()  # below it
    assert order.push(out(2, b"b")).events == (out(2, b"b"), out(3, b"c"))


def test_nothing_is_taken_after_closed() -> None:
    order = EventOrder(P)
    assert push_all(order, [exited(1), closed(2)]) == [exited(1), closed(2)]
    assert not order.receiving
    assert order.push(out(3)) == Ordered()
    assert order.failure is None


def test_output_after_the_exit_is_released() -> None:
    order = EventOrder(P)
    events: list[ProcessNotification] = [out(1), exited(2), out(3, stream=ERR), closed(4)]
    assert push_all(order, reversed(events)) == events


@pytest.mark.parametrize(
    ("events", "released", "message"),
    [
        ([out(1), out(2, b"")], [out(1)], "protocol error: empty output chunk at seq 2"),
        ([exited(1), exited(2)], [exited(1)], "protocol error: a second exited event at seq 2"),
        ([out(1), closed(2)], [out(1)], "protocol error: closed before exited at seq 2"),
    ],
)
def test_a_broken_rule_is_a_violation(
    events: list[ProcessNotification], released: list[ProcessNotification], message: str
) -> None:
    order = EventOrder(P)
    # Pushed in reverse, the violation is found in the same push that releases the rest.
    for event in reversed(events[1:]):
        assert order.push(event) == Ordered()
    ordered = order.push(events[0])
    assert ordered == Ordered(events=tuple(released), failure=ProtocolViolation(message=message))
    assert order.failure == ProtocolViolation(message=message)
    assert not order.receiving
    assert order.push(out(len(events) + 1)) == Ordered()  # and nothing more is taken


def test_a_hole_that_never_fills_is_bounded_in_events() -> None:
    order = EventOrder(P)
    for seq in range(2, MAX_REORDER_EVENTS + 2):  # exactly the bound waits
        assert order.push(out(seq)) == Ordered()
    ordered = order.push(out(MAX_REORDER_EVENTS + 2))
    assert ordered.failure == ProtocolViolation(
        message=f"protocol error: event seq 1 of process 'p' never arrived while "
        f"{MAX_REORDER_EVENTS + 1} later events ({MAX_REORDER_EVENTS + 1} bytes) were held back"
    )
    assert not order.receiving
    assert order.push(out(1)) == Ordered()


def test_a_hole_that_never_fills_is_bounded_in_bytes() -> None:
    order = EventOrder(P)
    assert order.push(out(2, bytes(MAX_REORDER_BYTES - 1))) == Ordered()
    assert order.push(out(3, b"x")) == Ordered()  # exactly the bound waits
    ordered = order.push(out(4, b"y"))
    assert isinstance(ordered.failure, ProtocolViolation)
    assert f"3 later events ({MAX_REORDER_BYTES + 1} bytes)" in ordered.failure.message


def test_the_bounds_are_parameters_and_released_events_leave_them() -> None:
    order = EventOrder(P, max_events=3, max_bytes=10)
    push_all(order, [out(2), out(3), out(4)])
    assert len(push_all(order, [out(1)])) == 4  # released: the buffer is empty again
    push_all(order, [out(6, b"12345"), out(7, b"12345")])
    failure = order.push(out(8)).failure
    assert isinstance(failure, ProtocolViolation)
    assert "seq 5 of process 'p' never arrived while 3 later events (11 bytes)" in failure.message


def test_stop_drops_what_is_held_and_takes_nothing_more() -> None:
    order = EventOrder(P)
    push_all(order, [out(2)])
    order.stop()
    assert not order.receiving
    assert order.push(out(1)) == Ordered()
    assert order.failure is None
    assert order.end_catch_up() == Ordered()


# -- catching up ----------------------------------------------------------------------------


def test_the_bounds_wait_while_catching_up_and_apply_at_its_end() -> None:
    order = EventOrder(P, max_events=1)
    order.begin_catch_up()
    assert order.push(out(2)) == Ordered()
    assert order.push(out(3)) == Ordered()  # over the bound, but live events wait for reads
    assert catch_up_state(order) == (2, True, False)
    ordered = order.end_catch_up()
    assert ordered.events == ()
    assert isinstance(ordered.failure, ProtocolViolation)
    assert "event seq 1 of process 'p' never arrived while 2 later events" in (
        ordered.failure.message
    )
    assert catch_up_state(order) == (None, False, False)


def test_caught_up_once_everything_before_the_first_live_event_is_released() -> None:
    order = EventOrder(P)
    push_all(order, [out(1)])
    assert catch_up_state(order) == (None, False, False)
    order.begin_catch_up()
    assert catch_up_state(order) == (None, True, False)  # the reads go on until one is empty
    assert order.push(out(2), live=False).events == (out(2),)  # from a read: not live
    assert order.push(out(5), live=False) == Ordered()
    assert catch_up_state(order) == (None, True, False)
    push_all(order, [out(4)])
    assert catch_up_state(order) == (4, True, False)
    assert order.splice(read_result([out(3)], next_seq=4), 2).events == (out(3), out(4), out(5))
    assert order.caught_up
    push_all(order, [out(6)])
    assert order.first_live_seq == 4  # the first one only


def test_splice_orders_the_chunks_after_the_cursor() -> None:
    order = EventOrder(P)
    push_all(order, [out(1, b"a")])
    order.begin_catch_up()
    result = read_result([out(1, b"a"), out(2, b"b"), out(3, b"c")], next_seq=4)
    assert order.splice(result, 1) == Ordered(events=(out(2, b"b"), out(3, b"c")))
    assert order.last_seq == 3


def test_splice_synthesises_the_exit_in_a_gap_between_chunks() -> None:
    order = EventOrder(P)
    order.begin_catch_up()
    result = read_result([out(1), out(3)], next_seq=4, exit_code=7)
    assert order.splice(result, 0) == Ordered(events=(out(1), exited(2, 7), out(3)))


def test_splice_synthesises_exit_and_close_from_a_read_without_chunks() -> None:
    order = EventOrder(P)
    push_all(order, [out(1)])
    order.begin_catch_up()
    result = read_result(next_seq=4, exit_code=0, closed=True)
    assert order.splice(result, 1) == Ordered(events=(exited(2), closed(3)))
    assert not order.receiving


def test_splice_does_not_close_from_a_read_with_chunks() -> None:
    """A read with ``maxBytes`` that returned chunks covers seqs up to its last chunk only."""
    order = EventOrder(P)
    order.begin_catch_up()
    result = read_result([out(1)], next_seq=2, exit_code=0, closed=True)
    assert order.splice(result, 0) == Ordered(events=(out(1),))
    assert order.splice(read_result(next_seq=4, exit_code=0, closed=True), 1) == Ordered(
        events=(exited(2), closed(3))
    )


def test_splice_uses_live_events_that_arrived_before_the_read() -> None:
    order = EventOrder(P)
    order.begin_catch_up()
    assert push_all(order, [exited(3, 9), closed(4)]) == []  # live, waiting for the read
    # The read was answered after the close; its chunks cover seqs 1 and 2.
    result = read_result([out(1), out(2)], next_seq=3, exit_code=9, closed=True)
    assert order.splice(result, 0) == Ordered(events=(out(1), out(2), exited(3, 9), closed(4)))
    assert order.failure is None


def test_a_gap_is_not_taken_for_an_exit_that_came_live() -> None:
    order = EventOrder(P)
    order.begin_catch_up()
    push_all(order, [exited(2, 1)])
    result = read_result(next_seq=4, exit_code=1, closed=True)  # 1 evicted, 3 is the close
    ordered = order.splice(result, 0)
    assert ordered.events == ()
    assert ordered.failure == HistoryLost(
        message="its events from seq 1 on are no longer retained by the server: they were evicted "
        "while the connection was down"
    )


def test_a_close_is_not_synthesised_before_the_exit() -> None:
    """A read that says closed but not exited explains no seq: the history is lost."""
    order = EventOrder(P)
    order.begin_catch_up()
    ordered = order.splice(read_result(next_seq=2, closed=True), 0)
    assert ordered.events == ()
    assert isinstance(ordered.failure, HistoryLost)
    assert "from seq 1 on" in ordered.failure.message


def test_splice_detects_eviction() -> None:
    order = EventOrder(P)
    push_all(order, [out(1)])
    order.begin_catch_up()
    result = read_result([out(4)], next_seq=5, first_retained_seq=4)
    ordered = order.splice(result, 1)
    assert ordered == Ordered(
        events=(),
        failure=HistoryLost(
            message="its events from seq 2 on are no longer retained by the server (it "
            "retains seq 4 on): they were evicted while the connection was down"
        ),
    )
    assert order.failure == ordered.failure
    assert not order.receiving


def test_splice_detects_eviction_after_what_it_could_release() -> None:
    order = EventOrder(P)
    order.begin_catch_up()
    result = read_result([out(1), out(3)], next_seq=4)  # 2: not an exit, so evicted
    ordered = order.splice(result, 0)
    assert ordered.events == (out(1),)
    assert isinstance(ordered.failure, HistoryLost)
    assert "from seq 2 on" in ordered.failure.message


def test_splice_reports_a_failed_process() -> None:
    order = EventOrder(P)
    order.begin_catch_up()
    result = read_result([out(1)], next_seq=2, closed=True, failure="boom")
    assert order.splice(result, 0) == Ordered(
        events=(), failure=HistoryLost(message="the server reports the process failed: boom")
    )


def test_splice_finds_violations_too() -> None:
    order = EventOrder(P)
    order.begin_catch_up()
    ordered = order.splice(read_result([out(1), out(2, b"")], next_seq=3), 0)
    assert ordered == Ordered(
        events=(out(1),),
        failure=ProtocolViolation(message="protocol error: empty output chunk at seq 2"),
    )


def test_a_failure_is_reported_once() -> None:
    order = EventOrder(P)
    assert order.push(out(1, b"")).failure is not None
    assert order.splice(read_result(next_seq=3, failure="boom"), 0) == Ordered()
    assert order.end_catch_up() == Ordered()
    assert order.failure == ProtocolViolation(message="protocol error: empty output chunk at seq 1")


# -- properties -----------------------------------------------------------------------------


def notifications(events: Sequence[Event]) -> list[ProcessNotification]:
    """The notifications of a valid event stream (from ``event_streams``)."""
    result: list[ProcessNotification] = []
    for event in events:
        match event:
            case Output():
                result.append(OutputNotification.from_event(P, event))
            case Exited():
                result.append(ExitedNotification.from_event(P, event))
            case Closed():
                result.append(ClosedNotification.from_event(P, event))
            case _:  # pragma: no cover - event_streams draws no Failed
                raise AssertionError(event)
    return result


def plain(events: Iterable[ProcessNotification]) -> list[ProcessNotification]:
    """``events`` without exit signals: an exit caught up by a read has none."""
    return [
        ExitedNotification(process_id=P, seq=e.seq, exit_code=e.exit_code)
        if isinstance(e, ExitedNotification)
        else e
        for e in events
    ]


class Server:
    """What a server retains of one process, and its ``process/read`` (the read rules of
    :meth:`trio_exec._log.ProcessLog.read`)."""

    def __init__(self, events: list[ProcessNotification], *, first_retained_seq: int = 1) -> None:
        self.events = events
        self.produced = 0
        """The events the process produced so far: ``events[:produced]``."""
        self.first_retained_seq = first_retained_seq

    def read(self, after_seq: int, max_bytes: int) -> ReadResult:
        produced = self.events[: self.produced]
        chunks: list[OutputNotification] = []
        total = 0
        for event in produced:
            if not isinstance(event, OutputNotification):
                continue
            if event.seq <= after_seq or event.seq < self.first_retained_seq:
                continue
            if chunks and total + len(event.chunk) > max_bytes:
                break
            chunks.append(event)
            total += len(event.chunk)
            if total >= max_bytes:
                break
        exit_code = next((e.exit_code for e in produced if isinstance(e, ExitedNotification)), None)
        return read_result(
            chunks,
            next_seq=chunks[-1].seq + 1 if chunks else self.produced + 1,
            exit_code=exit_code,
            closed=any(isinstance(e, ClosedNotification) for e in produced),
            first_retained_seq=self.first_retained_seq,
        )


def catch_up(
    order: EventOrder,
    server: Server,
    read_bytes: int,
    before_each_read: Callable[[], list[ProcessNotification]],
) -> tuple[list[ProcessNotification], HistoryLost | None]:
    """The catch-up loop of the remote backend, over the model server: reads after the
    last released seq until caught up (then one read with ``maxBytes: 0``) or until a
    read returns no chunk. ``before_each_read()`` returns the live events released
    meanwhile."""
    released: list[ProcessNotification] = []
    while order.receiving:
        released += before_each_read()
        after = order.last_seq
        final = order.caught_up
        result = server.read(after, 0 if final else read_bytes)
        ordered = order.splice(result, after)
        released += ordered.events
        if isinstance(ordered.failure, HistoryLost):
            return released, ordered.failure
        assert ordered.failure is None, ordered.failure
        if final or not result.chunks:
            break
    ordered = order.end_catch_up()
    assert ordered.failure is None, ordered.failure
    return released, None


@settings(max_examples=300, deadline=None)
@given(events=event_streams(), data=st.data())
def test_any_permutation_with_duplicates_orders_to_the_sequence(
    events: list[Event], data: st.DataObject
) -> None:
    sequence = notifications(events)
    duplicates = data.draw(st.lists(st.sampled_from(sequence), max_size=len(sequence)))
    arrival = data.draw(st.permutations([*sequence, *duplicates]))
    order = EventOrder(P)
    assert push_all(order, arrival) == sequence
    assert not order.receiving
    assert order.failure is None


@settings(max_examples=500, deadline=None)
@given(events=event_streams(), read_bytes=st.integers(0, 200), data=st.data())
def test_a_split_between_catch_up_reads_and_live_events_splices_to_the_sequence(
    events: list[Event], read_bytes: int, data: st.DataObject
) -> None:
    """Events 1..k arrived before the connection was lost; the process went on to produce
    events up to j before the session was resumed, and the rest arrive live on the new
    connection, any number of them before each catch-up read (the server may produce
    more meanwhile). Output the client already had may have been evicted."""
    sequence = notifications(events)
    n = len(sequence)
    k = data.draw(st.integers(0, n), label="had")
    j = data.draw(st.integers(k, n), label="produced before the resume")
    server = Server(sequence, first_retained_seq=data.draw(st.integers(1, k + 1), label="first"))
    server.produced = j
    order = EventOrder(P)
    released = push_all(order, sequence[:k])
    order.begin_catch_up()
    delivered = j  # the next live event to arrive

    def live_events() -> list[ProcessNotification]:
        nonlocal delivered
        server.produced = data.draw(st.integers(server.produced, n), label="produced")
        upto = data.draw(st.integers(delivered, server.produced), label="live")
        arrived = push_all(order, sequence[delivered:upto])
        delivered = upto
        return arrived

    caught_up, lost = catch_up(order, server, read_bytes, live_events)
    assert lost is None
    released += caught_up
    released += push_all(order, sequence[delivered:])
    assert plain(released) == plain(sequence)
    assert released[-1] == sequence[-1]
    assert not order.receiving


@settings(max_examples=300, deadline=None)
@given(events=event_streams(), read_bytes=st.integers(0, 200), data=st.data())
def test_evicted_history_is_detected(
    events: list[Event], read_bytes: int, data: st.DataObject
) -> None:
    """An output the client never got, that did not come live and that the server no
    longer retains: the catch-up reports the history lost; what it released before is
    in order."""
    sequence = notifications(events)
    n = len(sequence)
    k = data.draw(st.integers(0, n - 1), label="had")
    missed = [e.seq for e in sequence[k:] if isinstance(e, OutputNotification)]
    if not missed:
        return
    evicted = data.draw(st.sampled_from(missed), label="evicted up to")
    j = data.draw(st.integers(evicted, n), label="produced before the resume")
    server = Server(sequence, first_retained_seq=evicted + 1)
    server.produced = j
    order = EventOrder(P)
    push_all(order, sequence[:k])
    order.begin_catch_up()
    before = data.draw(st.integers(j, n), label="live before the read")
    push_all(order, sequence[j:before])
    server.produced = max(server.produced, before)
    released, lost = catch_up(order, server, read_bytes, list)
    assert lost is not None
    assert order.failure == lost
    assert not order.receiving
    assert [e.seq for e in released] == list(range(k + 1, k + 1 + len(released)))
