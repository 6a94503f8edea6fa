"""The driver's promises: a write is answered only once applied (durable
on a majority), a leader change fails waiting writes clearly, a storage
failure stops acknowledgements (STYLE.md §3, ready.py's contract)."""

from __future__ import annotations

from twisted.internet.defer import TimeoutError

from graft.raft import Role
from tests.server.helpers import Cluster, has_result


def test_write_is_not_answered_until_the_log_append_is_durable():
    """ready.py step 2: nothing is acknowledged before the fsync returns."""
    cluster = Cluster()
    cluster.start()
    leader = cluster.elect()
    for node in cluster.nodes.values():
        node.log.hold()
    d = cluster.pending(leader, "PUT", "/v1/kv/k", data=b"1")
    cluster.run(2.0)
    leader.stub.flush()
    assert not has_result(d)
    assert leader.kv.get("k") is None
    for node in cluster.nodes.values():
        node.log.release()
    cluster.wait(leader, d)
    answer = cluster.answer_of(leader, d)
    assert answer.code == 200
    assert answer.json() == {"key": "k", "revision": 1}


def test_write_waits_for_the_leaders_own_durable_append():
    """The leader applies only entries it holds durably (ready.py step 5)."""
    cluster = Cluster()
    cluster.start()
    leader = cluster.elect()
    leader.log.hold()
    d = cluster.pending(leader, "PUT", "/v1/kv/k", data=b"1")
    cluster.run(0.2)
    leader.stub.flush()
    assert not has_result(d)
    leader.log.release()
    cluster.wait(leader, d)
    assert cluster.answer_of(leader, d).code == 200


def test_leader_change_fails_a_pending_write_with_a_clear_503():
    """§5.3: a write whose entry another leader overwrote did not happen;
    the client hears so instead of waiting forever."""
    cluster = Cluster()
    cluster.start()
    old = cluster.elect()
    others = [n.node_id for n in cluster.nodes.values() if n is not old]
    d = cluster.pending(old, "PUT", "/v1/kv/k", data=b"1")
    cluster.network.isolate(old.node_id, others)
    cluster.run(3.0)
    new = cluster.leader() if cluster.leader() is not old else None
    leaders = [n for n in cluster.nodes.values() if n.driver.node.role is Role.LEADER]
    assert any(n is not old for n in leaders)
    assert not has_result(d)
    cluster.network.heal()
    cluster.wait(old, d)
    answer = cluster.answer_of(old, d)
    assert answer.code == 503
    assert "leadership changed" in answer.json()["error"]
    assert answer.header("Retry-After")
    del new
    for node in cluster.nodes.values():
        assert node.kv.get("k") is None


def test_write_times_out_with_503_when_no_majority_answers():
    cluster = Cluster(request_timeout_seconds=1.0)
    cluster.start()
    leader = cluster.elect()
    others = [n.node_id for n in cluster.nodes.values() if n is not leader]
    cluster.network.isolate(leader.node_id, others)
    answer = cluster.request(leader, "PUT", "/v1/kv/k", data=b"1", max_seconds=3.0)
    assert answer.code in (503, 307)
    if answer.code == 503:
        assert answer.header("Retry-After")


def test_write_and_read_past_their_deadline_fail_with_a_timeout():
    """Cut off from its followers but still leading (check-quorum has not
    deposed it yet), the leader fails the waiting write and read once
    their time is up, and answers 503 saying the outcome is unknown."""
    cluster = Cluster(request_timeout_seconds=0.2)
    cluster.start()
    leader = cluster.elect()
    others = [n.node_id for n in cluster.nodes.values() if n is not leader]
    cluster.network.isolate(leader.node_id, others)
    forever = leader.driver.propose(b"y")  # no deadline, ahead of the others
    write = leader.driver.propose(b"x", timeout_seconds=0.2)
    read = leader.driver.read_barrier(timeout_seconds=0.2)
    answer = cluster.pending(leader, "PUT", "/v1/kv/k", data=b"1")
    errors: list[Exception] = []
    for d in (write, read, forever):
        d.addErrback(lambda f: errors.append(f.value))

    cluster.run(0.1)
    assert errors == []
    cluster.run(0.2)

    assert leader.driver.node.role is Role.LEADER
    assert [type(e) for e in errors] == [TimeoutError, TimeoutError]
    assert not forever.called
    reply = cluster.answer_of(leader, answer)
    assert reply.code == 503
    assert "timed out after 0.2s" in reply.json()["error"]
    assert reply.header("Retry-After") == "1"


