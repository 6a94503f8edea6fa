"""/v1/status, /v1/members, /healthz and /readyz (API.md section 3)."""

from __future__ import annotations

from tests.server.helpers import Cluster, address


def test_status_reports_role_term_leader_indexes_and_members():
    cluster = Cluster()
    cluster.start()
    leader = cluster.elect()
    assert cluster.request(leader, "PUT", "/v1/kv/k", data=b"1").code == 200
    cluster.run(1.0)
    members = [{"id": i, "address": address(i), "voter": True} for i in (1, 2, 3)]
    status = cluster.request(leader, "GET", "/v1/status").json()
    assert status["id"] == leader.node_id
    assert status["role"] == "leader"
    assert status["term"] == leader.driver.node.term >= 1
    assert status["leader"] == {"id": leader.node_id, "address": address(leader.node_id)}
    assert status["commit_index"] == status["applied_index"] == leader.driver.node.commit_index
    assert status["members"] == members
    assert status["failed"] is None
    follower = cluster.followers()[0]
    status = cluster.request(follower, "GET", "/v1/status").json()
    assert status["role"] == "follower"
    assert status["leader"]["id"] == leader.node_id
    assert cluster.request(follower, "GET", "/v1/members").json() == {"members": members}


def test_status_before_any_election_has_no_leader():
    cluster = Cluster()
    cluster.start()
    status = cluster.request(cluster.nodes[1], "GET", "/v1/status").json()
    assert status["role"] == "follower"
    assert status["leader"] is None


def test_readyz_needs_a_leader_and_healthz_does_not():
    cluster = Cluster()
    cluster.start()
    node = cluster.nodes[1]
    assert cluster.request(node, "GET", "/healthz").code == 200
    not_ready = cluster.request(node, "GET", "/readyz")
    assert not_ready.code == 503
    assert not_ready.header("Retry-After")
    cluster.elect()
    cluster.run(0.5)
    assert cluster.request(node, "GET", "/readyz").code == 200


def test_single_node_cluster_elects_itself_and_serves_writes():
    cluster = Cluster(size=1)
    cluster.start()
    node = cluster.elect()
    assert cluster.request(node, "PUT", "/v1/kv/a/b", data=b"[1]").code == 200
    assert cluster.request(node, "GET", "/v1/kv/a/b").json() == [1]
