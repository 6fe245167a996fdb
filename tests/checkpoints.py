"""Checking trio's rule: every public async function is a checkpoint on every path.

:class:`CheckpointRecorder` awaits calls under :func:`trio.testing.assert_checkpoints`
whatever their outcome (``assert_checkpoints`` alone lets any exception through
unchecked, so the call's exception is caught inside the block and handed back), records
the names it called, and compares them with :func:`public_coroutine_functions`, found by
introspection: a new public async method that no test calls fails the check.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Final

import attrs
import trio
import trio.testing

BLOCK: Final = 0.05
"""Seconds a call that would block (a wait on a running child) is given before it is
cancelled; being cancelled at a blocking point is a checkpoint too."""


def public_coroutine_functions(owner: object, names: Iterable[str] | None = None) -> frozenset[str]:
    """The public names of ``owner`` (a class, or a module with ``names``) that are async
    functions or methods."""
    candidates = dir(owner) if names is None else names
    return frozenset(
        name
        for name in candidates
        if not name.startswith("_") and inspect.iscoroutinefunction(getattr(owner, name, None))
    )


@attrs.frozen
class Outcome:
    """What a checked call gave: its value, or the exception it raised."""

    value: Any = None
    error: Exception | None = None

    def unwrap(self) -> Any:
        """The value, or raise the exception."""
        if self.error is not None:
            raise self.error
        return self.value


class CheckpointRecorder:
    """Calls the async methods of ``target`` and records which did not checkpoint.

    Args:
        target: the object whose methods are called.
        state: a description of its state, for the failure messages.
    """

    def __init__(self, target: object, state: str) -> None:
        self.target = target
        self.state = state
        self.called: set[str] = set()
        self.failures: list[str] = []

    async def call(
        self, name: str, *args: Any, bound: float | None = None, **kwargs: Any
    ) -> Outcome:
        """Await ``target.name(*args, **kwargs)`` and check that it checkpointed.

        ``bound``: cancel the call after this many seconds (for calls that block in this
        state); the cancellation is caught inside the checked block.
        """
        method: Callable[..., Awaitable[Any]] = getattr(self.target, name)
        self.called.add(name)
        result = Outcome()
        try:
            with trio.testing.assert_checkpoints():
                try:
                    if bound is None:
                        result = Outcome(value=await method(*args, **kwargs))
                    else:
                        with trio.move_on_after(bound):
                            result = Outcome(value=await method(*args, **kwargs))
                except Exception as exc:
                    result = Outcome(error=exc)
        except AssertionError:
            shown = ", ".join([*map(repr, args), *(f"{k}={v!r}" for k, v in kwargs.items())])
            got = f"raised {result.error!r}" if result.error is not None else f"-> {result.value!r}"
            self.failures.append(
                f"{type(self.target).__name__}.{name}({shown}) {got} without a checkpoint "
                f"({self.state})"
            )
        return result

    def check(self, expected: Iterable[str] | None = None) -> None:
        """Fail if a call did not checkpoint, or if the names called differ from
        ``expected`` (default: every public async method of the target's class)."""
        wanted = (
            public_coroutine_functions(type(self.target)) if expected is None else set(expected)
        )
        assert not self.failures, "\n".join(self.failures)
        assert self.called == wanted, (
            f"{type(self.target).__name__} in state {self.state}: not exercised "
            f"{sorted(wanted - self.called)}, unknown {sorted(self.called - wanted)}"
        )


def check_all(recorders: Sequence[CheckpointRecorder]) -> None:
    """Check every recorder, reporting every call that did not checkpoint at once."""
    failures = [failure for recorder in recorders for failure in recorder.failures]
    assert not failures, "\n".join(failures)
    for recorder in recorders:
        recorder.check()
