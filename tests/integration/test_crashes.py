"""Crashes and restarts of real nodes: nothing acknowledged is lost."""

from __future__ import annotations

import http.client
import itertools
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.integration.harness import (
    ELECTION_TIMEOUT_SECONDS,
    Cluster,
    Node,
    Workers,
    key_path,
    request_following,
    run_threads,
    wait_until,
)

#: "Within a few election timeouts": the survivors must notice the silence
#: (one randomised timeout, up to two), pre-vote and vote. Generous, for a
#: loaded two-core machine.
NEW_LEADER_SECONDS = 12 * ELECTION_TIMEOUT_SECONDS


def write(url: str, key: str, value: Any, *, timeout: float = 30.0) -> int:
    """PUT through any node until acknowledged (following redirects, retrying
    503 and dropped connections, as the value is the same every time);
    return the revision."""
    body = json.dumps(value)

    def attempt() -> int | None:
        answer = request_following("PUT", url + key_path(key), body)
        if answer.status == 503:
            return None
        assert answer.status == 200, (answer.status, answer.body)
        return int(answer.json()["revision"])

    return wait_until(attempt, timeout=timeout, what=f"PUT {key} to be acknowledged")


def read(node: Node, key: str) -> Any:
    answer = request_following("GET", node.url + key_path(key))
    assert answer.status == 200, (key, answer.status, answer.body)
    return answer.json()


def others(cluster: Cluster, node: Node) -> list[Node]:
    return [n for n in cluster.nodes.values() if n is not node]


def test_killed_leader_is_replaced_and_loses_no_acknowledged_write(
    make_cluster: Callable[..., Cluster],
) -> None:
    """After kill -9 of the leader a new one is elected within a few election timeouts,
    every acknowledged write survives, and the old leader catches up on restart."""
    cluster = make_cluster(3)
    leader = cluster.leader()
    acked: dict[str, Any] = {}
    for i in range(100):
        key, value = f"before/{i:03d}", {"n": i, "by": leader.id}
        write(leader.url, key, value)
        acked[key] = value

    leader.kill()
    killed_at = time.monotonic()
    survivors = others(cluster, leader)
    new_leader = cluster.leader(timeout=NEW_LEADER_SECONDS, among=survivors)
    elapsed = time.monotonic() - killed_at
    assert new_leader is not leader
    assert elapsed < NEW_LEADER_SECONDS

    for key, value in acked.items():
        assert read(survivors[0], key) == value
    for i in range(20):  # something for the old leader to catch up on
        key, value = f"after/{i:03d}", {"n": i, "by": new_leader.id}
        write(new_leader.url, key, value)
        acked[key] = value

    leader.start()
    cluster.wait_caught_up(list(cluster.nodes.values()))
    listings = {n.id: n.listing(stale=True) for n in cluster.nodes.values()}
    assert listings[leader.id] == listings[new_leader.id]
    assert all(listing == listings[leader.id] for listing in listings.values())
    assert {k: v for k, v, _ in listings[leader.id]} == acked
    assert read(leader, "before/042") == acked["before/042"]


def test_every_key_survives_a_clean_restart_of_the_whole_cluster(
    make_cluster: Callable[..., Cluster],
) -> None:
    """After SIGTERM to every node and a restart with the same data dirs, all 200 keys are there."""
    cluster = make_cluster(3)
    leader = cluster.leader()
    expected = {f"key/{i:03d}": {"i": i, "text": "x" * (i % 17)} for i in range(200)}
    items = sorted(expected.items())

    def writer(t: int) -> None:
        for key, value in items[t::4]:
            write(leader.url, key, value)

    run_threads(4, writer, timeout=120)

    for node in cluster.nodes.values():
        node.send_term()
    for node in cluster.nodes.values():
        assert node.terminate() == 0, node.stderr()[-2000:]

    for node in cluster.nodes.values():
        node.start()
    cluster.leader()
    any_node = cluster.nodes[1]
    stored = {k: v for k, v, _ in any_node.listing(stale=False)}
    assert stored == expected
    cluster.wait_caught_up(list(cluster.nodes.values()))
    for node in cluster.nodes.values():
        assert {k: v for k, v, _ in node.listing(stale=True)} == expected


@pytest.mark.parametrize(
    "snapshot_threshold",
    [None, 300],
    ids=["from-the-log", "from-a-snapshot"],
)
def test_follower_down_during_2000_writes_catches_up_after_restart(
    make_cluster: Callable[..., Cluster], snapshot_threshold: int | None
) -> None:
    """A follower killed early in 2,000 concurrent writes applies all of them after it restarts
    (from the leader's log, or from a snapshot once the log is compacted)."""
    extra = () if snapshot_threshold is None else ("--snapshot-threshold", str(snapshot_threshold))
    cluster = make_cluster(3, extra)
    leader = cluster.leader()
    follower = others(cluster, leader)[0]
    total, threads = 2000, 8
    acked: dict[str, Any] = {}
    lock = threading.Lock()
    numbers = itertools.count()

    def writer(t: int) -> None:
        # One keep-alive connection per thread to the leader.
        connection = http.client.HTTPConnection("127.0.0.1", leader.port, timeout=30)
        try:
            while (n := next(numbers)) < total:
                key, value = f"w/{n:04d}", {"n": n, "t": t}
                body = json.dumps(value)
                connection.request("PUT", key_path(key), body=body)
                answer = connection.getresponse()
                answer.read()
                if answer.status != 200:  # leader changed, or busy: the slow path
                    write(leader.url, key, value)
                with lock:
                    acked[key] = value
        finally:
            connection.close()

    workers = Workers(threads, writer)
    wait_until(lambda: len(acked) >= 200, timeout=60, what="the first 200 writes")
    follower.kill()
    workers.join(180)
    assert len(acked) == total

    follower.start()
    cluster.wait_caught_up([follower], timeout=60)
    leader_status, follower_status = leader.status(), follower.status()
    assert follower_status["applied_index"] >= leader_status["commit_index"]
    mine = follower.listing(stale=True)
    assert mine == leader.listing(stale=True)
    assert {k: v for k, v, _ in mine} == acked
    if snapshot_threshold is not None:
        # The scenario's point: the leader had compacted what the follower missed.
        assert "installed a snapshot" in follower.stderr()
