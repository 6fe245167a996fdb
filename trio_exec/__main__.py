"""``python -m trio_exec``: the same as the ``trio-exec`` command."""

from __future__ import annotations

from ._cli import main

raise SystemExit(main())
