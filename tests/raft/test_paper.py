"""One test per claim of the Raft paper (Ongaro & Ousterhout, "In Search of
an Understandable Consensus Algorithm", 2014), after etcd-io/raft's
raft_paper_test.go. Section numbers are the paper's.

Most tests here turn pre-vote and check-quorum off: they are departures
from the paper (docs/divergence.md) tested in test_prevote_checkquorum.py.
"""

from __future__ import annotations

import pytest

from graft.raft import (
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    EntryKind,
    Heartbeat,
    RequestVote,
    RequestVoteResponse,
    Role,
)
from tests.raft.harness import Cluster, drain, log_of_terms, make_node, set_log

PAPER = {"pre_vote": False, "check_quorum": False}


def ticks_until_campaign(node, limit: int = 1000) -> int:
    for ticks in range(1, limit):
        node.tick()
        if node.role is not Role.FOLLOWER:
            return ticks
    raise AssertionError("never campaigned")


def test_servers_start_as_followers():
    """§5.2: when servers start up, they begin as followers."""
    node = make_node(1)

    assert node.role is Role.FOLLOWER
    assert node.term == 0
    assert node.leader_id is None


def test_follower_that_hears_nothing_becomes_candidate():
    """§5.2: a follower that receives no communication over the election
    timeout increments its term, votes for itself and asks every other
    server for its vote."""
    node = make_node(1, voters=(1, 2, 3), **PAPER)

    ticks_until_campaign(node)
    ready = drain(node)

    assert node.role is Role.CANDIDATE
    assert node.term == 1
    assert node.vote == 1
    assert ready.hard_state is not None and ready.hard_state.vote == 1
    # The requests speak for the new term, so they wait until it is durable.
    assert not [m for m in ready.messages if isinstance(m, RequestVote)]
    asks = [m for m in ready.messages_after_persist if isinstance(m, RequestVote)]
    assert sorted(m.target for m in asks) == [2, 3]
    assert all(m.term == 1 and not m.pre_vote for m in asks)


def test_election_timeouts_are_randomized_within_t_and_2t():
    """§5.2: election timeouts are chosen randomly from a fixed interval,
    here [election_timeout_ticks, 2 * election_timeout_ticks)."""
    timeout = 10

    waits = {
        ticks_until_campaign(make_node(1, seed=seed, election_timeout_ticks=timeout, **PAPER))
        for seed in range(200)
    }

    assert min(waits) >= timeout
    assert max(waits) < 2 * timeout
    assert len(waits) > timeout // 2, f"timeouts barely vary: {sorted(waits)}"


def test_candidate_restarts_election_when_its_timeout_passes():
    """§5.2: a candidate that neither wins nor loses (a split vote) times
    out and starts a new election in the next term."""
    node = make_node(1, voters=(1, 2, 3), **PAPER)
    ticks_until_campaign(node)
    drain(node)

    for _ in range(2 * node.config.election_timeout_ticks):
        node.tick()
    ready = drain(node)

    assert node.role is Role.CANDIDATE
    assert node.term >= 2
    asks = ready.messages_after_persist
    assert {m.term for m in asks if isinstance(m, RequestVote)} == {node.term}


def test_candidate_wins_with_votes_from_a_majority():
    """§5.2: a candidate becomes leader once a majority of the full cluster
    votes for it in the same term; one vote short is not enough."""
    node = make_node(1, voters=(1, 2, 3, 4, 5), **PAPER)
    ticks_until_campaign(node)
    drain(node)

    node.step(RequestVoteResponse(source=2, target=1, term=1, vote_granted=True))
    assert node.role is Role.CANDIDATE
    node.step(RequestVoteResponse(source=3, target=1, term=1, vote_granted=True))

    assert node.role is Role.LEADER
    assert node.leader_id == 1


