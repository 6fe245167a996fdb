"""Helpers of the supervisor tests: children, process-group checks, free ports."""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable
from typing import Any, Final

import trio_exec._supervisor as sv

from ..conformance.helpers import group_alive as group_alive

TIMEOUT: Final = 30.0
"""Bound on any single wait in a test; a hang fails the test instead of the run."""

QUICK: Final[dict[str, Any]] = {
    "backoff_initial": 0.01,
    "backoff_max": 0.05,
    "grace": 2.0,
    "ready_timeout": 20.0,
}
"""Spec fields that keep tests fast: short backoff, bounded grace and readiness."""


def python(code: str) -> list[str]:
    """The argv that runs ``code`` in a fresh interpreter."""
    return [sys.executable, "-c", code]


def sh(script: str) -> list[str]:
    """The argv that runs ``script`` with ``sh``; ``echo $$`` prints its process group."""
    return ["sh", "-c", script]


def spec(name: str, argv: list[str], **fields: Any) -> sv.ChildSpec:
    """A spec with the :data:`QUICK` defaults, overridden by ``fields``."""
    return sv.ChildSpec(name=name, argv=argv, **{**QUICK, **fields})


def texts(status: sv.ChildStatus) -> list[str]:
    """The kept output lines of a status."""
    return [line.text for line in status.lines]


def has_line(text: str) -> Callable[[sv.ChildStatus], bool]:
    """A :meth:`ChildHandle.wait_until` predicate: a kept line equals ``text``."""
    return lambda status: text in texts(status)


def first_int_line(status: sv.ChildStatus) -> int:
    """The first kept line that is a number (the ``echo $$`` of a child)."""
    for line in status.lines:
        if line.text.strip().isdigit():
            return int(line.text)
    raise AssertionError(f"no number in {texts(status)!r}")


def has_int_line(status: sv.ChildStatus) -> bool:
    """Whether a kept line is a number."""
    return any(line.text.strip().isdigit() for line in status.lines)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
