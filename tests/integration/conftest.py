"""Fixtures that start real nodes and always stop them, by pid, afterwards."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from tests.integration.harness import Cluster, Node


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    """Start clusters of real nodes; every node started is killed at teardown."""
    clusters: list[Cluster] = []

    def make(
        size: int = 3,
        extra_args: Sequence[str] = (),
        members: dict[int, Sequence[int]] | None = None,
    ) -> Cluster:
        cluster = Cluster(tmp_path / f"c{len(clusters)}", size, extra_args, members)
        clusters.append(cluster)
        return cluster.start()

    yield make
    for cluster in clusters:
        cluster.stop_all(kill=True)


@pytest.fixture
def spawned(tmp_path: Path) -> Iterator[list[Node]]:
    """Nodes a test builds by hand; append them here and they are killed at teardown."""
    nodes: list[Node] = []
    yield nodes
    for node in nodes:
        node.kill()