def test_candidate_that_a_majority_refuses_returns_to_follower():
    """§5.2: a candidate that can no longer gather a majority gives up the
    election rather than lead without one."""
    node = make_node(1, voters=(1, 2, 3, 4, 5), **PAPER)
    ticks_until_campaign(node)
    drain(node)

    for source in (2, 3, 4):
        node.step(RequestVoteResponse(source=source, target=1, term=1, vote_granted=False))

    assert node.role is Role.FOLLOWER
    assert node.term == 1


def test_new_leader_sends_appends_to_every_follower_at_once():
    """§5.2: upon election a leader sends initial empty AppendEntries (here
    carrying its no-op) to each server, to establish its authority."""
    node = make_node(1, voters=(1, 2, 3), **PAPER)
    ticks_until_campaign(node)
    drain(node)

    node.step(RequestVoteResponse(source=2, target=1, term=1, vote_granted=True))
    ready = drain(node)

    appends = [m for m in ready.messages if isinstance(m, AppendEntries)]
    assert sorted(m.target for m in appends) == [2, 3]
    assert all(m.term == 1 for m in appends)


def test_node_grants_at_most_one_vote_per_term():
    """§5.2: each server votes for at most one candidate in a given term,
    first come first served."""
    node = make_node(1, **PAPER)

    node.step(RequestVote(source=2, target=1, term=1, last_log_index=0, last_log_term=0))
    node.step(RequestVote(source=3, target=1, term=1, last_log_index=0, last_log_term=0))
    ready = drain(node)

    answers = {m.target: m.vote_granted for m in ready.messages + ready.messages_after_persist}
    assert answers == {2: True, 3: False}
    assert node.vote == 2


def test_vote_is_persisted_before_the_grant_is_sent():
    """§5.2, Figure 2: votedFor is persistent state, so the vote travels in
    the Ready's hard state and the grant only after it is durable."""
    node = make_node(1, **PAPER)

    node.step(RequestVote(source=2, target=1, term=1, last_log_index=0, last_log_term=0))
    ready = drain(node)

    assert ready.hard_state is not None
    assert (ready.hard_state.term, ready.hard_state.vote) == (1, 2)
    assert not [m for m in ready.messages if isinstance(m, RequestVoteResponse)]
    (grant,) = ready.messages_after_persist
    assert isinstance(grant, RequestVoteResponse) and grant.vote_granted


def test_repeated_request_from_the_voted_candidate_is_granted_again():
    """§5.2: a duplicated RequestVote from the candidate already voted for
    is granted again, so a lost grant can be resent."""
    node = make_node(1, term=1, vote=2, **PAPER)

    node.step(RequestVote(source=2, target=1, term=1, last_log_index=0, last_log_term=0))
    ready = drain(node)

    (grant,) = ready.messages_after_persist
    assert grant.vote_granted


def test_vote_survives_a_restart():
    """§5.2, Figure 2: a server that restarts remembers its vote and does
    not vote for another candidate in the same term."""
    cluster = Cluster(**PAPER)
    cluster.nodes[1].step(
        RequestVote(source=2, target=1, term=1, last_log_index=0, last_log_term=0)
    )
    cluster.process(1)

    cluster.crash(1)
    node = cluster.nodes[1]
    node.step(RequestVote(source=3, target=1, term=1, last_log_index=0, last_log_term=0))
    ready = drain(node)

    assert node.vote == 2
    assert [m.vote_granted for m in ready.messages] == [False]


@pytest.mark.parametrize(
    ("candidate_index", "candidate_term", "granted"),
    [
        (3, 1, False),  # longer log, older last term
        (1, 2, False),  # same last term, shorter log
        (2, 2, True),  # identical
        (3, 2, True),  # same last term, longer
        (1, 3, True),  # newer last term wins even if shorter
    ],
)
def test_vote_refused_to_candidate_with_less_up_to_date_log(
    candidate_index, candidate_term, granted
):
    """§5.4.1: a voter denies its vote if its own log is more up-to-date:
    the later last term wins, then the longer log."""
    node = make_node(1, entries=log_of_terms([1, 2]), term=2, **PAPER)

    node.step(
        RequestVote(
            source=2,
            target=1,
            term=3,
            last_log_index=candidate_index,
            last_log_term=candidate_term,
        )
    )
    ready = drain(node)

    (answer,) = ready.messages + ready.messages_after_persist
    assert answer.vote_granted is granted
    assert node.term == 3


