"""A one-node Kubernetes cluster built from Debian's sources, for ``nox -s cluster``.

:mod:`tests.cluster.build` builds (or finds cached) ``kube-apiserver`` and ``kubelet`` from
Debian's ``kubernetes`` source package, and a tiny pause program; :mod:`tests.cluster.node`
runs etcd, a private dockerd, the apiserver and the kubelet, and one pod in which the
conformance suite's ``kubectl`` backend runs ``trio-exec serve --listen stdio`` through
``kubectl exec -i``.

Measured on this 2-core machine, shared and loaded, every build step at the lowest
priority: a cold ``nox -s cluster`` (no cache) builds the binaries in 339 s (apt steps,
``apt-get source``, ``make WHAT="cmd/kube-apiserver cmd/kubelet"``, the pause program); a
warm one finds them in 0.0 s. Starting etcd, dockerd, the apiserver, the kubelet and the
pod until it is Ready takes 20-22 s, and the conformance suite over ``kubectl exec -i``
(81 tests) plus the two pod tests pass in 70-97 s, that start included.
"""

from __future__ import annotations

from typing import Final

__all__ = ["CLUSTER_ENV_VAR"]

CLUSTER_ENV_VAR: Final = "TRIO_EXEC_CLUSTER"
"""Set (to anything non-empty) by ``nox -s cluster``: the conformance suite's ``backend``
then has a ``kubectl`` parameter, run in the cluster's pod."""
