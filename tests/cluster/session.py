"""The pytest side of the cluster: the binaries found (or built), the cluster run, a failure
reported as one, never as a skip."""

from __future__ import annotations

import contextlib
import faulthandler
from collections.abc import Iterator
from pathlib import Path

import pytest

from .build import BuildError, build, cache_root
from .node import Cluster, run_cluster

__all__ = ["cluster_for"]


@contextlib.contextmanager
def cluster_for(config: pytest.Config) -> Iterator[Cluster]:
    """Run the cluster for the block (building its binaries first if the cache has none),
    and report how long starting it took; fail the test when a step fails."""
    # A cold build or start outlasts faulthandler_timeout; each step has its own bound.
    faulthandler.cancel_dump_traceback_later()
    cache = cache_root()
    checkout = Path(__file__).resolve().parents[2]
    with contextlib.ExitStack() as stack:
        try:
            bin_dir, build_seconds = build(cache)
            cluster = stack.enter_context(run_cluster(bin_dir, cache, checkout))
        except BuildError as exc:
            pytest.fail(f"the one-node cluster could not be set up: {exc}", pytrace=False)
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        capture = config.pluginmanager.get_plugin("capturemanager")
        if reporter is not None and capture is not None:
            with capture.global_and_fixture_disabled():
                reporter.write_line(
                    f"\ncluster: binaries found in {build_seconds:.1f} s; etcd, dockerd, "
                    f"kube-apiserver, kubelet and pod {cluster.pod} started in "
                    f"{cluster.start_seconds:.1f} s"
                )
        yield cluster
