"""Import time of ``import trio_exec`` against ``import trio``, bytecode cached, in one run.

Each figure is the time of the import statement alone in a fresh interpreter (``python -c
"t = perf_counter(); import X; print(perf_counter() - t)"``, so interpreter startup is left
out), the best of :data:`REPEATS` runs, the kinds alternating after one warm-up run each
(which writes any missing bytecode). Printed:

* ``import trio_exec`` / ``import trio`` (target <= 1.2: the local layer costs little
  over trio; the remote stack loads on first use);
* ``import trio_exec`` plus the first use of a remote name (``trio_exec.connect``), which
  loads the remote stack, beside ``import trio`` (shown without a target);
* the modules that ``import trio_exec`` loads beyond ``import trio``, by self time, from
  ``python -X importtime``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Final

from ._common import ROOT, exit_status, report, sized

REPEATS = sized(15, 1)
TOP_MODULES: Final = 8
"""Modules listed from ``-X importtime``."""
IMPORT_TIMEOUT: Final = 60.0
"""Seconds one fresh interpreter may take."""

_TIMED = "import time\nstart = time.perf_counter()\n{code}\nprint(time.perf_counter() - start)"

KINDS: Final = {
    "trio": "import trio",
    "trio_exec": "import trio_exec",
    "trio_exec+remote": "import trio_exec\ntrio_exec.connect",
}
"""The code timed, by name."""


# The warm-up must be able to write bytecode.
_ENV: Final = {
    name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"
}


def _python(*args: str) -> subprocess.CompletedProcess[str]:
    """Run a fresh interpreter with ``args`` in the project root; its output captured."""
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env=_ENV,
        timeout=IMPORT_TIMEOUT,
    )


def import_seconds(code: str) -> float:
    """Seconds ``code`` takes in a fresh interpreter."""
    return float(_python("-c", _TIMED.format(code=code)).stdout)


def self_times(module: str) -> dict[str, int]:
    """Microseconds of self time of every module ``import module`` loads (-X importtime)."""
    done = _python("-X", "importtime", "-c", f"import {module}")
    times = {}
    for line in done.stderr.splitlines():
        fields = line.removeprefix("import time:").split("|")
        if len(fields) == 3 and fields[0].strip().isdigit():
            times[fields[2].strip()] = int(fields[0])
    return times


def main() -> int:
    best = dict.fromkeys(KINDS, float("inf"))
    for code in KINDS.values():
        import_seconds(code)  # warm-up: bytecode written, files in the page cache
    for _ in range(REPEATS):
        for name, code in KINDS.items():
            best[name] = min(best[name], import_seconds(code))
    ms = {name: seconds * 1000 for name, seconds in best.items()}
    ok = report(
        "import trio_exec, bytecode cached",
        ms["trio_exec"],
        ms["trio"],
        "ms",
        "import trio",
        1.2,
        higher=False,
    )
    report(
        "import trio_exec + trio_exec.connect",
        ms["trio_exec+remote"],
        ms["trio"],
        "ms",
        "import trio",
        None,
        higher=False,
    )
    trio_modules = self_times("trio")
    ours = self_times("trio_exec")
    extra = sorted(
        ((micros, name) for name, micros in ours.items() if name not in trio_modules),
        reverse=True,
    )
    listed = ", ".join(f"{name} {micros / 1000:.1f}" for micros, name in extra[:TOP_MODULES])
    total = sum(micros for micros, _ in extra) / 1000
    print(
        f"import trio_exec beyond import trio: {len(extra)} modules, {total:.1f} ms self time"
        f" (one -X importtime run); most: {listed} ms",
        flush=True,
    )
    return exit_status(ok)


if __name__ == "__main__":
    sys.exit(main())
