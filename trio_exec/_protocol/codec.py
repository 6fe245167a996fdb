"""The envelope codec, and typed messages in and out of the envelope.

:func:`decode_message` turns one frame into a JSON-RPC message and :func:`encode_message`
does the reverse (compact, pure-ASCII JSON; bounded number literals);
:func:`decode_params`, :func:`decode_result`, :func:`decode_notification` and the
``make_*`` functions type the params and results through the converter.
"""

from __future__ import annotations

import json
import math
from typing import Final, assert_never

from .codes import INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND, _clip
from .converter import WIRE_INT_MAX, WIRE_INT_MIN, _converter, _describe, _structure
from .envelope import (
    ErrorObject,
    ErrorResponse,
    Message,
    Notification,
    Request,
    RequestId,
    Response,
    RpcDecodeError,
)
from .messages import (
    _METHODS,
    _NOTIFICATIONS,
    InitializedNotification,
    NotificationParams,
    OutputNotification,
    RequestParams,
    RequestResult,
)

__all__ = [
    "MAX_JSON_NUMBER_CHARS",
    "REQUEST_ID_MAX",
    "REQUEST_ID_MIN",
    "decode_message",
    "decode_notification",
    "decode_params",
    "decode_result",
    "encode_line",
    "encode_message",
    "make_error_response",
    "make_notification",
    "make_request",
    "make_response",
]

REQUEST_ID_MIN: Final = -(2**63)
"""The smallest integer request id accepted (ids are signed 64-bit integers or strings)."""
REQUEST_ID_MAX: Final = 2**63 - 1
"""The largest integer request id accepted."""
MAX_JSON_NUMBER_CHARS: Final = 64
"""The longest number literal :func:`decode_message` parses; longer ones are an error.

It keeps a hostile frame from making the decoder convert thousands of digits.
"""


# -- envelope codec ------------------------------------------------------------------------


class _BadJson(ValueError):
    pass


def _parse_int(text: str) -> int:
    if len(text) > MAX_JSON_NUMBER_CHARS:
        raise _BadJson(f"number too long ({len(text)} characters)")
    return int(text)


def _parse_float(text: str) -> float:
    if len(text) > MAX_JSON_NUMBER_CHARS:
        raise _BadJson(f"number too long ({len(text)} characters)")
    value = float(text)
    if not math.isfinite(value):
        raise _BadJson(f"number out of range: {text}")
    return value


def _reject_constant(text: str) -> object:
    raise _BadJson(f"{text} is not JSON")


_json_decoder: Final = json.JSONDecoder(
    parse_int=_parse_int, parse_float=_parse_float, parse_constant=_reject_constant
)
_json_encode: Final = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=True, allow_nan=False, check_circular=False
).encode


def _bad_frame(detail: str) -> RpcDecodeError:
    return RpcDecodeError(INVALID_REQUEST, f"failed to parse JSON-RPC message: {detail}")


def _request_id(value: object) -> RequestId:
    if type(value) is str or (type(value) is int and REQUEST_ID_MIN <= value <= REQUEST_ID_MAX):
        return value
    raise _bad_frame(
        f"invalid id {_describe(value)}: data did not match any variant of untagged enum RequestId"
    )


