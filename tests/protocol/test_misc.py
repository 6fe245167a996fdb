"""File URIs, signals, event conversions and the documentation of the public API."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import signal
from pathlib import PurePosixPath

import pytest
from hypothesis import given

import trio_exec._protocol as protocol
from trio_exec._events import Closed, Exited, Output, OutputStream
from trio_exec._protocol import (
    ClosedNotification,
    ExitedNotification,
    Extension,
    OutputNotification,
    ProcessSignal,
    RpcDecodeError,
    StartParams,
    file_uri_to_path,
    path_to_file_uri,
)

from . import strategies as pst


@pytest.mark.parametrize(
    ("path", "uri"),
    [
        ("/", "file:///"),
        ("/tmp", "file:///tmp"),
        ("/tmp/a b#c?d%e", "file:///tmp/a%20b%23c%3Fd%25e"),
        ("/srv/héllo", "file:///srv/h%C3%A9llo"),
        ("/tmp/\udcff", "file:///tmp/%FF"),  # a non-UTF-8 byte, surrogate-escaped
        ("/a\nb", "file:///a%0Ab"),
        ("//net", "file:////net"),
    ],
)
def test_path_to_file_uri(path: str, uri: str) -> None:
    assert path_to_file_uri(path) == uri
    assert file_uri_to_path(uri) == path


def test_path_to_file_uri_takes_path_objects() -> None:
    assert path_to_file_uri(PurePosixPath("/tmp/x")) == "file:///tmp/x"


@pytest.mark.parametrize("path", ["tmp", "", "./x", "/a\0b"])
def test_path_to_file_uri_rejects(path: str) -> None:
    with pytest.raises(ValueError, match=r"absolute|NUL"):
        path_to_file_uri(path)


@pytest.mark.parametrize(
    ("uri", "path"),
    [
        ("file://localhost/tmp", "/tmp"),
        ("FILE:///tmp", "/tmp"),
        ("file:/tmp", "/tmp"),
        ("file:///tmp/", "/tmp/"),
    ],
)
def test_file_uri_to_path_accepts(uri: str, path: str) -> None:
    assert file_uri_to_path(uri) == path


@pytest.mark.parametrize(
    ("uri", "fragment"),
    [
        ("/tmp", "invalid URI: relative URL without a base"),
        ("tmp", "invalid URI: relative URL without a base"),
        ("", "invalid URI: relative URL without a base"),
        ("http://host/tmp", "not a file:// URI"),
        ("ws://127.0.0.1:1/", "not a file:// URI"),
        ("file://server/share", "another host"),
        ("file://127.0.0.1/tmp", "another host"),
        ("file:///tmp?x=1", "query or fragment"),
        ("file:///tmp#top", "query or fragment"),
        ("file:tmp", "no absolute path"),
        ("file:", "no absolute path"),
        ("file:///a%00b", "NUL"),
        ("file://[::1/x", "invalid URI"),
    ],
)
def test_file_uri_to_path_rejects(uri: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=re.escape(fragment)):
        file_uri_to_path(uri)


@given(pst.absolute_paths)
def test_file_uri_round_trip(path: str) -> None:
    uri = path_to_file_uri(path)
    assert uri.isascii()
    assert file_uri_to_path(uri) == path


def test_start_params_cwd_path() -> None:
    params = StartParams(
        process_id="p", argv=("x",), cwd=path_to_file_uri("/srv/a b"), env={}, tty=False
    )
    assert params.cwd_path == "/srv/a b"


def test_process_signals() -> None:
    assert ProcessSignal.INTERRUPT.signum == signal.SIGINT
    assert ProcessSignal.KILL.signum == signal.SIGKILL
    assert ProcessSignal.USER2.signum == signal.SIGUSR2
    assert ProcessSignal.INTERRUPT.extension is None
    assert ProcessSignal.HANGUP.extension is Extension.SIGNALS
    for member in ProcessSignal:
        assert ProcessSignal.from_signum(member.signum) is member
    with pytest.raises(ValueError, match="SIGSEGV"):
        ProcessSignal.from_signum(signal.SIGSEGV)


def test_extension_names() -> None:
    assert [e.value for e in Extension] == [
        "closeStdin",
        "resize",
        "signals",
        "gracefulTerminate",
        "exitSignal",
        "readGap",
        "list",
        "resume",
        "windowSize",
        "binaryOutput",
    ]


def test_event_conversions() -> None:
    output = Output(seq=1, stream=OutputStream.PTY, data=b"x")
    assert OutputNotification.from_event("p", output).to_event() == output
    exited = Exited(seq=2, exit_code=137, signal=signal.SIGKILL)
    notification = ExitedNotification.from_event("p", exited)
    assert notification.signal == "SIGKILL"
    assert notification.to_event() == exited
    assert ExitedNotification.from_event("p", Exited(seq=2, exit_code=0)).signal is None
    plain = ExitedNotification(process_id="p", seq=2, exit_code=1, signal="SIGNOPE")
    assert plain.to_event().signal is None
    assert (
        ExitedNotification(process_id="p", seq=2, exit_code=1, signal="SIG99").to_event().signal
        == 99
    )
    closed = Closed(seq=3)
    assert ClosedNotification.from_event("p", closed).to_event() == closed


def test_decode_error_renders_as_error_response() -> None:
    error = RpcDecodeError(-32602, "missing field `tty`")
    assert error.to_response(7).error.message == "missing field `tty`"
    assert error.to_response(7).id == 7
    assert error.to_response().id == -1
    assert str(error) == "missing field `tty`"


def test_every_public_name_is_documented() -> None:
    missing = []
    for name in protocol.__all__:
        value = getattr(protocol, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            if not inspect.getdoc(value):
                missing.append(name)
            for attr_name, member in vars(value).items() if inspect.isclass(value) else ():
                if (
                    not attr_name.startswith("_")
                    and inspect.isfunction(member)
                    and not member.__doc__
                ):
                    missing.append(f"{name}.{attr_name}")
    assert missing == []


def test_public_constants_are_in_the_source_with_docstrings() -> None:
    # The constants are defined in the package's modules and re-exported by its __init__.
    source = "\n".join(
        inspect.getsource(importlib.import_module(module.name))
        for module in pkgutil.iter_modules(protocol.__path__, prefix=f"{protocol.__name__}.")
    )
    for name in protocol.__all__:
        if name.isupper():
            head = f"\n{name}: Final = "
            assert head in source, name
            after = source.split(head, 1)[1].split("\n")
            # the line after the (possibly multi-line) value is a docstring
            assert any(line.startswith('"""') for line in after[:4]), name
