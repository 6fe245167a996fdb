"""Small pieces shared by the modules.

Exception groups: trio's nurseries wrap every exception in a :class:`BaseExceptionGroup`,
even a single one. trio_exec's rule is that one error comes out as itself, and that a
group comes out only when several errors really happened. :func:`open_service_nursery`
applies that rule at the boundary of every nursery whose exceptions reach users;
:func:`sole_exception` and :func:`leaf_exceptions` are the rule itself, for code that
looks at exceptions.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

__all__ = ["leaf_exceptions", "open_service_nursery", "sole_exception"]


def leaf_exceptions(exc: BaseException) -> list[BaseException]:
    """The exceptions that ``exc`` stands for: ``[exc]``, or those of a group, flattened."""
    if not isinstance(exc, BaseExceptionGroup):
        return [exc]
    return [leaf for inner in exc.exceptions for leaf in leaf_exceptions(inner)]


def sole_exception(exc: BaseException) -> BaseException:
    """``exc`` without its group wrapping when it stands for exactly one exception.

    A group (however nested) that holds one exception gives that exception; anything
    else, a plain exception or a group of several (``Cancelled`` counts as one like any
    other), is returned unchanged, so nothing is ever dropped.
    """
    leaves = leaf_exceptions(exc)
    return leaves[0] if len(leaves) == 1 else exc


@asynccontextmanager
async def open_service_nursery(*, wait_on_error: bool = False) -> AsyncIterator[trio.Nursery]:
    """A nursery whose exceptions come out as themselves when only one happened.

    Like :func:`trio.open_nursery`, except that when the body and the tasks raised one
    exception in all, that exception propagates, not a group around it, so that
    ``async with open_process(...)`` behaves like any other block for ``except`` clauses.
    Several exceptions still propagate as a group (see :func:`sole_exception`).

    Args:
        wait_on_error: when True, an exception of the body (other than a cancellation)
            does not cancel the tasks: the nursery waits for them to end (the body must
            make them end, typically in a ``finally``, e.g. by setting a deadline for a
            graceful close), then the exception propagates (in a group with any the tasks
            raised meanwhile).
    """
    deferred: BaseException | None = None
    error: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            try:
                yield nursery
            except BaseException as exc:
                # A cancellation goes into the nursery whatever: its own is absorbed there,
                # and an outer one cancels the tasks anyway.
                if not wait_on_error or any(
                    isinstance(leaf, trio.Cancelled) for leaf in leaf_exceptions(exc)
                ):
                    raise
                deferred = exc
    except BaseExceptionGroup as group:
        combined = group
        if deferred is not None:
            combined = BaseExceptionGroup(group.message, [deferred, *group.exceptions])
        error = sole_exception(combined)
        if error is group:
            raise
    else:
        error = deferred
    if error is None:
        return
    # Raised outside the handler above, with its own context: not "during handling of"
    # the group that carried it (trio's nursery does the same for its groups).
    context = error.__context__
    try:
        raise error
    finally:
        error.__context__ = context
        del error, deferred, context
