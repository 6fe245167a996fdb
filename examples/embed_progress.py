"""Embed trio_exec in a Trio app: run several jobs at once with a live progress line.

Five jobs (small Python children that write output at their own pace, one of them fails)
run concurrently, each in its own task and its own process session. The app counts the
bytes they write as the events arrive and shows:

* on a terminal, one status line redrawn in place (``\\r[3/5 running, 1 done] bytes:
  12345``), with a line printed above it as each job finishes;
* otherwise (a pipe, a log file, CI), one plain line per finished job;

then a table of exit codes. A failed job is reported, not raised: the program exits 0.

    python examples/embed_progress.py              # local processes
    python examples/embed_progress.py --remote     # through an in-process exec server
    python examples/embed_progress.py --display live|lines|auto

The jobs only use the :class:`trio_exec.ExecBackend` interface, so ``--remote`` changes one
line: where the backend comes from.
"""

from __future__ import annotations

import argparse
import sys
from typing import Final, TextIO

import attrs
import trio

import trio_exec as tx

CHILD: Final = """
import sys, time
chunks, size, delay, code = map(float, sys.argv[1:])
for i in range(int(chunks)):
    sys.stdout.write("x" * int(size))
    sys.stdout.flush()
    time.sleep(delay)
if code:
    print(f"failing with exit code {int(code)}", file=sys.stderr)
sys.exit(int(code))
"""


@attrs.frozen(kw_only=True)
class Job:
    """A job: ``chunks`` writes of ``size`` bytes, ``delay`` seconds apart, then ``exit_code``."""

    name: str
    chunks: int
    size: int
    delay: float
    exit_code: int = 0

    def argv(self) -> list[str]:
        args = (self.chunks, self.size, self.delay, self.exit_code)
        return [sys.executable, "-c", CHILD, *map(str, args)]


JOBS: Final = (
    Job(name="fetch", chunks=6, size=2000, delay=0.05),
    Job(name="compile", chunks=10, size=4096, delay=0.03),
    Job(name="lint", chunks=3, size=500, delay=0.08, exit_code=1),
    Job(name="test", chunks=8, size=1500, delay=0.06),
    Job(name="package", chunks=4, size=8192, delay=0.04),
)


@attrs.define
class Result:
    """What the app learned about one job."""

    bytes: int = 0
    exit_code: int | None = None
    seconds: float = 0.0


class Progress:
    """The app's view of all jobs; ``changed`` wakes the display task."""

    def __init__(self, jobs: tuple[Job, ...]) -> None:
        self.jobs = jobs
        self.results = {job.name: Result() for job in jobs}
        self.running = 0
        self.done = 0
        self.finished: list[str] = []  # lines to print, in order
        self.changed = trio.Event()

    @property
    def total_bytes(self) -> int:
        return sum(result.bytes for result in self.results.values())

    def _touch(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    def started(self) -> None:
        self.running += 1
        self._touch()

    def output(self, name: str, size: int) -> None:
        self.results[name].bytes += size
        self._touch()

    def ended(self, name: str, exit_code: int, seconds: float) -> None:
        result = self.results[name]
        result.exit_code, result.seconds = exit_code, seconds
        self.running -= 1
        self.done += 1
        self.finished.append(
            f"{name} finished: exit {exit_code}, {result.bytes} bytes "
            f"({self.done}/{len(self.jobs)} done)"
        )
        self._touch()

    def status(self) -> str:
        return (
            f"[{self.running}/{len(self.jobs)} running, {self.done} done] bytes: {self.total_bytes}"
        )


async def run_job(backend: tx.ExecBackend, job: Job, progress: Progress) -> None:
    """One session: count its output as it arrives, record how it ended."""
    start = trio.current_time()
    async with backend.open_process(job.argv()) as proc:
        progress.started()
        async for event in proc.events:
            match event:
                case tx.Output(data=data):
                    progress.output(job.name, len(data))
                case tx.Exited() | tx.Closed() | tx.Failed():
                    pass
        exit_code = await proc.wait()
    progress.ended(job.name, exit_code, trio.current_time() - start)


class Display:
    """Shows a :class:`Progress` on ``out``: a live status line, or plain lines."""

    def __init__(self, progress: Progress, out: TextIO, live: bool) -> None:
        self.progress, self.out, self.live = progress, out, live
        self.printed = 0  # finished-job lines already shown

    def draw(self, *, final: bool = False) -> None:
        lines = self.progress.finished[self.printed :]
        self.printed += len(lines)
        if self.live:
            # Clear the status line, print the new lines above it, redraw it.
            text = "".join(f"\r\x1b[K{line}\n" for line in lines)
            end = "\n" if final else ""
            self.out.write(f"{text}\r\x1b[K{self.progress.status()}{end}")
        else:
            self.out.write("".join(f"{line}\n" for line in lines))
        self.out.flush()

    async def run(self) -> None:
        """Redraw on every change, at most 20 times a second, until cancelled."""
        while True:
            changed = self.progress.changed
            self.draw()
            await changed.wait()
            await trio.sleep(0.05)


def summary(progress: Progress) -> str:
    rows = [f"{'job':<10} {'exit':>4} {'bytes':>7} {'seconds':>7}"]
    for job in progress.jobs:
        result = progress.results[job.name]
        rows.append(
            f"{job.name:<10} {result.exit_code!s:>4} {result.bytes:>7} {result.seconds:>7.2f}"
        )
    failed = sum(1 for result in progress.results.values() if result.exit_code != 0)
    rows.append(
        f"{len(progress.jobs)} jobs, {len(progress.jobs) - failed} succeeded, {failed} failed, "
        f"{progress.total_bytes} bytes"
    )
    return "\n".join(rows)


async def run_all(backend: tx.ExecBackend, out: TextIO, live: bool) -> Progress:
    """Run every job concurrently on ``backend`` while the display follows them."""
    progress = Progress(JOBS)
    shown = Display(progress, out, live)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(shown.run)
        async with trio.open_nursery() as jobs:
            for job in JOBS:
                jobs.start_soon(run_job, backend, job, progress)
        nursery.cancel_scope.cancel()  # every job ended: stop redrawing
    shown.draw(final=True)
    return progress


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--remote", action="store_true", help="run the jobs through an in-process exec server"
    )
    parser.add_argument(
        "--display",
        choices=["auto", "live", "lines"],
        default="auto",
        help="live: redraw a status line; lines: one line per finished job; "
        "auto (default): live on a terminal",
    )
    args = parser.parse_args(argv)
    out = sys.stdout
    live = args.display == "live" or (args.display == "auto" and out.isatty())
    if args.remote:
        async with trio.open_nursery() as nursery:
            url = await nursery.start(tx.serve_websocket, "127.0.0.1", 0)
            print(f"running {len(JOBS)} jobs through the exec server at {url}", flush=True)
            async with tx.connect(url) as backend:
                progress = await run_all(backend, out, live)
            nursery.cancel_scope.cancel()
    else:
        print(f"running {len(JOBS)} jobs locally", flush=True)
        progress = await run_all(tx.LocalBackend(), out, live)
    print(summary(progress))
    return 0


if __name__ == "__main__":
    sys.exit(trio.run(main, sys.argv[1:]))
