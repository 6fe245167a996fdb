"""The hot paths of ``process/output`` agree with the model layer, byte for byte, and the
fast base64 decoder refuses exactly what the strict one refused."""

from __future__ import annotations

import base64
import binascii
import json
import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from trio_exec._events import OutputStream
from trio_exec._protocol import (
    BINARY_OUTPUT_SEPARATOR,
    WIRE_INT_MAX,
    ClientConnection,
    Extension,
    InitializedNotification,
    InitializeParams,
    Notification,
    NotificationReceived,
    OutputNotification,
    RpcDecodeError,
    decode_binary_output,
    decode_message,
    decode_notification,
    encode_binary_output,
    encode_message,
    encode_output_notification,
    make_notification,
)
from trio_exec._protocol.converter import _canonical_base64, _structure_bytes, _WireError

process_ids = st.text(max_size=40)  # any text: escapes, non-ASCII, lone surrogates
seqs = st.integers(min_value=0, max_value=WIRE_INT_MAX)
streams = st.sampled_from(OutputStream)
chunks = st.binary(max_size=600)


@given(process_ids, seqs, streams, chunks)
@example('p\u00e9"\\\n\ud800', 0, OutputStream.STDOUT, b"")
def test_output_notification_is_the_model_layers_bytes(
    process_id: str, seq: int, stream: OutputStream, data: bytes
) -> None:
    notification = OutputNotification(process_id=process_id, seq=seq, stream=stream, chunk=data)
    slow = encode_message(make_notification(notification)).encode("utf-8")
    assert encode_output_notification(process_id, seq, stream, data) == slow


@given(process_ids, seqs, streams, chunks)
def test_binary_output_round_trips(
    process_id: str, seq: int, stream: OutputStream, data: bytes
) -> None:
    frame = encode_binary_output(process_id, seq, stream, data)
    header, separator, tail = frame.partition(BINARY_OUTPUT_SEPARATOR)
    assert separator
    assert tail == data
    # The header is the text form without its chunk.
    message = decode_message(header)
    assert isinstance(message, Notification)
    assert message.method == "process/output"
    text = decode_message(encode_output_notification(process_id, seq, stream, data))
    assert isinstance(text, Notification)
    assert isinstance(text.params, dict)
    assert message.params == {k: v for k, v in text.params.items() if k != "chunk"}
    typed = decode_binary_output(frame)
    assert typed == OutputNotification(process_id=process_id, seq=seq, stream=stream, chunk=data)
    # The client's notification path passes the typed params through.
    assert decode_notification(Notification(method="process/output", params=typed)) is typed


@pytest.mark.parametrize(
    ("frame", "fragment"),
    [
        (b'{"method":"process/output","params":{}}', "without a header"),
        (b"\x00abc", "failed to parse"),
        (b'{"method":"process/closed","params":{"processId":"p","seq":1}}\x00', "not a process"),
        (b'{"id":1,"result":{}}\x00', "not a process"),
        (b'{"method":"process/output"}\x00x', "no params"),
        (
            b'{"method":"process/output","params":{"processId":"p","seq":1,"stream":"stdout",'
            b'"chunk":"aGk="}}\x00',
            "chunk",
        ),
        (
            b'{"method":"process/output","params":{"processId":"p","seq":-1,'
            b'"stream":"stdout"}}\x00',
            "seq",
        ),
        (
            b'{"method":"process/output","params":{"processId":"p","seq":1,"stream":"stdin"}}\x00',
            "unknown variant",
        ),
        (b'{"method":"process/output","params":{"seq":1,"stream":"pty"}}\x00', "processId"),
    ],
)
def test_bad_binary_output_frames_are_refused(frame: bytes, fragment: str) -> None:
    with pytest.raises(RpcDecodeError) as info:
        decode_binary_output(frame)
    assert fragment in info.value.message


# -- base64: the fast decoder against the strict one it replaced -------------------------


def _strict_base64(value: str) -> bytes:
    """The decoder the converter had before the fast one (binascii's strict mode)."""
    if len(value) % 4 or value.endswith("==="):
        raise ValueError
    data = binascii.a2b_base64(value, strict_mode=True)
    tail = value[-4:]
    if tail and base64.b64encode(base64.b64decode(tail)) != tail.encode("ascii"):
        raise ValueError
    return data


