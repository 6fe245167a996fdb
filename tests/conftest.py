"""Fixtures shared by the whole suite.

``backend`` is the conformance fixture: every test that takes it runs once per backend.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

import trio_exec as tx

BACKENDS = ["local"]


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[tx.ExecBackend]:
    """Each backend in turn: ``local``, ``remote`` (our client against our server)."""
    if request.param == "local":
        yield tx.LocalBackend()
    else:  # pragma: no cover - every param is handled above
        raise AssertionError(request.param)
