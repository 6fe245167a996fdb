"""Request / response matching for one connection, without I/O (:class:`RpcClientState`)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TypeVar

import attrs

from .._errors import ConnectionLost, ProtocolError, RemoteError, TrioExecError
from .codec import decode_result, make_request
from .envelope import ErrorResponse, Request, RequestId, Response, RpcDecodeError
from .messages import RequestParams, RequestResult

__all__ = [
    "Reply",
    "RpcClientState",
]

_R = TypeVar("_R")


@attrs.frozen(kw_only=True)
class Reply:
    """The outcome of one request, as matched by :class:`RpcClientState`.

    Exactly one of ``result`` and ``error`` is set.
    """

    request_id: int
    """The id of the request."""
    method: str
    """The method of the request."""
    result: RequestResult | None = None
    """The typed result on success."""
    error: TrioExecError | None = None
    """:class:`RemoteError` (the peer's error response), :class:`RpcDecodeError` (a result
    that did not decode) or :class:`ConnectionLost` (from :meth:`RpcClientState.fail_all`)."""

    def expect(self, result_type: type[_R]) -> _R:
        """Return the result as ``result_type``, or raise the error.

        Raises:
            RemoteError, RpcDecodeError, ConnectionLost: the ``error``.
            ProtocolError: the result is not a ``result_type``.
        """
        if self.error is not None:
            raise self.error
        if not isinstance(self.result, result_type):
            raise ProtocolError(
                f"{self.method} returned {type(self.result).__name__}, not {result_type.__name__}"
            )
        return self.result


class RpcClientState:
    """Request ids and pending requests of one connection, without I/O.

    Ids are integers from 1. The owner sends the :class:`Request` that
    :meth:`send_request` returns, feeds every :class:`Response` / :class:`ErrorResponse`
    to :meth:`receive_response`, and calls :meth:`fail_all` when the connection is lost.
    A server (which sends no requests) can use one to reject stray responses.
    """

    def __init__(self) -> None:
        self._next_id = 1
        self._pending: dict[int, str] = {}
        self._abandoned: set[int] = set()

    @property
    def pending(self) -> Mapping[int, str]:
        """Read-only view of the pending requests: id -> method."""
        return MappingProxyType(self._pending)

    def send_request(self, params: RequestParams) -> Request:
        """Allocate an id, record the request as pending and return it (to be sent)."""
        request_id = self._next_id
        self._next_id += 1
        self._pending[request_id] = params.METHOD
        return make_request(request_id, params)

    def abandon(self, request_id: RequestId) -> None:
        """Forget a pending request whose caller gave up (e.g. was cancelled).

        Its response, if it comes, is then dropped by :meth:`receive_response`.
        """
        if type(request_id) is int and self._pending.pop(request_id, None) is not None:
            self._abandoned.add(request_id)

    def receive_response(self, message: Response | ErrorResponse) -> Reply | None:
        """Match a response to its pending request and type it.

        Returns the :class:`Reply`, or None when the request was abandoned.

        Raises:
            ProtocolError: the id matches no pending request (the connection is broken).
        """
        request_id = message.id
        method = self._pending.pop(request_id, None) if type(request_id) is int else None
        if method is None:
            if type(request_id) is int and request_id in self._abandoned:
                self._abandoned.discard(request_id)
                return None
            detail = ""
            if isinstance(message, ErrorResponse):
                detail = f" ([{message.error.code}] {message.error.message})"
            raise ProtocolError(f"response to unknown request id {request_id!r}{detail}")
        assert type(request_id) is int
        if isinstance(message, ErrorResponse):
            error = RemoteError(message.error.code, message.error.message, message.error.data)
            return Reply(request_id=request_id, method=method, error=error)
        try:
            result = decode_result(method, message.result)
        except RpcDecodeError as exc:
            return Reply(request_id=request_id, method=method, error=exc)
        return Reply(request_id=request_id, method=method, result=result)

    def fail_all(self, reason: str) -> list[Reply]:
        """Fail every pending request with :class:`ConnectionLost` and forget them all."""
        replies = [
            Reply(request_id=request_id, method=method, error=ConnectionLost(reason))
            for request_id, method in self._pending.items()
        ]
        self._pending.clear()
        self._abandoned.clear()
        return replies
