"""Helpers for testing code that uses trio_exec, and trio_exec itself.

:func:`check_event_stream` asserts the ordering invariants of a process's event stream;
call it on the events your own consumer saw.
"""

from __future__ import annotations

from ._checks import EventStreamSummary, check_event_stream

__all__ = ["EventStreamSummary", "check_event_stream"]
