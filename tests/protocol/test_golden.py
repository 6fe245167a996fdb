"""Golden frames: the reference server's transcripts (codex exec-server 0.169) where they
exist, and the PROTOCOL.md shapes of the trio_exec extensions.

Each golden is checked both ways: the typed object encodes to exactly the frame, and the
frame decodes to exactly the typed object.
"""

from __future__ import annotations

import pytest

from trio_exec._events import Output, OutputStream, ReadResult, WriteStatus
from trio_exec._protocol import (
    INVALID_REQUEST,
    ClosedNotification,
    CloseStdinParams,
    CloseStdinResult,
    EnvironmentInfo,
    ErrorResponse,
    ExitedNotification,
    InitializedNotification,
    InitializeParams,
    InitializeResult,
    ListParams,
    ListResult,
    Notification,
    NotificationParams,
    OutputNotification,
    ProcessInfo,
    ProcessSignal,
    ReadParams,
    Request,
    RequestParams,
    RequestResult,
    ResizeParams,
    ResizeResult,
    Response,
    ShellInfo,
    SignalParams,
    SignalResult,
    StartParams,
    StartResult,
    TerminateParams,
    TerminateResult,
    WindowSize,
    WriteParams,
    WriteResult,
    decode_message,
    decode_notification,
    decode_params,
    decode_result,
    encode_line,
    encode_message,
    make_error_response,
    make_notification,
    make_request,
    make_response,
)

REQUEST_GOLDENS: list[tuple[str, RequestParams]] = [
    (
        # reference transcript §2.2
        '{"id":3,"method":"process/start","params":{"processId":"p1",'
        '"argv":["bash","-c","echo hi; echo err >&2; exit 3"],"cwd":"file:///tmp",'
        '"env":{"PATH":"/usr/bin:/bin"},"tty":false,"pipeStdin":false,"arg0":null}}',
        StartParams(
            process_id="p1",
            argv=("bash", "-c", "echo hi; echo err >&2; exit 3"),
            cwd="file:///tmp",
            env={"PATH": "/usr/bin:/bin"},
            tty=False,
        ),
    ),
    (
        # reference transcript §2.2
        '{"id":3,"method":"process/read","params":{"processId":"p1","afterSeq":null,'
        '"maxBytes":65536,"waitMs":100}}',
        ReadParams(process_id="p1", max_bytes=65536, wait_ms=100),
    ),
    (
        '{"id":3,"method":"initialize","params":{"clientName":"trio-exec"}}',
        InitializeParams(client_name="trio-exec"),
    ),
    (
        '{"id":3,"method":"initialize","params":{"clientName":"c","resumeSessionId":"s-1"}}',
        InitializeParams(client_name="c", resume_session_id="s-1"),
    ),
    (
        '{"id":3,"method":"process/write","params":{"processId":"p1","chunk":"aGVsbG8K",'
        '"writeId":"w1"}}',
        WriteParams(process_id="p1", chunk=b"hello\n", write_id="w1"),
    ),
    (
        '{"id":3,"method":"process/signal","params":{"processId":"p1","signal":"interrupt"}}',
        SignalParams(process_id="p1", signal=ProcessSignal.INTERRUPT),
    ),
    (
        '{"id":3,"method":"process/signal","params":{"processId":"p1","signal":"user2"}}',
        SignalParams(process_id="p1", signal=ProcessSignal.USER2),
    ),
    (
        '{"id":3,"method":"process/terminate","params":{"processId":"p1"}}',
        TerminateParams(process_id="p1"),
    ),
    (
        '{"id":3,"method":"process/terminate","params":{"processId":"p1","graceMs":5000}}',
        TerminateParams(process_id="p1", grace_ms=5000),
    ),
    (
        '{"id":3,"method":"process/closeStdin","params":{"processId":"p1"}}',
        CloseStdinParams(process_id="p1"),
    ),
    (
        '{"id":3,"method":"process/resize","params":{"processId":"p1","rows":40,"cols":120}}',
        ResizeParams(process_id="p1", rows=40, cols=120),
    ),
    ('{"id":3,"method":"process/list","params":{}}', ListParams()),
    (
        '{"id":3,"method":"process/start","params":{"processId":"p2","argv":["sh"],'
        '"cwd":"file:///srv/a%20b","env":{},"tty":true,"pipeStdin":true,"arg0":"-sh",'
        '"envPolicy":{"inherit":"core","includeOnly":[]}}}',
        StartParams(
            process_id="p2",
            argv=("sh",),
            cwd="file:///srv/a%20b",
            env={},
            tty=True,
            pipe_stdin=True,
            arg0="-sh",
            env_policy={"inherit": "core", "includeOnly": []},
        ),
    ),
    (
        '{"id":3,"method":"process/start","params":{"processId":"p3","argv":["vi"],'
        '"cwd":"file:///","env":{},"tty":true,"pipeStdin":false,"arg0":null,'
        '"envPolicy":{"inherit":"all","ignoreDefaultExcludes":true,"exclude":[],"set":{},'
        '"includeOnly":[]},"windowSize":{"rows":40,"cols":120}}}',
        StartParams(
            process_id="p3",
            argv=("vi",),
            cwd="file:///",
            env={},
            tty=True,
            env_policy={
                "inherit": "all",
                "ignoreDefaultExcludes": True,
                "exclude": [],
                "set": {},
                "includeOnly": [],
            },
            window_size=WindowSize(rows=40, cols=120),
        ),
    ),
]