def test_leader_steps_down_on_seeing_a_higher_term():
    """§5.1: a leader that learns of a higher term reverts to follower and
    adopts the term."""
    cluster = Cluster(**PAPER)
    leader = cluster.elect(1)

    leader.step(AppendEntriesResponse(source=2, target=1, term=5, success=False))

    assert leader.role is Role.FOLLOWER
    assert leader.term == 5
    assert leader.vote == 0


def test_candidate_steps_down_on_seeing_a_higher_term():
    """§5.1: a candidate that sees a higher term in any message reverts to
    follower in that term."""
    node = make_node(1, **PAPER)
    ticks_until_campaign(node)

    node.step(RequestVoteResponse(source=2, target=1, term=7, vote_granted=False))

    assert node.role is Role.FOLLOWER
    assert node.term == 7


def test_candidate_yields_to_a_leader_of_its_own_term():
    """§5.2: a candidate that receives AppendEntries from a leader of its
    own term recognises it and returns to follower."""
    node = make_node(1, **PAPER)
    ticks_until_campaign(node)

    node.step(
        AppendEntries(
            source=2, target=1, term=1, prev_log_index=0, prev_log_term=0, entries=(),
            leader_commit=0,
        )
    )  # fmt: skip

    assert node.role is Role.FOLLOWER
    assert node.leader_id == 2
    assert node.term == 1


def test_stale_term_messages_are_rejected():
    """§5.1: a request with a stale term is rejected: the log is unchanged
    and the answer carries the newer term."""
    node = make_node(1, term=3, **PAPER)

    node.step(
        AppendEntries(
            source=2, target=1, term=2, prev_log_index=0, prev_log_term=0,
            entries=tuple(log_of_terms([2])), leader_commit=1,
        )
    )  # fmt: skip
    ready = drain(node)

    assert node.last_index == 0
    assert node.commit_index == 0
    assert node.leader_id is None
    (answer,) = ready.messages
    assert isinstance(answer, AppendEntriesResponse)
    assert (answer.term, answer.success) == (3, False)
    assert "dropped_stale" in [f.name for f in ready.facts]


def test_stale_vote_request_is_not_granted():
    """§5.1: a RequestVote from an older term is refused."""
    node = make_node(1, term=3, **PAPER)

    node.step(RequestVote(source=2, target=1, term=2, last_log_index=9, last_log_term=2))
    ready = drain(node)

    assert node.vote == 0
    assert not ready.messages_after_persist


def test_follower_rejects_append_whose_previous_entry_does_not_match():
    """§5.3: if the follower has no entry at prevLogIndex with prevLogTerm
    it refuses the new entries (the consistency check)."""
    node = make_node(1, entries=log_of_terms([1, 1]), term=2, **PAPER)

    node.step(
        AppendEntries(
            source=2, target=1, term=2, prev_log_index=2, prev_log_term=2,
            entries=tuple(log_of_terms([2], start=3)), leader_commit=0,
        )
    )  # fmt: skip
    ready = drain(node)

    assert node.last_index == 2
    (answer,) = ready.messages
    assert answer.success is False


def test_follower_truncates_a_conflicting_suffix():
    """§5.3: an existing entry that conflicts with a new one (same index,
    different term) is deleted with all that follow it."""
    node = make_node(1, entries=log_of_terms([1, 1, 1, 1]), term=2, **PAPER)
    new = Entry(index=2, term=2, data=b"new")

    node.step(
        AppendEntries(
            source=2, target=1, term=2, prev_log_index=1, prev_log_term=1,
            entries=(new,), leader_commit=0,
        )
    )  # fmt: skip
    ready = drain(node)

    assert node.entries(1, 10) == (log_of_terms([1])[0], new)
    assert ready.entries == (new,)


