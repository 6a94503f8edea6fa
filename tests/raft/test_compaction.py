"""Log compaction and InstallSnapshot (§7 of the paper, thesis §5)."""

from __future__ import annotations

import random

from graft.raft import (
    Entry,
    HardState,
    InstallSnapshot,
    PersistentState,
    RaftConfig,
    RaftNode,
    Snapshot,
    SnapshotMeta,
)
from tests.raft.harness import Cluster, configuration, drain, log_of_terms, make_node

DATA = bytes(range(50))


def test_compaction_keeps_index_term_and_configuration():
    """§7: a snapshot replaces the log up to an index but keeps that index,
    its term and the configuration in force there."""
    cluster = Cluster()
    leader = cluster.elect(1)
    for i in range(5):
        leader.propose(f"c{i}".encode())
    cluster.deliver()
    kept = cluster.log(1)[3:]

    cluster.compact(1, 3, b"state")

    meta = leader.snapshot_meta
    assert (meta.index, meta.term) == (3, leader.term)
    assert meta.configuration == configuration((1, 2, 3))
    assert leader.term_at(3) == leader.term
    assert leader.term_at(2) is None
    assert leader.first_index == 4
    assert cluster.log(1) == kept


def test_follower_behind_the_snapshot_receives_it_in_chunks():
    """§7: a follower whose next entry was compacted away gets the snapshot
    in chunks at increasing offsets, installs exactly those bytes, then
    continues from the log."""
    cluster = Cluster(snapshot_chunk_bytes=16)
    leader = cluster.elect(1)
    cluster.stop(3)
    for i in range(10):
        leader.propose(f"c{i}".encode())
    cluster.deliver()
    cluster.compact(1, leader.applied_index, DATA)
    snapshot_index = leader.snapshot_meta.index

    follower = cluster.restart(3)
    cluster.tick(leader.config.heartbeat_interval_ticks)

    chunks = cluster.messages(InstallSnapshot, target=3)
    assert [c.offset for c in chunks] == [0, 16, 32, 48]
    assert [c.done for c in chunks] == [False, False, False, True]
    assert b"".join(c.data for c in chunks) == DATA
    assert cluster.snapshots_installed[3] == [Snapshot(meta=leader.snapshot_meta, data=DATA)]
    assert follower.snapshot_meta.index == snapshot_index
    assert follower.configuration == leader.configuration

    leader.propose(b"after")
    cluster.deliver()

    assert cluster.commands(3) == [b"after"]
    assert follower.last_index == leader.last_index


def test_compaction_can_keep_a_tail_of_entries_the_snapshot_covers():
    """§7, as etcd does: a leader that keeps a tail behind its snapshot
    still answers term queries there and sends it to a follower only
    slightly behind, instead of the snapshot."""
    cluster = Cluster()
    leader = cluster.elect(1)
    for i in range(3):
        leader.propose(f"early{i}".encode())
    cluster.deliver()
    cluster.tick(leader.config.heartbeat_interval_ticks)
    cluster.stop(3)
    for i in range(5):
        leader.propose(f"c{i}".encode())
    cluster.deliver()
    applied = leader.applied_index

    cluster.compact(1, applied, DATA, retain=6)

    assert leader.snapshot_meta.index == applied
    assert leader.first_index == applied - 6 + 1
    assert leader.term_at(applied - 6) == leader.term
    follower = cluster.restart(3)
    assert follower.last_index < applied
    cluster.tick(leader.config.heartbeat_interval_ticks)
    assert cluster.messages(InstallSnapshot, target=3) == []
    assert follower.last_index == leader.last_index
    assert cluster.commands(3)[-5:] == [f"c{i}".encode() for i in range(5)]


def test_compaction_beyond_the_tail_sends_the_snapshot():
    """§7: a follower behind even the retained tail gets the snapshot."""
    cluster = Cluster()
    leader = cluster.elect(1)
    cluster.stop(3)
    for i in range(10):
        leader.propose(f"c{i}".encode())
    cluster.deliver()

    cluster.compact(1, leader.applied_index, DATA, retain=2)
    cluster.restart(3)
    cluster.tick(leader.config.heartbeat_interval_ticks)

    assert cluster.snapshots_installed[3][-1].meta == leader.snapshot_meta


