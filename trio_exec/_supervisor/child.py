"""Supervisor child runner: one child's task, its state and history, and the waits on them.

The task runs the child in a loop of runs (spawn, readiness, exit), applies the restart
policy and sleeps the backoff between runs.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from typing import Final, assert_never

import trio

from .._backend import ExecBackend, ExecProcess
from .._errors import TrioExecError
from .._events import Closed, Event, Exited, Failed, Output, OutputStream
from .lines import _OutputLines
from .readiness import _cancel_when_set, _check_ready
from .spec import ChildSpec, ReadyOnCheck, ReadyOnOutput, ReadyOnPort, RestartPolicy
from .status import (
    FINAL_STATES,
    ChildError,
    ChildRun,
    ChildState,
    ChildStatus,
    OutputLine,
    _RunInfo,
)

__all__ = ["EXIT_REPORT_TIMEOUT", "KILL_TIMEOUT", "_Child"]

KILL_TIMEOUT: Final = 5.0
"""Seconds a stop waits, after the grace, for the backend to report the killed child's exit
before it leaves the session anyway (the session's own cleanup still runs)."""

EXIT_REPORT_TIMEOUT: Final = 2.0
"""Seconds to wait, once the child exited, for its exit event and the output before it
(output of grandchildren after the exit is not waited for)."""


class _Attempt:
    """What the tasks of one run share."""

    def __init__(self, run: _RunInfo) -> None:
        self.run = run
        self.ready = trio.Event()
        self.exited = trio.Event()
        self.check_error: str | None = None
        self.lines = _OutputLines()


class _Waiter:
    def __init__(self, predicate: Callable[[ChildStatus], bool]) -> None:
        self.predicate = predicate
        self.event = trio.Event()
        self.result: ChildStatus | None = None
        self.error: BaseException | None = None


class _Child:
    """One supervised child: its task, state and history."""

    def __init__(self, spec: ChildSpec, backend: ExecBackend, rng: random.Random) -> None:
        self.spec = spec
        self._backend = backend
        self._rng = rng
        self.state = ChildState.STARTING
        self._reason: str | None = None
        self._starts = 0
        self._runs: deque[ChildRun] = deque(maxlen=spec.keep_runs)
        self._current: _RunInfo | None = None
        self._lines: deque[OutputLine] = deque(maxlen=spec.keep_lines)
        self._restart_times: deque[float] = deque()
        self._next_start: float | None = None
        self._proc: ExecProcess | None = None
        self._life = trio.CancelScope()
        self._stopping = False
        self._stop_requested = False
        self._stop_grace: float | None = None
        self._waiters: list[_Waiter] = []

    # -- status ----------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self.state in FINAL_STATES

    def snapshot(self) -> ChildStatus:
        runs = list(self._runs)
        current = self._current
        if current is not None:
            runs.append(current.freeze())
        return ChildStatus(
            name=self.spec.name,
            spec=self.spec,
            state=self.state,
            reason=self._reason,
            process_id=None if self._proc is None else self._proc.process_id,
            starts=self._starts,
            restarts=max(0, self._starts - 1),
            next_start=self._next_start,
            runs=tuple(runs[-self.spec.keep_runs :]),
            lines=tuple(self._lines),
        )

    def _notify(self) -> None:
        """Evaluate the waiters' predicates on the status as it is now."""
        if not self._waiters:
            return
        status = self.snapshot()
        for waiter in list(self._waiters):
            try:
                matched = waiter.predicate(status)
            except Exception as exc:  # the waiter's own bug: raise it in the waiter
                waiter.error = exc
            else:
                if matched:
                    waiter.result = status
                elif status.finished:
                    waiter.error = self._finished_error(status)
                else:
                    continue
            self._waiters.remove(waiter)
            waiter.event.set()

    def _finished_error(self, status: ChildStatus) -> ChildError:
        reason = f": {status.reason}" if status.reason else ""
        return ChildError(
            f"child {status.name!r} is {status.state.name}{reason}; "
            "the condition can no longer hold",
            status,
        )

    async def wait_until(self, predicate: Callable[[ChildStatus], bool]) -> ChildStatus:
        status = self.snapshot()
        try:
            matched = predicate(status)
        except Exception:
            await trio.lowlevel.checkpoint()
            raise
        if matched:
            await trio.lowlevel.checkpoint()
            return status
        if status.finished:
            await trio.lowlevel.checkpoint()
            raise self._finished_error(status)
        waiter = _Waiter(predicate)
        self._waiters.append(waiter)
        try:
            await waiter.event.wait()
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
        if waiter.error is not None:
            raise waiter.error
        assert waiter.result is not None
        return waiter.result

    def _set_state(self, state: ChildState) -> None:
        if self.finished or (self._stopping and state is not ChildState.STOPPING):
            return
        if state is not ChildState.BACKOFF:
            self._next_start = None
        self.state = state
        self._notify()

    def _finish(self, state: ChildState, reason: str) -> None:
        if self.finished:
            return
        self.state = state
        self._reason = reason
        self._next_start = None
        self._notify()

    def request_stop(self, grace: float | None) -> None:
        if self.finished:
            return
        if not self._stopping:
            self._stopping = True
            self._stop_grace = grace
        self._stop_requested = True
        self.state = ChildState.STOPPING
        self._next_start = None
        self._notify()
        self._life.cancel()

    def _is_stopping(self) -> bool:
        # A method, not the attribute, so that type checkers do not narrow it across awaits.
        return self._stopping

    def current_process(self) -> ExecProcess | None:
        return self._proc

    # -- the child's task ------------------------------------------------------------------

    async def supervise(self) -> None:
        """Run, watch and restart the child until a final state, a stop or cancellation."""
        try:
            with self._life:
                while not self._stopping:
                    # Never start anything once the supervisor is being cancelled.
                    await trio.lowlevel.checkpoint_if_cancelled()
                    self._starts += 1
                    run = _RunInfo(run=self._starts, started_at=trio.current_time())
                    self._current = run
                    self._set_state(ChildState.STARTING)
                    await self._attempt(run)
                    if self._is_stopping():
                        break
                    delay = self._decide(run)
                    run.backoff = delay
                    self._end_run()
                    if delay is None:
                        return
                    self._next_start = trio.current_time() + delay
                    self._set_state(ChildState.BACKOFF)
                    await trio.sleep(delay)
        finally:
            self._end_run()
            reason = "stopped" if self._stop_requested else "the supervisor shut down"
            self._finish(ChildState.STOPPED, reason)

    def _end_run(self) -> None:
        if self._current is not None:
            self._runs.append(self._current.freeze())
            self._current = None
            self._notify()

    async def _attempt(self, run: _RunInfo) -> None:
        """One run: spawn, readiness, wait for the exit; records the outcome in ``run``."""
        spec = self.spec
        proc: ExecProcess | None = None
        try:
            async with self._backend.open_process(
                spec.argv, cwd=spec.cwd, env=spec.env, tty=spec.tty, grace=spec.grace
            ) as proc:
                await self._run_process(proc, run)
        except Exception as exc:
            if proc is not None and not isinstance(exc, TrioExecError):
                raise  # a bug, not a failure of the child
            if run.failure is None:
                what = "could not start" if proc is None else "the session failed"
                run.failure = f"{what}: {type(exc).__name__}: {exc}"
        finally:
            run.ended_at = trio.current_time()
            if run.exit_code is None and proc is not None:
                run.exit_code = proc.exit_code
            self._notify()

    async def _run_process(self, proc: ExecProcess, run: _RunInfo) -> None:
        attempt = _Attempt(run)
        run.process_id = proc.process_id
        self._proc = proc
        self._notify()
        events = proc.events  # subscribe before the first checkpoint: see every event
        consumer_scope = trio.CancelScope(shield=True)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._consume, events, attempt, consumer_scope)
                interrupted = True
                try:
                    await self._watch(attempt)
                    interrupted = False
                finally:
                    try:
                        with trio.CancelScope(shield=True):
                            await self._end_process(proc, attempt, interrupted=interrupted)
                    finally:
                        consumer_scope.cancel()
        finally:
            self._proc = None

    async def _consume(
        self, events: trio.abc.ReceiveChannel[Event], attempt: _Attempt, scope: trio.CancelScope
    ) -> None:
        """Turn the session's events into lines, readiness and the exit status.

        Shielded: output written while the child is being stopped is kept too. It is
        cancelled once the run is over.
        """
        run = attempt.run
        try:
            with scope:
                async for event in events:
                    match event:
                        case Output(stream=stream, data=data):
                            for text in attempt.lines.feed(stream, data):
                                self._add_line(attempt, stream, text)
                        case Exited(exit_code=exit_code, signal=signum):
                            run.exit_code = exit_code
                            run.signal = signum
                            attempt.exited.set()
                            self._notify()
                        case Closed():
                            pass
                        case Failed(message=message):
                            if run.failure is None:
                                run.failure = f"the session failed: {message}"
                        case _:
                            assert_never(event)
        except TrioExecError as exc:
            if run.failure is None:
                run.failure = f"the session failed: {type(exc).__name__}: {exc}"
        finally:
            for stream, text in attempt.lines.flush():
                self._add_line(attempt, stream, text)
            attempt.exited.set()
            with trio.CancelScope(shield=True):
                await events.aclose()

    def _add_line(self, attempt: _Attempt, stream: OutputStream, text: str) -> None:
        self._lines.append(OutputLine(run=attempt.run.run, stream=stream, text=text))
        ready = self.spec.ready
        if (
            isinstance(ready, ReadyOnOutput)
            and not attempt.ready.is_set()
            and stream in ready.streams
            and ready.pattern.search(text)
        ):
            attempt.ready.set()
        self._notify()

    async def _watch(self, attempt: _Attempt) -> None:
        """Wait for readiness (report RUNNING), then for the exit."""
        spec = self.spec
        ready = spec.ready
        if ready is not None:
            with trio.move_on_after(spec.ready_timeout):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_cancel_when_set, attempt.ready, nursery.cancel_scope)
                    nursery.start_soon(_cancel_when_set, attempt.exited, nursery.cancel_scope)
                    if not isinstance(ready, ReadyOnOutput):
                        nursery.start_soon(self._poll, ready, attempt, nursery.cancel_scope)
            if not attempt.ready.is_set():
                if attempt.check_error is not None:
                    attempt.run.failure = attempt.check_error
                elif attempt.exited.is_set():
                    attempt.run.failure = "exited before it was ready"
                else:
                    attempt.run.failure = f"not ready within {spec.ready_timeout:g} s"
                return
        attempt.run.ready_at = trio.current_time()
        self._set_state(ChildState.RUNNING)
        await attempt.exited.wait()

    async def _poll(
        self, ready: ReadyOnPort | ReadyOnCheck, attempt: _Attempt, scope: trio.CancelScope
    ) -> None:
        while True:
            try:
                ok = await _check_ready(ready)
            except Exception as exc:  # the user's check failed: the start failed
                attempt.check_error = f"the readiness check raised {type(exc).__name__}: {exc}"
                scope.cancel()
                return
            if ok:
                attempt.ready.set()
                return
            await trio.sleep(ready.interval)

    async def _end_process(
        self, proc: ExecProcess, attempt: _Attempt, *, interrupted: bool
    ) -> None:
        """Terminate the child if it still runs, and wait (bounded) for its exit event.

        Runs shielded: after a stop, the supervisor's cancellation or a failed start.
        """
        if interrupted:
            self._stopping = True
            attempt.run.stopped = True
            self._set_state(ChildState.STOPPING)
        if not attempt.exited.is_set():
            grace = self.spec.grace
            if interrupted and self._stop_grace is not None:
                grace = self._stop_grace
            with trio.move_on_after(grace + KILL_TIMEOUT):
                try:
                    await proc.terminate(grace)
                except TrioExecError:
                    pass  # the session broke; leaving it cleans up what can be
        with trio.move_on_after(EXIT_REPORT_TIMEOUT):
            await attempt.exited.wait()

    def _decide(self, run: _RunInfo) -> float | None:
        """Apply the restart policy to a run that ended: the backoff delay, or None."""
        spec = self.spec
        started = run.ready_at is not None
        clean = started and run.failure is None and run.exit_code in spec.success_codes
        outcome = run.outcome()
        if spec.restart is RestartPolicy.NEVER or (
            spec.restart is RestartPolicy.ON_FAILURE and clean
        ):
            if started:
                self._finish(ChildState.EXITED, outcome)
            else:
                self._finish(
                    ChildState.FAILED,
                    f"{outcome}; the restart policy is {spec.restart.value!r}",
                )
            return None
        now = trio.current_time()
        while self._restart_times and self._restart_times[0] <= now - spec.restart_window:
            self._restart_times.popleft()
        if len(self._restart_times) >= spec.max_restarts:
            self._finish(
                ChildState.FAILED,
                f"{outcome}; {spec.max_restarts} restarts within {spec.restart_window:g} s",
            )
            return None
        self._restart_times.append(now)
        try:
            base = spec.backoff_initial * spec.backoff_factor ** (len(self._restart_times) - 1)
        except OverflowError:
            base = spec.backoff_max
        base = min(base, spec.backoff_max)
        return base * (1.0 + spec.backoff_jitter * self._rng.uniform(-1.0, 1.0))
