"""Local backend benchmarks, each beside its baseline measured in the same run.

* spawn and wait of ``/bin/true``, sequentially: trio_exec vs ``trio.run_process``, also
  with ``LocalBackend(kill_orphans=True)`` (the keeper that the CLI and server use), both
  without cgroups (``cgroups=False``), and, where :func:`trio_exec.containment` allows
  it, with a cgroup per session (the default there; the fork instead of vfork and the
  cgroup's ``mkdir``, move and ``rmdir`` are its cost), and so with
  ``LocalBackend(sole_spawner=True)`` (a vfork from inside the cgroup, two moves of this
  process);
* draining 256 MiB from ``head -c`` through ``proc.events`` vs 64 KiB reads of
  ``trio.lowlevel.open_process(...).stdout``.

Ratios are ours / baseline (higher is better); machines are noisy, so each figure is
the best of seven runs, alternating ours and the baseline.
"""

from __future__ import annotations

import subprocess
import sys
from functools import partial

import trio

import trio_exec as tx

from ._common import exit_status, report, sized, timed

SPAWNS = sized(300, 3)
DRAIN_BYTES = sized(256 * 1024 * 1024, 1024 * 1024)
REPEATS = sized(7, 1)


CGROUP_TARGET = 0.15
"""A floor for the cgroup row, not a goal: a fork (no vfork) per spawn dominates it."""

SOLE_SPAWNER_TARGET = 0.6
"""A floor for the cgroup row with ``sole_spawner=True``: a ``vfork`` as in the baseline,
but a ``mkdir``, two moves of this process (in and out) and an ``rmdir`` per spawn."""


async def spawn_ours(backend: tx.LocalBackend) -> None:
    for _ in range(SPAWNS):
        async with backend.open_process(["/bin/true"]) as proc:
            await proc.wait()


async def spawn_trio() -> None:
    for _ in range(SPAWNS):
        await trio.run_process(["/bin/true"])


async def drain_ours() -> None:
    total = 0
    async with tx.open_process(["head", "-c", str(DRAIN_BYTES), "/dev/zero"]) as proc:
        async for event in proc.events:
            if isinstance(event, tx.Output):
                total += len(event.data)
    assert total == DRAIN_BYTES, total


async def drain_trio() -> None:
    total = 0
    proc = await trio.lowlevel.open_process(
        ["head", "-c", str(DRAIN_BYTES), "/dev/zero"], stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    while data := await proc.stdout.receive_some(65536):
        total += len(data)
    await proc.stdout.aclose()
    await proc.wait()
    assert total == DRAIN_BYTES, total


async def main() -> int:
    ours_spawn = kept_spawn = cgroup_spawn = inside_spawn = trio_spawn = 0.0
    ours_drain = trio_drain = 0.0
    # The keeper starts once per backend (at its first spawn), as in a server: warm it.
    kept = tx.LocalBackend(kill_orphans=True, cgroups=False)
    await tx.run_process(["/bin/true"], backend=kept)
    plain = tx.LocalBackend(cgroups=False)
    contained = tx.LocalBackend(cgroups=True)
    inside = tx.LocalBackend(cgroups=True, sole_spawner=True)
    has_cgroups = contained.containment.kind is tx.Containment.CGROUP
    for _ in range(REPEATS):
        trio_spawn = max(trio_spawn, SPAWNS / await timed(spawn_trio))
        ours_spawn = max(ours_spawn, SPAWNS / await timed(partial(spawn_ours, plain)))
        kept_spawn = max(kept_spawn, SPAWNS / await timed(partial(spawn_ours, kept)))
        if has_cgroups:
            cgroup_spawn = max(cgroup_spawn, SPAWNS / await timed(partial(spawn_ours, contained)))
            inside_spawn = max(inside_spawn, SPAWNS / await timed(partial(spawn_ours, inside)))
        trio_drain = max(trio_drain, DRAIN_BYTES / 2**20 / await timed(drain_trio))
        ours_drain = max(ours_drain, DRAIN_BYTES / 2**20 / await timed(drain_ours))
    ok = report("spawn+wait /bin/true x300", ours_spawn, trio_spawn, "/s", "trio.run_process", 1.0)
    ok &= report(
        "spawn+wait x300, kill_orphans=True", kept_spawn, trio_spawn, "/s", "trio.run_process", 1.0
    )
    if has_cgroups:
        ok &= report(
            "spawn+wait x300, cgroup per session",
            cgroup_spawn,
            trio_spawn,
            "/s",
            "trio.run_process",
            CGROUP_TARGET,
        )
        ok &= report(
            "spawn+wait x300, cgroup, sole_spawner",
            inside_spawn,
            trio_spawn,
            "/s",
            "trio.run_process",
            SOLE_SPAWNER_TARGET,
        )
    else:
        print(f"spawn+wait x300, cgroup per session: not here ({contained.containment.reason})")
    ok &= report(
        "drain 256 MiB via events", ours_drain, trio_drain, "MiB/s", "raw 64 KiB reads", 0.9
    )
    await kept.aclose()
    return exit_status(ok)


if __name__ == "__main__":
    sys.exit(trio.run(main))
