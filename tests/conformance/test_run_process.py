"""``run_process``: like subprocess.run, on every backend."""

from __future__ import annotations

import pytest
import trio

import trio_exec as tx

from .helpers import TIMEOUT


async def test_captures_output_and_exit_code(backend: tx.ExecBackend) -> None:
    with trio.fail_after(TIMEOUT):
        done = await tx.run_process(
            ["sh", "-c", "cat; echo err >&2"], backend=backend, input=b"in put"
        )
    assert done == tx.CompletedProcess(
        argv=("sh", "-c", "cat; echo err >&2"), exit_code=0, stdout=b"in put", stderr=b"err\n"
    )


async def test_check_raises_with_the_output(backend: tx.ExecBackend) -> None:
    with trio.fail_after(TIMEOUT), pytest.raises(tx.CalledProcessError) as info:
        await tx.run_process(["sh", "-c", "echo o; echo e >&2; exit 2"], backend=backend)
    error = info.value
    assert (error.exit_code, error.stdout, error.stderr) == (2, b"o\n", b"e\n")
    assert error.argv == ["sh", "-c", "echo o; echo e >&2; exit 2"]
    assert "exited with code 2" in str(error)


async def test_no_check_returns_the_code(backend: tx.ExecBackend) -> None:
    with trio.fail_after(TIMEOUT):
        done = await tx.run_process(["sh", "-c", "exit 9"], backend=backend, check=False)
    assert done.exit_code == 9


async def test_tty_output_is_stdout(backend: tx.ExecBackend) -> None:
    with trio.fail_after(TIMEOUT):
        done = await tx.run_process(["sh", "-c", "echo a; echo b >&2"], backend=backend, tty=True)
    assert (done.stdout, done.stderr) == (b"a\r\nb\r\n", b"")


async def test_cancellation_terminates_the_child(backend: tx.ExecBackend) -> None:
    with trio.fail_after(TIMEOUT):
        with trio.move_on_after(0.2) as scope:
            await tx.run_process(["sleep", "30"], backend=backend, grace=1.0)
    assert scope.cancelled_caught


async def test_without_backend_runs_locally() -> None:
    with trio.fail_after(TIMEOUT):
        done = await tx.run_process(["sh", "-c", "printf ok"])
    assert done.stdout == b"ok"