def test_requests_answered_in_time_leave_no_deadline_behind():
    cluster = Cluster(request_timeout_seconds=0.2)
    cluster.start()
    leader = cluster.elect()
    write = leader.driver.propose(b"x", timeout_seconds=0.2)
    read = leader.driver.read_barrier(timeout_seconds=0.2)
    cluster.run(0.1)
    assert has_result(write) and has_result(read)

    cluster.run(0.5)  # past the deadlines: the sweep must not touch them

    assert leader.driver._writes == {} and leader.driver._read_deadlines == {}
    assert leader.driver._ticker.running
    assert cluster.request(leader, "PUT", "/v1/kv/k", data=b"1").code == 200


def test_storage_failure_stops_acknowledging_and_shows_in_status():
    """A failed fsync cannot be retried: the node answers 503 with the
    reason and /v1/status says so."""
    cluster = Cluster()
    cluster.start()
    leader = cluster.elect()
    leader.log.hold()
    d = cluster.pending(leader, "PUT", "/v1/kv/k", data=b"1")
    cluster.run(0.1)
    leader.log.fail("fsync failed: EIO")
    cluster.wait(leader, d)
    answer = cluster.answer_of(leader, d)
    assert answer.code == 503
    assert "EIO" in answer.json()["error"]
    again = cluster.request(leader, "PUT", "/v1/kv/k", data=b"2")
    assert again.code == 503
    assert "EIO" in again.json()["error"]
    status = cluster.request(leader, "GET", "/v1/status").json()
    assert "EIO" in status["failed"]
    assert cluster.request(leader, "GET", "/healthz").code == 503
    assert cluster.request(leader, "GET", "/readyz").code == 503


def test_followers_apply_committed_writes():
    """§5.3: every node applies the same entries in the same order."""
    cluster = Cluster()
    cluster.start()
    leader = cluster.elect()
    for i in range(5):
        assert cluster.request(leader, "PUT", f"/v1/kv/k{i}", data=b"%d" % i).code == 200
    cluster.run(1.0)
    for node in cluster.nodes.values():
        assert [r.key for r in node.kv.list()] == [f"k{i}" for i in range(5)]
        assert node.kv.revision == 5


def test_log_is_compacted_past_the_snapshot_threshold_and_a_lagging_follower_catches_up():
    """§7: past the threshold the leader snapshots and drops its log; a
    follower that missed those entries receives the snapshot."""
    cluster = Cluster(snapshot_threshold=5)
    cluster.start()
    leader = cluster.elect()
    lagging = cluster.followers()[0]
    cluster.network.isolate(
        lagging.node_id, [n.node_id for n in cluster.nodes.values() if n is not lagging]
    )
    for i in range(12):
        assert cluster.request(leader, "PUT", f"/v1/kv/k{i}", data=b"%d" % i).code == 200
    assert leader.driver.node.snapshot_meta.index > 0
    assert leader.snapshots.latest() is not None
    cluster.network.heal()
    cluster.run(3.0)
    assert lagging.kv.revision == 12
    assert lagging.kv.get("k11").value == b"11"


def test_linearizable_read_on_the_leader_sees_the_acknowledged_write():
    cluster = Cluster()
    cluster.start()
    leader = cluster.elect()
    assert cluster.request(leader, "PUT", "/v1/kv/k", data=b'"a"').code == 200
    got = cluster.request(leader, "GET", "/v1/kv/k")
    assert got.code == 200
    assert got.json() == "a"


def test_writes_arriving_during_a_slow_fsync_share_the_next_append():
    """Group commit (STYLE.md §3): one Ready in flight; inputs arriving
    meanwhile form the next batch, persisted by one append."""
    cluster = Cluster()
    cluster.start()
    leader = cluster.elect()
    batches: list[int] = []
    append = leader.log.append

    def spy(entries, hard_state=None):
        batches.append(len(entries))
        return append(entries, hard_state)

    leader.log.append = spy  # type: ignore[method-assign]
    leader.log.hold()
    pending = [cluster.pending(leader, "PUT", f"/v1/kv/k{i}", data=b"1") for i in range(4)]
    leader.stub.flush()
    assert batches == [1]  # the first write's Ready waits for its fsync
    leader.log.release()
    for d in pending:
        cluster.wait(leader, d)
        assert cluster.answer_of(leader, d).code == 200
    assert batches[1] == 3  # the other three went in one append


