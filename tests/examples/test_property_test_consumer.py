"""``examples/property_test_consumer.py``: a user's property tests, run by pytest."""

from __future__ import annotations

import re
from pathlib import Path

from .helpers import EXAMPLES, run_python

EXAMPLE = EXAMPLES / "property_test_consumer.py"
PYTEST = ["-m", "pytest", "-q", "-p", "no:cacheprovider"]
RUN_TIMEOUT = 180.0
TESTS = 4
"""Two tests without processes, and one over real children on each backend."""


def summary_line(out: str) -> str:
    """pytest's last line, e.g. ``4 passed in 2.10s``."""
    return out.strip().splitlines()[-1]


async def test_passes_in_the_repository() -> None:
    run = await run_python([*PYTEST, str(EXAMPLE)], timeout=RUN_TIMEOUT)
    assert run.exit_code == 0, run.out + run.err
    assert re.fullmatch(rf"{TESTS} passed in [\d.]+s", summary_line(run.out)), run.out


async def test_passes_in_a_project_of_its_own_with_explicit_plugins(tmp_path: Path) -> None:
    # A user's project: its own (empty) pytest configuration, no plugin autoloading; the
    # trio_exec and pytest-trio plugins named on the command line.
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_consumer.py").write_text(EXAMPLE.read_text())
    args = [*PYTEST, "-p", "trio_exec.testing.pytest_plugin", "-p", "pytest_trio.plugin"]
    run = await run_python(
        [*args, "test_consumer.py"],
        cwd=tmp_path,
        env={"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
        timeout=RUN_TIMEOUT,
    )
    assert run.exit_code == 0, run.out + run.err
    assert re.fullmatch(rf"{TESTS} passed in [\d.]+s", summary_line(run.out)), run.out


async def test_the_properties_catch_a_broken_consumer(tmp_path: Path) -> None:
    # The consumer "forgets" to carry a partial line over to the next chunk.
    source = EXAMPLE.read_text()
    good = '(self._partial.pop(stream, b"") + data).split(b"\\n")'
    assert good in source
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_broken.py").write_text(source.replace(good, 'data.split(b"\\n")'))
    run = await run_python([*PYTEST, "-x", "test_broken.py"], cwd=tmp_path, timeout=RUN_TIMEOUT)
    assert run.exit_code == 1, run.out + run.err
    # hypothesis names the shrunk input "Falsifying example" (older) or "Failing test case"
    assert "Falsifying example" in run.out or "Failing test case" in run.out, run.out
    # (hypothesis may warn while it writes its patch of the failing example)
    assert re.fullmatch(r"1 failed(, \d+ warnings?)? in [\d.]+s", summary_line(run.out)), run.out
