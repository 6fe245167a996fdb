"""``trio-exec run`` exit statuses by convention (see ``trio_exec._cli.status``), here, on our
server and on the reference: 127 not found, 126 not executable / a directory / a bad
``--cwd``, 128+N killed by signal N, 255 connection problems, 2 usage errors; each
failure one line on stderr, and the table in ``--help``."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import pytest

from trio_exec._cli.status import (
    EXIT_CANNOT_EXECUTE,
    EXIT_CONNECTION,
    EXIT_NOT_FOUND,
    EXIT_STDOUT_CLOSED,
    EXIT_USAGE,
)

from .helpers import assert_one_line_error, run_cli


async def test_program_not_found_is_127(where: list[str]) -> None:
    done = await run_cli("run", *where, "--", "/nonexistent/program")
    line = assert_one_line_error(done, EXIT_NOT_FOUND)
    assert "No such file or directory" in line
    done = await run_cli("run", *where, "--", "trio-exec-no-such-program")
    assert_one_line_error(done, EXIT_NOT_FOUND)


async def test_program_not_executable_is_126(where: list[str], tmp_path: Path) -> None:
    script = tmp_path / "script"
    script.write_text("echo hi\n")
    script.chmod(0o644)
    done = await run_cli("run", *where, "--", str(script))
    line = assert_one_line_error(done, EXIT_CANNOT_EXECUTE)
    assert "Permission denied" in line


async def test_program_that_is_a_directory_is_126(where: list[str], tmp_path: Path) -> None:
    done = await run_cli("run", *where, "--", str(tmp_path))
    assert_one_line_error(done, EXIT_CANNOT_EXECUTE)


async def test_exec_format_error_is_126(where: list[str], tmp_path: Path) -> None:
    binary = tmp_path / "binary"
    binary.write_bytes(b"\x7fELF not really")
    binary.chmod(0o755)
    done = await run_cli("run", *where, "--", str(binary))
    assert_one_line_error(done, EXIT_CANNOT_EXECUTE)


async def test_cwd_that_is_a_file_is_126(where: list[str], tmp_path: Path) -> None:
    file = tmp_path / "file"
    file.touch()
    done = await run_cli("run", *where, "--cwd", str(file), "--", "true")
    assert_one_line_error(done, EXIT_CANNOT_EXECUTE)


@pytest.mark.parametrize("remote", [False, True], ids=["local", "trio_exec"])
async def test_missing_cwd_is_126(remote: bool, our_url: str) -> None:
    """The server says which file is at fault: the directory, so 126, not 127. (The
    reference does not say: its missing file counts as not found, 127.)"""
    where = ["--remote", our_url] if remote else []
    done = await run_cli("run", *where, "--cwd", "/nonexistent/dir", "--", "true")
    assert_one_line_error(done, EXIT_CANNOT_EXECUTE)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL, signal.SIGINT])
async def test_death_by_signal_is_128_plus_n(where: list[str], signum: int) -> None:
    done = await run_cli("run", *where, "--", "sh", "-c", f"kill -{signum} $$")
    assert (done.returncode, done.stderr) == (128 + signum, b"") or (
        # The reference cannot close stdin: it says so once, and goes on.
        done.returncode == 128 + signum and b"closeStdin" in done.stderr
    ), done


async def test_connection_refused_is_255() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = await run_cli("run", "--remote", f"ws://127.0.0.1:{port}", "--", "true")
    line = assert_one_line_error(done, EXIT_CONNECTION)
    assert f"127.0.0.1:{port}" in line
    assert "Connection refused" in line


@pytest.mark.parametrize(
    "args",
    [
        ["run"],
        ["run", "--"],
        ["run", "--bogus", "--", "true"],
        ["bogus"],
        [],
        ["run", "--env", "NOEQUALS", "--", "true"],
        ["run", "--remote", "ws://127.0.0.1:1", "--via", "ssh host", "--", "true"],
        ["serve", "--max-processes", "abc"],
    ],
)
async def test_usage_errors_are_2(args: list[str]) -> None:
    done = await run_cli(*args)
    assert_one_line_error(done, EXIT_USAGE)


async def test_help_shows_the_exit_status_table() -> None:
    for args in (["--help"], ["run", "--help"]):
        done = await run_cli(*args)
        assert done.returncode == 0
        text = done.stdout.decode()
        for status, meaning in [
            ("128+N", "killed by signal N"),
            (str(EXIT_USAGE), "usage error"),
            (str(EXIT_CANNOT_EXECUTE), "cannot be executed"),
            (str(EXIT_NOT_FOUND), "not found"),
            (str(EXIT_STDOUT_CLOSED), "stdout was closed"),
            (str(EXIT_CONNECTION), "connection problem"),
        ]:
            assert any(
                line.split()[:1] == [status] and meaning in line for line in text.splitlines()
            ), (status, meaning, text)