def test_exports_are_the_intended_objects():
    import graft.server
    from graft.server.driver import RaftDriver
    from graft.server.service import make_node_service

    assert graft.server.RaftDriver is RaftDriver
    assert graft.server.make_node_service is make_node_service
    for name in graft.server.__all__:
        assert getattr(graft.server, name) is not None


def test_restart_after_a_crash_mid_install_drops_a_log_that_disagrees_with_the_snapshot():
    """§7: if a node crashed after storing a snapshot from the leader but
    before cutting its log, the stored entries past the snapshot are of an
    older leader's term; restarting must drop them, not keep them after it."""
    import random

    from twisted.internet.task import Clock

    from graft.kv import KVStore
    from graft.raft import Configuration, Entry, Member, RaftConfig, SnapshotMeta
    from graft.server.driver import RaftDriver
    from graft.server.memory import MemoryDurableLog
    from graft.storage import MemoryLogStorage, MemorySnapshotStore
    from graft.transport import MemoryNetwork, MemoryTransport

    configuration = Configuration(members=tuple(Member(id=i, address=f"n{i}") for i in (1, 2, 3)))
    stored = MemoryLogStorage()
    stored.append([Entry(index=i, term=2, data=b"") for i in range(1, 9)])
    snapshots = MemorySnapshotStore()
    snapshots.create(
        SnapshotMeta(index=5, term=3, configuration=configuration),
        b"".join(KVStore().snapshot().chunks()),
    )
    clock = Clock()
    network = MemoryNetwork(clock=clock)

    driver = RaftDriver(
        config=RaftConfig(node_id=1),
        clock=clock,
        log_storage=MemoryDurableLog(stored),
        snapshots=snapshots,
        transport=lambda receive: MemoryTransport(
            network=network, node_id=1, cluster_id="c", receive=receive, address="n1"
        ),
        state_machine=KVStore(),
        rng=random.Random(1),
        initial_configuration=configuration,
    )

    assert driver.node.snapshot_meta.index == 5
    assert driver.node.last_index == 5, "the term-2 tail after the term-3 snapshot is gone"
    assert driver.replayed_entries == 0


def test_a_pending_write_whose_index_is_reused_fails_at_once():
    """§5.3: if this node loses and regains leadership before its old entry
    at an index settles, a new proposal takes that index; the old client
    hears at once that its write did not happen instead of timing out."""
    from graft.server.errors import LeadershipChanged

    cluster = Cluster()
    cluster.start()
    leader = cluster.elect()
    driver = leader.driver
    driver.node.propose = lambda data: 99  # type: ignore[method-assign]

    first = driver.propose(b"x")
    failures: list[object] = []
    first.addErrback(lambda f: failures.append(f.value))
    driver.propose(b"y")

    assert len(failures) == 1 and isinstance(failures[0], LeadershipChanged)


def test_stopping_drops_a_snapshot_half_received_from_the_leader():
    """A restart asks for a half-received snapshot again from offset 0, so
    stopping closes and discards its writer instead of leaking it."""
    from twisted.internet.defer import Deferred

    from graft.raft import SnapshotChunk, SnapshotMeta

    cluster = Cluster()
    cluster.start()
    node = cluster.nodes[1]
    meta = SnapshotMeta(index=50, term=9, configuration=cluster.configuration)
    chunk = SnapshotChunk(meta=meta, offset=0, data=b"abc")
    done = Deferred.fromCoroutine(node.driver._write_snapshot_chunks([chunk]))
    cluster.run(0.1)
    assert has_result(done)
    writer = node.driver._receiving_snapshot
    assert writer is not None and writer.next_offset == 3

    node.driver.stop()
    cluster.run(1.0)

    assert node.driver._receiving_snapshot is None
    assert not writer._open
    assert node.snapshots.list_metas() == []
