"""Who gets in: loopback-only without auth, bearer tokens, TLS, and no secret in any log."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

import trio_exec as tx
import trio_exec._transport
from trio_exec._server import ExecServer, serve_websocket

from ..server.helpers import open_ws_client, start_params
from .helpers import TIMEOUT, Tls, child_processes, make_tls, open_cli_server, run_cli

TOKEN = "hardening-token-" + uuid.uuid4().hex
"""The right token; it must never show up in a log or an error message."""
WRONG_TOKEN = "wrong-token-" + uuid.uuid4().hex
"""A wrong token a client tries; it must not show up either."""
SECRET_ENV = "secret-env-value-" + uuid.uuid4().hex
"""An environment value sent to the server; it must not show up either."""
SECRETS = (TOKEN, WRONG_TOKEN, SECRET_ENV)


@pytest.fixture
def tls(tmp_path: Path) -> Tls:
    """A throwaway CA and a 127.0.0.1 certificate, also as PEM files."""
    return make_tls(tmp_path)


def serving(**kwargs: Any) -> Callable[..., Awaitable[None]]:
    """``serve_websocket`` on a free loopback port with these options, for ``nursery.start``."""
    host = kwargs.pop("host", "127.0.0.1")

    async def serve(*, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        await serve_websocket(host, 0, task_status=task_status, **kwargs)

    return serve


async def echo(backend: tx.ExecBackend, text: str) -> bytes:
    """Run ``echo TEXT`` on ``backend``; return its stdout."""
    with trio.fail_after(TIMEOUT):
        done = await tx.run_process(["echo", text], backend=backend)
    return done.stdout


async def connect_error(url: str, **kwargs: Any) -> str:
    """Connect, expecting :class:`tx.ConnectionLost`; return its message."""
    with trio.fail_after(TIMEOUT), pytest.raises(tx.ConnectionLost) as info:
        async with tx.connect(url, **kwargs):
            pass  # pragma: no cover - the connection must fail
    return str(info.value)


# -- non-loopback addresses need auth ---------------------------------------------------------


class _Bound(Exception):
    """Raised instead of binding: the checks before binding passed."""


@pytest.fixture
def no_binding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any attempt to bind a listener raise :class:`_Bound` instead."""

    async def refuse(*args: object, **kwargs: object) -> None:
        raise _Bound

    monkeypatch.setattr(trio, "open_tcp_listeners", refuse)


@pytest.mark.parametrize("host", ["0.0.0.0", ""])
@pytest.mark.usefixtures("no_binding")
async def test_non_loopback_without_auth_is_refused_before_binding(host: str) -> None:
    with pytest.raises(ValueError, match="not a loopback address") as info:
        await serve_websocket(host, 0)
    assert "0.0.0.0" in str(info.value)
    # With a token, or when explicitly allowed, it goes on to bind.
    with pytest.raises(_Bound):
        await serve_websocket(host, 0, token=TOKEN)
    with pytest.raises(_Bound):
        await serve_websocket(host, 0, token_sha256=hashlib.sha256(b"t").hexdigest())
    with pytest.raises(_Bound):
        await serve_websocket(host, 0, allow_unauthenticated_non_loopback=True)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "::ffff:127.0.0.1", "localhost"])
@pytest.mark.usefixtures("no_binding")
async def test_loopback_needs_no_auth(host: str) -> None:
    with pytest.raises(_Bound):
        await serve_websocket(host, 0)


async def test_cli_refuses_non_loopback_without_auth() -> None:
    for listen in ["ws://0.0.0.0:0", "ws://[::]:0"]:
        code, out, err = await run_cli("serve", "--listen", listen)
        assert (code, out) == (2, "")
        assert "not a loopback address" in err
        assert "--allow-unauthenticated-non-loopback" in err
        assert "--ws-auth capability-token" in err


# -- bearer tokens -----------------------------------------------------------------------------


async def test_token_missing_wrong_right() -> None:
    server = ExecServer()
    async with trio.open_nursery() as nursery:
        url: str = await nursery.start(serving(token=TOKEN, server=server))
        message = await connect_error(url)
        assert message.endswith("HTTP 401 missing websocket bearer token"), message
        message = await connect_error(url, token=WRONG_TOKEN)
        assert message.endswith("HTTP 401 invalid websocket bearer token"), message
        assert server.statistics().connections == 0
        async with tx.connect(url, token=TOKEN) as backend:
            assert await echo(backend, "in") == b"in\n"
        nursery.cancel_scope.cancel()