def test_follower_keeps_its_log_when_an_old_append_arrives_again():
    """§5.3: entries that already match are not deleted: a delayed,
    shorter AppendEntries must not cut entries that followed it."""
    log = log_of_terms([1, 1, 1])
    node = make_node(1, entries=log, term=1, **PAPER)

    node.step(
        AppendEntries(
            source=2, target=1, term=1, prev_log_index=0, prev_log_term=0,
            entries=tuple(log[:1]), leader_commit=0,
        )
    )  # fmt: skip
    ready = drain(node)

    assert node.entries(1, 10) == tuple(log)
    assert ready.entries == ()


def test_logs_match_after_replication():
    """§5.3 (Log Matching): once replicated, every server's log is
    identical to the leader's, entry for entry."""
    cluster = Cluster(voters=(1, 2, 3, 4, 5), **PAPER)
    leader = cluster.elect(1)

    for i in range(5):
        leader.propose(f"c{i}".encode())
        cluster.deliver()

    expected = cluster.log(1)
    assert len(expected) == 6
    for node_id in (2, 3, 4, 5):
        assert cluster.log(node_id) == expected


def test_leader_never_overwrites_its_own_log_and_followers_conform_to_it():
    """§5.3: a leader never overwrites or deletes its entries; followers'
    conflicting entries are overwritten with the leader's."""
    cluster = Cluster(**PAPER)
    leader_log = log_of_terms([1, 2, 2])
    set_log(cluster, 1, leader_log, term=2)
    set_log(cluster, 2, log_of_terms([1, 1, 1, 1, 1]), term=2)
    set_log(cluster, 3, leader_log[:1], term=2)

    leader = cluster.elect(1)
    cluster.deliver()

    assert leader.entries(1, 4) == tuple(leader_log)
    assert leader.entries(4, 5)[0].kind is EntryKind.NOOP
    assert cluster.log(2) == cluster.log(1)
    assert cluster.log(3) == cluster.log(1)


def test_leader_commits_only_entries_of_its_own_term():
    """§5.4.2, Figure 8: a leader does not commit an entry of an earlier
    term by counting replicas, since a later leader could still erase it."""
    cluster = Cluster(voters=(1, 2, 3, 4, 5), append_entries_max=1, **PAPER)
    # (a) S1 leads term 1 and gets X onto S2 only.
    s1 = cluster.elect(1)
    x_index = s1.propose(b"X")
    cluster.drop = lambda m: isinstance(m, AppendEntries) and m.target != 2
    cluster.deliver()
    assert s1.commit_index < x_index
    # (b) S1 goes down; S5 leads term 2 with S3 and S4, appends its no-op
    # at X's index, and goes down before replicating it.
    cluster.stop(1)
    cluster.drop = lambda m: isinstance(m, AppendEntries) and m.source == 5
    s5 = cluster.elect(5)
    assert s5.term_at(x_index) == 2
    cluster.stop(5)
    # (c) S1 comes back, leads a later term and copies X to S3 (a majority
    # holds X) but not its own no-op.
    s1 = cluster.restart(1)
    cluster.drop = lambda m: (
        isinstance(m, AppendEntries)
        and any(e.term > 2 for e in m.entries)
        and cluster.nodes[m.target].term_at(m.prev_log_index) == m.prev_log_term
    )
    s1 = cluster.elect(1, attempts=3)

    cluster.tick(3 * s1.config.heartbeat_interval_ticks, nodes=[1])

    holders = [i for i in sorted(cluster.nodes) if cluster.nodes[i].term_at(x_index) == 1]
    assert len(holders) >= 3, f"X must be on a majority for the scenario: {holders}"
    assert s1.commit_index < x_index
    assert all(b"X" not in cluster.commands(i) for i in cluster.nodes)
    # (d) Which was right: S5 can still win a later term and replace X.
    cluster.stop(1)
    cluster.restart(5)
    cluster.heal()
    cluster.elect(5, attempts=3)
    for i in (2, 3, 4, 5):
        assert cluster.nodes[i].term_at(x_index) == 2


