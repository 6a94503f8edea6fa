"""Membership changes and leadership transfer through the client API
(API.md section 3), whole nodes on one task.Clock: POST /v1/members,
DELETE /v1/members/{id}, POST /v1/leader, and what a removed node does."""

from __future__ import annotations

import json
from typing import Any

import pytest
from twisted.logger import capturedLogs

from graft.raft import Configuration, Member, Role
from graft.server.membership import MembershipRoutes, MembershipWatch, quorum_shortfall
from tests.server.helpers import CLUSTER, TICK, Cluster, Node, address

ELECTION_TIMEOUT_SECONDS = 10 * TICK


class MembershipCluster(Cluster):
    """The helpers' cluster, with the membership routes and watch mounted
    on every node, and nodes that join later with an empty configuration."""

    def __init__(self, size: int = 3, **kwargs: Any) -> None:
        self.watches: dict[int, MembershipWatch] = {}
        self._seed = kwargs.get("seed", 1)
        self._threshold = kwargs.get("snapshot_threshold", 10000)
        super().__init__(size, **kwargs)

    def _make_node(self, i: int, seed: int, snapshot_threshold: int, api: dict[str, Any]) -> Node:
        node = super()._make_node(i, seed, snapshot_threshold, api)
        watch = MembershipWatch(node.driver, election_timeout_seconds=ELECTION_TIMEOUT_SECONDS)
        MembershipRoutes(
            node.api, watch, cluster_id=CLUSTER, election_timeout_seconds=ELECTION_TIMEOUT_SECONDS
        ).mount()
        self.watches[i] = watch
        return node

    def start(self) -> None:
        super().start()
        for watch in self.watches.values():
            watch.startService()

    def start_empty_node(self, i: int) -> Node:
        """A new node that will join: empty log and configuration, the
        current members as its first peers (what --join gives it)."""
        initial, self.configuration = self.configuration, Configuration()
        try:
            node = self._make_node(i, self._seed, self._threshold, {})
        finally:
            self.configuration = initial
        node.driver.bootstrap_peers = {j: address(j) for j in self.nodes}
        self.nodes[i] = node
        node.driver.start()
        self.watches[i].startService()
        return node


def post(cluster: Cluster, node: Node, path: str, document: object, **kw: Any) -> Any:
    return cluster.request(node, "POST", path, data=json.dumps(document).encode(), **kw)


@pytest.fixture
def cluster() -> MembershipCluster:
    cluster = MembershipCluster(3)
    cluster.start()
    cluster.elect()
    return cluster


def voters(node: Node) -> set[int]:
    return set(node.driver.configuration.voters)


# --- adding ----------------------------------------------------------------------


def test_added_voter_joins_as_learner_and_is_promoted_once_caught_up(cluster):
    """Thesis §4.2.1: a new node catches up as a learner, then votes."""
    leader = cluster.elect()
    for n in range(20):
        assert cluster.request(leader, "PUT", f"/v1/kv/k{n}", data=b"1").code == 200
    joiner = cluster.start_empty_node(4)
    answer = post(cluster, leader, "/v1/members", {"id": 4, "address": address(4)})
    assert answer.code == 200, answer.body
    body = answer.json()
    assert body["cluster_id"] == CLUSTER
    assert 4 in [m["id"] for m in body["members"]]
    cluster.run(3.0)
    assert voters(leader) == {1, 2, 3, 4}
    assert voters(joiner) == {1, 2, 3, 4}
    assert joiner.kv.get("k19") is not None


def test_learner_stays_a_learner(cluster):
    leader = cluster.elect()
    cluster.start_empty_node(4)
    answer = post(cluster, leader, "/v1/members", {"id": 4, "address": address(4), "voter": False})
    assert answer.code == 200, answer.body
    cluster.run(3.0)
    assert leader.driver.configuration.learners == {4}
    status = cluster.request(cluster.nodes[4], "GET", "/v1/status").json()
    assert status["role"] == "learner"


