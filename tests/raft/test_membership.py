"""Membership changes one server at a time, with learners (thesis §4.1,
§4.2.1, §4.2.2, §4.2.3)."""

from __future__ import annotations

import pytest

from graft.raft import (
    AppendEntries,
    ChangeKind,
    Configuration,
    Entry,
    EntryKind,
    LearnerNotCaughtUp,
    Member,
    MembershipChange,
    MembershipChangeInProgress,
    ProposalDropped,
    RequestVote,
    RequestVoteResponse,
    Role,
)
from tests.raft.harness import Cluster, configuration, drain, make_node, set_log


def change(kind: ChangeKind, node_id: int) -> MembershipChange:
    return MembershipChange(kind=kind, node_id=node_id, address=f"n{node_id}")


def test_learner_replicates_the_log():
    """Thesis §4.2.1: a learner receives every entry and applies it."""
    cluster = Cluster(voters=(1, 2, 3), learners=(4,))
    leader = cluster.elect(1)

    leader.propose(b"a")
    cluster.deliver()

    assert cluster.commands(4) == [b"a"]


def test_learner_does_not_count_towards_commit():
    """Thesis §4.2.1: learners are not counted for majorities, so a learner
    plus the leader cannot commit in a three-voter cluster."""
    cluster = Cluster(voters=(1, 2, 3), learners=(4,))
    leader = cluster.elect(1)
    cluster.stop(2)
    cluster.stop(3)

    index = leader.propose(b"a")
    cluster.deliver()

    assert cluster.nodes[4].last_index == index
    assert leader.commit_index < index


def test_commit_goes_on_while_the_learner_is_down():
    """Thesis §4.2.1: a learner that is down does not hold back commits."""
    cluster = Cluster(voters=(1, 2, 3), learners=(4,))
    leader = cluster.elect(1)
    cluster.stop(4)

    index = leader.propose(b"a")
    cluster.deliver()

    assert leader.commit_index == index


def test_learner_vote_is_not_counted_and_learner_is_not_asked():
    """Thesis §4.2.1: a candidate asks only voters and counts only their
    grants."""
    node = make_node(1, voters=(1, 2, 3), learners=(4,), pre_vote=False)
    for _ in range(2 * node.config.election_timeout_ticks):
        node.tick()
    ready = drain(node)
    asks = ready.messages_after_persist  # they speak for a new term: after it is durable
    assert sorted(m.target for m in asks if isinstance(m, RequestVote)) == [2, 3]

    node.step(RequestVoteResponse(source=4, target=1, term=node.term, vote_granted=True))
    assert node.role is Role.CANDIDATE
    node.step(RequestVoteResponse(source=2, target=1, term=node.term, vote_granted=True))

    assert node.role is Role.LEADER


def test_learner_never_campaigns():
    """Thesis §4.2.1: a learner never starts an election, however long it
    hears nothing."""
    node = make_node(4, voters=(1, 2, 3), learners=(4,))

    for _ in range(20 * node.config.election_timeout_ticks):
        node.tick()

    assert node.role is Role.FOLLOWER
    assert node.term == 0
    assert not node.has_ready()


def test_promoting_a_caught_up_learner_makes_it_a_voter():
    """Thesis §4.2.1: a learner that has caught up becomes a voter and can
    then be elected."""
    cluster = Cluster(voters=(1, 2, 3), learners=(4,))
    leader = cluster.elect(1)
    leader.propose(b"a")
    cluster.deliver()

    leader.change_membership(change(ChangeKind.PROMOTE, 4))
    cluster.deliver()

    for node in cluster.nodes.values():
        assert node.configuration.voters == {1, 2, 3, 4}
    leader.transfer_leadership(4)  # refused to anyone but a voter
    cluster.deliver()
    assert cluster.nodes[4].role is Role.LEADER


def test_promoting_a_lagging_learner_raises():
    """Thesis §4.2.1: a learner far behind would stall commits as a voter,
    so its promotion is refused until it catches up."""
    cluster = Cluster(voters=(1, 2, 3), learners=(4,), learner_promotion_lag_max=2)
    leader = cluster.elect(1)
    cluster.stop(4)
    for i in range(5):
        leader.propose(f"c{i}".encode())
    cluster.deliver()

    with pytest.raises(LearnerNotCaughtUp):
        leader.change_membership(change(ChangeKind.PROMOTE, 4))

    assert leader.configuration.learners == {4}