def masked_frame(payload: bytes) -> bytes:
    """One client-to-server websocket text frame (masked, as RFC 6455 requires)."""
    size = len(payload)
    if size < 126:
        header = bytes([0x81, 0x80 | size])
    elif size < 2**16:
        header = bytes([0x81, 0x80 | 126]) + size.to_bytes(2, "big")
    else:
        header = bytes([0x81, 0x80 | 127]) + size.to_bytes(8, "big")
    mask = os.urandom(4)
    return header + mask + bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))


def upgrade_head(authorization: str | None) -> bytes:
    """A websocket upgrade request, with this ``Authorization`` header if given."""
    head = (
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    )
    if authorization is not None:
        head += f"Authorization: {authorization}\r\n"
    return (head + "\r\n").encode()


def start_frames(marker: Path) -> bytes:
    """``initialize``, ``initialized`` and a ``process/start`` that creates ``marker``."""
    messages: list[dict[str, Any]] = [
        {"id": 1, "method": "initialize", "params": {"clientName": "intruder"}},
        {"method": "initialized"},
        {
            "id": 2,
            "method": "process/start",
            "params": {
                "processId": "m",
                "argv": ["touch", str(marker)],
                "cwd": "file:///tmp",
                "env": {"PATH": "/usr/bin:/bin"},
                "tty": False,
            },
        },
    ]
    return b"".join(masked_frame(json.dumps(m).encode()) for m in messages)