READ_RESULT = ReadResult(
    chunks=(
        Output(seq=1, stream=OutputStream.STDOUT, data=b"hi\n"),
        Output(seq=2, stream=OutputStream.STDERR, data=b"err\n"),
    ),
    next_seq=3,
    exited=True,
    exit_code=3,
    closed=True,
)

RESULT_GOLDENS: list[tuple[str, str, RequestResult]] = [
    (
        "process/start",
        '{"id":3,"result":{"processId":"p1","sandboxType":"none"}}',  # reference §2.2
        StartResult(process_id="p1"),
    ),
    (
        "process/read",
        # reference transcript §2.2, chunks written out
        '{"id":3,"result":{"chunks":[{"seq":1,"stream":"stdout","chunk":"aGkK"},'
        '{"seq":2,"stream":"stderr","chunk":"ZXJyCg=="}],"nextSeq":3,"exited":true,'
        '"exitCode":3,"closed":true,"failure":null,"sandboxDenied":false}}',
        READ_RESULT,
    ),
    (
        "process/read",
        '{"id":3,"result":{"chunks":[],"nextSeq":9,"exited":false,"exitCode":null,'
        '"closed":false,"failure":null,"firstRetainedSeq":4,"sandboxDenied":false}}',
        ReadResult(
            chunks=(),
            next_seq=9,
            exited=False,
            exit_code=None,
            closed=False,
            first_retained_seq=4,
        ),
    ),
    (
        "initialize",
        '{"id":3,"result":{"sessionId":"0b5c","extensions":["closeStdin","resize"]}}',
        InitializeResult(session_id="0b5c", extensions=("closeStdin", "resize")),
    ),
    (
        "initialize",
        '{"id":3,"result":{"sessionId":"0b5c","extensions":["windowSize"],'
        '"environmentInfo":{"shell":{"name":"sh","path":"/bin/sh"},"cwd":"file:///srv"}}}',
        InitializeResult(
            session_id="0b5c",
            extensions=("windowSize",),
            environment_info=EnvironmentInfo(
                shell=ShellInfo(name="sh", path="/bin/sh"), cwd="file:///srv"
            ),
        ),
    ),
    (
        "process/write",
        '{"id":3,"result":{"status":"accepted"}}',
        WriteResult(status=WriteStatus.ACCEPTED),
    ),
    (
        "process/write",
        '{"id":3,"result":{"status":"unknownProcess"}}',
        WriteResult(status=WriteStatus.UNKNOWN_PROCESS),
    ),
    (
        "process/write",
        '{"id":3,"result":{"status":"stdinClosed"}}',
        WriteResult(status=WriteStatus.STDIN_CLOSED),
    ),
    (
        "process/write",
        '{"id":3,"result":{"status":"starting"}}',
        WriteResult(status=WriteStatus.STARTING),
    ),
    ("process/signal", '{"id":3,"result":{}}', SignalResult()),
    ("process/terminate", '{"id":3,"result":{"running":true}}', TerminateResult(running=True)),
    (
        "process/closeStdin",
        '{"id":3,"result":{"status":"accepted"}}',
        CloseStdinResult(status=WriteStatus.ACCEPTED),
    ),
    ("process/resize", '{"id":3,"result":{}}', ResizeResult()),
    (
        "process/list",
        '{"id":3,"result":{"processes":[{"processId":"a","argv":["sleep","9"],"running":true,'
        '"exitCode":null},{"processId":"b","argv":["true"],"running":false,"exitCode":0}]}}',
        ListResult(
            processes=(
                ProcessInfo(process_id="a", argv=("sleep", "9"), running=True, exit_code=None),
                ProcessInfo(process_id="b", argv=("true",), running=False, exit_code=0),
            )
        ),
    ),
]

