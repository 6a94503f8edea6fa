"""Snapshots and log compaction through the driver (§7): automatic and
requested snapshots, followers catching up by InstallSnapshot, restart from
snapshot plus log tail, damaged snapshots, and backup download."""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred, maybeDeferred

from graft.kv import KVStore, chunks_of
from graft.server import MemoryDurableLog
from graft.server.snapshots import SnapshotUnusable
from graft.storage import FileSnapshotStore, MemorySnapshotStore
from graft.storage.snapshot import open_snapshot_file
from tests.server.helpers import Cluster, Node, has_result


class HeldThreads:
    """A ``run_in_thread`` that keeps each job until the test runs it: a
    snapshot stays "in progress" for as long as the test likes."""

    def __init__(self) -> None:
        self.jobs: list[tuple[Any, tuple[Any, ...], Deferred[Any]]] = []
        self.holding = False

    def __call__(self, f: Any, *args: Any) -> Deferred[Any]:
        if not self.holding:
            return maybeDeferred(f, *args)
        d: Deferred[Any] = Deferred()
        self.jobs.append((f, args, d))
        return d

    def run_all(self) -> None:
        self.holding = False
        while self.jobs:
            f, args, d = self.jobs.pop(0)
            maybeDeferred(f, *args).chainDeferred(d)


class SnapshotCluster(Cluster):
    """A Cluster whose nodes may keep snapshots in files, keep a tail of
    ``retain`` entries, run snapshot work through ``threads``, and restart."""

    def __init__(
        self,
        size: int = 3,
        *,
        snapshot_threshold: int = 20,
        retain: int = 0,
        snapshot_dir: Path | None = None,
    ) -> None:
        self.retain = retain
        self.snapshot_dir = snapshot_dir
        self.threads = HeldThreads()
        self.threshold = snapshot_threshold
        super().__init__(size, snapshot_threshold=snapshot_threshold)

    def _make_node(self, i: int, seed: int, snapshot_threshold: int, api: dict[str, Any]) -> Node:
        snapshots: Any = (
            FileSnapshotStore(str(self.snapshot_dir / str(i)))
            if self.snapshot_dir is not None
            else MemorySnapshotStore()
        )
        return self.make_node(i, MemoryDurableLog(), snapshots, seed)

    def make_node(self, i: int, log: MemoryDurableLog, snapshots: Any, seed: int = 1) -> Node:
        return self.build_node(
            i,
            log,
            snapshots,
            seed,
            self.threshold,
            {},
            snapshot_retain_entries=self.retain,
            run_in_thread=self.threads,
        )

    def restart(self, i: int, start: bool = True) -> Node:
        """Stop node ``i`` and start it again over the same durable state."""
        old = self.nodes[i]
        old.driver.stop()
        node = self.make_node(i, MemoryDurableLog(old.log.storage), old.snapshots, seed=7)
        self.nodes[i] = node
        if start:
            node.driver.start()
        return node

    def write(self, node: Node, count: int, prefix: str = "k") -> None:
        for n in range(count):
            answer = self.request(node, "PUT", f"/v1/kv/{prefix}{n:04d}", data=b"%d" % n)
            assert answer.code == 200, answer.body


def state(kv: KVStore) -> list[tuple[str, bytes, int]]:
    return [(r.key, r.value, r.revision) for r in kv.list()]


def test_past_the_threshold_a_snapshot_is_taken_and_the_log_stays_bounded():
    """§7: every ``snapshot_threshold`` applied entries the node snapshots
    and drops its log but for ``retain`` entries, so the log stays short."""
    cluster = SnapshotCluster(size=1, snapshot_threshold=20, retain=5)
    cluster.start()
    node = cluster.elect()
    for round_ in range(5):
        cluster.write(node, 15, prefix=f"r{round_}-")
        assert node.driver.log_length <= 20 + 5
    driver = node.driver
    assert driver.snapshot_index >= 60
    assert driver.node.snapshot_meta.index == driver.snapshot_index
    # The tail before the snapshot is kept, the rest dropped.
    assert node.log.first_index == driver.snapshot_index - 5 + 1
    status = cluster.request(node, "GET", "/v1/status").json()
    assert status["snapshot_index"] == driver.snapshot_index
    assert status["log_length"] == node.log.last_index - node.log.first_index + 1
    assert status["log_length"] < 20 + 5


def test_follower_behind_the_compacted_log_catches_up_by_snapshot_then_log():
    """§7: a follower that missed entries the leader no longer holds gets
    the snapshot, then the entries after it, and ends with equal state."""
    cluster = SnapshotCluster(snapshot_threshold=20, retain=3)
    cluster.start()
    leader = cluster.elect()
    lagging = cluster.followers()[0]
    others = [n.node_id for n in cluster.nodes.values() if n is not lagging]
    cluster.network.isolate(lagging.node_id, others)
    cluster.write(leader, 50)
    assert leader.driver.snapshot_index >= 40
    assert leader.log.first_index > lagging.log.last_index + 1  # only a snapshot can help
    cluster.network.heal()
    cluster.run(3.0)
    cluster.write(leader, 3, prefix="after-")
    cluster.run(1.0)
    assert lagging.driver.snapshot_index >= 40  # installed from the leader
    assert state(lagging.kv) == state(leader.kv)
    assert lagging.kv.revision == leader.kv.revision == 53
    # The installed snapshot is stored and readable as the newest one.
    meta, data = lagging.snapshots.load(lagging.snapshots.names()[-1])
    assert meta.index == lagging.driver.snapshot_index
    assert KVStore.from_snapshot(chunks_of(data)).applied_index == meta.index


