"""Supervisor readiness probes: a TCP connection attempt and a user's check.

The probes of :class:`ReadyOnPort` and :class:`ReadyOnCheck`, and the helper that ends a
readiness wait when an event is set. (:class:`ReadyOnOutput` is matched line by line as
the output arrives, in the child runner.)
"""

from __future__ import annotations

import inspect
from typing import Final

import trio

from .spec import ReadyOnCheck, ReadyOnPort

__all__ = ["PORT_CONNECT_TIMEOUT", "_cancel_when_set", "_check_ready"]

PORT_CONNECT_TIMEOUT: Final = 1.0
"""Bound on one connection attempt of :class:`ReadyOnPort`, seconds."""


async def _port_open(host: str, port: int) -> bool:
    with trio.move_on_after(PORT_CONNECT_TIMEOUT):
        try:
            stream = await trio.open_tcp_stream(host, port)
        except OSError:
            return False
        await stream.aclose()
        return True
    return False


async def _check_ready(ready: ReadyOnPort | ReadyOnCheck) -> bool:
    """One probe of ``ready``: whether the port accepts a connection, or the check holds."""
    if isinstance(ready, ReadyOnPort):
        return await _port_open(ready.host, ready.port)
    try:
        result = ready.check()
        if inspect.isawaitable(result):
            result = await result
    except OSError:
        return False
    return bool(result)


async def _cancel_when_set(event: trio.Event, scope: trio.CancelScope) -> None:
    """Cancel ``scope`` once ``event`` is set."""
    await event.wait()
    scope.cancel()
