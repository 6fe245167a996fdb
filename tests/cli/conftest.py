"""Fixtures of the CLI tests: the real reference server and our own, as URLs."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio

from trio_exec._server import serve_websocket
from trio_exec.testing.reference import ensure_reference, open_reference_server

from ..helpers import reference_binary, reference_url  # noqa: F401 (fixtures)


@pytest.fixture
async def our_url(nursery: trio.Nursery) -> str:
    """Our own exec server (``serve_websocket``) on a free loopback port."""
    url: str = await nursery.start(serve_websocket, "127.0.0.1", 0)
    return url


@pytest.fixture(params=["local", "trio_exec", "reference"])
async def where(request: pytest.FixtureRequest, nursery: trio.Nursery) -> AsyncIterator[list[str]]:
    """The ``run`` options of each place a command can run: here (``[]``), on our server,
    on the reference (``["--remote", URL]``)."""
    if request.param == "local":
        yield []
    elif request.param == "trio_exec":
        url: str = await nursery.start(serve_websocket, "127.0.0.1", 0)
        yield ["--remote", url]
    else:
        async with open_reference_server(ensure_reference()) as reference:
            yield ["--remote", reference]
