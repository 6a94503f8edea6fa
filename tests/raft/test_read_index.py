"""Linearizable reads without log writes: ReadIndex (thesis §6.4)."""

from __future__ import annotations

import pytest

from graft.raft import (
    AppendEntries,
    AppendEntriesResponse,
    Heartbeat,
    HeartbeatResponse,
    NotLeader,
    ReadState,
    Role,
)
from tests.raft.harness import Cluster


def test_read_waits_for_a_heartbeat_round():
    """Thesis §6.4 step 3: the leader serves a read only after a majority
    answered a heartbeat sent after the read arrived."""
    cluster = Cluster()
    leader = cluster.elect(1)

    leader.read("r")
    cluster.process(1)

    assert cluster.reads[1] == []
    beats = [m for m in cluster.in_flight if isinstance(m, Heartbeat)]
    assert sorted(m.target for m in beats) == [2, 3]
    assert all(m.read_round > 0 for m in beats)

    cluster.deliver()

    assert cluster.reads[1] == [ReadState(request_id="r", index=leader.commit_index)]


def test_many_reads_share_one_heartbeat_round():
    """Thesis §6.4: reads arriving together are confirmed by one round of
    heartbeats, one per follower."""
    cluster = Cluster()
    leader = cluster.elect(1)
    mark = len(cluster.sent)

    for i in range(10):
        leader.read(i)
    cluster.deliver()

    beats = [m for m in cluster.sent[mark:] if isinstance(m, Heartbeat)]
    assert len(beats) == 2
    assert [r.request_id for r in cluster.reads[1]] == list(range(10))


def test_read_needs_acknowledgements_from_a_majority():
    """Thesis §6.4: one follower's answer out of four does not prove the
    leader still leads a five-server cluster; two do."""
    cluster = Cluster(voters=(1, 2, 3, 4, 5))
    leader = cluster.elect(1)
    cluster.drop = lambda m: isinstance(m, HeartbeatResponse) and m.source != 2

    leader.read("r")
    cluster.deliver()
    assert cluster.reads[1] == []

    cluster.drop = lambda m: isinstance(m, HeartbeatResponse) and m.source not in (2, 3)
    cluster.tick(leader.config.heartbeat_interval_ticks, nodes=[1])

    assert [r.request_id for r in cluster.reads[1]] == ["r"]


def test_reply_to_an_older_round_does_not_confirm_a_newer_read():
    """Thesis §6.4: a heartbeat answered before a read arrived proves
    nothing about leadership at the time of that read."""
    cluster = Cluster()
    leader = cluster.elect(1)
    leader.read("a")
    cluster.process(1)
    first_round, cluster.in_flight = cluster.in_flight, []
    leader.read("b")
    cluster.process(1)
    assert cluster.in_flight == []  # "b" waits for the next round

    for m in first_round:
        cluster.nodes[m.target].step(m)
    for follower in (2, 3):
        cluster.process(follower)
    replies, cluster.in_flight = cluster.in_flight, []
    for m in replies:
        leader.step(m)
    cluster.process(1)
    assert [r.request_id for r in cluster.reads[1]] == ["a"]

    second_round = [m for m in cluster.in_flight if isinstance(m, Heartbeat)]
    assert sorted(m.target for m in second_round) == [2, 3]
    assert all(m.read_round > first_round[0].read_round for m in second_round)
    cluster.deliver()
    assert [r.request_id for r in cluster.reads[1]] == ["a", "b"]


def test_reads_arriving_during_a_round_share_the_next_round():
    """While a round is in flight the leader starts no other: the reads
    arriving meanwhile all ride the next one (one heartbeat per follower
    per round, not per read)."""
    cluster = Cluster()
    leader = cluster.elect(1)
    mark = len(cluster.sent)
    leader.read("a")
    cluster.process(1)
    for i in range(5):
        leader.read(i)
        cluster.process(1)

    cluster.deliver()

    beats = [m for m in cluster.sent[mark:] if isinstance(m, Heartbeat)]
    assert len(beats) == 4  # two rounds to two followers
    assert [r.request_id for r in cluster.reads[1]] == ["a", 0, 1, 2, 3, 4]


def test_lost_round_is_confirmed_by_the_periodic_heartbeat():
    """The round's own heartbeats are lost: the next periodic heartbeat
    carries the newest round, so the read is served and later reads are
    not stuck behind it."""
    cluster = Cluster()
    leader = cluster.elect(1)
    leader.read("a")
    cluster.process(1)
    cluster.in_flight = []  # lost
    leader.read("b")
    cluster.deliver()
    assert cluster.reads[1] == []

    cluster.tick(leader.config.heartbeat_interval_ticks, nodes=[1])

    assert [r.request_id for r in cluster.reads[1]] == ["a", "b"]


