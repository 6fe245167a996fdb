"""A pytest plugin with fixtures for code that runs processes through trio_exec.

Installed with trio_exec and registered through the ``pytest11`` entry point, so the
fixtures are available in any project that has trio_exec and pytest-trio installed (the
fixtures are Trio fixtures: run your tests in trio mode or mark them ``@pytest.mark.trio``).

Fixtures:

``local_backend``
    A :class:`trio_exec.LocalBackend`.
``exec_server``
    A websocket exec server on 127.0.0.1 (a free port) running for the test: an
    :class:`ExecServerInfo` with its ``url``.
``exec_backend``
    Parametrized: ``local`` gives a :class:`~trio_exec.LocalBackend`; ``remote`` gives a
    :class:`~trio_exec.RemoteBackend` connected to a fresh ``exec_server``. A test that
    takes it runs once per backend, which is how trio_exec's own conformance suite runs.

Example::

    async def test_my_consumer(exec_backend):
        async with exec_backend.open_process(["echo", "hi"]) as proc:
            events = [event async for event in proc.events]
        check_event_stream(events)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import pytest
import trio

from .._backend import ExecBackend
from .._local import LocalBackend
from .._util import open_service_nursery

__all__ = [
    "BACKEND_KINDS",
    "ExecServerInfo",
    "exec_backend",
    "exec_server",
    "local_backend",
    "open_backend",
]

BACKEND_KINDS: tuple[str, ...] = ("local", "remote")
"""The parameters of ``exec_backend``."""


@attrs.frozen(kw_only=True)
class ExecServerInfo:
    """What the ``exec_server`` fixture gives."""

    url: str
    """``ws://127.0.0.1:PORT``: pass it to :func:`trio_exec.connect`."""


@pytest.fixture
def local_backend() -> LocalBackend:
    """A :class:`~trio_exec.LocalBackend`."""
    return LocalBackend()


@pytest.fixture
async def exec_server(nursery: trio.Nursery) -> ExecServerInfo:
    """A websocket exec server on 127.0.0.1, stopped (its processes reaped) after the test
    with the test's nursery."""
    from .._server import serve_websocket

    url: str = await nursery.start(serve_websocket, "127.0.0.1", 0)
    return ExecServerInfo(url=url)


@asynccontextmanager
async def open_backend(kind: str) -> AsyncIterator[ExecBackend]:
    """Open a backend of one of :data:`BACKEND_KINDS` for as long as the block lasts.

    ``remote`` runs a websocket exec server on 127.0.0.1 (a free port) in the block and
    connects to it. Use it where a fixture cannot serve, e.g. inside a hypothesis test,
    whose examples each run in a fresh ``trio.run``.

    **Cancellation:** the server stops and every process it ran is reaped.
    """
    if kind == "local":
        yield LocalBackend()
        return
    if kind != "remote":
        raise ValueError(f"unknown backend kind {kind!r}; expected one of {BACKEND_KINDS}")
    from .._remote import connect
    from .._server import serve_websocket

    async with open_service_nursery() as nursery:
        url: str = await nursery.start(serve_websocket, "127.0.0.1", 0)
        async with connect(url) as backend:
            yield backend
        nursery.cancel_scope.cancel()


@pytest.fixture(params=BACKEND_KINDS)
async def exec_backend(request: pytest.FixtureRequest) -> AsyncIterator[ExecBackend]:
    """Each backend in turn: ``local``, then ``remote`` (our client against our server)."""
    async with open_backend(request.param) as backend:
        yield backend
