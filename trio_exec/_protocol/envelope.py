"""The JSON-RPC envelope: request, notification, response and error response.

Their ``params`` / ``result`` are plain JSON values. :class:`RpcDecodeError` is the error
a frame (or its params) that does not decode is answered with.
"""

from __future__ import annotations

from typing import TypeAlias

import attrs

from .._errors import ProtocolError
from .codes import UNKNOWN_REQUEST_ID

__all__ = [
    "ErrorObject",
    "ErrorResponse",
    "Message",
    "Notification",
    "Request",
    "RequestId",
    "Response",
    "RpcDecodeError",
]

RequestId: TypeAlias = int | str
"""A JSON-RPC request id: a signed 64-bit integer or a string, echoed unchanged."""


@attrs.frozen(kw_only=True)
class Request:
    """A JSON-RPC request; ``params`` is a plain JSON value (None when absent)."""

    id: RequestId
    """The id the response must echo."""
    method: str
    """The method name, e.g. ``"process/start"``."""
    params: object = None
    """The params as decoded JSON; :func:`decode_params` types them."""


@attrs.frozen(kw_only=True)
class Notification:
    """A JSON-RPC notification (no id, no response)."""

    method: str
    """The method name, e.g. ``"process/output"``."""
    params: object = None
    """The params as decoded JSON (None when absent); :func:`decode_notification` types them.
    A binary output frame (extension ``binaryOutput``) gives its typed
    :class:`~trio_exec._protocol.OutputNotification` here."""


@attrs.frozen(kw_only=True)
class Response:
    """A successful JSON-RPC response."""

    id: RequestId
    """The id of the request this answers."""
    result: object
    """The result as decoded JSON; :func:`decode_result` types it."""


@attrs.frozen(kw_only=True)
class ErrorObject:
    """The ``error`` member of an error response."""

    code: int
    """The JSON-RPC error code (see the ``*_ERROR`` / ``INVALID_*`` constants)."""
    message: str
    """For people."""
    data: object = None
    """Optional extra JSON value; None when absent."""


@attrs.frozen(kw_only=True)
class ErrorResponse:
    """A JSON-RPC error response."""

    error: ErrorObject
    """What went wrong."""
    id: RequestId
    """The id of the failed request, or :data:`UNKNOWN_REQUEST_ID` for an unparsable frame."""


Message: TypeAlias = Request | Notification | Response | ErrorResponse
"""Any JSON-RPC message."""


class RpcDecodeError(ProtocolError):
    """A received frame or its params could not be decoded.

    Carries the JSON-RPC error to answer with: ``code`` is :data:`INVALID_REQUEST` for a
    bad frame, :data:`METHOD_NOT_FOUND` for an unknown method and :data:`INVALID_PARAMS`
    for params (or results) that do not match their type.
    """

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        """The JSON-RPC error code."""
        self.message = message
        """The error message, reference-like (``missing field `writeId```)."""

    def error_object(self) -> ErrorObject:
        """The error as the ``error`` member of a response."""
        return ErrorObject(code=self.code, message=self.message)

    def to_response(self, request_id: RequestId = UNKNOWN_REQUEST_ID) -> ErrorResponse:
        """The error response to send; by default with the id of an unparsable frame."""
        return ErrorResponse(id=request_id, error=self.error_object())
