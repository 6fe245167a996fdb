"""The cluster's own tests run in ``nox -s cluster`` alone, which sets
:data:`~tests.cluster.CLUSTER_ENV_VAR`; elsewhere they are not collected (the cluster needs
root and a build of Kubernetes from source, outside the default run)."""

from __future__ import annotations

import os

from . import CLUSTER_ENV_VAR

collect_ignore_glob = [] if os.environ.get(CLUSTER_ENV_VAR) else ["test_*.py"]