def decode_message(frame: str | bytes | bytearray | memoryview) -> Message:
    """Decode one frame (a websocket message or an NDJSON line) into a JSON-RPC message.

    A ``"jsonrpc"`` member is ignored. Typed params / results are decoded separately
    (:func:`decode_params`, :func:`decode_result`, :func:`decode_notification`).

    Raises:
        RpcDecodeError: code :data:`INVALID_REQUEST` (as the reference) for anything that
            is not one JSON-RPC object: invalid UTF-8, bad JSON, deep nesting, overlong
            numbers, a non-object, a null / float / boolean id, a missing member.
            Answer it with ``exc.to_response()`` (id -1) and keep the connection.
    """
    if isinstance(frame, str):
        text = frame
    else:
        try:
            text = bytes(frame).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _bad_frame(f"invalid UTF-8 at byte {exc.start}") from None
    try:
        value = _json_decoder.decode(text)
    except json.JSONDecodeError as exc:
        raise _bad_frame(f"{exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except _BadJson as exc:
        raise _bad_frame(str(exc)) from None
    except RecursionError:
        raise _bad_frame("recursion limit exceeded (too deeply nested)") from None
    except ValueError as exc:  # anything else the JSON decoder may raise
        raise _bad_frame(str(exc)) from None
    if type(value) is not dict:
        raise _bad_frame("expected a JSON-RPC object")
    method = value.get("method")
    if "method" in value:
        if type(method) is not str:
            raise _bad_frame(f"invalid type for `method`: {_describe(method)}, expected a string")
        params = value.get("params")
        if "id" in value:
            return Request(id=_request_id(value["id"]), method=method, params=params)
        return Notification(method=method, params=params)
    if "id" in value:
        if "result" in value:
            return Response(id=_request_id(value["id"]), result=value["result"])
        if "error" in value:
            return ErrorResponse(id=_request_id(value["id"]), error=_error_object(value["error"]))
    raise _bad_frame("data did not match any variant of untagged enum JSONRPCMessage")


def _error_object(value: object) -> ErrorObject:
    if type(value) is not dict:
        raise _bad_frame(f"invalid type for `error`: {_describe(value)}, expected a map")
    code = value.get("code")
    message = value.get("message")
    if type(code) is not int or not WIRE_INT_MIN <= code <= WIRE_INT_MAX:
        raise _bad_frame(f"invalid `error.code`: {_describe(code)}, expected an integer")
    if type(message) is not str:
        raise _bad_frame(f"invalid `error.message`: {_describe(message)}, expected a string")
    return ErrorObject(code=code, message=message, data=value.get("data"))


def encode_message(message: Message) -> str:
    """Encode a message as one compact, pure-ASCII JSON text (no newline).

    ``params`` of None is left out; ``error.data`` of None is left out.
    Raises TypeError / ValueError if ``params`` / ``result`` is not JSON-serialisable.
    """
    obj: dict[str, object]
    match message:
        case Request():
            obj = {"id": message.id, "method": message.method}
            if message.params is not None:
                obj["params"] = message.params
        case Notification():
            obj = {"method": message.method}
            if message.params is not None:
                obj["params"] = message.params
        case Response():
            obj = {"id": message.id, "result": message.result}
        case ErrorResponse():
            error: dict[str, object] = {
                "code": message.error.code,
                "message": message.error.message,
            }
            if message.error.data is not None:
                error["data"] = message.error.data
            obj = {"error": error, "id": message.id}
        case _:
            assert_never(message)
    return _json_encode(obj)


def encode_line(message: Message) -> bytes:
    """Encode a message as one NDJSON line for the stdio transport (ends with ``\\n``)."""
    return encode_message(message).encode("ascii") + b"\n"


# -- typed messages ------------------------------------------------------------------------


def decode_params(method: str, raw_params: object) -> RequestParams:
    """Type the params of a request (server side).

    Raises:
        RpcDecodeError: :data:`METHOD_NOT_FOUND` with the reference's message
            (``exec-server stub does not implement `<method>` yet``) for an unknown
            method; :data:`INVALID_PARAMS` for params that do not fit, e.g.
            ``missing field `writeId```, ``argv must not be empty``, ``invalid type:
            integer `5`, expected a string at `processId```.
    """
    spec = _METHODS.get(method)
    if spec is None:
        raise RpcDecodeError(
            METHOD_NOT_FOUND, f"exec-server stub does not implement `{_clip(method)}` yet"
        )
    return _structure(raw_params, spec[0], INVALID_PARAMS)


def decode_result(method: str, raw_result: object) -> RequestResult:
    """Type the result of a request to ``method`` (client side).

    Unknown fields (the reference's ``sandboxDenied``, most of ``environmentInfo``) are
    dropped.

    Raises:
        RpcDecodeError: :data:`INVALID_PARAMS` if the result does not fit its type,
            :data:`METHOD_NOT_FOUND` if ``method`` is not a known request method.
    """
    spec = _METHODS.get(method)
    if spec is None:
        raise RpcDecodeError(METHOD_NOT_FOUND, f"no result type for method `{_clip(method)}`")
    return _structure(raw_result, spec[1], INVALID_PARAMS)


def decode_notification(notification: Notification) -> NotificationParams:
    """Type a notification. The params of ``initialized`` are ignored; those of a binary
    output frame are typed already (see :func:`~trio_exec._protocol.decode_binary_output`).

    Raises:
        RpcDecodeError: :data:`METHOD_NOT_FOUND` for an unknown method (a client ignores
            it; the reference server drops the connection), :data:`INVALID_PARAMS` for
            params that do not fit.
    """
    cls = _NOTIFICATIONS.get(notification.method)
    if cls is None:
        raise RpcDecodeError(
            METHOD_NOT_FOUND, f"unknown notification `{_clip(notification.method)}`"
        )
    if cls is InitializedNotification:
        return InitializedNotification()
    if type(notification.params) is OutputNotification:
        return notification.params
    return _structure(notification.params, cls, INVALID_PARAMS)


def make_request(request_id: RequestId, params: RequestParams) -> Request:
    """The request for typed params (the method comes from the params type)."""
    return Request(id=request_id, method=params.METHOD, params=_converter.unstructure(params))


def make_response(request_id: RequestId, result: RequestResult) -> Response:
    """The response carrying a typed result."""
    return Response(id=request_id, result=_converter.unstructure(result))


def make_error_response(
    request_id: RequestId, code: int, message: str, data: object = None
) -> ErrorResponse:
    """An error response (``request_id`` is :data:`UNKNOWN_REQUEST_ID` for bad frames)."""
    return ErrorResponse(id=request_id, error=ErrorObject(code=code, message=message, data=data))


def make_notification(params: NotificationParams) -> Notification:
    """The notification for typed params (the method comes from the params type)."""
    return Notification(method=params.METHOD, params=_converter.unstructure(params))
