"""The benchmarks: ``python -m benchmarks [--quick] [NAME ...]`` runs them (``nox -s bench``).

Each module prints its figures beside a baseline measured in the same run, with the ratio.
"""

from __future__ import annotations

from typing import Final

BENCHMARKS: Final = ("local", "remote", "neutral", "pair", "imports", "transports", "load")
"""The benchmark modules, in the order ``python -m benchmarks`` runs them."""
