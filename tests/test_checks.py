"""The public invariant checker catches every kind of violation."""

from __future__ import annotations

import pytest
from hypothesis import given

import trio_exec as tx
from trio_exec.testing import check_event_stream
from trio_exec.testing.strategies import chunkings, event_streams

OUT = tx.OutputStream.STDOUT


def out(seq: int, data: bytes = b"x") -> tx.Output:
    return tx.Output(seq=seq, stream=OUT, data=data)


GOOD: list[tx.Event] = [out(1), tx.Exited(seq=2, exit_code=0), out(3), tx.Closed(seq=4)]


def test_a_valid_stream_is_summarized() -> None:
    summary = check_event_stream(GOOD, expected_output={OUT: b"xx"})
    assert summary.exit_code == 0
    assert summary.output_after_exit == {OUT: b"x"}
    assert summary.last_seq == 4


@pytest.mark.parametrize(
    ("events", "message"),
    [
        ([out(2), tx.Exited(seq=3, exit_code=0), tx.Closed(seq=4)], "first seq"),
        ([out(1), out(1), tx.Exited(seq=2, exit_code=0), tx.Closed(seq=3)], "does not increase"),
        ([out(1), tx.Closed(seq=2)], "Closed before Exited"),
        ([tx.Exited(seq=1, exit_code=0), tx.Exited(seq=2, exit_code=0)], "second Exited"),
        ([*GOOD, out(5)], "follows the end"),
        ([tx.Failed(message="x"), out(1)], "follows the end"),
        ([out(1)], "did not end"),
        ([tx.Output(seq=1, stream=OUT, data=b"")], "empty output"),
    ],
)
def test_violations_are_reported(events: list[tx.Event], message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        check_event_stream(events)


def test_output_after_exit_can_be_forbidden() -> None:
    with pytest.raises(AssertionError, match="output after Exited"):
        check_event_stream(GOOD, output_before_exit=True)


def test_lost_or_extra_output_is_reported() -> None:
    with pytest.raises(AssertionError, match="stdout output differs"):
        check_event_stream(GOOD, expected_output={OUT: b"xy"})
    with pytest.raises(AssertionError, match="stderr output differs"):
        check_event_stream(GOOD, expected_output={OUT: b"xx", tx.OutputStream.STDERR: b"e"})


@given(event_streams())
def test_generated_streams_are_valid(events: list[tx.Event]) -> None:
    summary = check_event_stream(events)
    assert summary.closed is not None
    assert summary.closed.seq == len(events)


@given(st_data=chunkings(b"abcdefghij" * 10))
def test_chunkings_join_back(st_data: list[bytes]) -> None:
    assert b"".join(st_data) == b"abcdefghij" * 10
    assert all(st_data)
