"""A one-node Kubernetes cluster built from Debian's sources, for ``nox -s cluster``.

:mod:`tests.cluster.build` builds (or finds cached) ``kube-apiserver`` and ``kubelet`` from
Debian's ``kubernetes`` source package, and a tiny pause program; :mod:`tests.cluster.node`
runs etcd, a private dockerd, the apiserver and the kubelet, and one pod in which the
conformance suite's ``kubectl`` backend runs ``trio-exec serve --listen stdio`` through
``kubectl exec -i``.
"""

from __future__ import annotations

from typing import Final

__all__ = ["CLUSTER_ENV_VAR"]

CLUSTER_ENV_VAR: Final = "TRIO_EXEC_CLUSTER"
"""Set (to anything non-empty) by ``nox -s cluster``: the conformance suite's ``backend``
then has a ``kubectl`` parameter, run in the cluster's pod."""
