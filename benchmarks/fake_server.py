"""A fake exec server that sends pre-encoded output as fast as it can: the neutral client's
ceiling.

Written on plain blocking sockets (the websocket handshake and framing of RFC 6455 by
hand, no library), so that nothing on the server side costs more than a ``sendall``: at
startup it encodes, once, every frame of the output of ``head -c BYTES /dev/zero`` in
``CHUNK``-byte ``process/output`` notifications, then ``process/exited`` and
``process/closed``. For each connection it answers ``initialize``, takes ``initialized``,
and answers the ``process/start`` of exactly that command with the start response
followed by all those frames in one ``sendall``.

Run as ``python -m benchmarks.fake_server BYTES CHUNK``; it prints its ``ws://`` URL on
stdout, as the real servers do, and serves one connection after another until killed.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import socket
import struct
from typing import Any, Final

from ._common import PROCESS_ID

WEBSOCKET_GUID: Final = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
"""The key suffix of the ``Sec-WebSocket-Accept`` digest (RFC 6455, section 1.3)."""

MAX_HEADER_BYTES: Final = 64 * 1024
"""Largest upgrade request the server reads."""

RECEIVE_BYTES: Final = 64 * 1024
"""Bytes asked of each ``recv``."""

_TEXT, _BINARY, _CLOSE, _PING, _PONG = 0x1, 0x2, 0x8, 0x9, 0xA


def frame(payload: bytes, opcode: int = _TEXT) -> bytes:
    """One unmasked, unfragmented server frame."""
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x80 | opcode, size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 126, size)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 127, size)
    return header + payload


def _notification(method: str, params: str) -> bytes:
    return frame(f'{{"method":"{method}","params":{{{params}}}}}'.encode())


def output_frames(size: int, chunk: int) -> bytes:
    """The frames of all the notifications of ``head -c size /dev/zero``, joined."""
    frames = []
    full = base64.b64encode(bytes(chunk)).decode()
    sent = seq = 0
    while sent < size:
        count = min(chunk, size - sent)
        data = full if count == chunk else base64.b64encode(bytes(count)).decode()
        seq += 1
        frames.append(
            _notification(
                "process/output",
                f'"processId":"{PROCESS_ID}","seq":{seq},"stream":"stdout","chunk":"{data}"',
            )
        )
        sent += count
    frames.append(
        _notification("process/exited", f'"processId":"{PROCESS_ID}","seq":{seq + 1},"exitCode":0')
    )
    frames.append(_notification("process/closed", f'"processId":"{PROCESS_ID}","seq":{seq + 2}'))
    return b"".join(frames)


class _Reader:
    """Buffered reads of exact sizes from a blocking socket."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = bytearray()

    def _fill(self) -> None:
        data = self._sock.recv(RECEIVE_BYTES)
        if not data:
            raise EOFError("the client closed the connection")
        self._buffer += data

    def exactly(self, count: int) -> bytes:
        while len(self._buffer) < count:
            self._fill()
        data = bytes(self._buffer[:count])
        del self._buffer[:count]
        return data

    def until(self, marker: bytes) -> bytes:
        while (end := self._buffer.find(marker)) < 0:
            if len(self._buffer) > MAX_HEADER_BYTES:
                raise ValueError("upgrade request too long")
            self._fill()
        return self.exactly(end + len(marker))


def _handshake(reader: _Reader, sock: socket.socket) -> None:
    request = reader.until(b"\r\n\r\n").decode("latin-1")
    headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in request.split("\r\n")[1:] if line)
    }
    digest = hashlib.sha1((headers["sec-websocket-key"] + WEBSOCKET_GUID).encode()).digest()
    accept = base64.b64encode(digest).decode()
    sock.sendall(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept}\r\n\r\n".encode()
    )


def _read_frame(reader: _Reader) -> tuple[int, bytes]:
    """The opcode and unmasked payload of the client's next frame (client messages are
    small: one frame each)."""
    first, second = reader.exactly(2)
    size = second & 0x7F
    if size == 126:
        (size,) = struct.unpack("!H", reader.exactly(2))
    elif size == 127:
        (size,) = struct.unpack("!Q", reader.exactly(8))
    mask = reader.exactly(4) if second & 0x80 else b"\0\0\0\0"
    payload = bytes(byte ^ mask[index % 4] for index, byte in enumerate(reader.exactly(size)))
    return first & 0x0F, payload


def _reply(request_id: object, result: dict[str, Any]) -> bytes:
    return frame(json.dumps({"id": request_id, "result": result}).encode())


def _error(request_id: object, code: int, message: str) -> bytes:
    return frame(
        json.dumps({"id": request_id, "error": {"code": code, "message": message}}).encode()
    )


def serve_connection(sock: socket.socket, argv: list[str], stream: bytes) -> None:
    """Serve one client until it closes."""
    reader = _Reader(sock)
    _handshake(reader, sock)
    while True:
        opcode, payload = _read_frame(reader)
        if opcode == _CLOSE:
            sock.sendall(frame(payload[:2], _CLOSE))
            return
        if opcode == _PING:
            sock.sendall(frame(payload, _PONG))
            continue
        if opcode not in (_TEXT, _BINARY):
            continue
        message = json.loads(payload)
        method, request_id = message.get("method"), message.get("id")
        if request_id is None:
            continue  # initialized
        if method == "initialize":
            sock.sendall(_reply(request_id, {"sessionId": "fake-session"}))
        elif method == "process/start":
            params = message.get("params", {})
            if params.get("processId") != PROCESS_ID or params.get("argv") != argv:
                sock.sendall(_error(request_id, -32602, f"this fake server runs only {argv}"))
                continue
            sock.sendall(_reply(request_id, {"processId": PROCESS_ID, "sandboxType": "none"}))
            sock.sendall(stream)
        else:
            sock.sendall(_error(request_id, -32601, f"the fake server has no {method}"))


def main() -> None:
    """The command line: encode the frames, print the URL, serve until killed."""
    parser = argparse.ArgumentParser(description="Send pre-encoded output, as fast as it can.")
    parser.add_argument("bytes", type=int)
    parser.add_argument("chunk", type=int)
    args = parser.parse_args()
    argv = ["head", "-c", str(args.bytes), "/dev/zero"]
    stream = output_frames(args.bytes, args.chunk)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        print(f"ws://127.0.0.1:{listener.getsockname()[1]}", flush=True)
        while True:
            sock, _ = listener.accept()
            with sock:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                try:
                    serve_connection(sock, argv, stream)
                except (EOFError, ConnectionError):
                    pass


if __name__ == "__main__":
    main()
