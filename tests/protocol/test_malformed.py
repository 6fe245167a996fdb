"""Malformed frames, params and results: each gives an RpcDecodeError with the right code
and a useful message, never another exception."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from trio_exec._errors import ProtocolError
from trio_exec._protocol import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    MAX_ECHOED_CHARS,
    METHOD_NOT_FOUND,
    UNKNOWN_REQUEST_ID,
    ErrorResponse,
    ListParams,
    Notification,
    Request,
    Response,
    RpcDecodeError,
    StartParams,
    TerminateParams,
    WriteParams,
    decode_message,
    decode_notification,
    decode_params,
    decode_result,
    encode_message,
)

DEEP = "[" * 100_000 + "]" * 100_000

BAD_FRAMES: list[tuple[str | bytes, str]] = [
    ('{"id":1,"method":"initialize","params":{"clientName":"x"}', "line 1 column"),
    ('{"id":1,"method":', "line 1 column"),
    ("", "Expecting value"),
    ("   ", "Expecting value"),
    ("not json", "Expecting value"),
    ('{"method":"a"}{"method":"b"}', "Extra data"),
    ('{"method":"a"}\n{"method":"b"}', "Extra data"),
    ("[]", "expected a JSON-RPC object"),
    ('[{"id":1,"method":"initialize"}]', "expected a JSON-RPC object"),
    ('"initialize"', "expected a JSON-RPC object"),
    ("42", "expected a JSON-RPC object"),
    ("null", "expected a JSON-RPC object"),
    ('{"id":null,"method":"initialize"}', "untagged enum RequestId"),
    ('{"id":1.5,"method":"initialize"}', "untagged enum RequestId"),
    ('{"id":1.0,"method":"initialize"}', "untagged enum RequestId"),
    ('{"id":true,"method":"initialize"}', "untagged enum RequestId"),
    ('{"id":[1],"method":"initialize"}', "untagged enum RequestId"),
    ('{"id":{},"result":{}}', "untagged enum RequestId"),
    ('{"id":9223372036854775808,"method":"initialize"}', "untagged enum RequestId"),
    ('{"id":null,"result":{}}', "untagged enum RequestId"),
    ('{"id":null,"error":{"code":-32600,"message":"m"}}', "untagged enum RequestId"),
    ('{"id":' + "9" * 5000 + ',"method":"x"}', "number too long"),
    ('{"method":"x","params":[' + "1" * 100 + "]}", "number too long"),
    ('{"method":"x","params":1e400}', "number out of range"),
    ('{"method":"x","params":NaN}', "NaN is not JSON"),
    ('{"method":"x","params":-Infinity}', "-Infinity is not JSON"),
    (DEEP, "too deeply nested"),
    ('{"id":1,"method":"x","params":' + DEEP + "}", "too deeply nested"),
    ('{"method":"x","params":' + '{"a":' * 50_000 + "1" + "}" * 50_000 + "}", "too deeply nested"),
    ("{}", "did not match any variant of untagged enum JSONRPCMessage"),
    ('{"jsonrpc":"2.0"}', "did not match any variant"),
    ('{"id":1}', "did not match any variant"),
    ('{"result":{}}', "did not match any variant"),
    ('{"error":{"code":1,"message":"m"}}', "did not match any variant"),
    ('{"method":5}', "invalid type for `method`: integer `5`, expected a string"),
    ('{"id":1,"method":null}', "invalid type for `method`: null"),
    ('{"id":1,"error":"boom"}', "invalid type for `error`"),
    ('{"id":1,"error":{"code":"x","message":"m"}}', "error.code"),
    ('{"id":1,"error":{"code":1.5,"message":"m"}}', "error.code"),
    ('{"id":1,"error":{"code":-32600}}', "error.message"),
    (b'{"id":1,"method":"\xff"}', "invalid UTF-8 at byte 18"),
    (b"\xc3\x28", "invalid UTF-8 at byte 0"),
    (b'{"id":1,"method":"x","params":"\xed\xa0\x80"}', "invalid UTF-8"),  # encoded surrogate
    ('\ufeff{"method":"x"}', "Expecting value at line 1 column 1"),  # a BOM is not JSON
]


def _short_id(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


@pytest.mark.parametrize(("frame", "fragment"), BAD_FRAMES, ids=_short_id)
def test_bad_frame(frame: str | bytes, fragment: str) -> None:
    with pytest.raises(RpcDecodeError) as info:
        decode_message(frame)
    error = info.value
    assert isinstance(error, ProtocolError)
    assert error.code == INVALID_REQUEST
    assert error.message.startswith("failed to parse JSON-RPC message: ")
    assert fragment in error.message
    # The answer to a bad frame has id -1, error before id, as the reference's.
    response = error.to_response()
    assert response.id == UNKNOWN_REQUEST_ID
    assert encode_message(response).startswith('{"error":{"code":-32600,"message":"failed to parse')
    assert encode_message(response).endswith('},"id":-1}')


def test_bad_frame_fed_as_bytearray() -> None:
    with pytest.raises(RpcDecodeError, match="expected a JSON-RPC object"):
        decode_message(bytearray(b"[1]"))


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ('{"jsonrpc":"2.0","id":1,"method":"m"}', Request(id=1, method="m")),
        (
            '{"jsonrpc":"1.0","id":"","method":"m","params":[1]}',
            Request(id="", method="m", params=[1]),
        ),
        ('{"id":-9223372036854775808,"method":"m"}', Request(id=-(2**63), method="m")),
        ('{"id":9223372036854775807,"method":"m"}', Request(id=2**63 - 1, method="m")),
        ('{"method":"m","params":null}', Notification(method="m")),
        ('  {"method":"m"}  \n', Notification(method="m")),
        ('{"id":"a","result":null}', Response(id="a", result=None)),
        ('{"id":2,"result":{},"error":{"code":1,"message":"m"}}', Response(id=2, result={})),
        ('{"id":1,"method":"m","result":1}', Request(id=1, method="m")),
        (
            '{"id":1,"method":"\\u00e9","params":"\\ud800"}',
            Request(id=1, method="é", params="\ud800"),
        ),
    ],
)
def test_good_frame(frame: str, expected: Request | Notification | Response) -> None:
    assert decode_message(frame) == expected
    assert decode_message(frame.encode("utf-8")) == expected


def test_error_response_data_is_kept() -> None:
    message = decode_message('{"id":1,"error":{"code":-1,"message":"m","data":[1,{"a":null}]}}')
    assert isinstance(message, ErrorResponse)
    assert message.error.code == -1
    assert message.error.data == [1, {"a": None}]


def test_encode_is_compact_and_ascii() -> None:
    text = encode_message(Request(id=1, method="é", params={"a": [1, 2], "b": "\ud800"}))
    assert text == '{"id":1,"method":"\\u00e9","params":{"a":[1,2],"b":"\\ud800"}}'
    assert decode_message(text) == Request(id=1, method="é", params={"a": [1, 2], "b": "\ud800"})


def test_encode_refuses_nan() -> None:
    with pytest.raises(ValueError, match="JSON compliant"):
        encode_message(Notification(method="m", params=float("nan")))


START = {
    "processId": "p1",
    "argv": ["true"],
    "cwd": "file:///tmp",
    "env": {},
    "tty": False,
}

BAD_PARAMS: list[tuple[str, Any, str]] = [
    ("initialize", None, "invalid type: null, expected struct InitializeParams"),
    ("initialize", {}, "missing field `clientName`"),
    (
        "initialize",
        {"clientName": 5},
        "invalid type: integer `5`, expected a string at `clientName`",
    ),
    ("initialize", {"clientName": "c", "resumeSessionId": 1}, "at `resumeSessionId`"),
    ("process/start", {**START, "argv": []}, "argv must not be empty"),
    ("process/start", {**START, "argv": "ls"}, 'string "ls", expected a sequence at `argv`'),
    ("process/start", {**START, "argv": ["ls", 1]}, "expected a string at `argv[1]`"),
    ("process/start", {k: v for k, v in START.items() if k != "tty"}, "missing field `tty`"),
    ("process/start", {k: v for k, v in START.items() if k != "env"}, "missing field `env`"),
    ("process/start", {**START, "tty": 1}, "integer `1`, expected a boolean at `tty`"),
    ("process/start", {**START, "tty": "true"}, "expected a boolean at `tty`"),
    ("process/start", {**START, "pipeStdin": None}, "null, expected a boolean at `pipeStdin`"),
    ("process/start", {**START, "processId": 7}, "expected a string at `processId`"),
    ("process/start", {**START, "env": []}, "sequence, expected a map at `env`"),
    ("process/start", {**START, "env": {"A": 1}}, 'expected a string at `env["A"]`'),
    ("process/start", {**START, "envPolicy": "all"}, "expected a map at `envPolicy`"),
    ("process/start", {**START, "cwd": "/tmp"}, "invalid URI: relative URL without a base"),
    ("process/start", {**START, "cwd": "tmp"}, "invalid URI: relative URL without a base"),
    ("process/start", {**START, "cwd": "http://h/tmp"}, "not a file:// URI"),
    ("process/start", {**START, "cwd": "file://server/share"}, "another host"),
    ("process/start", {**START, "cwd": "file:///a%00b"}, "NUL"),
    ("process/start", [], "invalid type: sequence, expected struct StartParams"),
    ("process/read", {"processId": "p", "waitMs": -1}, "invalid number: waitMs must be >= 0"),
    ("process/read", {"processId": "p", "maxBytes": -5}, "invalid number: maxBytes must be >= 0"),
    ("process/read", {"processId": "p", "afterSeq": -1}, "invalid number: afterSeq must be >= 0"),
    (
        "process/read",
        {"processId": "p", "waitMs": 1.5},
        "floating point `1.5`, expected an integer",
    ),
    ("process/read", {"processId": "p", "waitMs": "5"}, "expected an integer at `waitMs`"),
    ("process/read", {"processId": "p", "waitMs": True}, "boolean `true`, expected an integer"),
    ("process/read", {"processId": "p", "afterSeq": 2**64}, "out of range"),
    ("process/read", {}, "missing field `processId`"),
    ("process/write", {"processId": "p", "chunk": "aGk="}, "missing field `writeId`"),
    (
        "process/write",
        {"processId": "p", "chunk": "aGk=", "writeId": ""},
        "writeId must not be empty",
    ),
    ("process/write", {"processId": "p", "chunk": 5, "writeId": "w"}, "expected a base64 string"),
    ("process/signal", {"processId": "p", "signal": "kill9"}, "unknown variant `kill9`"),
    ("process/signal", {"processId": "p", "signal": "SIGINT"}, "expected one of `interrupt`"),
    ("process/signal", {"processId": "p", "signal": 2}, "expected a string at `signal`"),
    ("process/terminate", [], "invalid type: sequence, expected struct TerminateParams"),
    ("process/terminate", "p", 'string "p", expected struct TerminateParams'),
    ("process/terminate", {"processId": "p", "graceMs": -1}, "graceMs must be >= 0"),
    ("process/resize", {"processId": "p", "rows": 0, "cols": 80}, "rows must be in 1..65535"),
    ("process/resize", {"processId": "p", "rows": 24, "cols": 65536}, "cols must be in 1..65535"),
    ("process/list", [], "invalid type: sequence, expected struct ListParams"),
]


@pytest.mark.parametrize(("method", "params", "fragment"), BAD_PARAMS)
def test_bad_params(method: str, params: Any, fragment: str) -> None:
    with pytest.raises(RpcDecodeError) as info:
        decode_params(method, params)
    assert info.value.code == INVALID_PARAMS
    assert fragment in info.value.message


def test_several_problems_are_all_reported() -> None:
    with pytest.raises(RpcDecodeError) as info:
        decode_params("process/write", {"processId": 1, "chunk": "*"})
    message = info.value.message
    assert "expected a string at `processId`" in message
    assert "invalid base64" in message
    assert "missing field `writeId`" in message


BAD_BASE64 = [
    ("*aGk=", "invalid symbol 42, offset 0"),
    ("aGk", "invalid padding"),
    ("aGk==", "invalid padding"),
    ("aG=k", "invalid symbol 61, offset 2"),
    ("aGl=", "invalid last symbol 108"),  # non-zero padding bits
    ("aGk=\n", "invalid symbol 10, offset 4"),
    (" aGk=", "invalid symbol 32, offset 0"),
    ("a-_b", "invalid symbol 45, offset 1"),  # URL-safe alphabet
    ("é===", "invalid symbol 233, offset 0"),
    ("a===", "invalid"),
    ("====", "invalid"),
    ("1CBA=", "invalid symbol 61, offset 4"),  # padding past a whole quantum (reference: the same)
    ("AAAA====", "invalid symbol 61, offset 4"),
    ("aGk=aGk=", "invalid symbol 61, offset 3"),
]


@pytest.mark.parametrize(("chunk", "fragment"), BAD_BASE64)
def test_invalid_base64_is_invalid_params(chunk: str, fragment: str) -> None:
    with pytest.raises(RpcDecodeError) as info:
        decode_params("process/write", {"processId": "p", "chunk": chunk, "writeId": "w"})
    assert info.value.code == INVALID_PARAMS
    assert "invalid base64" in info.value.message
    assert fragment in info.value.message
    assert info.value.message.endswith("at `chunk`")


@pytest.mark.parametrize(
    ("chunk", "data"),
    [("", b""), ("aA==", b"h"), ("aGk=", b"hi"), ("aGkK", b"hi\n"), ("+/8=", b"\xfb\xff")],
)
def test_valid_base64(chunk: str, data: bytes) -> None:
    params = decode_params("process/write", {"processId": "p", "chunk": chunk, "writeId": "w"})
    assert params == WriteParams(process_id="p", chunk=data, write_id="w")


@pytest.mark.parametrize(
    "method", ["fs/readFile", "process/failed", "", "initialized", "Process/Start"]
)
def test_unknown_method(method: str) -> None:
    with pytest.raises(RpcDecodeError) as info:
        decode_params(method, {})
    assert info.value.code == METHOD_NOT_FOUND
    assert info.value.message == f"exec-server stub does not implement `{method}` yet"


def test_unknown_extra_fields_are_ignored() -> None:
    params = decode_params("process/terminate", {"processId": "p", "bogus": [1], "trace": {}})
    assert params == TerminateParams(process_id="p")


def test_start_params_unknown_reference_fields_are_ignored() -> None:
    params = decode_params(
        "process/start", {**START, "sandbox": None, "enforceManagedNetwork": False}
    )
    assert isinstance(params, StartParams)
    assert params.cwd_path == "/tmp"


@pytest.mark.parametrize("raw", [None, {}, {"extra": 1}])
def test_unit_params_accept_null_and_empty(raw: Any) -> None:
    assert decode_params("process/list", raw) == ListParams()


def test_unknown_notification() -> None:
    with pytest.raises(RpcDecodeError) as info:
        decode_notification(Notification(method="network/policyDecision", params={}))
    assert info.value.code == METHOD_NOT_FOUND


def test_bad_notification_params() -> None:
    with pytest.raises(RpcDecodeError) as info:
        decode_notification(
            Notification(
                method="process/output", params={"processId": "p", "seq": -1, "stream": "x"}
            )
        )
    assert info.value.code == INVALID_PARAMS
    assert "unknown variant `x`" in info.value.message
    assert "missing field `chunk`" in info.value.message


def test_bad_results() -> None:
    with pytest.raises(RpcDecodeError, match="missing field `processId`") as info:
        decode_result("process/start", {"sandboxType": "none"})
    assert info.value.code == INVALID_PARAMS
    with pytest.raises(RpcDecodeError, match=r"expected a base64 string at `chunks\[0\].chunk`"):
        decode_result(
            "process/read",
            {
                "chunks": [{"seq": 1, "stream": "stdout", "chunk": 1}],
                "nextSeq": 2,
                "exited": False,
                "exitCode": None,
                "closed": False,
                "failure": None,
            },
        )
    with pytest.raises(RpcDecodeError, match="unknown variant `done`"):
        decode_result("process/write", {"status": "done"})
    with pytest.raises(RpcDecodeError) as info:
        decode_result("process/nope", {})
    assert info.value.code == METHOD_NOT_FOUND


def test_models_check_their_rules_in_python() -> None:
    with pytest.raises(ValueError, match="write_id must not be empty"):
        WriteParams(process_id="p", chunk=b"", write_id="")
    with pytest.raises(ValueError, match="argv must not be empty"):
        StartParams(process_id="p", argv=(), cwd="file:///", env={}, tty=False)
    with pytest.raises(ValueError, match="relative URL without a base"):
        StartParams(process_id="p", argv=("x",), cwd="/tmp", env={}, tty=False)
    with pytest.raises(ValueError, match="grace_ms must be >= 0"):
        TerminateParams(process_id="p", grace_ms=-1)


def test_error_messages_clip_what_the_peer_sent() -> None:
    huge = "x" * 100_000
    cases: list[Callable[[], object]] = [
        lambda: decode_params(huge, {}),
        lambda: decode_params("process/signal", {"processId": "p", "signal": huge}),
        lambda: decode_params("process/start", {**START, "cwd": "file://" + huge + "/"}),
        lambda: decode_params("process/start", {**START, "cwd": huge}),
        lambda: decode_params("process/start", {**START, "tty": huge}),
        lambda: decode_notification(Notification(method=huge)),
        lambda: decode_message('{"id":"' + huge + '","method":5}'),
    ]
    for case in cases:
        with pytest.raises(RpcDecodeError) as info:
            case()
        assert 10 < len(info.value.message) < 3 * MAX_ECHOED_CHARS, info.value.message[:700]
