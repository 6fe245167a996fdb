"""Small pieces shared by the modules."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

__all__ = ["open_service_nursery"]


@asynccontextmanager
async def open_service_nursery() -> AsyncIterator[trio.Nursery]:
    """A nursery for the background tasks of a context manager that yields to its user.

    Like :func:`trio.open_nursery`, except that an exception raised by the body comes out
    as itself rather than wrapped in an exception group when it is the only one, so that
    ``async with open_process(...)`` behaves like any other block for ``except`` clauses.
    """
    body_error: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            try:
                yield nursery
            except BaseException as exc:
                body_error = exc
                raise
    except BaseExceptionGroup as group:
        if body_error is not None and list(group.exceptions) == [body_error]:
            raise body_error from body_error.__cause__
        raise
