"""Data directory identity and the hard state file's atomic replace."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from graft.raft.messages import HardState
from graft.storage import IdentityMismatch, StorageCorruption, StorageError, open_data_dir
from graft.storage.hard_state import (
    encode_hard_state,
    load_hard_state,
    save_hard_state,
)
from tests.storage.helpers import FaultyFileOps, make_entries


def test_first_open_records_identity_and_reopen_accepts_it(tmp_path: Path) -> None:
    """A new directory takes the given cluster and node id; the same ids open it again."""
    d = open_data_dir(str(tmp_path / "n1"), "cluster-a", 1)
    d.log.append(make_entries(1, 3))
    d.log.sync()
    d.close()
    again = open_data_dir(str(tmp_path / "n1"), "cluster-a", 1)
    assert again.log.last_index == 3
    again.close()


def test_other_cluster_id_is_refused(tmp_path: Path) -> None:
    """A directory holding another cluster's entries is refused with a
    message naming both ids."""
    d = open_data_dir(str(tmp_path), "cluster-a", 1)
    d.log.append(make_entries(1, 1))
    d.log.sync()
    d.close()
    with pytest.raises(IdentityMismatch, match=r"cluster-a.*cluster-b"):
        open_data_dir(str(tmp_path), "cluster-b", 1)


def test_other_cluster_id_with_a_term_is_refused(tmp_path: Path) -> None:
    """A vote or term is Raft state too: the directory stays the other cluster's."""
    d = open_data_dir(str(tmp_path), "cluster-a", 1)
    d.log.save_hard_state(HardState(term=1, vote=1))
    d.close()
    with pytest.raises(IdentityMismatch):
        open_data_dir(str(tmp_path), "cluster-b", 1)


def test_a_directory_holding_no_raft_state_is_taken_over(tmp_path: Path) -> None:
    """API.md section 1: a node first started with a wrong member list, and
    so never given a term, vote or entry, works once restarted with the
    right list on the same directory."""
    open_data_dir(str(tmp_path), "wrong-list", 3).close()

    d = open_data_dir(str(tmp_path), "right-list", 3)
    d.close()

    open_data_dir(str(tmp_path), "right-list", 3).close()
    with pytest.raises(IdentityMismatch):
        open_data_dir(str(tmp_path), "wrong-list", 2)


def test_other_node_id_is_refused(tmp_path: Path) -> None:
    """A directory of another node is refused with a message naming both ids."""
    open_data_dir(str(tmp_path), "cluster-a", 1).close()
    with pytest.raises(IdentityMismatch, match="node 1, not node 2"):
        open_data_dir(str(tmp_path), "cluster-a", 2)


def test_hard_state_replace_is_atomic_when_the_write_fails(tmp_path: Path) -> None:
    """A replace that fails midway leaves the old hard state readable."""
    path = str(tmp_path / "hard_state")
    ops = FaultyFileOps()
    save_hard_state(ops, path, HardState(term=5, vote=2, commit=1))
    ops.fail_errno = errno.EIO
    ops.fail_write_after_bytes = ops.written_bytes + 10
    with pytest.raises(OSError):
        save_hard_state(ops, path, HardState(term=6, vote=3, commit=1))
    assert load_hard_state(path) == HardState(term=5, vote=2, commit=1)


def test_hard_state_replace_fsyncs_file_and_directory(tmp_path: Path) -> None:
    """Saving hard state fsyncs the temp file and the directory before returning."""
    ops = FaultyFileOps()
    save_hard_state(ops, str(tmp_path / "hard_state"), HardState(term=1, vote=1))
    assert ops.fsync_calls == 2
    assert not (tmp_path / "hard_state.tmp").exists()


def test_damaged_hard_state_is_refused(tmp_path: Path) -> None:
    """A hard state file with a bad checksum raises StorageCorruption."""
    path = tmp_path / "hard_state"
    data = bytearray(encode_hard_state(HardState(term=3, vote=1, commit=2)))
    data[9] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(StorageCorruption):
        load_hard_state(str(path))


def test_errors_share_a_base_class() -> None:
    """Every deliberate storage error is a StorageError."""
    assert issubclass(IdentityMismatch, StorageError)
    assert issubclass(StorageCorruption, StorageError)