def test_read_index_is_the_commit_index_when_the_read_arrived():
    """Thesis §6.4 step 1: the read index is the leader's commit index on
    arrival, and the read is served only once that much is applied."""
    cluster = Cluster()
    leader = cluster.elect(1)
    index = leader.propose(b"a")
    ready = leader.ready()  # the leader's own write is still in flight
    cluster.in_flight.extend(ready.messages)
    cluster.disks[1].persist(ready)
    for m in ready.messages:
        cluster.nodes[m.target].step(m)
    for follower in (2, 3):
        cluster.process(follower)
    for m in cluster.in_flight:
        if isinstance(m, AppendEntriesResponse) and m.target == 1:
            leader.step(m)
    cluster.in_flight = []
    assert leader.commit_index == index
    assert leader.applied_index < index

    leader.read("r")
    leader.advance(ready)
    cluster.deliver()

    (served,) = cluster.reads[1]
    assert served.index == index
    assert cluster.applied[1][-1].index >= index


def test_reads_are_served_only_after_applying_up_to_their_index():
    """Thesis §6.4 step 4: in every Ready, each read's index is at or below
    the last entry applied in that Ready or before."""
    cluster = Cluster()
    leader = cluster.elect(1)
    applied = leader.applied_index
    served = 0

    for i in range(20):
        leader.propose(f"c{i}".encode())
        leader.read(i)
        if i % 3 == 0:
            for _ in range(4):
                for node_id in (2, 3):
                    cluster.process(node_id)
                if leader.has_ready():
                    ready = leader.ready()
                    cluster.in_flight.extend(ready.messages + ready.messages_after_persist)
                    cluster.disks[1].persist(ready)
                    if ready.committed_entries:
                        applied = ready.committed_entries[-1].index
                    for read in ready.reads:
                        assert read.index <= applied
                        served += 1
                    leader.advance(ready)
                batch, cluster.in_flight = cluster.in_flight, []
                for m in batch:
                    cluster.nodes[m.target].step(m)

    assert served > 0


def test_new_leader_serves_no_read_before_committing_its_no_op():
    """Thesis §6.4 step 1 and §8: until an entry of its term commits, a new
    leader does not know the commit index, so it holds reads back."""
    cluster = Cluster()
    cluster.drop = lambda m: isinstance(m, AppendEntries)
    leader = cluster.elect(1)
    noop_index = leader.last_index

    leader.read("r")
    cluster.tick(3 * leader.config.heartbeat_interval_ticks, nodes=[1])
    assert leader.role is Role.LEADER
    assert cluster.reads[1] == []

    cluster.heal()
    cluster.tick(2 * leader.config.heartbeat_interval_ticks, nodes=[1])

    (served,) = cluster.reads[1]
    assert served.request_id == "r"
    assert served.index >= noop_index


def test_reads_fail_when_leadership_is_lost():
    """Thesis §6.4: a leader that steps down can no longer confirm its
    pending reads; they fail so clients retry elsewhere."""
    cluster = Cluster()
    leader = cluster.elect(1)
    cluster.drop = lambda m: isinstance(m, HeartbeatResponse)
    leader.read("r")
    cluster.deliver()
    assert cluster.reads[1] == []

    leader.step(AppendEntriesResponse(source=2, target=1, term=leader.term + 1, success=False))
    cluster.deliver()

    assert leader.role is Role.FOLLOWER
    assert cluster.failed_reads[1] == ["r"]
    assert cluster.reads[1] == []


def test_reads_fail_when_check_quorum_deposes_the_leader():
    """Thesis §6.2 and §6.4: a leader cut off from the majority fails its
    reads as it steps down."""
    cluster = Cluster()
    leader = cluster.elect(1)
    cluster.isolate(1)
    leader.read("r")

    cluster.tick(2 * leader.config.election_timeout_ticks, nodes=[1])

    assert leader.role is Role.FOLLOWER
    assert cluster.failed_reads[1] == ["r"]


def test_single_voter_serves_reads_without_a_round():
    """Thesis §6.4: a one-server cluster is its own majority and needs no
    heartbeat round."""
    cluster = Cluster(voters=(1,))
    leader = cluster.elect(1)

    leader.read("r")
    ready = leader.ready()

    assert [r.request_id for r in ready.reads] == ["r"]
    assert not ready.messages


def test_read_on_a_follower_raises_not_leader():
    """Thesis §6.4: only the leader serves reads; a follower names it."""
    cluster = Cluster()
    cluster.elect(1)

    with pytest.raises(NotLeader) as raised:
        cluster.nodes[2].read("r")

    assert raised.value.leader_id == 1