NOTIFICATION_GOLDENS: list[tuple[str, NotificationParams]] = [
    # reference transcript §2.2
    (
        '{"method":"process/output","params":{"processId":"p1","seq":1,"stream":"stdout","chunk":"aGkK"}}',
        OutputNotification(process_id="p1", seq=1, stream=OutputStream.STDOUT, chunk=b"hi\n"),
    ),
    (
        '{"method":"process/output","params":{"processId":"p1","seq":2,"stream":"stderr","chunk":"ZXJyCg=="}}',
        OutputNotification(process_id="p1", seq=2, stream=OutputStream.STDERR, chunk=b"err\n"),
    ),
    (
        '{"method":"process/exited","params":{"processId":"p1","seq":3,"exitCode":3,"sandboxDenied":false}}',
        ExitedNotification(process_id="p1", seq=3, exit_code=3),
    ),
    (
        '{"method":"process/closed","params":{"processId":"p1","seq":4}}',
        ClosedNotification(process_id="p1", seq=4),
    ),
    # trio_exec extensions
    (
        '{"method":"process/output","params":{"processId":"t","seq":1,"stream":"pty","chunk":"b2sNCg=="}}',
        OutputNotification(process_id="t", seq=1, stream=OutputStream.PTY, chunk=b"ok\r\n"),
    ),
    (
        '{"method":"process/exited","params":{"processId":"p1","seq":5,"exitCode":137,'
        '"sandboxDenied":false,"signal":"SIGKILL"}}',
        ExitedNotification(process_id="p1", seq=5, exit_code=137, signal="SIGKILL"),
    ),
    ('{"method":"initialized","params":{}}', InitializedNotification()),
]


@pytest.mark.parametrize(("frame", "params"), REQUEST_GOLDENS)
def test_request_golden(frame: str, params: RequestParams) -> None:
    assert encode_message(make_request(3, params)) == frame
    message = decode_message(frame)
    assert isinstance(message, Request)
    assert message.id == 3
    assert message.method == params.METHOD
    assert decode_params(message.method, message.params) == params


@pytest.mark.parametrize(("method", "frame", "result"), RESULT_GOLDENS)
def test_result_golden(method: str, frame: str, result: RequestResult) -> None:
    assert encode_message(make_response(3, result)) == frame
    message = decode_message(frame)
    assert isinstance(message, Response)
    assert message.id == 3
    assert decode_result(method, message.result) == result


