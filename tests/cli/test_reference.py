"""``trio-exec run`` against the reference server (``codex exec-server`` 0.169), which has
none of our protocol extensions: without ``closeStdin`` the end of stdin cannot be sent
(said once on stderr, and the command goes on); without ``resize`` a terminal keeps its
size (a change of ours is skipped)."""

from __future__ import annotations

import os
import signal
import subprocess

import trio

from ..conformance.helpers import TIMEOUT
from .helpers import CLI, cli_in_terminal, reap, run_cli, set_size
from .test_errors import NO_CLOSE_STDIN


async def test_output_and_status_with_stdin_at_end_of_file(reference_url: str) -> None:
    """``trio-exec run --remote REF -- sh -c 'echo hi; exit 3' </dev/null``: the output and
    the status. (The command may end before the end of stdin is seen: then nothing is said.)"""
    script = "echo hi; exit 3"
    with trio.fail_after(TIMEOUT):
        done = await trio.run_process(
            [*CLI, "run", "--remote", reference_url, "--", "sh", "-c", script],
            stdin=subprocess.DEVNULL,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert (done.returncode, done.stdout) == (3, b"hi\n"), done
    assert done.stderr in (b"", NO_CLOSE_STDIN)


async def _sleep_until_signalled(reference_url: str, signum: int) -> tuple[int, bytes]:
    """Run ``sleep 60`` on the reference with stdin at end of file; once the CLI said it
    cannot send that end (the command runs), send ``signum`` to the CLI; return its
    status and stderr."""
    with trio.fail_after(TIMEOUT):
        process = await trio.lowlevel.open_process(
            [*CLI, "run", "--remote", reference_url, "--", "sleep", "60"],
            stdin=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            assert process.stderr is not None
            stderr = b""
            while not stderr.endswith(b"\n"):
                chunk = await process.stderr.receive_some()
                assert chunk, stderr
                stderr += chunk
            assert process.returncode is None
            process.send_signal(signum)
            while chunk := await process.stderr.receive_some():
                stderr += chunk
            return await process.wait(), stderr
        finally:
            await reap(process)


async def test_end_of_stdin_that_cannot_be_sent_is_said_once(reference_url: str) -> None:
    """The command still runs after the message: Ctrl-C (forwarded as the reference's
    ``interrupt``) then ends it."""
    status, stderr = await _sleep_until_signalled(reference_url, signal.SIGINT)
    assert (status, stderr) == (128 + signal.SIGINT, NO_CLOSE_STDIN)


async def test_sigterm_without_the_signals_extension_terminates(reference_url: str) -> None:
    """The reference can send SIGINT only: SIGTERM to the CLI terminates the command
    (``process/terminate``: the reference kills it) instead of failing."""
    status, stderr = await _sleep_until_signalled(reference_url, signal.SIGTERM)
    assert (status, stderr) == (128 + signal.SIGKILL, NO_CLOSE_STDIN)


async def test_piped_stdin_is_written_and_the_command_goes_on(reference_url: str) -> None:
    done = await run_cli(
        "run", "--remote", reference_url, "--", "sh", "-c", "head -1; echo done", stdin=b"a\nb\n"
    )
    assert (done.returncode, done.stdout) == (0, b"a\ndone\n")
    assert done.stderr in (b"", NO_CLOSE_STDIN)


async def test_our_server_closes_stdin_without_a_word(our_url: str) -> None:
    done = await run_cli("run", "--remote", our_url, "--", "sh", "-c", "cat; echo end", stdin=b"x")
    assert (done.returncode, done.stdout, done.stderr) == (0, b"xend\n", b"")


async def test_tty_without_resize_skips_the_resizes(reference_url: str) -> None:
    """In a real terminal that changes size: the reference's terminal stays 24x80, the
    command reads what is typed, and the CLI says nothing of the resize."""
    script = "stty size; echo ready; read line; stty size; echo got-$line; exit 5"
    args = ["run", "--remote", reference_url, "--tty", "--", "sh", "-c", script]
    with trio.fail_after(TIMEOUT):
        async with cli_in_terminal(args, 40, 120) as terminal:
            await terminal.read_until(b"ready\r\n")
            set_size(terminal.master, 50, 100)  # SIGWINCH to the CLI
            await trio.lowlevel.wait_writable(terminal.master)
            os.write(terminal.master, b"typed\r")
            output = await terminal.read_to_end()
            assert await terminal.process.wait() == 5, output
    assert output.endswith(b"24 80\r\nready\r\n" + b"typed\r\n24 80\r\ngot-typed\r\n"), output
    assert b"resize" not in output
    assert b"Traceback" not in output
