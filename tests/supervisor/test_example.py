"""examples/supervisor.py runs, says what it should, and shuts down in a few seconds."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import trio

import trio_exec

from .helpers import TIMEOUT

EXAMPLE = Path(__file__).parent.parent.parent / "examples" / "supervisor.py"

# Until trio_exec/__init__.py exports the supervisor's names, run the example with them
# patched in; once exported, the script runs as is.
BOOTSTRAP = """
import runpy, sys
import trio_exec, trio_exec._supervisor as supervisor
for name in supervisor.__all__:
    setattr(trio_exec, name, getattr(supervisor, name))
runpy.run_path(sys.argv[1], run_name="__main__")
"""


async def test_supervisor_example() -> None:
    if hasattr(trio_exec, "Supervisor"):
        argv = [sys.executable, str(EXAMPLE)]
    else:
        argv = [sys.executable, "-c", BOOTSTRAP, str(EXAMPLE)]
    started = trio.current_time()
    with trio.fail_after(TIMEOUT):
        done = await trio.run_process(argv, capture_stdout=True, check=False)
    elapsed = trio.current_time() - started
    out = done.stdout.decode()
    lines = out.splitlines()
    assert done.returncode == 0, out
    assert re.fullmatch(
        r"server ready on 127\.0\.0\.1:\d+; it says 'hello from the server'", lines[0]
    )
    assert re.fullmatch(
        r"worker ready after 3 starts; backoff delays \['0\.\d\d', '0\.\d\d'\]", lines[1]
    )
    assert re.match(r"  server  RUNNING  starts=1 restarts=0 exit_codes=\[\]", lines[2])
    assert (
        lines[3] == "  worker  RUNNING  starts=3 restarts=2 exit_codes=[1, 1] last='worker: steady'"
    )
    assert lines[4:6] == ["shutting down", "after shutdown:"]
    assert re.match(r"  server  STOPPED  starts=1 restarts=0 exit_codes=\[143\]", lines[6])
    assert lines[7] == (
        "  worker  STOPPED  starts=3 restarts=2 exit_codes=[1, 1, 143] last='worker: steady'"
    )
    assert len(lines) == 8
    assert elapsed < 10
