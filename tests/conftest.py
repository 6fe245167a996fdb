"""Fixtures shared by the whole suite.

The ``exec_backend`` fixture comes from trio_exec's own pytest plugin
(``trio_exec.testing.pytest_plugin``, registered through the ``pytest11`` entry point);
``backend`` is the conformance suite's name for it: every test that takes it runs once
per backend.
"""

from __future__ import annotations

import pytest

import trio_exec as tx


@pytest.fixture
def backend(exec_backend: tx.ExecBackend) -> tx.ExecBackend:
    """Each backend in turn: ``local``, ``remote`` (our client against our server)."""
    return exec_backend