def test_adding_the_same_member_again_changes_nothing(cluster):
    """A node started with --join after `graft cluster add` asks again."""
    leader = cluster.elect()
    first = post(cluster, leader, "/v1/members", {"id": 4, "address": address(4)})
    index = leader.driver.node.last_index
    again = post(cluster, leader, "/v1/members", {"id": 4, "address": address(4) + "/"})
    assert again.code == 200
    assert again.json()["members"] == first.json()["members"]
    assert leader.driver.node.last_index == index
    moved = post(cluster, leader, "/v1/members", {"id": 4, "address": "http://elsewhere:1"})
    assert moved.code == 409
    assert "already a member" in moved.json()["error"]


def test_node_of_another_cluster_is_refused(cluster):
    leader = cluster.elect()
    answer = post(
        cluster,
        leader,
        "/v1/members",
        {"id": 4, "address": address(4), "cluster_id": "another-cluster"},
    )
    assert answer.code == 409
    assert "another cluster" in answer.json()["error"]
    assert leader.driver.configuration.member(4) is None


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"{bad", "bad JSON"),
        (b"[1]", "JSON object"),
        (b'{"address": "http://n:1"}', '"id"'),
        (b'{"id": "4", "address": "http://n:1"}', '"id"'),
        (b'{"id": true, "address": "http://n:1"}', '"id"'),
        (b'{"id": 0, "address": "http://n:1"}', '"id"'),
        (b'{"id": 4}', '"address"'),
        (b'{"id": 4, "address": "n:1"}', "bad address"),
        (b'{"id": 4, "address": "http://n:1;2"}', "bad address"),
        (b'{"id": 4, "address": "http://n:1", "voter": "yes"}', '"voter"'),
        (b'{"id": 4, "address": "http://n:1", "role": "x"}', "unknown key"),
    ],
)
def test_bad_member_bodies_get_400(cluster, body, words):
    leader = cluster.elect()
    before = leader.driver.node.last_index
    answer = cluster.request(leader, "POST", "/v1/members", data=body)
    assert answer.code == 400, answer.body
    assert words in answer.json()["error"]
    assert leader.driver.node.last_index == before


def test_other_methods_get_405(cluster):
    leader = cluster.elect()
    assert cluster.request(leader, "PUT", "/v1/members", data=b"{}").code == 405
    assert cluster.request(leader, "POST", "/v1/members/2", data=b"{}").code == 405
    assert cluster.request(leader, "GET", "/v1/leader").code == 405
    assert cluster.request(leader, "POST", "/v1/members/x", data=b"1").code == 404


def test_followers_redirect_changes_to_the_leader(cluster):
    leader = cluster.elect()
    follower = cluster.followers()[0]
    for method, path, body in (
        ("POST", "/v1/members", {"id": 4, "address": address(4)}),
        ("DELETE", "/v1/members/3?force=true", None),
        ("POST", "/v1/leader", {"id": 2}),
    ):
        data = None if body is None else json.dumps(body).encode()
        answer = cluster.request(follower, method, path, data=data)
        assert answer.code == 307, (method, path, answer.body)
        assert answer.header("Location") == address(leader.node_id) + path


# --- one change at a time -------------------------------------------------------


def test_second_change_while_one_is_pending_gets_409(cluster):
    """Thesis §4.1: one uncommitted configuration at a time."""
    leader = cluster.elect()
    others = [n.node_id for n in cluster.followers()]
    cluster.network.isolate(leader.node_id, others)
    pending = cluster.pending(
        leader, "POST", "/v1/members", data=json.dumps({"id": 4, "address": address(4)}).encode()
    )
    cluster.run(TICK)
    second = post(cluster, leader, "/v1/members", {"id": 5, "address": address(5)}, max_seconds=0.1)
    assert second.code == 409
    assert "in progress" in second.json()["error"]
    assert second.header("Retry-After") == "1"
    removal = cluster.request(leader, "DELETE", "/v1/members/2?force=true", max_seconds=0.1)
    assert removal.code == 409
    cluster.network.heal()
    cluster.wait(leader, pending, 15.0)
    assert cluster.answer_of(leader, pending).code in (200, 503)


# --- removing ---------------------------------------------------------------------


