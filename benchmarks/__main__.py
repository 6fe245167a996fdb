"""``python -m benchmarks [--quick] [NAME ...]``: run the benchmarks (all by default), each
in a fresh interpreter, one after another; exit 1 if any missed a target or failed."""

from __future__ import annotations

import argparse
import subprocess
import sys

from . import BENCHMARKS
from ._common import ROOT


def main() -> int:
    """Run the benchmarks named on the command line, or all of them."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description="Run the benchmarks, one after another."
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one run each")
    parser.add_argument("names", nargs="*", metavar="NAME", help=", ".join(BENCHMARKS))
    args = parser.parse_args()
    if unknown := set(args.names) - set(BENCHMARKS):
        parser.error(f"no such benchmark: {', '.join(sorted(unknown))}")
    if args.quick:
        print("quick mode: tiny sizes, one run each; the figures mean nothing", flush=True)
    failed = []
    for name in args.names or BENCHMARKS:
        print(f"== benchmarks.{name}", flush=True)
        argv = [sys.executable, "-m", f"benchmarks.{name}", *(["--quick"] if args.quick else [])]
        if subprocess.run(argv, cwd=ROOT, check=False).returncode != 0:
            failed.append(name)
    if failed:
        print(f"missed a target or failed: {', '.join(failed)}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