def _mutations(draw: st.DrawFn) -> str:
    text = base64.b64encode(draw(st.binary(max_size=40))).decode()
    for _ in range(draw(st.integers(0, 3))):
        position = draw(st.integers(0, len(text)))
        insert = draw(st.sampled_from(["=", "==", "A", "+", "/", "-", "_", " ", "\n", "é", "\x00"]))
        action = draw(st.sampled_from(["insert", "replace", "delete"]))
        if action == "insert":
            text = text[:position] + insert + text[position:]
        elif action == "replace":
            text = text[:position] + insert + text[position + 1 :]
        else:
            text = text[:position] + text[position + 1 :]
    return text


_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

candidates = st.one_of(
    st.composite(_mutations)(),
    st.text(alphabet="AaB+/=0", max_size=12),
    st.text(max_size=12),
    # A padded last quantum with every last symbol: zero padding bits or not.
    st.builds(
        lambda body, symbol, one: body + ("A" + symbol + "==" if one else "AA" + symbol + "="),
        st.sampled_from(["", "AAAA"]),
        st.sampled_from(_ALPHABET),
        st.booleans(),
    ),
)


def _outcome(decode: object, value: str) -> bytes | None:
    assert callable(decode)
    try:
        result = decode(value)
    except (ValueError, binascii.Error):
        return None
    assert isinstance(result, bytes)
    return result


@given(candidates)
@example("aGl=")
@example("aGk=")
@example("AAAA====")
@example("1CBA=")
@example("")
@example("é===")
def test_fast_base64_accepts_exactly_what_strict_mode_accepted(value: str) -> None:
    strict = _outcome(_strict_base64, value)
    assert _canonical_base64(value) == strict
    # And the converter says so: the same bytes, or an error (whose message the tests of
    # test_malformed.py pin).
    if strict is None:
        with pytest.raises(_WireError, match=re.escape("invalid base64")):
            _structure_bytes(value, bytes)
    else:
        assert _structure_bytes(value, bytes) == strict


# -- the negotiation of binaryOutput, sans I/O -------------------------------------------


def _handshake(offer: bool, server_extensions: list[str]) -> tuple[ClientConnection, object]:
    client = ClientConnection(offer_binary_output=offer)
    request = client.send_request(InitializeParams(client_name="t"))
    result = {"sessionId": "s", "extensions": server_extensions}
    client.receive_frame(encode_message_response(request.id, result))
    return client, request.params


def encode_message_response(request_id: object, result: object) -> str:
    return json.dumps({"id": request_id, "result": result})


def test_binary_output_is_agreed_when_both_list_it() -> None:
    client, params = _handshake(True, ["closeStdin", "binaryOutput"])
    assert isinstance(params, dict)
    assert params["extensions"] == ["binaryOutput"]
    assert client.binary_output
    client.send_notification(InitializedNotification())
    frame = encode_binary_output("p", 1, OutputStream.STDOUT, b"\x00\xffraw")
    event = client.receive_frame(frame)
    assert isinstance(event, NotificationReceived)
    typed = decode_notification(event.notification)
    assert typed == OutputNotification(
        process_id="p", seq=1, stream=OutputStream.STDOUT, chunk=b"\x00\xffraw"
    )
    # Text frames still carry JSON.
    text = encode_output_notification("p", 2, OutputStream.STDERR, b"x").decode()
    event = client.receive_frame(text)
    assert isinstance(event, NotificationReceived)
    assert decode_notification(event.notification).seq == 2  # type: ignore[union-attr]


def test_binary_output_is_off_when_the_server_does_not_list_it() -> None:
    # The reference lists no extensions at all.
    client, params = _handshake(True, [])
    assert isinstance(params, dict)
    assert params["extensions"] == ["binaryOutput"]
    assert not client.binary_output
    # A bytes frame is JSON text then, as before.
    client.send_notification(InitializedNotification())
    event = client.receive_frame(encode_output_notification("p", 1, OutputStream.STDOUT, b"x"))
    assert isinstance(event, NotificationReceived)


def test_binary_output_is_not_offered_without_binary_frames() -> None:
    client, params = _handshake(False, ["binaryOutput"])
    assert isinstance(params, dict)
    assert "extensions" not in params
    assert not client.binary_output
    assert Extension.BINARY_OUTPUT.value == "binaryOutput"