def test_earlier_term_entry_commits_with_the_new_leaders_own_entry():
    """§5.4.2, Figure 8 (e): once an entry of the leader's own term is on a
    majority, it and every entry before it, earlier terms included, commit."""
    cluster = Cluster(voters=(1, 2, 3, 4, 5), **PAPER)
    s1 = cluster.elect(1)
    x_index = s1.propose(b"X")
    cluster.drop = lambda m: isinstance(m, AppendEntries) and m.target != 2
    cluster.deliver()
    cluster.stop(1)
    cluster.heal()

    s2 = cluster.elect(2)
    cluster.deliver()

    assert s2.commit_index == x_index + 1
    assert s2.entries(x_index + 1, x_index + 2)[0].term == s2.term
    for i in (2, 3, 4, 5):
        assert cluster.commands(i) == [b"X"]


def test_new_leader_appends_a_no_op_of_its_term():
    """§8: each leader commits a blank no-op entry at the start of its
    term, which commits what earlier leaders left."""
    cluster = Cluster(**PAPER)

    leader = cluster.elect(1)

    (noop,) = cluster.log(1)
    assert (noop.kind, noop.term) == (EntryKind.NOOP, leader.term)
    assert leader.commit_index == noop.index
    for i in (1, 2, 3):
        assert [e.kind for e in cluster.applied[i]] == [EntryKind.NOOP]


def test_heartbeat_commit_index_is_capped_at_the_followers_match():
    """§5.3: a follower learns the commit index from the leader, but never
    beyond an entry it is known to hold."""
    cluster = Cluster(**PAPER)
    leader = cluster.elect(1)
    cluster.drop = lambda m: m.target == 3 or m.source == 3
    leader.propose(b"a")
    leader.propose(b"b")
    cluster.deliver()
    assert leader.commit_index == 3

    for _ in range(leader.config.heartbeat_interval_ticks):
        leader.tick()
    ready = drain(leader)

    beats = {m.target: m.commit_index for m in ready.messages if isinstance(m, Heartbeat)}
    assert beats == {2: 3, 3: 1}


def test_follower_commit_index_never_passes_the_last_new_entry():
    """§5.3, Figure 2: commitIndex = min(leaderCommit, index of last new
    entry), since later entries may not match the leader's."""
    node = make_node(1, entries=log_of_terms([1, 1, 1, 1]), term=2, **PAPER)

    node.step(
        AppendEntries(
            source=2, target=1, term=2, prev_log_index=1, prev_log_term=1,
            entries=(), leader_commit=4,
        )
    )  # fmt: skip

    assert node.commit_index == 1


def test_followers_apply_committed_entries_in_log_order():
    """§5.3: once the leader's commit index covers an entry, every server
    applies it, in log order, exactly once."""
    cluster = Cluster(**PAPER)
    leader = cluster.elect(1)

    for i in range(10):
        leader.propose(f"c{i}".encode())
        if i % 3 == 0:
            cluster.deliver()
    cluster.deliver()
    cluster.tick(leader.config.heartbeat_interval_ticks)

    expected = [f"c{i}".encode() for i in range(10)]
    for i in (1, 2, 3):
        indexes = [e.index for e in cluster.applied[i]]
        assert indexes == list(range(1, 12))
        assert cluster.commands(i) == expected


def test_leader_stays_in_power_while_its_heartbeats_arrive():
    """§5.2: followers remain followers as long as they receive valid RPCs
    from a leader."""
    cluster = Cluster(**PAPER)
    leader = cluster.elect(1)

    cluster.tick(20 * leader.config.election_timeout_ticks)

    assert leader.role is Role.LEADER
    assert {n.term for n in cluster.nodes.values()} == {leader.term}
    assert [n.leader_id for n in cluster.nodes.values()] == [1, 1, 1]
