"""Log replication beyond the paper's minimum: bounded batches, fast
backtracking (§5.3, end), flow control per follower (etcd
tracker/progress.go) and recovery from lost messages and downtime."""

from __future__ import annotations

import pytest

from graft.raft import (
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    EntryKind,
    NotLeader,
    Role,
)
from tests.raft.harness import Cluster, drain, log_of_terms, make_node, set_log


def test_append_entries_carry_at_most_append_entries_max_entries():
    """§5.3: a follower far behind is caught up in several AppendEntries,
    none larger than append_entries_max entries."""
    cluster = Cluster(append_entries_max=3)
    leader = cluster.elect(1)

    for i in range(10):
        leader.propose(f"c{i}".encode())
    cluster.deliver()

    appends = cluster.messages(AppendEntries, source=1)
    assert max(len(m.entries) for m in appends) == 3
    for i in (1, 2, 3):
        assert len(cluster.commands(i)) == 10


def test_append_entries_payload_is_bounded_by_append_bytes_max():
    """§5.3: past its first entry, an AppendEntries carries no more than
    append_bytes_max bytes of data; one oversized entry still goes alone."""
    cluster = Cluster(append_bytes_max=10)
    leader = cluster.elect(1)

    for _ in range(6):
        leader.propose(b"4444")
    leader.propose(b"x" * 25)
    cluster.deliver()

    appends = [m for m in cluster.messages(AppendEntries, source=1) if m.entries]
    for m in appends:
        size = sum(len(e.data) for e in m.entries)
        assert size <= 10 or len(m.entries) == 1, m
    assert any(m.entries[-1].data == b"x" * 25 for m in appends)
    assert cluster.commands(2)[-1] == b"x" * 25


def test_fast_backtracking_skips_a_whole_conflicting_term():
    """§5.3 (end): with the follower's conflict term and index the leader
    backs up a whole term per round trip, not one entry at a time."""
    cluster = Cluster()
    leader_log = log_of_terms([1] * 5 + [3] * 50)
    set_log(cluster, 1, leader_log, term=3)
    set_log(cluster, 2, log_of_terms([1] * 5 + [2] * 50), term=3)
    set_log(cluster, 3, leader_log, term=3)

    cluster.elect(1)
    cluster.deliver()

    rejections = [m for m in cluster.messages(AppendEntriesResponse, source=2) if not m.success]
    assert 1 <= len(rejections) <= 3, rejections
    assert cluster.log(2) == cluster.log(1)


def test_fast_backtracking_jumps_to_the_end_of_a_short_log():
    """§5.3 (end): a follower whose log is too short names its next index,
    and the leader resumes from there in one round trip."""
    cluster = Cluster()
    leader_log = log_of_terms([1] * 60)
    set_log(cluster, 1, leader_log, term=1)
    set_log(cluster, 2, leader_log[:5], term=1)
    set_log(cluster, 3, leader_log, term=1)

    cluster.elect(1)
    cluster.deliver()

    rejections = [m for m in cluster.messages(AppendEntriesResponse, source=2) if not m.success]
    assert len(rejections) == 1
    assert rejections[0].conflict_index == 6
    assert cluster.log(2) == cluster.log(1)


def test_follower_in_probe_receives_one_append_until_it_answers():
    """etcd progress.go: a follower whose match is unknown is probed with one
    AppendEntries at a time, not flooded while it is silent."""
    cluster = Cluster()
    cluster.stop(3)
    leader = cluster.elect(1)
    before = len(cluster.messages(AppendEntries, target=3))
    assert before == 1, "the new leader probes once"

    for i in range(5):
        leader.propose(f"c{i}".encode())
        cluster.deliver()

    assert len(cluster.messages(AppendEntries, target=3)) == 1


def test_heartbeat_reply_unblocks_a_waiting_probe():
    """etcd progress.go: a heartbeat reply shows the follower is back, so the
    leader may probe it again."""
    cluster = Cluster()
    cluster.stop(3)
    leader = cluster.elect(1)
    leader.propose(b"a")
    cluster.deliver()
    cluster.restart(3)

    cluster.tick(leader.config.heartbeat_interval_ticks)

    assert len(cluster.messages(AppendEntries, target=3)) >= 2
    assert cluster.commands(3) == [b"a"]


def test_follower_in_replicate_has_at_most_inflight_messages_max_appends_outstanding():
    """etcd progress.go: optimistic replication to a follower with a known
    match stops once inflight_messages_max AppendEntries are unanswered."""
    cluster = Cluster(inflight_messages_max=2)
    leader = cluster.elect(1)
    mark = len(cluster.sent)
    cluster.drop = lambda m: m.target == 3

    for i in range(6):
        leader.propose(f"c{i}".encode())
        cluster.deliver()

    def carrying(target: int) -> int:
        return sum(
            1 for m in cluster.sent[mark:] if isinstance(m, AppendEntries) and m.target == target
            and m.entries
        )  # fmt: skip

    assert leader.progress(3).state.value == "replicate"
    assert carrying(3) == 2
    assert carrying(2) == 6


