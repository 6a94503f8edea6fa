"""What clients see through real nodes: redirects to the leader, compare-and-set."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

from tests.integration.harness import (
    Cluster,
    key_path,
    request,
    request_following,
    run_threads,
)


def test_default_read_through_a_follower_sees_an_acknowledged_write(
    make_cluster: Callable[..., Cluster],
) -> None:
    """A default read through a follower is redirected to the leader and sees the latest
    acknowledged write, for each of 50 keys."""
    cluster = make_cluster(3)
    leader = cluster.leader()
    followers = [n for n in cluster.nodes.values() if n is not leader]
    for i in range(50):
        key = f"read-your-writes/{i:02d}"
        path = key_path(key)
        old = request("PUT", leader.url + path, json.dumps({"v": "old"}))
        assert old.status == 200, old
        written = request("PUT", leader.url + path, json.dumps({"v": "new", "i": i}))
        assert written.status == 200, written
        assert written.json() == {"key": key, "revision": old.json()["revision"] + 1}

        follower = followers[i % 2]
        query = "?consistency=linearizable" if i % 3 == 0 else ""
        redirect = request("GET", follower.url + path + query)
        assert redirect.status == 307, (redirect.status, redirect.body)
        assert redirect.header("Location") == leader.url + path + query
        assert "error" in redirect.json()

        answer = request_following("GET", follower.url + path + query)
        assert answer.status == 200
        assert answer.json() == {"v": "new", "i": i}
        assert answer.header("ETag") == f'"{written.json()["revision"]}"'


def test_concurrent_compare_and_set_increments_lose_no_update(
    make_cluster: Callable[..., Cluster],
) -> None:
    """Ten clients incrementing one counter with If-Match lose no increment."""
    cluster = make_cluster(3)
    leader = cluster.leader()
    nodes = list(cluster.nodes.values())
    url = key_path("counter")
    assert request("PUT", leader.url + url, "0").status == 200
    clients, increments = 10, 20
    lock = threading.Lock()
    succeeded = [0]
    conflicts = [0]
    unknown = [0]  # a 503 after the proposal: the outcome is not known

    def client(c: int) -> None:
        node = nodes[c % len(nodes)]  # writes through any node, following redirects
        done = 0
        deadline = time.monotonic() + 90
        while done < increments:
            assert time.monotonic() < deadline, f"client {c} made {done} increments in 90s"
            current = request_following("GET", node.url + url)
            if current.status == 503:
                continue
            assert current.status == 200, current
            etag = current.header("ETag")
            assert etag is not None
            answer = request_following(
                "PUT", node.url + url, json.dumps(current.json() + 1), {"If-Match": etag}
            )
            if answer.status == 200:
                done += 1
                with lock:
                    succeeded[0] += 1
            elif answer.status == 412:
                assert answer.json()["revision"] != int(etag.strip('"'))
                with lock:
                    conflicts[0] += 1
            elif answer.status == 503:
                with lock:
                    unknown[0] += 1
            else:
                raise AssertionError((answer.status, answer.body))

    run_threads(clients, client, timeout=120)
    final = request_following("GET", leader.url + url)
    assert succeeded[0] == clients * increments
    assert succeeded[0] <= final.json() <= succeeded[0] + unknown[0]
    if unknown[0] == 0:
        assert final.json() == clients * increments
    assert conflicts[0] > 0  # the clients did race
