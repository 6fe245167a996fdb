"""Property tests: every message type survives encode -> decode unchanged, and decoding
arbitrary input raises nothing but :class:`RpcDecodeError`."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from trio_exec._protocol import (
    Message,
    Notification,
    NotificationParams,
    OutputNotification,
    Request,
    RequestId,
    RequestParams,
    RequestResult,
    Response,
    RpcDecodeError,
    decode_message,
    decode_notification,
    decode_params,
    decode_result,
    encode_line,
    encode_message,
    make_notification,
    make_request,
    make_response,
)

from . import strategies as pst

METHODS = [
    "initialize",
    "process/start",
    "process/read",
    "process/write",
    "process/signal",
    "process/terminate",
    "process/closeStdin",
    "process/resize",
    "process/list",
]


@given(pst.messages)
def test_envelope_round_trip(message: Message) -> None:
    text = encode_message(message)
    assert text.isascii()
    assert "\n" not in text
    assert decode_message(text) == message
    assert decode_message(text.encode("utf-8")) == message


@given(pst.request_ids, pst.request_params)
def test_request_params_round_trip(request_id: RequestId, params: RequestParams) -> None:
    decoded = decode_message(encode_message(make_request(request_id, params)))
    assert isinstance(decoded, Request)
    assert decoded.id == request_id
    assert decoded.method == params.METHOD
    assert decode_params(decoded.method, decoded.params) == params


@given(pst.request_ids, pst.method_results)
def test_result_round_trip(request_id: RequestId, method_result: tuple[str, RequestResult]) -> None:
    method, result = method_result
    decoded = decode_message(encode_line(make_response(request_id, result)))
    assert isinstance(decoded, Response)
    assert decoded.id == request_id
    assert decode_result(method, decoded.result) == result


@given(pst.notification_params)
def test_notification_round_trip(params: NotificationParams) -> None:
    decoded = decode_message(encode_message(make_notification(params)))
    assert isinstance(decoded, Notification)
    assert decoded.method == params.METHOD
    assert decode_notification(decoded) == params


@given(pst.output_notifications)
def test_output_event_round_trip(notification: OutputNotification) -> None:
    event = notification.to_event()
    assert event.data == notification.chunk
    assert OutputNotification.from_event(notification.process_id, event) == notification


def decode_error_code(call: Callable[[], object]) -> int | None:
    """Run a decoder; return the code of its RpcDecodeError, or None if it succeeded.

    An error without a message gives 0; any other exception propagates and fails the test.
    """
    try:
        call()
    except RpcDecodeError as exc:
        return exc.code if exc.message else 0
    return None


@given(st.binary(max_size=256))
def test_arbitrary_bytes_only_raise_decode_error(frame: bytes) -> None:
    assert decode_error_code(lambda: decode_message(frame)) in (None, -32600)


@given(pst.json_values)
def test_arbitrary_json_only_raises_decode_error(value: Any) -> None:
    assert decode_error_code(lambda: decode_message(json.dumps(value))) in (None, -32600)


@given(st.sampled_from(METHODS), pst.json_values)
def test_arbitrary_params_only_raise_invalid_params(method: str, params: Any) -> None:
    assert decode_error_code(lambda: decode_params(method, params)) in (None, -32602)


@given(
    st.sampled_from(METHODS),
    st.dictionaries(
        st.sampled_from(
            [
                "processId",
                "argv",
                "cwd",
                "env",
                "tty",
                "chunk",
                "writeId",
                "signal",
                "rows",
                "cols",
                "afterSeq",
                "maxBytes",
                "waitMs",
                "graceMs",
                "clientName",
                "pipeStdin",
                "arg0",
                "envPolicy",
                "resumeSessionId",
            ]
        ),
        pst.json_values,
    ),
)
def test_params_with_known_keys_only_raise_invalid_params(
    method: str, params: dict[str, Any]
) -> None:
    assert decode_error_code(lambda: decode_params(method, params)) in (None, -32602)


@given(st.sampled_from(METHODS), pst.json_values)
def test_arbitrary_results_only_raise_decode_error(method: str, result: Any) -> None:
    assert decode_error_code(lambda: decode_result(method, result)) in (None, -32602)


@given(
    st.sampled_from(["process/output", "process/exited", "process/closed", "initialized", "x"]),
    pst.json_values,
)
def test_arbitrary_notifications_only_raise_decode_error(method: str, params: Any) -> None:
    notification = Notification(method=method, params=params)
    assert decode_error_code(lambda: decode_notification(notification)) in (None, -32601, -32602)


def test_decode_error_code_sees_failures() -> None:
    assert decode_error_code(lambda: decode_message("[]")) == -32600
    assert decode_error_code(lambda: decode_params("nope", None)) == -32601
