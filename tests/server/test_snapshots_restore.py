"""Backup and restore: a downloaded snapshot file seeds a new node's data
directory (`graft node run --restore FILE`), refusing damaged files and
data directories in use."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from twisted.internet.task import Clock

from graft.cli import cli
from graft.kv import KVStore
from graft.raft import Configuration, Member, RaftConfig, Role
from graft.server import RaftDriver
from graft.server.snapshots import RestoreRefused, restore_backup
from graft.storage import GroupCommitLog, open_data_dir
from graft.transport import MemoryNetwork, MemoryTransport
from tests.server.test_snapshots import SnapshotCluster, state
from tests.storage.helpers import ImmediateReactor, ManualThreadPool

NEW_MEMBERS = Configuration(members=(Member(id=1, address="http://new1"),))


class InlinePool(ManualThreadPool):
    """Runs every job at once, in the calling thread."""

    def callInThreadWithCallback(self, on_result: Any, func: Any, *args: Any) -> None:
        super().callInThreadWithCallback(on_result, func, *args)
        self.run_all()


def backup_of(tmp_path: Path, writes: int = 30) -> tuple[Any, ...]:
    """A backup file downloaded from a node that took ``writes`` writes
    (some deleted, so revisions differ from key order), its state, index."""
    cluster = SnapshotCluster(size=1, snapshot_threshold=10_000)
    cluster.start()
    node = cluster.elect()
    cluster.write(node, writes)
    for n in range(0, writes, 7):
        assert cluster.request(node, "DELETE", f"/v1/kv/k{n:04d}").code == 204
    answer = cluster.request(node, "GET", "/v1/snapshot")
    assert answer.code == 200
    path = tmp_path / "backup.snap"
    path.write_bytes(answer.body)
    return path, state(node.kv), node.kv.applied_index, node.kv.revision


def _open(path: str) -> Any:
    return open_data_dir(path, "new-cluster", 1)


def start_node_on(data_dir_path: str) -> tuple[RaftDriver, KVStore, Clock]:
    """A single node over the data directory, on a Clock, elected."""
    data_dir = _open(data_dir_path)
    clock = Clock()
    network = MemoryNetwork(clock=clock)
    kv = KVStore()
    driver = RaftDriver(
        config=RaftConfig(node_id=1),
        clock=clock,
        log_storage=GroupCommitLog(ImmediateReactor(), data_dir.log, threadpool=InlinePool()),
        snapshots=data_dir.snapshots,
        transport=lambda receive: MemoryTransport(
            network=network, node_id=1, cluster_id="new", receive=receive, address="http://new1"
        ),
        state_machine=kv,
        rng=random.Random(1),
        initial_configuration=NEW_MEMBERS,
    )
    driver.start()
    for _ in range(200):
        clock.advance(0.05)
        if driver.node.role is Role.LEADER:
            break
    return driver, kv, clock


def test_restored_node_starts_with_the_backups_state_key_for_key(tmp_path):
    """The new cluster's state equals the backup's, revisions included, and
    it continues after the backup's index with its own membership."""
    backup, expected, index, revision = backup_of(tmp_path)
    target = tmp_path / "new" / "1"
    meta, keys = restore_backup(
        str(backup), str(target), open_data_dir=_open, configuration=NEW_MEMBERS
    )
    assert meta.index == index and keys == len(expected)
    assert meta.configuration == NEW_MEMBERS
    driver, kv, _ = start_node_on(str(target))
    assert driver.node.role is Role.LEADER
    assert driver.replayed_entries == 0
    assert state(kv) == expected
    assert kv.revision == revision
    assert driver.node.configuration == NEW_MEMBERS
    assert kv.applied_index > index  # the new leader's entry follows the backup's


def test_restore_refuses_a_damaged_backup_and_writes_nothing(tmp_path):
    backup, *_ = backup_of(tmp_path, writes=5)
    data = bytearray(backup.read_bytes())
    data[60] ^= 0x01
    backup.write_bytes(bytes(data))
    target = tmp_path / "new"
    with pytest.raises(RestoreRefused, match=r"damaged.*checksum"):
        restore_backup(str(backup), str(target), open_data_dir=_open, configuration=NEW_MEMBERS)
    assert not target.exists()


def test_restore_refuses_a_truncated_or_foreign_file(tmp_path):
    backup, *_ = backup_of(tmp_path, writes=5)
    backup.write_bytes(backup.read_bytes()[:-10])
    with pytest.raises(RestoreRefused, match="damaged"):
        restore_backup(
            str(backup), str(tmp_path / "a"), open_data_dir=_open, configuration=NEW_MEMBERS
        )
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    with pytest.raises(RestoreRefused, match="damaged"):
        restore_backup(
            str(other), str(tmp_path / "b"), open_data_dir=_open, configuration=NEW_MEMBERS
        )
    with pytest.raises(RestoreRefused, match="cannot read"):
        restore_backup(
            str(tmp_path / "missing"),
            str(tmp_path / "c"),
            open_data_dir=_open,
            configuration=NEW_MEMBERS,
        )


def test_restore_refuses_a_data_directory_that_is_not_empty(tmp_path):
    backup, *_ = backup_of(tmp_path, writes=5)
    target = tmp_path / "used"
    target.mkdir()
    (target / "identity").write_text("{}")
    with pytest.raises(RestoreRefused, match="not empty"):
        restore_backup(str(backup), str(target), open_data_dir=_open, configuration=NEW_MEMBERS)
    assert [p.name for p in target.iterdir()] == ["identity"]


def test_node_run_restore_refuses_a_damaged_file_with_one_line(tmp_path):
    backup, *_ = backup_of(tmp_path, writes=5)
    backup.write_bytes(backup.read_bytes()[:100] + b"x" + backup.read_bytes()[101:])
    target = tmp_path / "d"
    result = CliRunner().invoke(
        cli,
        [
            "node",
            "run",
            "--id",
            "1",
            "--port",
            "9",
            "--data-dir",
            str(target),
            "--restore",
            str(backup),
        ],
        prog_name="graft",
    )
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("graft: node 1: backup ") and "damaged" in lines[0]
    assert not target.exists()