async def receive_head(stream: trio.SocketStream) -> bytes:
    """Read an HTTP response head (and whatever came with it)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some()
        assert chunk, data
        data += chunk
    return data


async def intrude(url: str, authorization: str | None, marker: Path) -> bytes:
    """Try to start the marker process with this ``Authorization``; return the answer.

    The frames go twice: pipelined behind the upgrade request, and again after the answer.
    """
    host, port = url.removeprefix("ws://").rsplit(":", 1)
    frames = start_frames(marker)
    with trio.fail_after(TIMEOUT):
        async with await trio.open_tcp_stream(host, int(port)) as stream:
            await stream.send_all(upgrade_head(authorization) + frames)
            answer = await receive_head(stream)
            try:
                await stream.send_all(frames)
            except trio.BrokenResourceError:
                pass  # the server closed the connection already
            try:
                while chunk := await stream.receive_some():
                    answer += chunk
            except trio.BrokenResourceError:
                pass  # reset: the server did not read what we sent after its answer
    return answer


async def test_no_process_is_spawned_for_an_unauthenticated_connection(tmp_path: Path) -> None:
    server = ExecServer()
    marker = tmp_path / "marker"
    children_before = child_processes()
    async with trio.open_nursery() as nursery:
        url: str = await nursery.start(serving(token=TOKEN, server=server))
        for authorization, reason in [
            (None, b"missing websocket bearer token"),
            (f"Bearer {WRONG_TOKEN}", b"invalid websocket bearer token"),
            ("Basic dXNlcjpwYXNz", b"invalid authorization header"),
            ("Bearer ", b"invalid authorization header"),
        ]:
            answer = await intrude(url, authorization, marker)
            assert answer.startswith(b"HTTP/1.1 401 "), answer
            assert answer.endswith(b"\r\n\r\n" + reason), answer
            assert server.statistics().processes == 0
            assert server.statistics().connections == 0
        assert child_processes() == children_before
        assert not marker.exists()
        # Positive control: with the right token the same frames, sent after the 101
        # answer, do start the marker process, so the checks above would have seen one.
        host, port = url.removeprefix("ws://").rsplit(":", 1)
        async with await trio.open_tcp_stream(host, int(port)) as stream:
            await stream.send_all(upgrade_head(f"Bearer {TOKEN}"))
            with trio.fail_after(TIMEOUT):
                assert (await receive_head(stream)).startswith(b"HTTP/1.1 101 ")
            await stream.send_all(start_frames(marker))
            with trio.fail_after(TIMEOUT):
                while not marker.exists():  # noqa: ASYNC110 - another process's effect: poll
                    await trio.sleep(0.01)
        nursery.cancel_scope.cancel()


async def test_cli_token_file_and_digest(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(f"  {TOKEN}\n")
    digest = hashlib.sha256(TOKEN.encode()).hexdigest()
    for flags in [["--ws-token-file", str(token_file)], ["--ws-token-sha256", digest]]:
        async with open_cli_server(["--ws-auth", "capability-token", *flags]) as cli:
            assert cli.url.startswith("ws://127.0.0.1:")
            message = await connect_error(cli.url)
            assert message.endswith("HTTP 401 missing websocket bearer token"), message
            message = await connect_error(cli.url, token=WRONG_TOKEN)
            assert message.endswith("HTTP 401 invalid websocket bearer token"), message
            async with tx.connect(cli.url, token=TOKEN) as backend:
                assert await echo(backend, "cli") == b"cli\n"


# -- TLS ---------------------------------------------------------------------------------------


async def test_tls_round_trip(tls: Tls) -> None:
    async with trio.open_nursery() as nursery:
        url: str = await nursery.start(
            serving(ssl_context=tls.server_context, token=TOKEN, server=ExecServer())
        )
        assert url.startswith("wss://127.0.0.1:")
        async with tx.connect(url, ssl_context=tls.client_context, token=TOKEN) as backend:
            assert await echo(backend, "secure") == b"secure\n"
        message = await connect_error(url, ssl_context=tls.client_context)
        assert message.endswith("HTTP 401 missing websocket bearer token"), message
        nursery.cancel_scope.cancel()


async def test_tls_client_that_does_not_trust_the_ca_fails(
    tls: Tls, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Plain text to a TLS port gets no answer: shorten the connect timeout for that case.
    monkeypatch.setattr(trio_exec._transport, "WEBSOCKET_CONNECT_TIMEOUT", 1.0)
    server = ExecServer()
    async with trio.open_nursery() as nursery:
        url: str = await nursery.start(serving(ssl_context=tls.server_context, server=server))
        await connect_error(url)  # the system trust store does not know the CA
        await connect_error(url.replace("wss://", "ws://"))  # plain text to a TLS port
        assert server.statistics().connections == 0
        async with tx.connect(url, ssl_context=tls.client_context) as backend:
            assert await echo(backend, "still") == b"still\n"
        nursery.cancel_scope.cancel()


async def test_tls_untrusted_error_is_prompt_and_says_why(tls: Tls) -> None:
    async with trio.open_nursery() as nursery:
        url: str = await nursery.start(serving(ssl_context=tls.server_context))
        with trio.fail_after(2.0), pytest.raises(tx.ConnectionLost) as info:
            async with tx.connect(url):
                pass  # pragma: no cover
        assert "certificate" in str(info.value).lower(), str(info.value)
        nursery.cancel_scope.cancel()


async def test_cli_tls(tls: Tls) -> None:
    flags = ["--tls-cert", str(tls.cert_file), "--tls-key", str(tls.key_file)]
    async with open_cli_server(flags) as cli:
        assert cli.url.startswith("wss://127.0.0.1:")
        async with tx.connect(cli.url, ssl_context=tls.client_context) as backend:
            assert await echo(backend, "cli tls") == b"cli tls\n"
    async with open_cli_server(["--listen", "wss://127.0.0.1:0", *flags]) as cli:
        assert cli.url.startswith("wss://127.0.0.1:")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--tls-cert", "c.pem"], "`--tls-cert` and `--tls-key` must be given together"),
        (["--tls-key", "k.pem"], "`--tls-cert` and `--tls-key` must be given together"),
        (["--listen", "wss://127.0.0.1:0"], "a `wss://` listener requires `--tls-cert`"),
        (
            ["--listen", "stdio", "--tls-cert", "c.pem", "--tls-key", "k.pem"],
            "TLS requires a WebSocket listener, not stdio",
        ),
        (
            ["--tls-cert", "/nonexistent.pem", "--tls-key", "/nonexistent.pem"],
            "cannot load the TLS certificate or key: No such file or directory",
        ),
    ],
)
async def test_cli_tls_usage_errors(flags: list[str], message: str) -> None:
    code, out, err = await run_cli("serve", *flags)
    assert (code, out) == (2, "")
    assert message in err


# -- secrets stay secret -------------------------------------------------------------------------


def assert_no_secret(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"a secret appears in {where}: {text!r}"


async def failing_and_succeeding_sessions(url: str, **connect: Any) -> list[str]:
    """Exercise auth failures, failing starts with a secret env and a good start.

    Returns the messages of every error seen, for the caller to check.
    """
    messages = [await connect_error(url, **connect)]
    messages.append(await connect_error(url, token=WRONG_TOKEN, **connect))
    env = {"PATH": "/usr/bin:/bin", "API_SECRET": SECRET_ENV, "SECRET_TOKEN": TOKEN}
    async with tx.connect(url, token=TOKEN, **connect) as backend:
        for argv, cwd in [(["/nonexistent/program"], None), (["true"], "/nonexistent/dir")]:
            with trio.fail_after(TIMEOUT), pytest.raises(tx.SpawnError) as info:
                async with backend.open_process(argv, env=env, cwd=cwd):
                    pass  # pragma: no cover - the start fails
            messages.append(str(info.value))
        with trio.fail_after(TIMEOUT):
            done = await tx.run_process(
                ["sh", "-c", 'test "$API_SECRET" = "$1" && echo ok', "sh", SECRET_ENV],
                backend=backend,
                env=env,
            )
        assert done.stdout == b"ok\n"  # the value did arrive
        with trio.fail_after(TIMEOUT), pytest.raises(tx.CalledProcessError) as failed:
            await tx.run_process(["sh", "-c", "exit 3"], backend=backend, env=env)
        messages.append(str(failed.value))
    return messages


async def test_secrets_never_logged_in_process(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, trio_exec's included
    async with trio.open_nursery() as nursery:
        url: str = await nursery.start(serving(token=TOKEN))
        messages = await failing_and_succeeding_sessions(url)
        # An environment value the spawn itself rejects (a NUL byte), sent raw.
        async with open_ws_client(url, token=TOKEN) as client:
            env = {"API_SECRET": SECRET_ENV + "\x00"}
            response = await client.start("nul", ["true"], env=env)
            assert "error" in response, response
            messages.append(json.dumps(response))
            bad_type = start_params("typed", ["true"], env={"API_SECRET": [SECRET_ENV]})
            error = await client.error("process/start", bad_type)
            messages.append(json.dumps(error))
        nursery.cancel_scope.cancel()
    for message in messages:
        assert_no_secret(message, "an error message")
    assert caplog.records, "nothing was logged at all: the capture does not work"
    assert any(record.name.startswith("trio_exec") for record in caplog.records)
    for record in caplog.records:
        assert_no_secret(record.getMessage(), f"the log record {record.name}")
        if record.exc_info:
            assert_no_secret(logging.Formatter().formatException(record.exc_info), "a traceback")
    assert_no_secret(caplog.text, "the log")


@pytest.fixture
async def cli_with_token(tmp_path: Path) -> AsyncIterator[tuple[str, Path, bytearray]]:
    """``trio-exec serve`` with a token file; yields its URL, the file and its stderr."""
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    flags = ["--ws-auth", "capability-token", "--ws-token-file", str(token_file)]
    async with open_cli_server(flags) as cli:
        yield cli.url, token_file, cli.stderr
    assert_no_secret(cli.stderr.decode(errors="replace"), "the server's stderr")


async def test_secrets_never_on_cli_stderr(
    cli_with_token: tuple[str, Path, bytearray], tmp_path: Path
) -> None:
    url, token_file, server_stderr = cli_with_token
    for message in await failing_and_succeeding_sessions(url):
        assert_no_secret(message, "an error message")
    wrong_file = tmp_path / "wrong"
    wrong_file.write_text(WRONG_TOKEN)
    code, out, err = await run_cli(
        "run", "--remote", url, "--token-file", str(wrong_file), "--", "true"
    )
    assert code == 255
    assert "HTTP 401 invalid websocket bearer token" in err
    assert_no_secret(out + err, "the output of trio-exec run")
    env = {**os.environ, "API_SECRET": SECRET_ENV}
    code, out, err = await run_cli(
        "run", "--remote", url, "--token-file", str(token_file), "--", "/nonexistent/x", env=env
    )
    assert code == 127, (out, err)  # not found
    assert_no_secret(out + err, "the output of trio-exec run")
    assert_no_secret(server_stderr.decode(errors="replace"), "the server's stderr")
