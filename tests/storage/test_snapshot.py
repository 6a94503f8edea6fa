"""Snapshot stores, memory and file: whole and chunked writes, reading in
chunks, keeping the newest two, and (file) damage found by checksum."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from graft.raft.messages import Configuration, Member, SnapshotMeta
from graft.storage import FileSnapshotStore, MemorySnapshotStore, StorageCorruption
from graft.storage.interfaces import ISnapshotStore

CONFIG = Configuration(members=(Member(id=1, address="a:1"), Member(id=2, voter=False)))


def meta(index: int, term: int = 1) -> SnapshotMeta:
    return SnapshotMeta(index=index, term=term, configuration=CONFIG)


@pytest.fixture(params=["memory", "file"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ISnapshotStore]:
    if request.param == "memory":
        yield MemorySnapshotStore()
    else:
        yield FileSnapshotStore(str(tmp_path))


def test_empty_store_has_no_latest(store: ISnapshotStore) -> None:
    """A new store has no snapshot."""
    assert store.latest() is None
    assert store.list_metas() == []


def test_created_snapshot_reads_back_with_its_metadata(store: ISnapshotStore) -> None:
    """create() stores data and metadata; latest() returns both, sliceable."""
    data = bytes(range(256)) * 40
    store.create(meta(10, 2), data)
    latest = store.latest()
    assert latest is not None
    got_meta, got_data = latest
    assert got_meta == meta(10, 2)
    assert len(got_data) == len(data)
    assert got_data[0 : len(data)] == data
    chunks = [got_data[i : i + 1000] for i in range(0, len(got_data), 1000)]
    assert b"".join(chunks) == data


def test_only_the_newest_two_snapshots_are_kept(store: ISnapshotStore) -> None:
    """After a third snapshot the oldest is deleted."""
    for index in (5, 9, 14):
        store.create(meta(index), b"x" * index)
    assert [m.index for m in store.list_metas()] == [9, 14]
    latest = store.latest()
    assert latest is not None
    assert latest[0].index == 14


def test_chunks_install_a_snapshot_after_checksum_check(store: ISnapshotStore) -> None:
    """Chunks written at the expected offsets commit into the newest snapshot (§7)."""
    data = b"state machine bytes " * 100
    writer = store.writer(meta(20, 3))
    for offset in range(0, len(data), 128):
        writer.write(offset, data[offset : offset + 128])
    assert writer.next_offset == len(data)
    writer.commit(expected_crc32=zlib.crc32(data))
    latest = store.latest()
    assert latest is not None
    assert latest[0] == meta(20, 3)
    assert latest[1][0 : len(data)] == data


def test_chunk_at_a_wrong_offset_is_rejected(store: ISnapshotStore) -> None:
    """A chunk not at next_offset raises ValueError and changes nothing."""
    writer = store.writer(meta(3))
    writer.write(0, b"abc")
    with pytest.raises(ValueError):
        writer.write(2, b"xyz")
    with pytest.raises(ValueError):
        writer.write(10, b"xyz")
    writer.write(3, b"def")
    writer.commit()
    latest = store.latest()
    assert latest is not None
    assert latest[1][0:6] == b"abcdef"


def test_checksum_mismatch_on_commit_installs_nothing(store: ISnapshotStore) -> None:
    """commit() with the wrong checksum raises StorageCorruption and keeps the old snapshot."""
    store.create(meta(1), b"old")
    writer = store.writer(meta(2))
    writer.write(0, b"new data")
    with pytest.raises(StorageCorruption):
        writer.commit(expected_crc32=zlib.crc32(b"other data"))
    latest = store.latest()
    assert latest is not None
    assert latest[0].index == 1


def test_aborted_writer_leaves_the_store_unchanged(store: ISnapshotStore) -> None:
    """abort() discards the chunks received."""
    writer = store.writer(meta(7))
    writer.write(0, b"partial")
    writer.abort()
    assert store.latest() is None


def test_damaged_snapshot_data_is_detected_by_checksum(tmp_path: Path) -> None:
    """A flipped byte in a snapshot file's data raises StorageCorruption naming the file."""
    store = FileSnapshotStore(str(tmp_path))
    store.create(meta(4), b"0123456789" * 100)
    (path,) = tmp_path.glob("*.snap")
    data = bytearray(path.read_bytes())
    data[500] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(StorageCorruption, match="checksum") as info:
        store.latest()
    assert info.value.path == str(path)


def test_damaged_snapshot_metadata_is_detected(tmp_path: Path) -> None:
    """A flipped byte in the metadata or a truncated file raises StorageCorruption."""
    store = FileSnapshotStore(str(tmp_path))
    store.create(meta(4), b"abc")
    (path,) = tmp_path.glob("*.snap")
    original = path.read_bytes()
    damaged = bytearray(original)
    damaged[5] ^= 1  # inside the JSON metadata, after the 3 data bytes
    path.write_bytes(bytes(damaged))
    with pytest.raises(StorageCorruption):
        store.latest()
    path.write_bytes(original[:-3])
    with pytest.raises(StorageCorruption):
        store.latest()


def test_leftover_temporary_file_is_removed_on_open(tmp_path: Path) -> None:
    """A snapshot interrupted before its rename is not visible and is cleaned up."""
    store = FileSnapshotStore(str(tmp_path))
    writer = store.writer(meta(9))
    writer.write(0, b"half")  # the process dies here
    reopened = FileSnapshotStore(str(tmp_path))
    assert reopened.latest() is None
    assert list(tmp_path.glob("*.tmp")) == []


def test_file_snapshot_reads_in_chunks_by_offset(tmp_path: Path) -> None:
    """SnapshotFile.read(offset, n) gives at most n bytes, fewer at the end."""
    store = FileSnapshotStore(str(tmp_path))
    store.create(meta(2), b"abcdefghij")
    latest = store.latest()
    assert latest is not None
    snapshot = latest[1]
    assert snapshot.read(0, 4) == b"abcd"  # type: ignore[attr-defined]
    assert snapshot.read(8, 4) == b"ij"  # type: ignore[attr-defined]
    assert snapshot.read(10, 4) == b""  # type: ignore[attr-defined]
    assert snapshot[-3:] == b"hij"
