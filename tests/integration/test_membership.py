"""Membership changes and leadership transfer with real processes on
loopback (issue 6): growing and shrinking a live cluster, replacing a dead
node, moving leadership under load, and the refusals that keep an operator
from losing quorum or mixing clusters. Every acknowledged write must
survive all of it."""

from __future__ import annotations

import http.client
import itertools
import json
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.integration.harness import (
    Cluster,
    Node,
    free_port,
    graft,
    request,
    request_following,
    wait_until,
)

#: The harness's default node timing: an election timeout is 0.5 s.
ELECTION_TIMEOUT_SECONDS = 0.5


class Writer:
    """Client threads writing unique keys to whichever node answers,
    following redirects and retrying until acknowledged; ``acked`` holds
    every write that got a 200."""

    def __init__(self, urls: Callable[[], list[str]], threads: int = 4) -> None:
        self.urls = urls
        self.acked: dict[str, Any] = {}
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)
        ]
        for t in self._threads:
            t.start()

    def _run(self, worker: int) -> None:
        for n in itertools.count():
            key, value = f"w{worker}/{n:06d}", {"worker": worker, "n": n}
            attempt = 0
            while not self._stop.is_set():
                urls = self.urls()
                url = urls[attempt % len(urls)] if urls else None
                attempt += 1
                if url is None:
                    time.sleep(0.05)
                    continue
                try:
                    answer = request_following(
                        "PUT", f"{url}/v1/kv/{key}", json.dumps(value), timeout=5.0
                    )
                except (OSError, http.client.HTTPException, AssertionError):
                    time.sleep(0.02)
                    continue
                if answer.status == 200:
                    with self._lock:
                        self.acked[key] = value
                    break
                if answer.status != 503:
                    self.errors.append(f"PUT {key}: {answer.status} {answer.body[:200]!r}")
                time.sleep(0.02)
            if self._stop.is_set():
                return

    def count(self) -> int:
        with self._lock:
            return len(self.acked)

    def wait_for_more(self, more: int, timeout: float = 20.0) -> None:
        target = self.count() + more
        wait_until(lambda: self.count() >= target, timeout=timeout, what=f"{more} more writes")

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        for t in self._threads:
            t.join(15.0)
        assert not any(t.is_alive() for t in self._threads), "writer threads stuck"
        assert not self.errors, self.errors[:5]
        with self._lock:
            return dict(self.acked)


def assert_all_present(node: Node, acked: dict[str, Any], *, stale: bool = False) -> None:
    """Every acknowledged write is in ``node``'s store (a linearizable
    listing through the leader, or this node's own copy)."""
    stored = {key: value for key, value, _ in node.listing(stale=stale)}
    missing = [k for k in acked if stored.get(k) != acked[k]]
    assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:5]}"


def new_node(cluster: Cluster, node_id: int, *args: str) -> Node:
    """A node that is not in the initial cluster, killed at teardown with it."""
    base = cluster.root / f"cluster{cluster._generation}"
    node = Node(
        id=node_id,
        port=free_port(),
        data_dir=base / f"data{node_id}",
        log_dir=base / "logs",
        extra_args=tuple(args),
    )
    cluster.nodes[node_id] = node
    return node


def members(node: Node) -> dict[int, bool]:
    """Node id -> voter, as ``node`` reports its configuration."""
    answer = node.get("/v1/members", timeout=5.0)
    assert answer.status == 200, answer
    return {m["id"]: m["voter"] for m in answer.json()["members"]}


def wait_members(nodes: list[Node], expected: dict[int, bool], timeout: float = 20.0) -> None:
    for node in nodes:
        wait_until(
            lambda n=node: members(n) == expected,
            timeout=timeout,
            what=f"node {node.id} to report members {expected}",
        )


def wait_removed(node: Node, timeout: float = 15.0) -> None:
    line = f"node {node.id} was removed from the cluster; stopping participation"
    wait_until(
        lambda: line in node.stderr(), timeout=timeout, what=f"node {node.id} to say {line!r}"
    )


def cli(*args: str) -> str:
    result = graft(*args)
    assert result.returncode == 0, (args, result.returncode, result.stderr)
    return result.stdout


# --- growing and shrinking -------------------------------------------------------------


