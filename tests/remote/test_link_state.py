"""The remote backend's session state: one :class:`LinkState`, changed only through the
transition table of ``_Link`` (sync, no I/O), and what ``repr`` shows of it."""

from __future__ import annotations

import itertools

import pytest

from trio_exec._remote import DISCONNECTED
from trio_exec._remote.connection import LinkState, _IllegalTransition, _Link

from .fake_server import open_fake

CONNECTING, READY, RESUMING, CATCHING_UP, FAILED = (
    LinkState.CONNECTING,
    LinkState.READY,
    LinkState.RESUMING,
    LinkState.CATCHING_UP,
    LinkState.FAILED,
)

ALLOWED = {
    (CONNECTING, READY),  # initialize answered
    (CONNECTING, FAILED),  # the first connection broke, or initialize timed out
    (READY, RESUMING),  # the connection was lost: resume it
    (READY, FAILED),  # lost and not resumable, or the block was left
    (RESUMING, CATCHING_UP),  # a new connection resumed the session
    (RESUMING, FAILED),  # the resume failed, or the block was left
    (CATCHING_UP, READY),  # every process caught up
    (CATCHING_UP, RESUMING),  # the new connection broke too: another attempt
    (CATCHING_UP, FAILED),
}

ROUTE = {
    CONNECTING: [],
    READY: [READY],
    RESUMING: [READY, RESUMING],
    CATCHING_UP: [READY, RESUMING, CATCHING_UP],
    FAILED: [FAILED],
}
"""How to reach each state from a new ``_Link``."""


def failure_for(state: LinkState) -> str | None:
    return "why" if state is FAILED else None


def reach(state: LinkState) -> _Link:
    link = _Link()
    for step in ROUTE[state]:
        link.to(step, failure_for(step))
    assert link.state is state
    return link


def test_a_link_starts_connecting() -> None:
    link = _Link()
    assert link.state is CONNECTING
    assert link.failure is None


@pytest.mark.parametrize(
    ("old", "new"),
    list(itertools.product(LinkState, LinkState)),
    ids=lambda state: state.name,
)
def test_transition_table(old: LinkState, new: LinkState) -> None:
    link = reach(old)
    if (old, new) in ALLOWED:
        link.to(new, failure_for(new))
        assert link.state is new
        assert link.failure == failure_for(new)
    else:
        with pytest.raises(_IllegalTransition, match=f"{old.name} -> {new.name}"):
            link.to(new, failure_for(new))
        assert link.state is old  # unchanged


@pytest.mark.parametrize("old", [CONNECTING, READY, RESUMING, CATCHING_UP])
def test_failed_needs_a_reason_and_nothing_else_takes_one(old: LinkState) -> None:
    link = reach(old)
    with pytest.raises(_IllegalTransition, match="FAILED with failure=None"):
        link.to(FAILED)
    for new in LinkState:
        if (old, new) in ALLOWED and new is not FAILED:
            with pytest.raises(_IllegalTransition, match=f"{new.name} with failure='x'"):
                link.to(new, "x")
    assert link.state is old


@pytest.mark.parametrize(
    ("state", "usable", "resuming", "shown"),
    [
        (CONNECTING, False, False, "connecting"),
        (READY, True, False, "connected"),
        (RESUMING, False, True, "resuming"),
        (CATCHING_UP, True, True, "catching up"),
        (FAILED, False, False, "broken (why)"),
    ],
)
def test_what_each_state_means(state: LinkState, usable: bool, resuming: bool, shown: str) -> None:
    """``usable``: calls go on the current connection; ``resuming``: a call in flight may
    be sent again after the resume (and ``statistics().recovering``)."""
    link = reach(state)
    assert (link.usable, link.resuming) == (usable, resuming)
    assert repr(link) == shown


async def test_repr_shows_the_state_and_why_it_broke() -> None:
    async with open_fake() as (backend, _, _):
        assert repr(backend).startswith("<RemoteBackend connected session='session-1' ")
    assert repr(backend).startswith(
        f"<RemoteBackend broken ({DISCONNECTED}: the client closed the connection) "
        "session='session-1' "
    )
    assert backend.failure == f"{DISCONNECTED}: the client closed the connection"
