"""In-memory twins of the storage interfaces: the behaviour of the file
stores without files, for tests and the simulator (klein
src/klein/storage/memory.py; hashicorp inmem_store.go).

This module may import the standard library, attrs, zope.interface,
graft.raft and graft.storage.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

from zope.interface import implementer  # type: ignore[import-untyped]

from graft.raft.messages import Entry, HardState, SnapshotData, SnapshotMeta
from graft.storage.errors import StorageCorruption
from graft.storage.interfaces import ILogStorage, ISnapshotStore, ISnapshotWriter
from graft.storage.snapshot import snapshot_name


def check_batch(entries: Sequence[Entry], first_index: int, last_index: int) -> None:
    """Raise ValueError unless ``entries`` may be cut-and-appended to a log
    holding ``first_index..last_index``."""
    start = entries[0].index
    if not first_index <= start <= last_index + 1:
        raise ValueError(
            f"cannot append at index {start}: the log holds {first_index}..{last_index}"
        )
    for offset, entry in enumerate(entries):
        if entry.index != start + offset:
            raise ValueError(f"entries are not contiguous at index {entry.index}")


@implementer(ILogStorage)
class MemoryLogStorage:
    """The log as a Python list; ``sync`` does nothing."""

    def __init__(self) -> None:
        self._entries: list[Entry] = []
        #: The index of ``_entries[0]``, or of the next entry when empty.
        self._first_index = 1
        self._hard_state = HardState()

    @property
    def first_index(self) -> int:
        return self._first_index

    @property
    def last_index(self) -> int:
        return self._first_index + len(self._entries) - 1

    def append(self, entries: Sequence[Entry]) -> None:
        if not entries:
            return
        check_batch(entries, self.first_index, self.last_index)
        del self._entries[entries[0].index - self._first_index :]
        self._entries.extend(entries)

    def entries(self, lo: int, hi: int) -> list[Entry]:
        if lo > hi or (lo < hi and (lo < self.first_index or hi > self.last_index + 1)):
            raise IndexError(f"entries [{lo}, {hi}) outside {self.first_index}..{self.last_index}")
        return self._entries[lo - self._first_index : hi - self._first_index]

    def term_at(self, index: int) -> int | None:
        if self.first_index <= index <= self.last_index:
            return self._entries[index - self._first_index].term
        return None

    def drop_prefix(self, index: int) -> None:
        if index < self._first_index:
            return
        del self._entries[: index + 1 - self._first_index]
        self._first_index = index + 1

    def reset(self, index: int) -> None:
        self._entries.clear()
        self._first_index = index + 1

    def save_hard_state(self, hard_state: HardState) -> None:
        self._hard_state = hard_state

    def load_hard_state(self) -> HardState:
        return self._hard_state

    def sync(self) -> None:
        pass

    def close(self) -> None:
        pass


@implementer(ISnapshotWriter)
class MemorySnapshotWriter:
    """Chunks gathered in memory, handed to the store on commit."""

    def __init__(self, store: MemorySnapshotStore, meta: SnapshotMeta) -> None:
        self.meta = meta
        self._store = store
        self._chunks: list[bytes] = []
        self.next_offset = 0
        self._open = True

    def write(self, offset: int, data: bytes) -> None:
        if not self._open:
            raise ValueError("snapshot writer is closed")
        if offset != self.next_offset:
            raise ValueError(f"chunk at offset {offset}, expected {self.next_offset}")
        self._chunks.append(bytes(data))
        self.next_offset += len(data)

    def commit(self, expected_crc32: int | None = None) -> None:
        if not self._open:
            raise ValueError("snapshot writer is closed")
        data = b"".join(self._chunks)
        if expected_crc32 is not None and zlib.crc32(data) != expected_crc32:
            self.abort()
            raise StorageCorruption("<memory snapshot>", 0, "received snapshot checksum mismatch")
        self._open = False
        self._store.create(self.meta, data)

    def abort(self) -> None:
        self._open = False
        self._chunks.clear()


@implementer(ISnapshotStore)
class MemorySnapshotStore:
    """Snapshots in a list, newest last, ``retain`` of them kept."""

    def __init__(self, retain: int = 2) -> None:
        assert retain >= 1
        self._retain = retain
        self._snapshots: list[tuple[SnapshotMeta, bytes]] = []

    def create(self, meta: SnapshotMeta, data: bytes) -> None:
        self._snapshots = [s for s in self._snapshots if s[0].index != meta.index]
        self._snapshots.append((meta, bytes(data)))
        self._snapshots.sort(key=lambda s: s[0].index)
        del self._snapshots[: -self._retain]

    def writer(self, meta: SnapshotMeta) -> MemorySnapshotWriter:
        return MemorySnapshotWriter(self, meta)

    def latest(self) -> tuple[SnapshotMeta, SnapshotData] | None:
        return self._snapshots[-1] if self._snapshots else None

    def list_metas(self) -> list[SnapshotMeta]:
        return [meta for meta, _ in self._snapshots]

    def names(self) -> list[str]:
        """Names as the file store would give them, oldest first."""
        return [snapshot_name(meta) for meta, _ in self._snapshots]

    def load(self, name: str) -> tuple[SnapshotMeta, SnapshotData]:
        for meta, data in self._snapshots:
            if snapshot_name(meta) == name:
                return meta, data
        raise KeyError(name)
