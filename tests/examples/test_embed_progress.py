"""``examples/embed_progress.py``: concurrent jobs, a progress display, a table of exit codes."""

from __future__ import annotations

import re
import sys

import trio

import trio_exec as tx

from .helpers import EXAMPLES, TIMEOUT, run_example

# What each job of the example writes (stdout chunks plus, for lint, its stderr line) and
# how it exits.
EXPECTED = {
    "fetch": (0, 6 * 2000),
    "compile": (0, 10 * 4096),
    "lint": (1, 3 * 500 + len("failing with exit code 1\n")),
    "test": (0, 8 * 1500),
    "package": (0, 4 * 8192),
}
TOTAL = sum(size for _, size in EXPECTED.values())

FINISHED = re.compile(r"^(\w+) finished: exit (\d+), (\d+) bytes \((\d)/5 done\)$")
ROW = re.compile(r"^(\w+) +(\d+) +(\d+) +\d+\.\d\d$")
STATUS = re.compile(r"\[(\d)/5 running, (\d) done\] bytes: (\d+)")


def check_finished_lines(lines: list[str]) -> None:
    """One line per job, in finishing order (which varies): counts 1..5, exact bytes."""
    matches = [FINISHED.match(line) for line in lines]
    assert all(matches), lines
    seen = {m[1]: (int(m[2]), int(m[3])) for m in matches if m}
    assert seen == EXPECTED
    assert [int(m[4]) for m in matches if m] == [1, 2, 3, 4, 5]


def check_summary(lines: list[str]) -> None:
    """The table: a header, one row per job in job order, and the totals."""
    assert lines[0].split() == ["job", "exit", "bytes", "seconds"]
    rows = [ROW.match(line) for line in lines[1:6]]
    assert all(rows), lines
    assert [(m[1], (int(m[2]), int(m[3]))) for m in rows if m] == list(EXPECTED.items())
    assert lines[6] == f"5 jobs, 4 succeeded, 1 failed, {TOTAL} bytes"
    assert len(lines) == 7


async def test_local_jobs_report_one_line_each_when_not_a_terminal() -> None:
    run = await run_example("embed_progress.py")
    assert run.exit_code == 0, run.err
    lines = run.out.splitlines()
    assert lines[0] == "running 5 jobs locally"
    check_finished_lines(lines[1:6])
    check_summary(lines[6:])
    assert "\r" not in run.out
    assert "\x1b" not in run.out
    assert run.stderr == b""


async def test_remote_jobs_run_through_an_in_process_exec_server() -> None:
    run = await run_example("embed_progress.py", "--remote")
    assert run.exit_code == 0, run.err
    lines = run.out.splitlines()
    assert re.fullmatch(
        r"running 5 jobs through the exec server at ws://127\.0\.0\.1:\d+", lines[0]
    )
    check_finished_lines(lines[1:6])
    check_summary(lines[6:])


async def test_live_display_redraws_a_status_line() -> None:
    run = await run_example("embed_progress.py", "--display", "live")
    assert run.exit_code == 0, run.err
    header, _, rest = run.out.partition("\n")
    assert header == "running 5 jobs locally"
    # The live part: frames separated by "\r\x1b[K", each a status or a finished-job line.
    live, _, table = rest.partition(f"[0/5 running, 5 done] bytes: {TOTAL}\n")
    assert table, "no final status line"
    check_summary(table.splitlines())
    frames = [frame for frame in live.split("\r\x1b[K") if frame]
    statuses = [STATUS.fullmatch(frame) for frame in frames if not frame.endswith("\n")]
    assert statuses, frames
    assert all(statuses), frames
    totals = [int(m[3]) for m in statuses if m]
    assert totals == sorted(totals), "the byte count never goes back"
    assert all(int(m[1]) + int(m[2]) <= 5 for m in statuses if m)
    check_finished_lines([frame.removesuffix("\n") for frame in frames if frame.endswith("\n")])


async def test_a_terminal_gets_the_live_display_by_default() -> None:
    # Run it on a pseudo-terminal (through trio_exec itself): stdout is then a tty.
    with trio.fail_after(TIMEOUT):
        done = await tx.run_process([sys.executable, str(EXAMPLES / "embed_progress.py")], tty=True)
    out = done.stdout.decode()
    assert "\r\x1b[K[" in out
    # The terminal turns "\n" into "\r\n".
    assert f"\x1b[K[0/5 running, 5 done] bytes: {TOTAL}\r\n" in out
    check_summary(out.split(f"bytes: {TOTAL}\r\n", 1)[1].splitlines())
