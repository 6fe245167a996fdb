"""Shared helpers of the benchmarks: quick mode, timing and the report line."""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final

QUICK: Final = "--quick" in sys.argv[1:]
"""``python -m benchmarks.NAME --quick``: tiny sizes and one run each, to check that a
benchmark works (tests/test_benchmarks.py); its figures mean nothing, and a missed target
does not fail the run."""

ROOT: Final = Path(__file__).resolve().parent.parent
"""The project's directory (``python -m benchmarks.NAME`` runs there)."""

PROCESS_ID: Final = "bench"
"""The ``processId`` the neutral client starts (the fake server answers for it only)."""


def sized(full: int, quick: int) -> int:
    """``full``, or ``quick`` in :data:`QUICK` mode."""
    return quick if QUICK else full


def exit_status(ok: bool) -> int:
    """The benchmark's exit status: 1 when a target was missed (never in quick mode)."""
    return 0 if ok or QUICK else 1


async def best_of(repeats: int, run: Callable[[], Awaitable[float]]) -> float:
    """The best (highest) rate of ``repeats`` runs; ``run`` returns a rate."""
    return max([await run() for _ in range(repeats)])


async def timed(action: Callable[[], Awaitable[object]]) -> float:
    """Seconds ``action`` takes."""
    start = time.perf_counter()
    await action()
    return time.perf_counter() - start


def report(
    name: str,
    ours: float,
    baseline: float,
    unit: str,
    baseline_name: str,
    target: float | None,
    *,
    higher: bool = True,
) -> bool:
    """Print our figure beside the baseline's with the ratio ours / baseline; return whether
    the target holds.

    Args:
        higher: higher figures are better (rates): the target is a lower bound of the
            ratio. With ``higher=False`` (times, CPU per MiB) it is an upper bound.
        target: the bound, or None for a figure shown without one (always holds).
    """
    ratio = ours / baseline if baseline else math.nan  # nan: no target holds
    if target is None:
        holds, goal = True, ""
    else:
        holds = ratio >= target if higher else ratio <= target
        verdict = "BELOW TARGET" if higher else "ABOVE TARGET"
        goal = f" (target {'>=' if higher else '<='} {target}) {'ok' if holds else verdict}"
    print(
        f"{name:<38} trio_exec {ours:12.1f} {unit:<6} | {baseline_name} {baseline:12.1f} {unit:<6}"
        f" | ratio {ratio:6.2f}{goal}",
        flush=True,
    )
    return holds


def child_pids() -> set[int]:
    """The pids of this process's children (from ``/proc/*/stat``)."""
    me = os.getpid()
    found = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:  # ended meanwhile
            continue
        if int(stat[stat.rindex(")") + 2 :].split()[1]) == me:
            found.add(int(entry.name))
    return found


def new_child(before: set[int]) -> int:
    """The one child of this process that is not in ``before``."""
    (pid,) = child_pids() - before
    return pid
