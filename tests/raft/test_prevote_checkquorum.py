"""Pre-vote (thesis §9.6), the leader lease on votes (thesis §4.2.3) and
check-quorum (thesis §6.2): the departures that keep a partitioned or
removed server from deposing a healthy leader."""

from __future__ import annotations

from graft.raft import (
    AppendEntriesResponse,
    Heartbeat,
    RequestVote,
    Role,
)
from tests.raft.harness import Cluster, drain


def test_partitioned_follower_does_not_raise_its_term():
    """Thesis §9.6: a server that cannot win a pre-vote never starts a real
    election, so its term stays put however long it is cut off."""
    cluster = Cluster()
    leader = cluster.elect(1)
    term = leader.term
    cluster.isolate(3)

    cluster.tick(10 * leader.config.election_timeout_ticks)

    assert cluster.nodes[3].term == term
    assert not [m for m in cluster.messages(RequestVote, source=3) if not m.pre_vote]
    assert cluster.messages(RequestVote, source=3), "it did try pre-votes"


def test_rejoining_partitioned_node_does_not_depose_a_healthy_leader():
    """Thesis §9.6: when the partition heals, the returning server rejoins
    as a follower and the leader keeps its term."""
    cluster = Cluster()
    leader = cluster.elect(1)
    term = leader.term
    cluster.isolate(3)
    cluster.tick(10 * leader.config.election_timeout_ticks)

    cluster.heal()
    cluster.tick(5 * leader.config.election_timeout_ticks)

    assert leader.role is Role.LEADER
    assert {n.term for n in cluster.nodes.values()} == {term}
    assert cluster.nodes[3].leader_id == 1


def test_without_pre_vote_a_rejoining_node_does_disrupt():
    """Thesis §9.6, the problem pre-vote solves: without it the isolated
    server's term grows and on return forces the leader to step down."""
    cluster = Cluster(pre_vote=False, check_quorum=False)
    leader = cluster.elect(1)
    term = leader.term
    cluster.isolate(3)
    cluster.tick(10 * leader.config.election_timeout_ticks)
    assert cluster.nodes[3].term > term

    cluster.heal()
    cluster.tick(leader.config.heartbeat_interval_ticks)

    assert leader.term > term, "the old leader was forced out of its term"


def test_follower_in_lease_ignores_vote_requests():
    """Thesis §4.2.3: a server that heard from its leader within the
    minimum election timeout neither grants nor adopts a vote's term."""
    cluster = Cluster()
    leader = cluster.elect(1)
    follower = cluster.nodes[2]

    follower.step(
        RequestVote(source=3, target=2, term=leader.term + 1, last_log_index=9, last_log_term=9)
    )
    ready = drain(follower)

    assert follower.term == leader.term
    assert follower.vote == 1
    assert not ready.messages and not ready.messages_after_persist
    assert "vote_ignored_in_lease" in [f.name for f in ready.facts]


def test_follower_out_of_lease_grants_votes_again():
    """Thesis §4.2.3: once a follower has not heard from its leader for an
    election timeout, it votes normally."""
    cluster = Cluster()
    leader = cluster.elect(1)
    follower = cluster.nodes[2]
    for _ in range(follower.config.election_timeout_ticks):
        follower.tick()
    drain(follower)

    follower.step(
        RequestVote(source=3, target=2, term=leader.term + 1, last_log_index=9, last_log_term=9)
    )
    ready = drain(follower)

    assert follower.term == leader.term + 1
    assert [m.vote_granted for m in ready.messages_after_persist] == [True]


def test_non_voter_out_of_lease_grants_votes_again():
    """A server that is no voter in its own configuration (a learner, or
    removed by an entry the others lack) but a voter in another server's
    must not stay in lease forever: its election timer, which never starts
    a campaign, must still run out (else elections could stall for good;
    simulator seeds 500123 and 502782)."""
    cluster = Cluster(voters=(1, 2, 3), learners=(4,))
    leader = cluster.elect(1)
    learner = cluster.nodes[4]
    assert learner.leader_id == 1
    # Exactly one randomized timeout: where a timer that restarts without
    # campaigning would be back at zero, in lease again.
    for _ in range(learner._randomized_timeout):
        learner.tick()
    drain(learner)

    learner.step(
        RequestVote(source=2, target=4, term=leader.term + 1, last_log_index=99, last_log_term=99)
    )
    ready = drain(learner)

    assert "vote_ignored_in_lease" not in [f.name for f in ready.facts]
    assert learner.term == leader.term + 1
    assert [m.vote_granted for m in ready.messages_after_persist] == [True]


def test_leadership_transfer_vote_passes_the_lease():
    """Thesis §3.10: a vote request marked as a leadership transfer is
    answered even by a follower in lease."""
    cluster = Cluster()
    leader = cluster.elect(1)
    follower = cluster.nodes[2]

    follower.step(
        RequestVote(
            source=3,
            target=2,
            term=leader.term + 1,
            last_log_index=9,
            last_log_term=9,
            leadership_transfer=True,
        )
    )
    ready = drain(follower)

    assert [m.vote_granted for m in ready.messages_after_persist] == [True]


def test_pre_vote_changes_no_state_on_the_voter():
    """Thesis §9.6: answering a pre-vote changes neither the voter's term
    nor its vote, so it needs no persistence."""
    cluster = Cluster()
    node = cluster.nodes[2]

    node.step(
        RequestVote(source=3, target=2, term=5, last_log_index=0, last_log_term=0, pre_vote=True)
    )
    ready = drain(node)

    assert (node.term, node.vote) == (0, 0)
    assert ready.hard_state is None
    (answer,) = ready.messages
    assert answer.pre_vote and answer.vote_granted and answer.term == 5


def test_leader_cut_off_from_a_majority_steps_down():
    """Thesis §6.2 (check-quorum): a leader that has not heard from a
    majority for an election timeout steps down."""
    cluster = Cluster()
    leader = cluster.elect(1)
    cluster.isolate(1)

    cluster.tick(2 * leader.config.election_timeout_ticks, nodes=[1])

    assert leader.role is Role.FOLLOWER
    assert (1, "check_quorum_failed") in [(i, name) for i, name, _ in cluster.facts]


def test_leader_that_hears_from_a_majority_keeps_leading():
    """Thesis §6.2: one silent follower out of three does not cost the
    leader its quorum."""
    cluster = Cluster()
    leader = cluster.elect(1)
    term = leader.term
    cluster.stop(3)

    cluster.tick(10 * leader.config.election_timeout_ticks)

    assert leader.role is Role.LEADER
    assert leader.term == term


def test_deposed_leader_learns_the_new_term_from_a_heartbeat_reply():
    """Thesis §9.6 with etcd's answer to stale leaders: an old leader that
    pre-vote kept from seeing any vote request learns the new term from
    the rejection of its own heartbeat."""
    cluster = Cluster(check_quorum=False)
    old = cluster.elect(1)
    cluster.isolate(1)
    new = cluster.elect(2, attempts=3)
    assert old.role is Role.LEADER and old.term < new.term
    # The new leader's own messages never reach the old one: only answers.
    cluster.drop = lambda m: m.target == 1 and not isinstance(m, AppendEntriesResponse)

    for _ in range(old.config.heartbeat_interval_ticks):
        old.tick()
    cluster.deliver()

    assert old.role is Role.FOLLOWER
    assert old.term == new.term
    rejections = cluster.messages(AppendEntriesResponse, target=1)
    assert any(m.term == new.term and not m.success for m in rejections)
    assert cluster.messages(Heartbeat, source=1, target=2)
