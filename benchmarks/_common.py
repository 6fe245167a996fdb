"""Shared helpers of the benchmarks: timing and the report line."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable


async def best_of(repeats: int, run: Callable[[], Awaitable[float]]) -> float:
    """The best (highest) rate of ``repeats`` runs; ``run`` returns a rate."""
    return max([await run() for _ in range(repeats)])


async def timed(action: Callable[[], Awaitable[object]]) -> float:
    """Seconds ``action`` takes."""
    start = time.perf_counter()
    await action()
    return time.perf_counter() - start


def report(
    name: str, ours: float, baseline: float, unit: str, baseline_name: str, target: float
) -> bool:
    """Print our figure beside the baseline's with the ratio; return whether the target holds."""
    ratio = ours / baseline
    verdict = "ok" if ratio >= target else "BELOW TARGET"
    print(
        f"{name:<38} trio_exec {ours:12.1f} {unit:<6} | {baseline_name} {baseline:12.1f} {unit:<6}"
        f" | ratio {ratio:6.2f} (target >= {target}) {verdict}",
        flush=True,
    )
    return ratio >= target