def test_restart_restores_the_snapshot_and_replays_only_the_log_after_it():
    """A restarted node reads its newest snapshot and replays just the
    entries after it, not the whole history."""
    cluster = SnapshotCluster(size=1, snapshot_threshold=30, retain=10)
    cluster.start()
    node = cluster.elect()
    cluster.write(node, 100)
    before = state(node.kv)
    snapshot_index = node.driver.snapshot_index
    applied = node.kv.applied_index
    assert snapshot_index > 60
    restarted = cluster.restart(node.node_id)
    assert restarted.driver.replayed_entries == applied - snapshot_index < 30
    cluster.elect()
    cluster.run(1.0)
    assert state(restarted.kv) == before


def _damage(path: Path, offset: int = 40) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_damaged_newest_snapshot_falls_back_to_the_previous_one_the_log_covers(tmp_path):
    """A damaged newest snapshot is skipped when the log still holds every
    entry after the previous one: the state comes back whole."""
    cluster = SnapshotCluster(size=1, snapshot_threshold=20, retain=100, snapshot_dir=tmp_path)
    cluster.start()
    node = cluster.elect()
    cluster.write(node, 50)
    before = state(node.kv)
    names = node.snapshots.names()
    assert len(names) == 2
    _damage(tmp_path / "1" / names[-1])
    restarted = cluster.restart(1, start=False)
    older = int(names[0].split("-")[1])
    assert restarted.driver.snapshot_index == older
    assert restarted.driver.replayed_entries == node.kv.applied_index - older
    restarted.driver.start()
    cluster.elect()
    cluster.run(1.0)
    assert state(restarted.kv) == before


def test_damaged_newest_snapshot_without_the_log_to_cover_it_is_a_clear_error(tmp_path):
    """With the log compacted past the previous snapshot, falling back would
    lose committed entries: refuse, naming the damaged file and the gap."""
    cluster = SnapshotCluster(size=1, snapshot_threshold=20, retain=0, snapshot_dir=tmp_path)
    cluster.start()
    node = cluster.elect()
    cluster.write(node, 50)
    names = node.snapshots.names()
    _damage(tmp_path / "1" / names[-1])
    node.driver.stop()
    with pytest.raises(SnapshotUnusable) as raised:
        cluster.make_node(1, MemoryDurableLog(node.log.storage), node.snapshots)
    message = str(raised.value)
    assert names[-1] in message and names[0] in message
    assert "checksum" in message and "--restore" in message


def test_post_snapshot_takes_one_now_and_answers_409_while_one_is_in_progress():
    cluster = SnapshotCluster(size=1, snapshot_threshold=10_000, retain=2)
    cluster.start()
    node = cluster.elect()
    cluster.write(node, 10)
    cluster.threads.holding = True
    pending = cluster.pending(node, "POST", "/v1/snapshot")
    cluster.run(0.2)
    assert not has_result(pending)
    assert node.driver.snapshot_in_progress
    second = cluster.request(node, "POST", "/v1/snapshot")
    assert second.code == 409
    assert "in progress" in second.json()["error"] or "already" in second.json()["error"]
    cluster.threads.run_all()
    cluster.wait(node, pending)
    answer = cluster.answer_of(node, pending)
    assert answer.code == 200
    body = answer.json()
    assert body["index"] == node.kv.applied_index == node.driver.snapshot_index
    assert body["term"] == node.driver.node.term_at(body["index"])
    assert body["size"] > 0
    assert node.log.first_index == body["index"] - 2 + 1  # compacted, 2 kept


def test_get_snapshot_downloads_a_fresh_consistent_backup_file(tmp_path):
    """GET /v1/snapshot snapshots first if entries were applied since the
    newest one, and sends the whole snapshot file with its index, term and
    CRC-32 in headers; the file reads back to the node's state."""
    cluster = SnapshotCluster(size=1, snapshot_threshold=10_000, snapshot_dir=tmp_path)
    cluster.start()
    node = cluster.elect()
    cluster.write(node, 25)
    answer = cluster.request(node, "GET", "/v1/snapshot")
    assert answer.code == 200
    assert answer.header("Content-Type") == "application/octet-stream"
    index = int(answer.header("X-Graft-Snapshot-Index") or 0)
    assert index == node.kv.applied_index == node.driver.snapshot_index
    assert int(answer.header("X-Graft-Snapshot-Term") or 0) == node.driver.node.term_at(index)
    assert int(answer.header("X-Graft-Snapshot-CRC32") or "", 16) == zlib.crc32(answer.body)
    backup = tmp_path / "backup.snap"
    backup.write_bytes(answer.body)
    snap = open_snapshot_file(str(backup))
    assert snap.meta.index == index
    assert state(KVStore.from_snapshot(chunks_of(snap))) == state(node.kv)
    # Nothing applied since: the same snapshot is served again, no new one.
    again = cluster.request(node, "GET", "/v1/snapshot")
    assert again.body == answer.body
    assert len(node.snapshots.names()) == 1


def test_get_snapshot_from_the_memory_store_is_a_valid_snapshot_file(tmp_path):
    cluster = SnapshotCluster(size=1, snapshot_threshold=10_000)
    cluster.start()
    node = cluster.elect()
    cluster.write(node, 5)
    answer = cluster.request(node, "GET", "/v1/snapshot")
    backup = tmp_path / "b.snap"
    backup.write_bytes(answer.body)
    snap = open_snapshot_file(str(backup))
    assert state(KVStore.from_snapshot(chunks_of(snap))) == state(node.kv)
    assert cluster.request(node, "DELETE", "/v1/snapshot").code == 405
