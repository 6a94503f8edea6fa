"""Leadership transfer (thesis §3.10): catch the target up, then tell it to
time out now."""

from __future__ import annotations

import pytest

from graft.raft import (
    AppendEntriesResponse,
    ChangeKind,
    MembershipChange,
    NotLeader,
    ProposalDropped,
    Role,
    TimeoutNow,
    TransferRefused,
)
from tests.raft.harness import Cluster


def test_transfer_to_an_up_to_date_follower_sends_timeout_now():
    """Thesis §3.10: a target whose log matches gets TimeoutNow at once and
    becomes leader of the next term."""
    cluster = Cluster()
    leader = cluster.elect(1)
    term = leader.term

    leader.transfer_leadership(2)
    cluster.process(1)

    assert [m for m in cluster.in_flight if isinstance(m, TimeoutNow)] == [
        TimeoutNow(source=1, target=2, term=term)
    ]
    cluster.deliver()
    assert cluster.nodes[2].role is Role.LEADER
    assert cluster.nodes[2].term == term + 1
    assert leader.role is Role.FOLLOWER
    assert leader.leader_id == 2


def test_lagging_target_is_caught_up_before_timeout_now():
    """Thesis §3.10 step 2: the leader first replicates to the target until
    its log matches, and only then sends TimeoutNow."""
    cluster = Cluster()
    leader = cluster.elect(1)
    cluster.stop(3)
    for i in range(5):
        leader.propose(f"c{i}".encode())
    cluster.deliver()
    cluster.restart(3)

    leader.transfer_leadership(3)
    cluster.deliver()

    assert cluster.nodes[3].role is Role.LEADER
    kinds = [
        m
        for m in cluster.sent
        if (isinstance(m, TimeoutNow))
        or (isinstance(m, AppendEntriesResponse) and m.source == 3 and m.success)
    ]
    timeout_at = next(i for i, m in enumerate(kinds) if isinstance(m, TimeoutNow))
    caught_up = [m for m in kinds[:timeout_at] if isinstance(m, AppendEntriesResponse)]
    assert caught_up and caught_up[-1].match_index == 6
    assert cluster.commands(3) == [f"c{i}".encode() for i in range(5)]


def test_proposals_are_refused_during_a_transfer():
    """Thesis §3.10 step 1: the leader stops accepting new requests while
    leadership moves, so the target can catch up."""
    cluster = Cluster()
    leader = cluster.elect(1)
    cluster.drop = lambda m: m.target == 2

    leader.transfer_leadership(2)
    cluster.deliver()

    assert leader.role is Role.LEADER
    with pytest.raises(ProposalDropped):
        leader.propose(b"a")
    with pytest.raises(ProposalDropped):
        leader.change_membership(MembershipChange(kind=ChangeKind.ADD_LEARNER, node_id=9))


def test_transfer_is_abandoned_after_an_election_timeout():
    """Thesis §3.10: if the transfer does not complete within an election
    timeout the leader aborts it and takes requests again."""
    cluster = Cluster()
    leader = cluster.elect(1)
    cluster.stop(2)
    leader.transfer_leadership(2)
    cluster.deliver()

    cluster.tick(leader.config.election_timeout_ticks)

    assert leader.role is Role.LEADER
    assert (1, "transfer_aborted") in [(i, name) for i, name, _ in cluster.facts]
    index = leader.propose(b"a")
    cluster.deliver()
    assert leader.commit_index == index


@pytest.mark.parametrize(("target", "why"), [(4, "learner"), (1, "itself"), (7, "unknown")])
def test_transfer_to_a_non_voter_is_refused(target, why):
    """Thesis §3.10: only another voting member can take over leadership."""
    cluster = Cluster(voters=(1, 2, 3), learners=(4,))
    leader = cluster.elect(1)

    with pytest.raises(TransferRefused):
        leader.transfer_leadership(target)

    leader.propose(b"still taking proposals")


def test_a_second_transfer_to_another_target_is_refused():
    """Thesis §3.10: one transfer at a time."""
    cluster = Cluster()
    leader = cluster.elect(1)
    cluster.drop = lambda m: m.target == 2
    leader.transfer_leadership(2)

    with pytest.raises(TransferRefused):
        leader.transfer_leadership(3)


def test_transfer_on_a_follower_raises_not_leader():
    """Thesis §3.10: only the leader can hand over leadership."""
    cluster = Cluster()
    cluster.elect(1)

    with pytest.raises(NotLeader):
        cluster.nodes[2].transfer_leadership(3)


def test_timeout_now_from_a_non_leader_is_ignored():
    """Thesis §3.10: only the current leader may make a server skip its
    election timeout."""
    cluster = Cluster()
    leader = cluster.elect(1)
    node = cluster.nodes[3]

    node.step(TimeoutNow(source=2, target=3, term=leader.term))
    cluster.deliver()

    assert node.role is Role.FOLLOWER
    assert leader.role is Role.LEADER
