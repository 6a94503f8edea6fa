"""The Ready contract (graft/raft/ready.py): where the stored log is cut,
what waits for durability, one Ready at a time, and advance() after the
log changed under an outstanding Ready."""

from __future__ import annotations

import pytest

from graft.raft import (
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    RequestVote,
    RequestVoteResponse,
    Role,
)
from tests.raft.harness import Cluster, Disk, drain, log_of_terms, make_node


def append(term: int, prev: int, prev_term: int, entries, commit: int = 0) -> AppendEntries:
    return AppendEntries(
        source=2,
        target=1,
        term=term,
        prev_log_index=prev,
        prev_log_term=prev_term,
        entries=tuple(entries),
        leader_commit=commit,
    )


def test_entries_start_at_the_cut_point_of_the_stored_log():
    """ready.py step 2: the stored log is cut at entries[0].index, so a
    truncated suffix disappears from storage too (§5.3)."""
    node = make_node(1, entries=log_of_terms([1, 1, 1, 1]), term=2)
    disk = Disk(node.snapshot_meta)
    disk.entries = log_of_terms([1, 1, 1, 1])
    new = Entry(index=3, term=2, data=b"new")

    node.step(append(2, 2, 1, [new]))
    ready = drain(node)
    disk.persist(ready)

    assert ready.entries[0].index == 3
    assert disk.entries == [*log_of_terms([1, 1]), new]


def test_append_acknowledgement_waits_for_persistence():
    """Thesis §3.8: a follower acknowledges entries only once they are
    durable, so the ack is in messages_after_persist."""
    node = make_node(1, term=1)

    node.step(append(1, 0, 0, log_of_terms([1])))
    ready = drain(node)

    assert ready.entries == tuple(log_of_terms([1]))
    assert not [m for m in ready.messages if isinstance(m, AppendEntriesResponse)]
    (ack,) = ready.messages_after_persist
    assert isinstance(ack, AppendEntriesResponse) and ack.success and ack.match_index == 1


def test_vote_grant_waits_for_persistence_and_refusal_does_not():
    """Thesis §3.8: a grant promises a durable vote; a refusal in a term
    already durable promises nothing and may go at once."""
    granted = make_node(1)
    granted.step(RequestVote(source=2, target=1, term=1, last_log_index=0, last_log_term=0))
    refused = make_node(1, entries=log_of_terms([1]), term=2)
    refused.step(RequestVote(source=2, target=1, term=2, last_log_index=0, last_log_term=0))

    yes, no = drain(granted), drain(refused)

    assert [type(m) for m in yes.messages_after_persist] == [RequestVoteResponse]
    assert not yes.messages
    assert [m.vote_granted for m in no.messages] == [False]
    assert not no.messages_after_persist


def test_nothing_speaks_for_a_term_before_it_is_durable():
    """Figure 2: a one-voter node elects itself within one batch; its
    appends must wait until its new term and vote are durable, or a crash
    could let it reuse the term for different entries."""
    node = make_node(1, voters=(1,), learners=(2,))
    for _ in range(2 * node.config.election_timeout_ticks):
        node.tick()
    node.propose(b"x")

    ready = drain(node)

    assert node.role is Role.LEADER
    assert ready.hard_state is not None and ready.hard_state.term == 1
    assert not ready.messages
    assert any(isinstance(m, AppendEntries) for m in ready.messages_after_persist)


def test_leader_sends_appends_before_its_own_write_is_durable():
    """Thesis §10.2.1: the leader may replicate in parallel with writing
    its own log, so its AppendEntries are in messages."""
    cluster = Cluster()
    leader = cluster.elect(1)

    leader.propose(b"a")
    ready = drain(leader)

    assert ready.entries and ready.entries[-1].data == b"a"
    assert sorted(m.target for m in ready.messages if isinstance(m, AppendEntries)) == [2, 3]


def test_leader_does_not_commit_beyond_its_own_durable_log():
    """Thesis §10.2.1: acks from a majority of followers commit an entry,
    but it is applied only once the leader's own copy is durable."""
    cluster = Cluster(voters=(1, 2, 3))
    leader = cluster.elect(1)
    index = leader.propose(b"a")
    ready = leader.ready()
    for m in ready.messages:
        cluster.nodes[m.target].step(m)
    for node_id in (2, 3):
        follower_ready = drain(cluster.nodes[node_id])
        for m in follower_ready.messages_after_persist:
            leader.step(m)
    leader.advance(ready)

    later = drain(leader)

    assert [e.index for e in ready.committed_entries] == []
    assert [e.index for e in later.committed_entries] == [index]


def test_ready_before_advance_raises():
    """ready.py step 7: one Ready at a time; asking again before advance()
    is a driver bug and fails at once."""
    node = make_node(1, term=1)
    node.step(append(1, 0, 0, log_of_terms([1])))
    ready = node.ready()

    assert not node.has_ready()
    with pytest.raises(AssertionError):
        node.ready()
    node.advance(ready)
    with pytest.raises(AssertionError):
        node.advance(ready)


def test_inputs_during_an_outstanding_ready_form_the_next_batch():
    """ready.py step 7: inputs arriving while a Ready is out wait for the
    next one (the group commit)."""
    node = make_node(1, term=1)
    node.step(append(1, 0, 0, log_of_terms([1])))
    first = node.ready()

    node.step(append(1, 1, 1, log_of_terms([1], start=2)))
    node.advance(first)
    second = drain(node)

    assert [e.index for e in first.entries] == [1]
    assert [e.index for e in second.entries] == [2]


def test_advance_after_a_truncation_during_the_ready_does_not_count_new_entries_durable():
    """ready.py step 5: entries cut while their Ready was in flight are not
    durable; their replacements are applied only after they are persisted."""
    node = make_node(1, term=1)
    node.step(append(1, 0, 0, log_of_terms([1, 1, 1, 1]), commit=2))
    first = node.ready()
    replacement = [Entry(index=3, term=2, data=b"x"), Entry(index=4, term=2, data=b"y")]

    node.step(append(2, 2, 1, replacement, commit=4))
    node.advance(first)
    second = node.ready()

    assert [e.index for e in second.entries] == [3, 4]
    assert all(e.index < 3 for e in second.committed_entries), second.committed_entries
    node.advance(second)
    third = drain(node)
    assert [(e.index, e.term) for e in third.committed_entries] == [(3, 2), (4, 2)]


def test_hard_state_appears_only_when_it_changed():
    """ready.py: hard_state is None when term, vote and commit are as last
    handed out, so the driver writes nothing."""
    node = make_node(1)
    node.step(RequestVote(source=2, target=1, term=1, last_log_index=0, last_log_term=0))
    first = drain(node)

    node.step(RequestVote(source=2, target=1, term=1, last_log_index=0, last_log_term=0))
    second = drain(node)

    assert first.hard_state is not None and first.hard_state.vote == 2
    assert second.hard_state is None


def test_ready_reports_role_term_and_leader():
    """ready.py: each Ready says who leads as of the batch."""
    cluster = Cluster()
    leader = cluster.elect(1)
    leader.propose(b"a")

    ready = drain(leader)

    assert (ready.role, ready.term, ready.leader_id) == (Role.LEADER, leader.term, 1)


def test_nothing_to_do_means_no_ready():
    """ready.py: a quiet node has no Ready to offer."""
    node = make_node(1)

    assert not node.has_ready()
    assert node.ready().is_empty()
