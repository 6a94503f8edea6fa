"""Every storage implementation provides its interface (verifyObject first)."""

from __future__ import annotations

from pathlib import Path

from zope.interface.verify import verifyObject

import graft.storage
from graft.raft.messages import SnapshotMeta
from graft.storage import (
    FileLogStorage,
    FileSnapshotStore,
    ILogStorage,
    ISnapshotStore,
    ISnapshotWriter,
    MemoryLogStorage,
    MemorySnapshotStore,
)


def test_memory_log_storage_provides_ilogstorage() -> None:
    """MemoryLogStorage provides ILogStorage."""
    assert verifyObject(ILogStorage, MemoryLogStorage())


def test_file_log_storage_provides_ilogstorage(tmp_path: Path) -> None:
    """FileLogStorage provides ILogStorage."""
    log = FileLogStorage(str(tmp_path))
    assert verifyObject(ILogStorage, log)
    log.close()


def test_memory_snapshot_store_and_writer_provide_their_interfaces() -> None:
    """MemorySnapshotStore provides ISnapshotStore and its writer ISnapshotWriter."""
    store = MemorySnapshotStore()
    assert verifyObject(ISnapshotStore, store)
    assert verifyObject(ISnapshotWriter, store.writer(SnapshotMeta(index=1, term=1)))


def test_file_snapshot_store_and_writer_provide_their_interfaces(tmp_path: Path) -> None:
    """FileSnapshotStore provides ISnapshotStore and its writer ISnapshotWriter."""
    store = FileSnapshotStore(str(tmp_path))
    assert verifyObject(ISnapshotStore, store)
    writer = store.writer(SnapshotMeta(index=1, term=1))
    assert verifyObject(ISnapshotWriter, writer)
    writer.abort()


def test_exports_are_the_intended_objects() -> None:
    """graft.storage re-exports exactly the public names it lists."""
    for name in graft.storage.__all__:
        obj = getattr(graft.storage, name)
        assert obj.__name__ == name
