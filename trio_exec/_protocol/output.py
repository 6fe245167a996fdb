"""The hot path of ``process/output``: its notification encoded without the model layer,
and the binary frame of extension ``binaryOutput``.

A server sends most of its bytes as ``process/output`` notifications, so they bypass
the converter and the JSON encoder: :func:`encode_output_notification` splices the
base64 of the chunk into a pre-encoded template and gives the UTF-8 text of the frame,
byte for byte what :func:`~trio_exec._protocol.encode_message` of
:func:`~trio_exec._protocol.make_notification` gives (the tests check it). Decoding needs
no fast path of its own: the converter's base64 is the SIMD one, and the rest of a
notification costs the same whatever the size of its chunk.

Between two trio_exec peers that both advertise :attr:`Extension.BINARY_OUTPUT
<trio_exec._protocol.Extension.BINARY_OUTPUT>`, a server sends output as binary messages
instead (a websocket's binary frames, a byte stream's records: see
:mod:`~trio_exec._protocol.framing`; :func:`encode_binary_output`,
:func:`decode_binary_output`): the JSON text
of the notification without its ``chunk``, a NUL byte, then the chunk's raw bytes. No
base64, and the only JSON is a few dozen bytes of header. Compact JSON never holds a
NUL byte, so the first one ends the header.
"""

from __future__ import annotations

from json.encoder import encode_basestring_ascii
from typing import Final

import pybase64

from .._events import OutputStream
from .codec import decode_message, decode_notification
from .codes import INVALID_PARAMS, INVALID_REQUEST
from .envelope import Notification, RpcDecodeError
from .messages import OutputNotification

__all__ = [
    "BINARY_OUTPUT_SEPARATOR",
    "binary_output_head",
    "decode_binary_output",
    "encode_binary_output",
    "encode_output_notification",
]

BINARY_OUTPUT_SEPARATOR: Final = b"\x00"
"""Ends the JSON header of a binary output frame; the chunk's bytes follow it."""

_METHOD: Final = OutputNotification.METHOD
_HEAD: Final = b'{"method":"' + _METHOD.encode("ascii") + b'","params":{"processId":'
_STREAM_PARTS: Final = {
    stream: b',"stream":"' + stream.value.encode("ascii") + b'","chunk":"'
    for stream in OutputStream
}
_BINARY_STREAM_PARTS: Final = {
    stream: b',"stream":"' + stream.value.encode("ascii") + b'"}}' + BINARY_OUTPUT_SEPARATOR
    for stream in OutputStream
}
_TAIL: Final = b'"}}'


def encode_output_notification(
    process_id: str, seq: int, stream: OutputStream, data: bytes
) -> bytes:
    """The ``process/output`` notification of a chunk, as the UTF-8 (pure ASCII) JSON text
    that :func:`~trio_exec._protocol.encode_message` gives for it.

    ``seq`` is an event's sequence number (not checked again: events are valid).
    """
    return b"".join(
        (
            _HEAD,
            encode_basestring_ascii(process_id).encode("ascii"),
            b',"seq":%d' % seq,
            _STREAM_PARTS[stream],
            pybase64.b64encode(data),
            _TAIL,
        )
    )


def binary_output_head(process_id: str, seq: int, stream: OutputStream) -> bytes:
    """What precedes a chunk's bytes in its binary frame (extension ``binaryOutput``): the
    JSON header and the NUL byte. A server writes the two parts without joining them."""
    return b"".join(
        (
            _HEAD,
            encode_basestring_ascii(process_id).encode("ascii"),
            b',"seq":%d' % seq,
            _BINARY_STREAM_PARTS[stream],
        )
    )


def encode_binary_output(process_id: str, seq: int, stream: OutputStream, data: bytes) -> bytes:
    """The binary frame of extension ``binaryOutput`` for a chunk (see the module docstring)."""
    return binary_output_head(process_id, seq, stream) + data


def decode_binary_output(frame: bytes) -> OutputNotification:
    """Type a binary output frame (extension ``binaryOutput``).

    The header is decoded as any message, and its params as those of a
    ``process/output`` whose chunk is the frame's tail, so a frame is refused for what
    the text form would be refused for.

    Raises:
        RpcDecodeError: :data:`INVALID_REQUEST` for a frame without a header or whose
            header is not a ``process/output`` notification; :data:`INVALID_PARAMS` for
            params that do not fit (or that carry a ``chunk`` of their own).
    """
    end = frame.find(BINARY_OUTPUT_SEPARATOR)  # stops at the end of the header
    if end < 0:
        raise RpcDecodeError(INVALID_REQUEST, "binary output frame without a header")
    message = decode_message(frame[:end])
    if not isinstance(message, Notification) or message.method != _METHOD:
        raise RpcDecodeError(
            INVALID_REQUEST, "the header of a binary output frame is not a process/output"
        )
    params = message.params
    if not isinstance(params, dict) or "chunk" in params:
        raise RpcDecodeError(
            INVALID_PARAMS, "the header of a binary output frame has no params or a chunk"
        )
    typed = decode_notification(Notification(method=_METHOD, params={**params, "chunk": ""}))
    assert isinstance(typed, OutputNotification)
    return OutputNotification(
        process_id=typed.process_id, seq=typed.seq, stream=typed.stream, chunk=frame[end + 1 :]
    )