def test_lost_snapshot_chunk_is_resent_after_a_heartbeat_reply():
    """§7: chunks are acknowledged one by one; a lost one stalls the
    transfer only until the next heartbeat reply resends it."""
    cluster = Cluster(snapshot_chunk_bytes=16)
    leader = cluster.elect(1)
    cluster.stop(3)
    for i in range(10):
        leader.propose(f"c{i}".encode())
    cluster.deliver()
    cluster.compact(1, leader.applied_index, DATA)
    lost: list[InstallSnapshot] = []

    def drop_once(m: object) -> bool:
        if isinstance(m, InstallSnapshot) and m.offset == 16 and not lost:
            lost.append(m)
            return True
        return False

    cluster.drop = drop_once
    cluster.restart(3)
    cluster.tick(leader.config.heartbeat_interval_ticks)
    assert lost and cluster.snapshots_installed[3] == []

    cluster.tick(leader.config.heartbeat_interval_ticks)

    offsets = [c.offset for c in cluster.messages(InstallSnapshot, target=3)]
    assert offsets == [0, 16, 16, 32, 48]
    assert [s.data for s in cluster.snapshots_installed[3]] == [DATA]


def test_snapshot_that_the_follower_already_covers_is_not_installed():
    """§7: a follower that already holds the snapshot's last entry keeps its
    log and needs no snapshot."""
    log = log_of_terms([1, 1, 1])
    state = PersistentState(
        hard_state=HardState(term=1),
        snapshot=SnapshotMeta(configuration=configuration((1, 2, 3))),
        entries=tuple(log),
    )
    node = RaftNode(RaftConfig(node_id=2), state, random.Random(0))
    meta = SnapshotMeta(index=2, term=1, configuration=configuration((1, 2, 3)))

    node.step(
        InstallSnapshot(source=1, target=2, term=1, meta=meta, offset=0, data=b"x", done=True)
    )
    ready = drain(node)

    assert ready.snapshot is None
    assert node.entries(1, 4) == tuple(log)
    (answer,) = ready.messages_after_persist
    assert answer.done and answer.match_index == 2


def test_restart_from_a_snapshot_reapplies_only_later_entries():
    """§7: after a restart the state machine is restored from the snapshot,
    so only entries after it are applied again."""
    meta = SnapshotMeta(index=5, term=1, configuration=configuration((1, 2, 3)))
    later = [Entry(index=6 + i, term=1, data=f"c{i}".encode()) for i in range(3)]
    state = PersistentState(
        hard_state=HardState(term=1, commit=8),
        snapshot=meta,
        snapshot_data=b"state",
        entries=tuple(later),
    )

    node = RaftNode(RaftConfig(node_id=1), state, random.Random(0))
    ready = drain(node)

    assert node.applied_index == 8
    assert ready.committed_entries == tuple(later)
    assert ready.snapshot is None


def test_restarted_cluster_node_applies_only_entries_after_its_snapshot():
    """§7: a node that compacted, then crashed, replays only the log tail."""
    cluster = Cluster()
    leader = cluster.elect(1)
    for i in range(6):
        leader.propose(f"c{i}".encode())
    cluster.deliver()
    cluster.compact(2, 4, b"state")

    cluster.crash(2)
    cluster.tick(leader.config.heartbeat_interval_ticks)

    assert [e.index for e in cluster.applied[2]] == [5, 6, 7]
    assert cluster.nodes[2].snapshot_meta.index == 4


def test_snapshot_chunks_stream_out_and_are_acknowledged_once_written():
    """§7 with bounded memory: each chunk leaves the core in the Ready that
    received it, to be written by the driver, and is acknowledged only
    after that Ready is done; the core never gathers the bytes."""
    meta = SnapshotMeta(index=5, term=1, configuration=configuration((1, 2, 3)))
    node = make_node(2)

    def chunk(offset: int, data: bytes, done: bool) -> InstallSnapshot:
        return InstallSnapshot(
            source=1, target=2, term=1, meta=meta, offset=offset, data=data, done=done
        )

    node.step(chunk(0, b"abc", False))
    first = drain(node)
    node.step(chunk(3, b"def", True))
    last = drain(node)

    assert [(c.offset, c.data) for c in first.snapshot_chunks] == [(0, b"abc")]
    assert first.snapshot is None
    assert [m.next_offset for m in first.messages_after_persist] == [3]
    assert [(c.offset, c.data) for c in last.snapshot_chunks] == [(3, b"def")]
    assert last.snapshot == meta
    (done,) = last.messages_after_persist
    assert done.done and done.match_index == 5
    assert node.commit_index == 5 and node.last_index == 5


def test_a_chunk_out_of_order_is_not_written_and_names_the_offset_due():
    """§7: a chunk at the wrong offset (a lost or repeated one) is not
    handed out; the reply names the offset the follower expects."""
    meta = SnapshotMeta(index=5, term=1, configuration=configuration((1, 2, 3)))
    node = make_node(2)
    node.step(
        InstallSnapshot(source=1, target=2, term=1, meta=meta, offset=0, data=b"abc", done=False)
    )
    drain(node)

    node.step(
        InstallSnapshot(source=1, target=2, term=1, meta=meta, offset=6, data=b"ghi", done=True)
    )
    ready = drain(node)

    assert ready.snapshot_chunks == ()
    assert ready.snapshot is None
    assert [m.next_offset for m in ready.messages] == [3]
