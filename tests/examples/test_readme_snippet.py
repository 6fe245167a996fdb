"""The README's "Property-test your own consumer" snippet runs and passes under pytest."""

from __future__ import annotations

import re
from pathlib import Path

from .helpers import ROOT, run_python

README = ROOT / "README.md"
IMPORT = "from myapp import summarize"

# A consumer for the snippet to test, in place of the reader's own.
SUMMARIZE = """
def summarize(events):
    stdout, exit_code = b"", None
    for event in events:
        match event:
            case tx.Output(stream=tx.OutputStream.STDOUT, data=data):
                stdout += data
            case tx.Exited(exit_code=code):
                exit_code = code
    return stdout, exit_code
"""


async def test_the_snippet_passes_with_a_correct_consumer(tmp_path: Path) -> None:
    blocks = [
        block
        for block in re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
        if IMPORT in block
    ]
    assert len(blocks) == 1
    (code,) = blocks
    assert IMPORT in code
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_snippet.py").write_text(code.replace(IMPORT, SUMMARIZE))
    run = await run_python(
        ["-m", "pytest", "-q", "-p", "no:cacheprovider", "test_snippet.py"],
        cwd=tmp_path,
        timeout=180.0,
    )
    assert run.exit_code == 0, run.out + run.err
    last = run.out.strip().splitlines()[-1]
    assert re.fullmatch(r"3 passed in [\d.]+s", last), run.out
