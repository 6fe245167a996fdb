"""Every benchmark runs in quick mode (tiny sizes), so none can rot between measurements.

The figures of a quick run mean nothing; what is checked is that the benchmark completes
and prints its rows, each our figure beside its baseline with the ratio.
"""

from __future__ import annotations

import sys
from typing import Final

import pytest
import trio

from benchmarks import BENCHMARKS
from benchmarks._common import ROOT

BENCHMARK_TIMEOUT: Final = 120.0
"""Seconds one benchmark may take in quick mode (a few, on a loaded machine)."""

USES_REFERENCE: Final = frozenset({"remote", "neutral", "load"})
"""The benchmarks that run the reference server."""

ROWS: Final = {
    "local": ("spawn+wait /bin/true", "spawn+wait x300, kill_orphans=True", "drain"),
    "remote": ("start-to-closed /bin/true", "throughput 64 MiB head -c"),
    "neutral": (
        "neutral client, throughput 1 MiB",
        "| reference",
        "| client's ceiling",
        "server CPU per MiB sent (/proc)",
    ),
    "pair": ("our client + our server, 1 MiB", "| local drain"),
    "imports": ("import trio_exec, bytecode cached", "| import trio", "beyond import trio"),
    "transports": ("stdio throughput", "wss throughput"),
    "load": ("load: processes", "load: output", "peak server RSS"),
}
"""Text that the benchmark's rows must show."""


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=[pytest.mark.reference] if name in USES_REFERENCE else [])
        for name in BENCHMARKS
    ],
)
async def test_the_benchmark_runs_in_quick_mode(name: str) -> None:
    with trio.fail_after(BENCHMARK_TIMEOUT):
        done = await trio.run_process(
            [sys.executable, "-m", f"benchmarks.{name}", "--quick"],
            cwd=ROOT,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    out, err = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 0, out + err
    assert "Traceback" not in err, err
    missing = [text for text in ROWS[name] if text not in out]
    assert missing == [], out
    assert "| ratio" in out, out


def test_every_benchmark_has_its_rows_listed() -> None:
    assert sorted(ROWS) == sorted(BENCHMARKS)
