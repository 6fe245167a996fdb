"""Fixtures of the remote client tests: the real reference server, and ours."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from trio_exec.testing.reference import open_reference_server

from ..helpers import reference_binary, reference_url

__all__ = ["SERVER_KINDS", "reference_binary", "reference_url", "server_url"]

SERVER_KINDS = ["reference", "trio_exec"]
"""The servers that tests taking ``server_url`` run against."""


@pytest.fixture(params=SERVER_KINDS)
async def server_url(
    request: pytest.FixtureRequest, nursery: trio.Nursery, reference_binary: Path
) -> AsyncIterator[str]:
    """Each server in turn: the reference, then trio_exec's own ``serve_websocket``."""
    if request.param == "reference":
        async with open_reference_server(reference_binary) as url:
            yield url
        return
    try:
        from trio_exec._server import serve_websocket
    except ImportError:  # pragma: no cover - the server is written concurrently
        pytest.skip("trio_exec._server.serve_websocket does not exist yet")
    our_url: str = await nursery.start(serve_websocket, "127.0.0.1", 0)
    yield our_url