def test_grow_three_to_five_under_writes_then_lose_two_originals(make_cluster):
    """New nodes join empty, catch up and vote; with two of the original
    three dead the five-node cluster still has a quorum and loses nothing."""
    cluster = make_cluster(3)
    leader = cluster.leader()
    writer = Writer(lambda: [n.url for n in cluster.running()])
    try:
        writer.wait_for_more(50)
        for node_id in (4, 5):
            joiner = new_node(cluster, node_id, "--join", leader.url)
            joiner.start(timeout=40.0)
            wait_until(
                lambda i=node_id: members(cluster.leader()).get(i) is True,
                timeout=20.0,
                what=f"node {node_id} to be promoted to voter",
            )
            writer.wait_for_more(30)
        everyone = {i: True for i in range(1, 6)}
        wait_members(cluster.running(), everyone)
        cluster.wait_caught_up([cluster.nodes[4], cluster.nodes[5]])
        for node_id in (1, 2):
            cluster.nodes[node_id].kill()
        survivors = [cluster.nodes[i] for i in (3, 4, 5)]
        cluster.leader(among=survivors)
        writer.wait_for_more(100)
    finally:
        acked = writer.stop()
    leader = cluster.leader(among=survivors)
    assert_all_present(leader, acked)
    assert members(leader) == everyone


def test_shrink_five_to_three_removing_the_leader_too(make_cluster):
    cluster = make_cluster(5)
    leader = cluster.leader()
    follower = next(n for n in cluster.running() if n is not leader)
    writer = Writer(lambda: [n.url for n in cluster.running() if n not in (leader, follower)])
    try:
        writer.wait_for_more(30)
        out = json.loads(cli("cluster", "remove", leader.url, str(follower.id)))
        assert follower.id not in [m["id"] for m in out["members"]]
        writer.wait_for_more(30)
        # The leader removes itself: it steps down once that commits.
        rest = [n for n in cluster.running() if n not in (leader, follower)]
        cli("cluster", "remove", rest[0].url, str(leader.id))
        new_leader = cluster.leader(among=rest)
        assert new_leader is not leader
        wait_members(rest, {n.id: True for n in rest})
        writer.wait_for_more(50)
    finally:
        acked = writer.stop()
    for gone in (leader, follower):
        wait_removed(gone)
        answer = gone.get("/v1/kv/x?consistency=stale")
        assert answer.status == 503 and "removed from the cluster" in answer.json()["error"]
    assert_all_present(cluster.leader(among=rest), acked)


def test_replace_a_dead_node_with_a_new_one_that_catches_up_by_snapshot(make_cluster):
    cluster = make_cluster(
        3, extra_args=("--snapshot-threshold", "100", "--snapshot-retain-entries", "10")
    )
    leader = cluster.leader()
    acked: dict[str, Any] = {}
    for n in range(300):
        answer = request_following("PUT", f"{leader.url}/v1/kv/k{n:04d}", json.dumps(n))
        assert answer.status == 200, answer
        acked[f"k{n:04d}"] = n
    dead = next(n for n in cluster.running() if n is not leader)
    dead.kill()
    cli("cluster", "remove", leader.url, str(dead.id))
    # Added first with the CLI, then started: its own join request is a no-op.
    replacement = new_node(cluster, 4, "--join", leader.url)
    cli("cluster", "add", leader.url, "4", replacement.url)
    replacement.start(timeout=40.0)
    live = [n for n in cluster.running()]
    wait_members(live, {n.id: True for n in live})
    cluster.wait_caught_up([replacement])
    assert "installed a snapshot" in replacement.stderr()
    assert_all_present(replacement, acked, stale=True)
    assert replacement.status()["snapshot_index"] > 0


# --- leadership transfer ---------------------------------------------------------------


def test_transfer_leadership_to_each_follower_under_writes(make_cluster):
    cluster = make_cluster(3)
    first = cluster.leader()
    writer = Writer(lambda: [n.url for n in cluster.running()])
    try:
        writer.wait_for_more(30)
        for target in [n for n in cluster.running() if n is not first] + [first]:
            out = json.loads(cli("cluster", "transfer", first.url, str(target.id)))
            assert out["leader"]["id"] == target.id
            assert cluster.leader().id == target.id
            writer.wait_for_more(30)
    finally:
        acked = writer.stop()
    assert_all_present(cluster.leader(), acked)


# --- refusals ----------------------------------------------------------------------------