def test_second_change_while_one_is_uncommitted_raises():
    """Thesis §4.1: a leader starts no configuration change until the
    previous one is committed."""
    cluster = Cluster()
    leader = cluster.elect(1)
    cluster.drop = lambda m: isinstance(m, AppendEntries)
    leader.change_membership(change(ChangeKind.ADD_LEARNER, 4))
    cluster.deliver()

    with pytest.raises(MembershipChangeInProgress):
        leader.change_membership(change(ChangeKind.ADD_LEARNER, 5))

    cluster.heal()
    cluster.tick(2 * leader.config.heartbeat_interval_ticks, nodes=[1])
    leader.change_membership(change(ChangeKind.ADD_LEARNER, 5))
    assert leader.configuration.learners == {4, 5}


def test_new_leader_takes_no_change_before_its_first_entry_commits():
    """Thesis §4.1: a new leader may hold an uncommitted configuration from
    its predecessor, so it waits for its own term's entry to commit."""
    cluster = Cluster()
    inherited = [
        Entry(index=1, term=1, kind=EntryKind.NOOP),
        Entry(index=2, term=1, kind=EntryKind.CONFIG, data=configuration((1, 2, 3)).encode()),
    ]
    for node_id in (1, 2, 3):
        set_log(cluster, node_id, inherited, term=1)
    cluster.drop = lambda m: isinstance(m, AppendEntries)
    leader = cluster.elect(1)

    with pytest.raises(MembershipChangeInProgress):
        leader.change_membership(change(ChangeKind.ADD_LEARNER, 4))

    cluster.heal()
    cluster.tick(2 * leader.config.heartbeat_interval_ticks, nodes=[1])
    leader.change_membership(change(ChangeKind.ADD_LEARNER, 4))


def test_configuration_is_in_force_as_soon_as_it_is_appended():
    """Thesis §4.1: a server uses the newest configuration in its log,
    committed or not: after adding a fourth voter, three of four are needed."""
    cluster = Cluster()
    leader = cluster.elect(1)
    cluster.stop(3)

    index = leader.change_membership(change(ChangeKind.ADD_VOTER, 4))
    assert leader.configuration.voters == {1, 2, 3, 4}
    cluster.deliver()

    assert cluster.nodes[2].last_index == index
    assert leader.commit_index < index, "{1, 2} was a majority of the old configuration only"


def test_configuration_reverts_when_its_entry_is_truncated():
    """Thesis §4.1: a follower whose uncommitted configuration entry is
    overwritten falls back to the previous configuration."""
    old = configuration((1, 2, 3))
    new = configuration((1, 2, 3), learners=(4,))
    node = make_node(
        2,
        entries=[
            Entry(index=1, term=1, kind=EntryKind.NOOP),
            Entry(index=2, term=1, kind=EntryKind.CONFIG, data=new.encode()),
        ],
        term=1,
    )
    assert node.configuration == new

    node.step(
        AppendEntries(
            source=3, target=2, term=2, prev_log_index=1, prev_log_term=1,
            entries=(Entry(index=2, term=2, kind=EntryKind.NOOP),), leader_commit=1,
        )
    )  # fmt: skip

    assert node.configuration == old
    assert isinstance(node.configuration, Configuration)


def test_removed_leader_steps_down_once_its_removal_commits():
    """Thesis §4.2.2: a leader removed from the configuration keeps leading
    until the change commits, then steps down and another server leads."""
    cluster = Cluster()
    leader = cluster.elect(1)
    term = leader.term

    index = leader.change_membership(change(ChangeKind.REMOVE, 1))
    assert leader.role is Role.LEADER

    cluster.deliver()

    assert leader.role is Role.FOLLOWER
    assert leader.commit_index >= index
    new = cluster.leader()
    assert new is not None and new.node_id in (2, 3) and new.term > term
    assert new.configuration.voters == {2, 3}


def test_leader_being_removed_refuses_proposals():
    """errors.ProposalDropped: a leader that is being removed takes no new
    proposals (they would be lost or outlive its leadership)."""
    cluster = Cluster()
    leader = cluster.elect(1)
    cluster.drop = lambda m: isinstance(m, AppendEntries)
    leader.change_membership(change(ChangeKind.REMOVE, 1))

    with pytest.raises(ProposalDropped):
        leader.propose(b"a")


def test_node_that_joins_empty_catches_up_from_the_log():
    """Thesis §4.2.1: a new server starts with an empty log and is brought
    up to date by ordinary replication."""
    cluster = Cluster()
    leader = cluster.elect(1)
    for i in range(5):
        leader.propose(f"c{i}".encode())
    cluster.deliver()
    joiner = cluster.add_empty_node(4)

    leader.change_membership(change(ChangeKind.ADD_LEARNER, 4))
    cluster.deliver()

    assert cluster.commands(4) == [f"c{i}".encode() for i in range(5)]
    assert joiner.configuration.learners == {4}
    assert cluster.log(4) == cluster.log(1)


def test_node_whose_configuration_excludes_it_never_campaigns():
    """Thesis §4.2.3: a server not in its own latest configuration does not
    start elections."""
    node = make_node(3, voters=(1, 2))

    for _ in range(20 * node.config.election_timeout_ticks):
        node.tick()

    assert node.role is Role.FOLLOWER
    assert node.term == 0


