"""The one classification of "the transport went away", shared by the remote client (to
resume) and the websocket server (to log quietly)."""

from __future__ import annotations

import errno

import pytest
import trio
import trio_websocket

import trio_exec as tx
from trio_exec._transport import TRANSPORT_ERRORS, is_transport_error

CLOSE: trio_websocket.CloseReason = trio_websocket.CloseReason(1006, None)

GONE: list[Exception] = [
    tx.ConnectionLost("the websocket was closed", close_code=1006),
    ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"),
    OSError(errno.EPIPE, "Broken pipe"),
    trio.BrokenResourceError("the stream broke"),
    trio.ClosedResourceError("closed"),
    trio_websocket.ConnectionClosed(CLOSE),
    trio_websocket.HandshakeError(),
    trio_websocket.ConnectionTimeout(),
    trio_websocket.DisconnectionTimeout(),
]


@pytest.mark.parametrize("exc", GONE, ids=[type(exc).__name__ for exc in GONE])
def test_a_transport_that_went_away(exc: Exception) -> None:
    assert isinstance(exc, TRANSPORT_ERRORS)
    assert is_transport_error(exc)
    assert is_transport_error(BaseExceptionGroup("one", [exc]))


def test_every_trio_websocket_exception_is_a_transport_error() -> None:
    exported = [
        value
        for value in vars(trio_websocket).values()
        if isinstance(value, type) and issubclass(value, BaseException)
    ]
    assert exported
    assert all(issubclass(cls, TRANSPORT_ERRORS) for cls in exported)


def test_a_group_is_one_only_when_every_leaf_is() -> None:
    nested = ExceptionGroup("outer", [ExceptionGroup("inner", GONE[:3]), GONE[3]])
    assert is_transport_error(nested)
    assert not is_transport_error(ExceptionGroup("mixed", [GONE[0], ValueError("bug")]))


@pytest.mark.parametrize(
    "exc",
    [ValueError("bug"), tx.ProtocolError("bad frame"), tx.RemoteError(-32600, "no")],
    ids=["ValueError", "ProtocolError", "RemoteError"],
)
def test_other_errors_are_not(exc: BaseException) -> None:
    assert not is_transport_error(exc)
    assert not issubclass(trio.Cancelled, TRANSPORT_ERRORS)