def test_quorum_shortfall_counts_only_reachable_voters_of_the_new_configuration():
    five = Configuration(members=tuple(Member(id=i, address=address(i)) for i in range(1, 6)))
    assert quorum_shortfall(five, 5, {1, 2, 3}) is None
    assert quorum_shortfall(five, 3, {1, 2, 3}) is not None  # 2 of the 4 left
    assert quorum_shortfall(five, 4, {1, 2, 3, 5}) is None
    with_learner = five.with_member(Member(id=6, address=address(6), voter=False))
    assert quorum_shortfall(with_learner, 6, {1, 2, 3}) is None


def test_removal_that_would_leave_too_few_reachable_voters_is_refused_unless_forced(cluster):
    leader = cluster.elect()
    down, up = (n.node_id for n in cluster.followers())
    cluster.network.isolate(down, [leader.node_id, up])
    cluster.run(4 * ELECTION_TIMEOUT_SECONDS)
    refused = cluster.request(leader, "DELETE", f"/v1/members/{up}")
    assert refused.code == 409
    assert "force=true" in refused.json()["error"]
    assert voters(leader) == {1, 2, 3}
    removed = cluster.request(leader, "DELETE", f"/v1/members/{down}")
    assert removed.code == 200, removed.body
    assert voters(leader) == {leader.node_id, up}
    assert cluster.request(leader, "DELETE", "/v1/members/9").code == 404


def test_forced_removal_skips_the_quorum_check(cluster):
    leader = cluster.elect()
    down, up = (n.node_id for n in cluster.followers())
    cluster.network.isolate(down, [leader.node_id, up])
    cluster.run(4 * ELECTION_TIMEOUT_SECONDS)
    forced = cluster.request(leader, "DELETE", f"/v1/members/{up}?force=true", max_seconds=15.0)
    assert forced.code == 503  # no quorum left to commit it: exactly what the check prevents
    assert "outcome is unknown" in forced.json()["error"] or "leader" in forced.json()["error"]
    assert leader.driver.node.configuration.member(up) is None


def test_removed_follower_says_so_once_and_answers_503(cluster):
    leader = cluster.elect()
    victim = cluster.followers()[0]
    with capturedLogs() as events:
        answer = cluster.request(leader, "DELETE", f"/v1/members/{victim.node_id}")
        assert answer.code == 200, answer.body
        cluster.run(3 * ELECTION_TIMEOUT_SECONDS)
    lines = [
        e["log_format"].format(**e)
        for e in events
        if "stopping participation" in e.get("log_format", "")
    ]
    assert lines == [f"node {victim.node_id} was removed from the cluster; stopping participation"]
    for path in ("/v1/kv/k", "/v1/kv/k?consistency=stale", "/readyz"):
        refused = cluster.request(victim, "GET", path)
        assert refused.code == 503, path
        assert "removed from the cluster" in refused.json()["error"]
    assert cluster.request(victim, "GET", "/v1/members").code == 200
    assert cluster.request(leader, "PUT", "/v1/kv/k", data=b"1").code == 200
    assert victim.driver.node.role is Role.FOLLOWER


def test_leader_removes_itself_and_another_takes_over(cluster):
    """Thesis §4.2.2: the leader steps down once its removal commits."""
    leader = cluster.elect()
    term = leader.driver.node.term
    answer = cluster.request(leader, "DELETE", f"/v1/members/{leader.node_id}")
    assert answer.code == 200, answer.body
    assert leader.node_id not in [m["id"] for m in answer.json()["members"]]
    cluster.run(2.0)
    rest = [n for n in cluster.nodes.values() if n is not leader]
    new = [n for n in rest if n.driver.node.role is Role.LEADER]
    assert len(new) == 1 and new[0].driver.node.term > term
    assert leader.driver.removed_reason is not None
    assert cluster.request(new[0], "PUT", "/v1/kv/after", data=b"2").code == 200


# --- leadership transfer ------------------------------------------------------------


def test_transfer_moves_leadership_to_each_follower(cluster):
    for target in (2, 3, 1):
        leader = cluster.elect()
        if leader.node_id == target:
            continue
        answer = post(cluster, leader, "/v1/leader", {"id": target})
        assert answer.code == 200, answer.body
        assert answer.json()["leader"] == {"id": target, "address": address(target)}
        assert cluster.elect().node_id == target


