"""The AMP peer transport (`transport: amp`) under real processes: the same
cluster behaviour as over HTTP (DESIGN.md: the tests run against both)."""

from __future__ import annotations

from collections.abc import Callable

from tests.integration.harness import Cluster, request_following, wait_until


def test_amp_cluster_replicates_and_survives_its_leader_being_killed(
    make_cluster: Callable[..., Cluster],
) -> None:
    """Writes acknowledged over an AMP cluster are read back through every
    node, and after the leader is killed -9 a new one serves them."""
    cluster = make_cluster(3, extra_args=("--transport", "amp"))
    leader = cluster.leader()
    for i in range(20):
        assert leader.put(f"k{i}", {"i": i}).status == 200

    leader.kill()
    survivors = [n for n in cluster.nodes.values() if n is not leader]
    new_leader = cluster.leader(among=survivors)

    assert new_leader is not leader
    for node in survivors:
        for i in range(20):
            answer = request_following("GET", f"{node.url}/v1/kv/k{i}")
            assert answer.status == 200, answer.body
            assert answer.json() == {"i": i}
    wait_until(
        lambda: all(n.status()["applied_index"] >= 21 for n in survivors),
        timeout=10.0,
        what="the survivors to apply every write",
    )