def test_lost_append_is_recovered_after_a_heartbeat_reply():
    """§5.3: the leader retries AppendEntries indefinitely; a lost one is
    noticed from the next heartbeat reply, not only the next proposal."""
    cluster = Cluster()
    leader = cluster.elect(1)
    lost: list[object] = []

    def drop_once(m: object) -> bool:
        if isinstance(m, AppendEntries) and m.target == 3 and m.entries and not lost:
            lost.append(m)
            return True
        return False

    cluster.drop = drop_once
    leader.propose(b"a")
    cluster.deliver()
    assert lost and cluster.commands(3) == []

    cluster.tick(2 * leader.config.heartbeat_interval_ticks)

    assert cluster.commands(3) == [b"a"]


def test_follower_that_was_down_catches_up():
    """§5.3: a follower that crashed is brought back up to date with every
    entry it missed, in order."""
    cluster = Cluster()
    leader = cluster.elect(1)
    cluster.stop(3)
    for i in range(20):
        leader.propose(f"c{i}".encode())
        cluster.deliver()
    assert leader.commit_index == 21

    cluster.restart(3)
    cluster.tick(2 * leader.config.heartbeat_interval_ticks)

    assert cluster.commands(3) == [f"c{i}".encode() for i in range(20)]
    assert cluster.log(3) == cluster.log(1)


def test_entries_commit_with_one_of_three_servers_down():
    """§5.3: an entry is committed once a majority has it; the slowest
    server does not hold the cluster back."""
    cluster = Cluster()
    leader = cluster.elect(1)
    cluster.stop(3)

    index = leader.propose(b"a")
    cluster.deliver()

    assert leader.commit_index == index
    assert cluster.commands(2) == [b"a"]


def test_entries_do_not_commit_without_a_majority():
    """§5.3: with only a minority holding an entry it stays uncommitted."""
    cluster = Cluster()
    leader = cluster.elect(1)
    cluster.stop(2)
    cluster.stop(3)

    index = leader.propose(b"a")
    cluster.deliver()

    assert leader.commit_index < index
    assert cluster.commands(1) == []


def test_proposals_in_one_batch_travel_in_one_append_per_follower():
    """Thesis §10.2.1: commands proposed before the next Ready share one
    AppendEntries per follower."""
    cluster = Cluster()
    leader = cluster.elect(1)
    before = len(cluster.messages(AppendEntries, target=2))

    for i in range(5):
        leader.propose(f"c{i}".encode())
    ready = drain(leader)

    appends = [m for m in ready.messages if isinstance(m, AppendEntries)]
    assert sorted(m.target for m in appends) == [2, 3]
    assert all(len(m.entries) == 5 for m in appends)
    assert before == len(cluster.messages(AppendEntries, target=2))


def test_follower_refuses_proposals_with_the_leaders_id():
    """§5.1: clients reaching a follower are redirected to the leader."""
    cluster = Cluster()
    cluster.elect(1)
    follower = cluster.nodes[2]

    with pytest.raises(NotLeader) as raised:
        follower.propose(b"a")

    assert raised.value.leader_id == 1
    assert follower.last_index == cluster.nodes[1].last_index


def test_duplicated_and_reordered_messages_leave_logs_identical():
    """§5.3 and §5.5: RPCs are idempotent; duplicated or reordered
    AppendEntries and replies change nothing once the cluster settles."""
    cluster = Cluster(append_entries_max=2, inflight_messages_max=4)
    leader = cluster.elect(1)

    for round_ in range(8):
        for i in range(3):
            leader.propose(f"c{round_}.{i}".encode())
        for node_id in sorted(cluster.nodes):
            cluster.process(node_id)
        batch, cluster.in_flight = cluster.in_flight, []
        for m in reversed(batch + batch):
            cluster.nodes[m.target].step(m)
    cluster.tick(4 * leader.config.heartbeat_interval_ticks)

    expected = [f"c{r}.{i}".encode() for r in range(8) for i in range(3)]
    for node_id in (1, 2, 3):
        assert cluster.commands(node_id) == expected
        assert cluster.log(node_id) == cluster.log(1)
    assert leader.role is Role.LEADER


@pytest.mark.parametrize(
    "entries, why",
    [
        ((Entry(index=3, term=1),), "not right after prev_log_index"),
        ((Entry(index=1, term=2), Entry(index=2, term=1)), "terms going down"),
        ((Entry(index=1, term=5),), "a term above the message's"),
        ((Entry(index=1, term=1, kind=EntryKind.CONFIG, data=b"x,y"),), "a bad configuration"),
    ],
)
def test_malformed_append_entries_is_dropped_not_raised(entries, why):
    """STYLE §2: a message no correct leader sends is dropped and reported
    as a fact; the follower's log is unchanged ({why})."""
    node = make_node(2)
    message = AppendEntries(
        source=1,
        target=2,
        term=2,
        prev_log_index=0,
        prev_log_term=0,
        entries=entries,
        leader_commit=0,
    )

    node.step(message)
    ready = drain(node)

    assert node.last_index == 0
    assert any(f.name == "dropped" for f in ready.facts), why
