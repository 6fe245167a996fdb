"""The README's runnable snippets run (those that end in ``trio.run(...)``)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import trio

from .conformance.helpers import TIMEOUT

README = Path(__file__).parent.parent / "README.md"
BLOCKS = [
    block
    for block in re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    if "trio.run(" in block
]


def test_the_readme_has_runnable_snippets() -> None:
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
async def test_snippet_runs(block: str) -> None:
    with trio.fail_after(TIMEOUT):
        done = await trio.run_process(
            [sys.executable, "-c", block], capture_stdout=True, capture_stderr=True, check=False
        )
    assert done.returncode == 0, done.stderr.decode()