def test_transfer_to_the_leader_itself_is_a_no_op(cluster):
    leader = cluster.elect()
    answer = post(cluster, leader, "/v1/leader", {"id": leader.node_id})
    assert answer.code == 200
    assert answer.json()["leader"]["id"] == leader.node_id


def test_transfer_to_a_learner_or_a_stranger_gets_409(cluster):
    leader = cluster.elect()
    cluster.start_empty_node(4)
    assert post(cluster, leader, "/v1/members", {"id": 4, "address": address(4), "voter": False})
    for target in (4, 9):
        answer = post(cluster, leader, "/v1/leader", {"id": target})
        assert answer.code == 409, answer.body
        assert "not a voting member" in answer.json()["error"]
    assert post(cluster, leader, "/v1/leader", {"id": "2"}).code == 400


def test_transfer_to_an_unreachable_voter_fails_clearly(cluster):
    leader = cluster.elect()
    target = cluster.followers()[0].node_id
    cluster.network.isolate(target, [n for n in cluster.nodes if n != target])
    answer = post(cluster, leader, "/v1/leader", {"id": target}, max_seconds=5.0)
    assert answer.code == 503
    assert f"did not move to node {target}" in answer.json()["error"]
    cluster.network.heal()
    cluster.run(1.0)
    assert cluster.request(cluster.elect(), "PUT", "/v1/kv/k", data=b"1").code == 200


# --- configuration survives -----------------------------------------------------------


def test_every_node_reports_the_new_configuration(cluster):
    leader = cluster.elect()
    cluster.start_empty_node(4)
    assert post(cluster, leader, "/v1/members", {"id": 4, "address": address(4)}).code == 200
    cluster.run(3.0)
    expected = [{"id": i, "address": address(i), "voter": True} for i in (1, 2, 3, 4)]
    for node in cluster.nodes.values():
        assert cluster.request(node, "GET", "/v1/members").json() == {"members": expected}
        assert cluster.request(node, "GET", "/v1/status").json()["members"] == expected


def test_empty_node_catches_up_from_a_snapshot():
    cluster = MembershipCluster(3, snapshot_threshold=20)
    cluster.start()
    leader = cluster.elect()
    for n in range(60):
        assert cluster.request(leader, "PUT", f"/v1/kv/k{n}", data=b"1").code == 200
    cluster.run(1.0)
    leader.driver.node.compact(
        leader.driver.snapshot_index, leader.driver._snapshot.data, retain=0
    )  # no tail: the new node cannot catch up from the log
    joiner = cluster.start_empty_node(4)
    assert post(cluster, leader, "/v1/members", {"id": 4, "address": address(4)}).code == 200
    cluster.run(3.0)
    assert joiner.driver.snapshot_index > 0
    assert joiner.kv.get("k59") is not None
    assert voters(leader) == {1, 2, 3, 4}


def test_a_joining_node_is_not_called_removed_while_its_snapshot_predates_it():
    """A node that started empty and installed a snapshot taken before it
    was added is still joining, not removed; a node that was a member and
    is absent from a committed configuration is removed."""
    from types import SimpleNamespace

    from graft.raft import Configuration, Member
    from graft.server.membership import MembershipWatch

    def fake_driver(configuration: Configuration) -> SimpleNamespace:
        log = SimpleNamespace(configuration_index=5)
        node = SimpleNamespace(configuration=configuration, commit_index=5, log=log)
        clock = SimpleNamespace(seconds=lambda: 0.0)
        return SimpleNamespace(
            node=node, node_id=4, removed_reason=None, clock=clock, tick_seconds=0.05
        )

    old_members = Configuration(members=tuple(Member(id=i, address=f"n{i}") for i in (1, 2, 3)))
    joining = fake_driver(Configuration())
    watch = MembershipWatch(joining, election_timeout_seconds=0.5)  # type: ignore[arg-type]
    joining.node.configuration = old_members  # the leader's older snapshot arrived
    watch._check_membership(10.0)
    assert joining.removed_reason is None

    with_four = Configuration(members=(*old_members.members, Member(id=4, address="n4")))
    member = fake_driver(with_four)
    watch = MembershipWatch(member, election_timeout_seconds=0.5)  # type: ignore[arg-type]
    member.node.configuration = old_members  # its removal, committed
    watch._check_membership(10.0)
    assert member.removed_reason is not None
