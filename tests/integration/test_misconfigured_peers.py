"""The seed README's third line: node 3 lists itself and node 2, not node 1."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable

from tests.integration.harness import (
    ELECTION_TIMEOUT_SECONDS,
    Cluster,
    key_path,
    request,
    request_following,
    wait_until,
)

#: The seed README's third line: node 3 lists itself and node 2, and leaves out node 1.
SEED_MISTAKE = {3: [3, 2]}
#: How long node 3 is watched: many election timeouts.
WATCH_SECONDS = 12 * ELECTION_TIMEOUT_SECONDS


def test_node_with_a_disagreeing_peer_list_forms_no_second_cluster(
    make_cluster: Callable[..., Cluster],
) -> None:
    """A node whose peer list leaves out a member never leads or accepts a write, while
    the correctly configured majority keeps working."""
    cluster = make_cluster(3, members=SEED_MISTAKE)
    one, two, three = (cluster.nodes[i] for i in (1, 2, 3))
    assert [p["id"] for p in json.loads(three.peers_json or "")] == [3, 2]

    leader = cluster.leader(among=[one, two])
    written = {}
    for i in range(20):
        key = f"good/{i:02d}"
        answer = request_following("PUT", leader.url + key_path(key), json.dumps(i))
        assert answer.status == 200, answer
        written[key] = i

    deadline = time.monotonic() + WATCH_SECONDS
    attempts = 0
    while time.monotonic() < deadline:  # an invariant watched over many election timeouts
        status = three.status()
        assert status["role"] != "leader", status
        assert status["leader"] is None, status
        answer = request("PUT", three.url + key_path(f"bad/{attempts}"), "1", timeout=10)
        assert answer.status == 503, (answer.status, answer.body)
        assert answer.header("Retry-After") is not None
        attempts += 1
        time.sleep(0.2)  # pause between checks
    assert three.alive()

    # The majority still works and has nothing of node 3's.
    for node in (one, two):
        assert node.status()["role"] in ("leader", "follower")
    late = request_following("PUT", two.url + key_path("good/late"), '"late"')
    assert late.status == 200, late
    written["good/late"] = "late"
    cluster.wait_caught_up([one, two], among=[one, two])
    for node in (one, two):
        assert {k: v for k, v, _ in node.listing(stale=True)} == written
    assert three.listing(stale=True) == []

    # Node 3 says what is wrong with its list: the member it lacks (API.md section 1).
    wait_until(
        lambda: re.search(r"\blacks node 1\b", three.stderr()),
        timeout=10,
        what="node 3 to log that its list lacks node 1",
    )


def test_misconfigured_node_works_once_restarted_with_the_right_list(
    make_cluster: Callable[..., Cluster],
) -> None:
    """Node 3, first started with the wrong peer list, joins the cluster and catches up
    once restarted with the right list and the same data directory."""
    cluster = make_cluster(3, members=SEED_MISTAKE)
    one, two, three = (cluster.nodes[i] for i in (1, 2, 3))
    leader = cluster.leader(among=[one, two])
    assert request_following("PUT", leader.url + key_path("k"), '"v"').status == 200
    wait_until(
        lambda: "lacks node 1" in three.stderr(), timeout=10, what="node 3 to report its list"
    )
    assert three.terminate() == 0

    # The corrected command line, as the operator would copy it: same data directory.
    cluster.members.clear()
    three.peers_json = cluster.peers_json(3)
    three.start()
    cluster.leader()
    cluster.wait_caught_up([three])
    assert three.listing(stale=True) == leader.listing(stale=True)
