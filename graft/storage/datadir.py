"""A node's data directory: identity, log and snapshots together.

Layout::

    <path>/identity      cluster id and node id (JSON), written once
    <path>/log/          FileLogStorage: segments and hard_state
    <path>/snapshots/    FileSnapshotStore

:func:`open_data_dir` writes the identity on first use and afterwards
refuses a directory that belongs to another cluster or node (DESIGN.md
"Safety at the edges"), so a misconfigured node cannot mix two logs.

This module may import the standard library, attrs, graft.raft and
graft.storage.
"""

from __future__ import annotations

import json
import os

import attrs

from graft.raft.messages import HardState, NodeId
from graft.storage.errors import IdentityMismatch, StorageCorruption
from graft.storage.fileops import FileOps, read_file, write_atomically
from graft.storage.snapshot import RETAIN_DEFAULT, FileSnapshotStore
from graft.storage.wal import SEGMENT_BYTES_MAX_DEFAULT, FileLogStorage

IDENTITY_NAME = "identity"


@attrs.frozen(kw_only=True)
class DataDir:
    """An opened data directory. The log's hard state and entries plus the
    newest snapshot are what the node passes to the core on start."""

    path: str
    cluster_id: str
    node_id: NodeId
    log: FileLogStorage
    snapshots: FileSnapshotStore

    def close(self) -> None:
        self.log.close()


def check_identity(
    path: str, cluster_id: str, node_id: NodeId, ops: FileOps, *, may_restamp: bool = False
) -> None:
    """Write the identity file of directory ``path`` if missing, else raise
    IdentityMismatch unless it names ``cluster_id`` and ``node_id``. With
    ``may_restamp`` (the directory holds no Raft state at all), a directory
    of the same node but another cluster id is taken over instead."""
    identity_path = os.path.join(path, IDENTITY_NAME)
    data = read_file(identity_path)
    body = json.dumps({"cluster_id": cluster_id, "node_id": node_id}, sort_keys=True)
    if data is None:
        write_atomically(ops, identity_path, body.encode())
        return
    try:
        stored = json.loads(data)
        stored_cluster, stored_node = str(stored["cluster_id"]), int(stored["node_id"])
    except (ValueError, KeyError, TypeError) as e:
        raise StorageCorruption(identity_path, 0, f"unreadable identity file: {e}") from e
    if stored_cluster != cluster_id and stored_node == node_id and may_restamp:
        write_atomically(ops, identity_path, body.encode())
        return
    if stored_cluster != cluster_id:
        raise IdentityMismatch(
            f"data directory {path} belongs to cluster {stored_cluster!r}, "
            f"not {cluster_id!r}: refusing to use another cluster's data"
        )
    if stored_node != node_id:
        raise IdentityMismatch(
            f"data directory {path} belongs to node {stored_node}, not node {node_id}: "
            f"refusing to use another node's data"
        )


def open_data_dir(
    path: str,
    cluster_id: str,
    node_id: NodeId,
    *,
    segment_bytes_max: int = SEGMENT_BYTES_MAX_DEFAULT,
    snapshots_retained: int = RETAIN_DEFAULT,
    ops: FileOps | None = None,
) -> DataDir:
    """Open (creating if needed) the data directory of node ``node_id`` of
    cluster ``cluster_id``; IdentityMismatch if it belongs to another."""
    ops = ops if ops is not None else FileOps()
    ops.makedirs(path)
    try:
        check_identity(path, cluster_id, node_id, ops)
    except IdentityMismatch:
        log, snapshots = _open_stores(path, segment_bytes_max, snapshots_retained, ops)
        # A node first started with a wrong member list never got a term,
        # a vote or an entry (its peers refused it): started again with the
        # right list, it may take the directory over (API.md section 1).
        holds_nothing = (
            log.last_index == 0 and log.load_hard_state() == HardState() and not snapshots.names()
        )
        if not holds_nothing:
            log.close()
            raise
        check_identity(path, cluster_id, node_id, ops, may_restamp=True)
    else:
        log, snapshots = _open_stores(path, segment_bytes_max, snapshots_retained, ops)
    return DataDir(path=path, cluster_id=cluster_id, node_id=node_id, log=log, snapshots=snapshots)


def _open_stores(
    path: str, segment_bytes_max: int, snapshots_retained: int, ops: FileOps
) -> tuple[FileLogStorage, FileSnapshotStore]:
    log = FileLogStorage(os.path.join(path, "log"), segment_bytes_max=segment_bytes_max, ops=ops)
    snapshots = FileSnapshotStore(
        os.path.join(path, "snapshots"), retain=snapshots_retained, ops=ops
    )
    return log, snapshots