def test_second_change_while_one_is_pending_is_refused(make_cluster):
    cluster = make_cluster(3)
    leader = cluster.leader()
    followers = [n for n in cluster.running() if n is not leader]
    first: list[Any] = []
    body = json.dumps({"id": 4, "address": f"http://127.0.0.1:{free_port()}"})
    for f in followers:
        assert f.process is not None
        os.kill(f.process.pid, signal.SIGSTOP)  # nothing can commit now
    try:
        thread = threading.Thread(
            target=lambda: first.append(request("POST", leader.url + "/v1/members", body)),
            daemon=True,
        )
        thread.start()
        wait_until(lambda: 4 in members(leader), timeout=5.0, what="the change to be appended")
        second = request(
            "POST",
            leader.url + "/v1/members",
            json.dumps({"id": 5, "address": "http://127.0.0.1:1"}),
        )
        removal = request("DELETE", f"{leader.url}/v1/members/{followers[0].id}?force=true")
    finally:
        for f in followers:
            assert f.process is not None
            os.kill(f.process.pid, signal.SIGCONT)
    for answer in (second, removal):
        assert answer.status == 409, answer
        assert "another membership change is in progress" in answer.json()["error"]
    thread.join(20.0)
    assert first and first[0].status in (200, 503), first


def test_restarted_removed_node_does_not_disturb_the_cluster(make_cluster):
    cluster = make_cluster(3)
    leader = cluster.leader()
    victim = next(n for n in cluster.running() if n is not leader)
    cli("cluster", "remove", leader.url, str(victim.id))
    wait_removed(victim)
    assert victim.terminate() == 0
    term = leader.status()["term"]
    victim.start()  # same command line, same data
    wait_removed(victim)
    deadline = time.monotonic() + 6 * ELECTION_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        status = leader.status()
        assert status["role"] == "leader" and status["term"] == term, status
        time.sleep(0.1)
    assert victim.get("/readyz").status == 503
    assert request_following("PUT", leader.url + "/v1/kv/after", "1").status == 200
    rest = [n for n in cluster.running() if n is not victim]
    wait_members(rest, {n.id: True for n in rest})


def test_node_of_another_cluster_cannot_join(make_cluster, tmp_path: Path):
    cluster = make_cluster(3)
    leader = cluster.leader()
    stranger = Node(id=4, port=free_port(), data_dir=tmp_path / "other4", log_dir=tmp_path / "logs")
    cluster.nodes[4] = stranger  # killed at teardown
    stranger.start()  # a one-node cluster of its own
    wait_until(
        lambda: request_following("PUT", stranger.url + "/v1/kv/mine", "1").status == 200,
        timeout=20.0,
        what="the other cluster to take a write",
    )
    assert stranger.terminate() == 0
    stranger.extra_args = ("--join", leader.url)
    stranger.spawn()
    assert stranger.process is not None
    assert stranger.process.wait(timeout=30) == 1
    error = stranger.stderr().strip().splitlines()[-1]
    assert "another cluster" in error or "belongs to cluster" in error, error
    assert members(leader) == {1: True, 2: True, 3: True}


# --- disaster recovery -----------------------------------------------------------------


def test_force_new_cluster_restarts_a_lone_survivor_with_its_data(make_cluster):
    cluster = make_cluster(3)
    leader = cluster.leader()
    for n in range(20):
        assert request_following("PUT", f"{leader.url}/v1/kv/k{n}", json.dumps(n)).status == 200
    survivor = next(n for n in cluster.running() if n is not leader)
    cluster.wait_caught_up([survivor])
    for node in cluster.running():
        node.kill()
    # Without the flag it stays a member of the old cluster, waiting for a quorum.
    survivor.peers_json = None
    survivor.extra_args = ("--force-new-cluster",)
    survivor.start()
    assert "is now the only member of a new cluster" in survivor.stderr()
    wait_until(
        lambda: survivor.status()["role"] == "leader", timeout=10.0, what="the survivor to lead"
    )
    assert {k: v for k, v, _ in survivor.listing(stale=False)} == {f"k{n}": n for n in range(20)}
    assert request_following("PUT", survivor.url + "/v1/kv/after", "1").status == 200
    assert members(survivor) == {survivor.id: True}
    # Restarted without the flag, it is the same one-node cluster.
    assert survivor.terminate() == 0
    survivor.extra_args = ()
    survivor.start()
    wait_until(
        lambda: survivor.status()["role"] == "leader", timeout=10.0, what="the survivor to lead"
    )
    assert members(survivor) == {survivor.id: True}