def test_removed_node_does_not_disrupt_the_cluster():
    """Thesis §4.2.3: a removed server that times out cannot raise the
    cluster's term or depose its leader."""
    cluster = Cluster()
    leader = cluster.elect(1)
    leader.change_membership(change(ChangeKind.REMOVE, 3))
    cluster.deliver()
    term = leader.term

    cluster.tick(10 * leader.config.election_timeout_ticks)

    assert leader.role is Role.LEADER
    assert leader.term == term
    assert cluster.nodes[2].term == term
    real_votes = [m for m in cluster.messages(RequestVote, source=3) if not m.pre_vote]
    assert real_votes == []


def test_removed_follower_learns_its_removal_and_stops_campaigning():
    """Thesis §4.2.3: the leader keeps replicating to a removed server until
    the removal commits, so the server holds the configuration without
    itself and never starts even a pre-vote."""
    cluster = Cluster()
    leader = cluster.elect(1)
    leader.change_membership(change(ChangeKind.REMOVE, 3))
    cluster.deliver()
    cluster.tick(leader.config.heartbeat_interval_ticks)
    assert 3 not in cluster.nodes[3].configuration.ids
    assert leader.progress(3) is None, "forgotten once the removal committed"
    removal = cluster.nodes[3].log.configuration_index
    assert cluster.nodes[3].commit_index >= removal, "told the removal committed"
    sent_before = len(cluster.messages(RequestVote, source=3))

    cluster.tick(10 * leader.config.election_timeout_ticks)

    assert len(cluster.messages(RequestVote, source=3)) == sent_before
    assert cluster.nodes[3].role is Role.FOLLOWER


def test_leader_promotes_a_caught_up_learner_that_asked_for_it():
    """Thesis §4.2.1: a learner added to become a voter is promoted by the
    leader as soon as it has caught up, without another request."""
    cluster = Cluster()
    leader = cluster.elect(1)
    cluster.add_empty_node(4)
    leader.change_membership(
        MembershipChange(kind=ChangeKind.ADD_LEARNER, node_id=4, address="n4", auto_promote=True)
    )
    cluster.deliver()
    cluster.tick(leader.config.heartbeat_interval_ticks)

    member = leader.configuration.member(4)
    assert member is not None and member.voter and not member.auto_promote
    assert cluster.nodes[4].configuration.member(4) == member


def test_a_plain_learner_is_never_promoted_by_the_leader():
    """Thesis §4.2.1: without auto_promote a learner stays a learner."""
    cluster = Cluster(voters=(1, 2, 3), learners=(4,))
    leader = cluster.elect(1)

    cluster.tick(5 * leader.config.election_timeout_ticks)

    assert 4 in leader.configuration.learners


def test_configuration_with_a_learner_awaiting_promotion_round_trips():
    """The flag survives the CONFIG entry's encoding."""
    config = Configuration(
        members=(
            Member(id=1, address="a"),
            Member(id=2, address="b,c", voter=False, auto_promote=True),
            Member(id=3, address="", voter=False),
        )
    )

    assert Configuration.decode(config.encode()) == config


def test_promoted_learner_counts_towards_commit():
    """Thesis §4.2.1: once promoted, the former learner is one of the
    voters whose majority commits entries."""
    cluster = Cluster(voters=(1, 2, 3), learners=(4,))
    leader = cluster.elect(1)
    leader.change_membership(change(ChangeKind.PROMOTE, 4))
    cluster.deliver()
    cluster.stop(2)
    cluster.stop(3)

    index = leader.propose(b"a")
    cluster.deliver()
    assert leader.commit_index < index, "two of four voters are not a majority"

    cluster.restart(3)
    cluster.tick(leader.config.heartbeat_interval_ticks)

    assert leader.commit_index >= index
    assert cluster.commands(4) == [b"a"]


def test_new_leader_changes_membership_only_after_its_own_entry_commits():
    """Ongaro (raft-dev, 2015): with one-server changes, a leader must
    commit an entry of its term before changing the configuration, or an
    earlier leader's uncommitted change can form a disjoint majority."""
    cluster = Cluster()
    cluster.drop = lambda m: isinstance(m, AppendEntries) and m.source == 1
    leader = cluster.elect(1)
    assert leader.commit_index < leader.last_index, "its no-op is not committed yet"

    with pytest.raises(MembershipChangeInProgress):
        leader.change_membership(change(ChangeKind.REMOVE, 3))

    cluster.drop = lambda m: False
    cluster.tick(leader.config.heartbeat_interval_ticks)
    assert leader.commit_index == leader.last_index
    leader.change_membership(change(ChangeKind.REMOVE, 3))
