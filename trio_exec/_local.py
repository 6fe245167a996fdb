"""LocalBackend: processes on this machine.

Theory of operation
-------------------
Each child runs in a new session (``setsid``), so its pid is also its process group id
and every signal goes to the whole group. One task per session feeds its
:class:`~trio_exec._log.ProcessLog`. It waits on an epoll of its own, which watches the
output descriptors (stdout and stderr, or the PTY master) and the child's pidfd:

* each readable descriptor's **pump** reads it (non-blocking, whole chunks gathered from
  consecutive reads) and appends to the log. When a subscription is so far behind that
  a chunk has no room, that stream moves to a task of its own, which waits in
  ``append_output``: a slow consumer stops that stream's reads, the pipe fills, and the
  child blocks in ``write``: backpressure instead of unbounded memory, while the other
  stream and the exit go on.
* the **exit**: once the pidfd is readable, the task peeks at the exit status with
  ``waitid(WNOWAIT)`` and leaves the child a zombie until the block is left, so the
  pid (which is also the group id) cannot be reused while we may still signal it.
  Before it sequences ``Exited`` it reads every byte that was in the pipes when the
  child exited (``FIONREAD``): output the child wrote before exiting always precedes
  ``Exited`` (invariant 4), while output of grandchildren that keeps coming never delays
  it. It sequences ``Closed`` once every stream is at EOF, or
  :data:`CLOSE_DRAIN_TIMEOUT` after the group was SIGKILLed (then only a process that
  left the group can still hold a stream open; its output is dropped), and then
  closes the session's descriptors (output pipes, PTY master, and the stdin pipe unless
  a job of the group still reads it): a session kept open after its end (the server
  retains finished processes) holds only its log and the zombie that pins the group id.
  Without pidfds (Linux before 5.3) a worker thread's ``waitid`` signals an eventfd.

When the program ignores SIGCHLD (``signal.signal(SIGCHLD, SIG_IGN)``), the kernel reaps
each child as it exits and discards its status, as it does for :mod:`subprocess`: the
session then reports exit code 0, as ``Popen.wait`` and ``trio.run_process`` do. No
zombie pins the pid, so the group id is not pinned either: a signal sent to the group
after the child exited could reach a new group that reused the id once every member is
gone (the session stops signalling the group as soon as it sees it empty).

``LocalBackend(start_new_session=False)`` keeps its children in this process's session
and process group, so that a terminal's Ctrl-C reaches them (:func:`connect_command`
runs ``ssh`` so). Such a child has no group of its own: every signal, including the
SIGKILL of the end of the block, goes to the child alone, and only until it is reaped;
the pipes' end of file is then waited for at most :data:`CLOSE_DRAIN_TIMEOUT` seconds,
whoever holds them. ``LocalBackend(inherit_stderr=True)`` gives its non-tty children this
process's stderr instead of a pipe: their sessions carry no stderr output.

Where :func:`~trio_exec.containment` reports a writable cgroup v2 hierarchy, each child
also gets a cgroup of its own, which it enters before it runs (``trio_exec._cgroup``):
leaving the block kills the whole cgroup after the group, so that processes that left the
group (``setsid``, daemons) die too, and removes it once it is empty.

With ``LocalBackend(kill_orphans=True)`` a keeper process (``trio_exec._keeper``) kills
every open session's group (and cgroup) if this process dies without leaving the blocks.

Leaving the block releases backpressure (no one will consume any more), terminates a
child that still runs (SIGTERM, SIGKILL after the grace), SIGKILLs whatever is left of
the group (and the cgroup), waits a bounded time for the pipes to reach EOF, reaps the
child, and removes its cgroup. A block left after ``Closed`` whose child has no cgroup
and whose group died with it (the common end) does that without waiting: SIGKILL to the
group, the reap and the group check are three system calls, and the nursery's exit is
the block's one schedule point.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Unpack, final

import trio

from ._backend import (
    Arg,
    ExecBackend,
    ProcessOptions,
    check_argv,
    check_env,
    check_seconds,
    check_window,
    new_process_id,
    process_options,
)
from ._cgroup import Containment, ContainmentCheck, containment
from ._keeper import Keeper
from ._local_process import LocalProcess
from ._log import ProcessLog
from ._pump import READ_CHUNK_BYTES
from ._spawn import spawn
from ._util import open_service_nursery

__all__ = ["LocalBackend", "LocalProcess", "open_process"]


@final
class LocalBackend(ExecBackend):
    """Runs processes on this machine, each in its own process group (by default) and, where
    the machine allows it, its own cgroup.

    Process ids must be unique among the sessions of one backend that are open at once.

    Args:
        kill_orphans: also when this Python process dies without leaving the blocks
            (SIGKILL, SIGQUIT from ``Ctrl-\\``, a crash, ``os._exit``), kill the process group
            of every session still open, within milliseconds. A *keeper* process does it:
            started on entering ``async with LocalBackend(...)`` (else by the first
            spawn), in its own session, deaf to terminal signals, it
            learns each group by one pipe write per spawn and per end, and SIGKILLs the
            groups it knows when the pipe reaches end of file (see ``trio_exec._keeper``).
            ``trio-exec serve`` and ``trio-exec run`` use it. With cgroups the keeper kills
            each session's cgroup too (a grandchild that left the group included) and
            removes it; without, a grandchild that left the group (``setsid``) is not
            covered, as it is not when a block ends.
        start_new_session: start every child in a new session, hence its own process
            group (the default). False: children stay in this process's session and
            group, as with ``subprocess.Popen(start_new_session=False)``, so a signal to
            the foreground group (a terminal's Ctrl-C) reaches them as it reaches this
            process. The limit: there is no group to kill. Terminating, signalling and
            leaving the block still signal, kill and reap the child itself, but a process
            the child started and left behind is not killed (its own children may be
            left); the end of the block waits at most :data:`CLOSE_DRAIN_TIMEOUT` seconds
            after the SIGKILL for such a process to release the child's pipes. Not with
            ``kill_orphans`` (the keeper kills groups, and these children have none) nor
            with ``tty=True`` (a terminal needs a session leader): ValueError. These
            children get no cgroup either: they stay in this process's cgroup, like its
            own, so that what they leave on purpose (an ``ssh`` ``ControlPersist`` master)
            lives on; :attr:`containment` says :attr:`Containment.CHILD`.
        inherit_stderr: a child not on a terminal writes its stderr straight to this
            process's stderr (descriptor 2) instead of a pipe; its session then has no
            ``OutputStream.STDERR`` output (default False: piped into the session).
        cgroups: give each child a cgroup of its own where :func:`~trio_exec.containment`
            reports :attr:`Containment.CGROUP` (the default, True): leaving the block then
            kills every process the child started, ``setsid`` daemons included, and
            removes the cgroup. Elsewhere (no writable cgroup v2 hierarchy: not root and
            no delegated subtree) the process group is the fallback, as with False. The
            cgroups are made under this process's own cgroup (``trio-exec-<pid>-<n>``);
            a program that manages that cgroup itself, or does not want its children
            moved out of it, passes False. The cost is a fork instead of a vfork per
            spawn (unless ``sole_spawner``) plus a ``mkdir`` and ``rmdir`` (see the
            operations guide). :attr:`containment` tells which applies.
        sole_spawner: a promise that this process starts child processes through
            trio_exec only (default False). Then a child that gets a cgroup starts in
            it: this process moves itself into the new cgroup, spawns with ``vfork``,
            and moves back (two writes to ``cgroup.procs``; trio_exec's other spawns in
            this process wait meanwhile). Without it the child is a fork of this
            process that enters the cgroup before it runs, and a fork costs in
            proportion to this process's memory: 1.6 ms for a small interpreter,
            5.4 ms at 100 MiB resident, against 0.5 ms for the ``vfork`` (measured on
            a 2-core VM), and every page this process writes afterwards faults once.
            Not a default because a process that other code (:mod:`subprocess`,
            :func:`trio.run_process`, :mod:`multiprocessing`) starts meanwhile, in
            another thread, would start in that session's cgroup and be killed when
            its block ends. ``trio-exec serve`` and ``trio-exec run`` pass True: they
            start nothing else. No effect without a cgroup.
        behind_chunk_bytes: the largest ``Output`` chunk while a slow subscription
            holds a stream back (default ``READ_CHUNK_BYTES``, 128 KiB, the largest
            chunk otherwise; at most half of the session's ``retain_bytes``). A local
            consumer is fastest with chunks that are still in the cache; a consumer that
            pays much per event (an exec server's client) is faster with fewer, larger
            ones: :class:`~trio_exec.ExecServer`'s default backend and ``trio-exec
            serve`` use 512 KiB (``trio_exec._pump.BEHIND_CHUNK_BYTES``). ValueError
            below 128 KiB.

    A program that ignores SIGCHLD (``signal.signal(SIGCHLD, SIG_IGN)``) has its children
    reaped by the kernel, which discards their exit status: sessions then report exit
    code 0, as :mod:`subprocess` and :func:`trio.run_process` do, and the group id is not
    pinned by a zombie (a signal to the group after the child exited may, in the worst
    case, reach a new group that reused the id once every member is gone).

    The keeper lives until :meth:`aclose` (or the end of ``async with LocalBackend(...)``),
    until the backend is garbage collected, or until this process exits; then it exits
    too, and kills first, in the last two cases, the groups of sessions never ended.
    Without ``kill_orphans`` the backend holds no resource and needs no closing.
    """

    def __init__(
        self,
        *,
        kill_orphans: bool = False,
        start_new_session: bool = True,
        inherit_stderr: bool = False,
        cgroups: bool = True,
        sole_spawner: bool = False,
        behind_chunk_bytes: int = READ_CHUNK_BYTES,
    ) -> None:
        if kill_orphans and not start_new_session:
            raise ValueError(
                "kill_orphans needs start_new_session=True: the keeper kills process "
                "groups, and a child in this process's group has none of its own"
            )
        self._start_new_session = bool(start_new_session)
        self._inherit_stderr = bool(inherit_stderr)
        self._cgroups = bool(cgroups)
        self._sole_spawner = bool(sole_spawner)
        if (
            not isinstance(behind_chunk_bytes, int)
            or isinstance(behind_chunk_bytes, bool)
            or behind_chunk_bytes < READ_CHUNK_BYTES
        ):
            raise ValueError(
                f"behind_chunk_bytes must be an int of at least READ_CHUNK_BYTES "
                f"({READ_CHUNK_BYTES}), not {behind_chunk_bytes!r}"
            )
        self._behind_chunk_bytes = behind_chunk_bytes
        self._live: set[str] = set()
        self._keeper = Keeper() if kill_orphans else None
        if self._keeper is not None:
            # Collected with sessions never ended: the keeper kills them. Not at exit,
            # where closing the pipe is the kernel's job and has that effect anyway.
            weakref.finalize(self, self._keeper.abandon).atexit = False

    def __repr__(self) -> str:
        return f"<LocalBackend with {len(self._live)} open sessions>"

    @property
    def kill_orphans(self) -> bool:
        """Whether a keeper kills the sessions' groups if this process dies."""
        return self._keeper is not None

    @property
    def start_new_session(self) -> bool:
        """Whether each child gets a new session and process group (see the class)."""
        return self._start_new_session

    @property
    def behind_chunk_bytes(self) -> int:
        """The largest chunk while a stream is held back (see the class)."""
        return self._behind_chunk_bytes

    @property
    def sole_spawner(self) -> bool:
        """Whether children spawn inside their cgroup with ``vfork`` (see the class)."""
        return self._sole_spawner

    @property
    def containment(self) -> ContainmentCheck:
        """What contains each session's processes on this backend: a cgroup of its own
        where :func:`~trio_exec.containment` reports :attr:`Containment.CGROUP` and the
        backend was not made with ``cgroups=False``; else the process group, with the
        reason."""
        if not self._start_new_session:
            return ContainmentCheck(
                Containment.CHILD,
                "LocalBackend(start_new_session=False): children stay in this process's "
                "group and cgroup",
            )
        if not self._cgroups:
            return ContainmentCheck(Containment.PROCESS_GROUP, "LocalBackend(cgroups=False)")
        return containment()

    @property
    def inherit_stderr(self) -> bool:
        """Whether children not on a terminal write to this process's stderr (see the class)."""
        return self._inherit_stderr

    async def aclose(self) -> None:
        """Stop and reap the keeper process, if one was started; idempotent.

        Open sessions are unaffected (their blocks still end them), but lose the
        protection against this process's death until the next spawn, which starts a new
        keeper and registers them with it.

        **Cancellation:** the keeper is stopped and reaped anyway (SIGKILL, which takes
        effect at once).
        """
        if self._keeper is None or self._keeper.pid is None:
            await trio.lowlevel.checkpoint()
            return
        await trio.to_thread.run_sync(self._keeper.close)

    async def __aenter__(self) -> LocalBackend:
        """Start the keeper (with ``kill_orphans``) and return the backend; :meth:`aclose`
        runs at the end of the block.

        Started here, the keeper is up before the first spawn, which then does not wait
        for it (without ``async with``, the first spawn starts it).

        Raises:
            OSError: the keeper could not be started.

        **Cancellation:** the keeper's start (a spawn in a worker thread) runs to
        completion; the keeper then runs until :meth:`aclose`.
        """
        if self._keeper is None:
            await trio.lowlevel.checkpoint()
        else:
            await trio.to_thread.run_sync(self._keeper.start)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Run :meth:`aclose`."""
        await self.aclose()

    def open_process(
        self, argv: Sequence[Arg], **options: Unpack[ProcessOptions]
    ) -> AbstractAsyncContextManager[LocalProcess]:
        """See :meth:`ExecBackend.open_process`. Also raises ValueError for a process id
        that is already open on this backend.

        Without ``env``, the child inherits ``os.environ`` as it is when this is called
        (plus ``extra_env``); without ``cwd``, this process's working directory.
        """
        opts = process_options(options)
        args = check_argv(argv)
        check_seconds("grace", opts["grace"])
        arg0 = opts["arg0"]
        if arg0 is not None and (not isinstance(arg0, str) or "\0" in arg0):
            raise ValueError("arg0 must be a str without NUL")
        size = check_window(opts["window"], opts["tty"])
        if opts["tty"] and not self._start_new_session:
            raise ValueError(
                "tty=True needs a new session (the terminal becomes the controlling "
                "terminal of its session leader); this backend has start_new_session=False"
            )
        env, extra_env = opts["env"], opts["extra_env"]
        child_env = None if env is None else check_env(env)
        if extra_env is not None:
            child_env = {**(os.environ if child_env is None else child_env)}
            child_env.update(check_env(extra_env))
        return self._open(
            args,
            cwd=opts["cwd"],
            env=child_env,
            tty=opts["tty"],
            pipe_stdin=opts["pipe_stdin"],
            arg0=arg0,
            process_id=opts["process_id"],
            grace=opts["grace"],
            log=ProcessLog(retain_bytes=opts["retain_bytes"]),
            window=size,
        )

    @asynccontextmanager
    async def _open(
        self,
        args: list[str],
        *,
        cwd: str | os.PathLike[str] | None,
        env: dict[str, str] | None,
        tty: bool,
        pipe_stdin: bool,
        arg0: str | None,
        process_id: str | None,
        grace: float,
        log: ProcessLog,
        window: tuple[int, int] | None,
    ) -> AsyncIterator[LocalProcess]:
        pid = new_process_id() if process_id is None else process_id
        if pid in self._live:
            raise ValueError(f"process id {pid!r} is already open on this backend")
        self._live.add(pid)
        try:
            child = await spawn(
                args,
                cwd=cwd,
                env=env,
                tty=tty,
                pipe_stdin=pipe_stdin,
                arg0=arg0,
                window=window,
                keeper=self._keeper,
                start_new_session=self._start_new_session,
                inherit_stderr=self._inherit_stderr,
                cgroup_parent=self.containment.parent,
                sole_spawner=self._sole_spawner,
            )
            proc = LocalProcess(pid, child, log, self._keeper, self._behind_chunk_bytes)
            try:
                async with open_service_nursery() as nursery:
                    nursery.start_soon(proc._run, nursery)
                    try:
                        yield proc
                    finally:
                        if not proc._shutdown_at_once():
                            with trio.CancelScope(shield=True):
                                await proc._shutdown(grace)
                        proc._stop_tasks()
            finally:
                proc._release()
        finally:
            self._live.discard(pid)


def open_process(
    argv: Sequence[Arg], **options: Unpack[ProcessOptions]
) -> AbstractAsyncContextManager[LocalProcess]:
    """Open a process session on this machine: ``LocalBackend().open_process(...)``.

    See :meth:`ExecBackend.open_process` for the arguments, errors and cancellation, and
    :class:`ProcessOptions` for the options.
    """
    return LocalBackend().open_process(argv, **options)
