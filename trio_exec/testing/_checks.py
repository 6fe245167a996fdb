"""The event-stream invariant checker."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import attrs

from .._events import Closed, Event, Exited, Failed, Output, OutputStream

__all__ = ["EventStreamSummary", "check_event_stream"]


@attrs.frozen(kw_only=True)
class EventStreamSummary:
    """What :func:`check_event_stream` found in a valid stream."""

    output: Mapping[OutputStream, bytes]
    """The concatenated output of each stream that had any."""
    output_after_exit: Mapping[OutputStream, bytes]
    """The part of :attr:`output` sequenced after ``Exited`` (grandchildren's output)."""
    exited: Exited | None
    """The Exited event, if the stream had one."""
    closed: Closed | None
    """The Closed event, if the stream ended normally."""
    failure: str | None
    """The message of the Failed event that ended the stream, if any."""
    last_seq: int
    """The highest seq seen (0 if none)."""

    @property
    def exit_code(self) -> int | None:
        """The exit code, if the stream had an Exited event."""
        return None if self.exited is None else self.exited.exit_code


def check_event_stream(
    events: Iterable[Event],
    *,
    first_seq: int | None = 1,
    complete: bool = True,
    expected_output: Mapping[OutputStream, bytes] | None = None,
    output_before_exit: bool = False,
) -> EventStreamSummary:
    """Assert the ordering invariants of one process's event stream and summarize it.

    The invariants (DESIGN.md 1 to 4):

    1. ``seq`` strictly increases across Output, Exited and Closed, starting at
       ``first_seq`` (``None``: any start, for a subscription that began after eviction).
       Without gaps it is not required to be contiguous: a reader may miss evicted output.
    2. At most one Exited and one Closed; Closed comes after Exited and is the last event;
       Failed is unsequenced and also ends the stream. Nothing follows either.
    3. With ``expected_output``, the concatenated data of each stream equals the bytes
       given for it (streams not given must be empty): nothing lost, nothing duplicated.
    4. With ``output_before_exit``, no output follows Exited (use it when the child has
       no grandchildren that write after it exits).

    Args:
        complete: require the stream to end with Closed or Failed (and, when it ended
            with Closed, to contain Exited).

    Raises:
        AssertionError: an invariant does not hold; the message says which and where.
    """
    output: dict[OutputStream, list[bytes]] = {}
    after_exit: dict[OutputStream, list[bytes]] = {}
    exited: Exited | None = None
    closed: Closed | None = None
    failure: str | None = None
    last_seq = 0
    for index, event in enumerate(events):
        where = _Where(index, event)
        if closed is not None or failure is not None:
            raise AssertionError(f"{where} follows the end of the stream")
        if isinstance(event, Failed):
            failure = event.message
            continue
        if not isinstance(event, Output | Exited | Closed):
            raise AssertionError(f"{where} is not an event")
        seq = event.seq
        if last_seq == 0 and first_seq is not None and seq != first_seq:
            raise AssertionError(f"{where}: the first seq must be {first_seq}")
        if seq <= last_seq:
            raise AssertionError(f"{where}: seq {seq} does not increase (previous {last_seq})")
        last_seq = seq
        if isinstance(event, Output):
            if not event.data:
                raise AssertionError(f"{where}: empty output chunk")
            output.setdefault(event.stream, []).append(event.data)
            if exited is not None:
                if output_before_exit:
                    raise AssertionError(f"{where}: output after Exited")
                after_exit.setdefault(event.stream, []).append(event.data)
        elif isinstance(event, Exited):
            if exited is not None:
                raise AssertionError(f"{where}: a second Exited")
            exited = event
        else:
            if exited is None:
                raise AssertionError(f"{where}: Closed before Exited")
            closed = event
    if complete and closed is None and failure is None:
        raise AssertionError("the stream did not end with Closed or Failed")
    joined = {stream: b"".join(parts) for stream, parts in output.items()}
    if expected_output is not None:
        for stream in OutputStream:
            want = expected_output.get(stream, b"")
            got = joined.get(stream, b"")
            if got != want:
                raise AssertionError(
                    f"{stream.value} output differs: got {len(got)} bytes, expected "
                    f"{len(want)}; first difference at byte {_first_difference(got, want)}"
                )
    return EventStreamSummary(
        output=joined,
        output_after_exit={stream: b"".join(parts) for stream, parts in after_exit.items()},
        exited=exited,
        closed=closed,
        failure=failure,
        last_seq=last_seq,
    )


@attrs.frozen
class _Where:
    """An event's place in the stream, rendered only when an assertion fails."""

    index: int
    event: object

    def __str__(self) -> str:
        return f"event #{self.index} {self.event!r}"


def _first_difference(a: bytes, b: bytes) -> int:
    for index, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return index
    return min(len(a), len(b))