@pytest.mark.parametrize(("frame", "params"), NOTIFICATION_GOLDENS)
def test_notification_golden(frame: str, params: NotificationParams) -> None:
    assert encode_message(make_notification(params)) == frame
    message = decode_message(frame)
    assert isinstance(message, Notification)
    assert decode_notification(message) == params


def test_error_golden_puts_error_before_id() -> None:
    frame = '{"error":{"code":-32600,"message":"process p1 already exists"},"id":7}'
    response = make_error_response(7, INVALID_REQUEST, "process p1 already exists")
    assert encode_message(response) == frame
    assert decode_message(frame) == response


def test_error_with_data_golden() -> None:
    frame = '{"error":{"code":-32603,"message":"boom","data":{"errno":2}},"id":"x"}'
    decoded = decode_message(frame)
    assert isinstance(decoded, ErrorResponse)
    assert decoded.error.data == {"errno": 2}
    assert encode_message(decoded) == frame


def test_reference_read_without_optional_fields() -> None:
    # reference transcript §2.2: `{"id":5,"method":"process/read","params":{"processId":"p1"}}`
    message = decode_message('{"id":5,"method":"process/read","params":{"processId":"p1"}}')
    assert isinstance(message, Request)
    params = decode_params(message.method, message.params)
    assert params == ReadParams(process_id="p1", after_seq=None, max_bytes=None, wait_ms=None)


def test_reference_initialize_result_keeps_the_environment_info_we_use() -> None:
    # The 0.169 binary's answer, seen live (paths shortened); the codex-specific fields
    # (executorVersion, providerId, prependPathDirs) are dropped, capabilities kept.
    frame = (
        '{"id":1,"result":{"sessionId":"9f0c","environmentInfo":{"shell":{"name":"bash",'
        '"path":"/bin/bash"},"executorVersion":"0.169.0","providerId":"sha256:2101",'
        '"cwd":"file:///srv/example","userHomeDir":"file:///root","platformOs":"linux",'
        '"prependPathDirs":["file:///opt/codex-path"],"temporaryDirectories":[],'
        '"tempDir":"file:///tmp","capabilities":{"networkProxyLaunch":true}}}}'
    )
    message = decode_message(frame)
    assert isinstance(message, Response)
    assert decode_result("initialize", message.result) == InitializeResult(
        session_id="9f0c",
        extensions=(),
        environment_info=EnvironmentInfo(
            shell=ShellInfo(name="bash", path="/bin/bash"),
            cwd="file:///srv/example",
            user_home_dir="file:///root",
            platform_os="linux",
            temporary_directories=(),
            temp_dir="file:///tmp",
            capabilities={"networkProxyLaunch": True},
        ),
    )


def test_reference_exited_without_sandbox_denied() -> None:
    # Older peers omit sandboxDenied; it defaults to false.
    message = decode_message(
        '{"method":"process/exited","params":{"processId":"p","seq":2,"exitCode":0}}'
    )
    assert isinstance(message, Notification)
    assert decode_notification(message) == ExitedNotification(process_id="p", seq=2, exit_code=0)


def test_reference_closed_without_params_keys_is_invalid() -> None:
    message = decode_message('{"method":"process/closed"}')
    assert isinstance(message, Notification)
    assert message.params is None
    with pytest.raises(Exception, match="expected struct ClosedNotification"):
        decode_notification(message)


def test_initialized_params_ignored_and_may_be_omitted() -> None:
    for frame in ('{"method":"initialized"}', '{"method":"initialized","params":[1,2]}'):
        message = decode_message(frame)
        assert isinstance(message, Notification)
        assert decode_notification(message) == InitializedNotification()


def test_encode_line_is_one_terminated_line() -> None:
    line = encode_line(make_notification(ClosedNotification(process_id="p1", seq=4)))
    assert line == b'{"method":"process/closed","params":{"processId":"p1","seq":4}}\n'
    assert line.count(b"\n") == 1
