# zope.interface methods have no ``self``; mypy reads the first parameter as one.
# mypy: disable-error-code="misc, empty-body"
"""The storage interfaces, split by purpose as in hashicorp/raft (log.go,
stable.go, snapshot.go): the log with its hard state, and snapshots.

Every interface has an in-memory twin in :mod:`graft.storage.memory`; the
file implementations live in :mod:`graft.storage.wal` and
:mod:`graft.storage.snapshot`.

This module may import zope.interface and graft.raft.
"""

from __future__ import annotations

from collections.abc import Sequence

from zope.interface import Attribute, Interface  # type: ignore[import-untyped]

from graft.raft.messages import Entry, HardState, SnapshotData, SnapshotMeta


class ILogStorage(Interface):
    """The Raft log (entries ``first_index..last_index``) and the hard state.

    Invariant: ``first_index <= last_index + 1``; the log is empty when they
    are equal plus one. Indexes are contiguous. Methods are synchronous and
    called from one thread; ``append`` makes data durable only once
    ``sync`` returns.
    """

    first_index = Attribute("int: index of the first stored entry (last_index + 1 if empty)")
    last_index = Attribute("int: index of the last stored entry (first_index - 1 if empty)")

    def append(entries: Sequence[Entry]) -> None:
        """Cut the log at ``entries[0].index`` (drop it and everything after),
        then append ``entries`` (contiguous, increasing indexes): the core's
        Ready contract. ``first_index <= entries[0].index <= last_index + 1``
        or ValueError. An empty sequence does nothing."""

    def entries(lo: int, hi: int) -> list[Entry]:
        """The entries with indexes in ``[lo, hi)``, a list; IndexError if
        any is outside ``first_index..last_index``."""

    def term_at(index: int) -> int | None:
        """The term of the entry at ``index``, or None if not stored."""

    def drop_prefix(index: int) -> None:
        """Forget entries up to and including ``index`` (they are in a
        snapshot). Past ``last_index`` the log becomes empty and continues
        after ``index``. At or below ``first_index - 1`` it does nothing."""

    def reset(index: int) -> None:
        """Forget every entry; the log continues after ``index`` (a snapshot
        installed over a log that conflicts with it, §7)."""

    def save_hard_state(hard_state: HardState) -> None:
        """Replace the stored HardState, atomically and durably."""

    def load_hard_state() -> HardState:
        """The last saved HardState (``HardState()`` if none)."""

    def sync() -> None:
        """Make everything appended so far durable (fsync)."""

    def close() -> None:
        """Release files. Unsynced appends may be lost, as in a crash."""


class ISnapshotWriter(Interface):
    """A snapshot being received in chunks (InstallSnapshot, §7)."""

    meta = Attribute("SnapshotMeta of the snapshot being written")
    next_offset = Attribute("int: the offset the next chunk must start at")

    def write(offset: int, data: bytes) -> None:
        """Add a chunk; ValueError unless ``offset == next_offset``."""

    def commit(expected_crc32: int | None = None) -> None:
        """Check the CRC-32 of all data if given (StorageCorruption if it
        differs), then make the snapshot durable and the newest, atomically."""

    def abort() -> None:
        """Discard what was written; the store is unchanged."""


class ISnapshotStore(Interface):
    """Snapshot files: data plus SnapshotMeta, the newest few kept."""

    def create(meta: SnapshotMeta, data: bytes) -> None:
        """Store a snapshot whole, atomically and durably; it becomes the
        newest and the older ones past the retention count are deleted."""

    def writer(meta: SnapshotMeta) -> ISnapshotWriter:
        """An ISnapshotWriter for a snapshot arriving in chunks."""

    def latest() -> tuple[SnapshotMeta, SnapshotData] | None:
        """``(meta, data)`` of the newest snapshot, or None. ``data`` has
        ``len()`` and slicing (bytes, or a file view with ``read(offset, n)``);
        its checksum is verified (StorageCorruption if damaged)."""

    def list_metas() -> list[SnapshotMeta]:
        """The metadata of every stored snapshot, oldest first."""

    def names() -> list[str]:
        """The stored snapshots' names, oldest first; found even when a
        snapshot's metadata is damaged (for falling back to an older one)."""

    def load(name: str) -> tuple[SnapshotMeta, SnapshotData]:
        """``(meta, data)`` of the snapshot called ``name``, like ``latest``;
        StorageCorruption if it is damaged."""
