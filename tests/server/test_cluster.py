"""Three whole nodes on one task.Clock: election, writes through the
leader, redirects from followers, reads of each consistency (API.md §2)."""

from __future__ import annotations

from tests.server.helpers import Cluster, address


def put(cluster: Cluster, node, key: str, body: bytes, **headers: str):
    return cluster.request(node, "PUT", f"/v1/kv/{key}", data=body, headers=headers)


def test_three_nodes_elect_one_leader_known_to_all():
    """§5.2: a leader is elected and every node learns who it is."""
    cluster = Cluster()
    cluster.start()
    leader = cluster.elect()
    assert all(n.driver.leader().id == leader.node_id for n in cluster.nodes.values())


def test_put_on_leader_then_get_on_follower_redirects_to_the_leader():
    """API.md §2: a follower answers a default read with 307 to the leader,
    same path and query; the leader serves the value just written."""
    cluster = Cluster()
    cluster.start()
    leader = cluster.elect()
    answer = put(cluster, leader, "app/config", b'{"a": [1, 2]}')
    assert answer.code == 200, answer.body
    assert answer.json() == {"key": "app/config", "revision": 1}
    assert answer.header("ETag") == '"1"'

    follower = cluster.followers()[0]
    redirected = cluster.request(follower, "GET", "/v1/kv/app/config?x=1&y=%20")
    assert redirected.code == 307
    assert redirected.header("Location") == address(leader.node_id) + "/v1/kv/app/config?x=1&y=%20"

    got = cluster.request(leader, "GET", "/v1/kv/app/config")
    assert got.code == 200
    assert got.json() == {"a": [1, 2]}
    assert got.header("ETag") == '"1"'


def test_write_on_follower_redirects_to_the_leader():
    cluster = Cluster()
    cluster.start()
    leader = cluster.elect()
    follower = cluster.followers()[0]
    answer = put(cluster, follower, "k", b"1")
    assert answer.code == 307
    assert answer.header("Location") == address(leader.node_id) + "/v1/kv/k"
    assert cluster.request(follower, "DELETE", "/v1/kv/k").code == 307


def test_stale_read_is_served_by_a_follower_from_its_copy():
    """API.md §2: consistency=stale is served locally by any node."""
    cluster = Cluster()
    cluster.start()
    leader = cluster.elect()
    assert put(cluster, leader, "k", b'"v"').code == 200
    cluster.run(1.0)  # let the followers learn the commit and apply
    for follower in cluster.followers():
        got = cluster.request(follower, "GET", "/v1/kv/k?consistency=stale")
        assert got.code == 200
        assert got.json() == "v"
        assert got.header("ETag") == '"1"'


def test_compare_and_set_with_if_match():
    """API.md §2: If-Match succeeds on the key's revision, else 412 with it."""
    cluster = Cluster()
    cluster.start()
    leader = cluster.elect()
    assert put(cluster, leader, "k", b"1").json()["revision"] == 1
    assert put(cluster, leader, "other", b"1").json()["revision"] == 2
    ok = put(cluster, leader, "k", b"2", **{"If-Match": '"1"'})
    assert ok.code == 200
    assert ok.json() == {"key": "k", "revision": 3}
    stale = put(cluster, leader, "k", b"3", **{"If-Match": '"1"'})
    assert stale.code == 412
    assert stale.json()["revision"] == 3
    assert "error" in stale.json()
    assert cluster.request(leader, "GET", "/v1/kv/k").json() == 2


def test_if_none_match_star_creates_only():
    cluster = Cluster()
    cluster.start()
    leader = cluster.elect()
    assert put(cluster, leader, "k", b"1", **{"If-None-Match": "*"}).code == 200
    again = put(cluster, leader, "k", b"2", **{"If-None-Match": "*"})
    assert again.code == 412
    assert again.json()["revision"] == 1


def test_delete_answers_204_then_404():
    cluster = Cluster()
    cluster.start()
    leader = cluster.elect()
    assert put(cluster, leader, "k", b"1").code == 200
    gone = cluster.request(leader, "DELETE", "/v1/kv/k")
    assert gone.code == 204
    assert gone.body == b""
    missing = cluster.request(leader, "DELETE", "/v1/kv/k")
    assert missing.code == 404
    assert "error" in missing.json()
    assert cluster.request(leader, "GET", "/v1/kv/k").code == 404


def test_delete_honours_if_match():
    cluster = Cluster()
    cluster.start()
    leader = cluster.elect()
    assert put(cluster, leader, "k", b"1").code == 200
    wrong = cluster.request(leader, "DELETE", "/v1/kv/k", headers={"If-Match": '"9"'})
    assert wrong.code == 412
    right = cluster.request(leader, "DELETE", "/v1/kv/k", headers={"If-Match": '"1"'})
    assert right.code == 204


def test_prefix_listing_in_byte_order_with_limit():
    """API.md §2: keys in byte order, at most limit of them, with the revision."""
    cluster = Cluster()
    cluster.start()
    leader = cluster.elect()
    for key in ["b/2", "a/x", "b/1", "b/é", "b/10", "c"]:
        assert put(cluster, leader, key, b'{"k":"%s"}' % key.encode()).code == 200
    listing = cluster.request(leader, "GET", "/v1/kv?prefix=b/").json()
    assert [i["key"] for i in listing["items"]] == ["b/1", "b/10", "b/2", "b/é"]
    assert listing["items"][0] == {"key": "b/1", "value": {"k": "b/1"}, "revision": 3}
    assert listing["revision"] == 6
    limited = cluster.request(leader, "GET", "/v1/kv?prefix=b/&limit=2").json()
    assert [i["key"] for i in limited["items"]] == ["b/1", "b/10"]
    everything = cluster.request(leader, "GET", "/v1/kv").json()
    assert len(everything["items"]) == 6


def test_listing_on_follower_redirects_unless_stale():
    cluster = Cluster()
    cluster.start()
    leader = cluster.elect()
    assert put(cluster, leader, "a", b"1").code == 200
    cluster.run(1.0)
    follower = cluster.followers()[0]
    assert cluster.request(follower, "GET", "/v1/kv?prefix=a").code == 307
    stale = cluster.request(follower, "GET", "/v1/kv?prefix=a&consistency=stale")
    assert stale.code == 200
    assert stale.json()["items"] == [{"key": "a", "value": 1, "revision": 1}]


def test_no_leader_known_answers_503_with_retry_after():
    """API.md §2: with no leader known, 503 and Retry-After."""
    cluster = Cluster()
    cluster.start()  # no time has passed: nobody has campaigned yet
    node = cluster.nodes[1]
    for method, path in [("PUT", "/v1/kv/k"), ("GET", "/v1/kv/k"), ("GET", "/v1/kv")]:
        answer = cluster.request(node, method, path, data=b"1" if method == "PUT" else None)
        assert answer.code == 503, (method, path)
        assert answer.header("Retry-After") is not None
        assert "leader" in answer.json()["error"]
