"""Snapshots of one node (§7): writing them off the reactor thread, finding
the newest usable one at start-up, serving one as a backup download, and
seeding a new node's data directory from a backup file.

The driver (graft/server/driver.py) decides when to snapshot and compacts;
the pieces here do the work it hands off:

- :func:`write_snapshot` runs on a worker thread: it streams a state
  machine's chunks into ``store.writer(meta)``, commits (fsync, rename) and
  gives back the stored snapshot, memory-mapped for a file store, so no
  whole copy of the state is ever held in memory.
- :func:`load_newest_snapshot` picks the newest snapshot whose checksums
  hold; an older one only if the log still holds every entry after it.
- :class:`SnapshotProducer` streams a stored snapshot file to an HTTP
  client a chunk per reactor turn, pausing when the transport is full, so
  the reactor never copies the whole file at once.
- :func:`restore_backup` checks a backup file and writes it into an empty
  data directory as that node's first snapshot (`graft node run --restore`).

A backup file is byte for byte a stored snapshot file (graft/storage/
snapshot.py: data, metadata, footer with CRC-32s), so it is self-checking.

May import the standard library, attrs, Twisted, graft.raft, graft.kv and
graft.storage.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import attrs
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IPushProducer
from twisted.internet.threads import deferToThreadPool
from zope.interface import implementer  # type: ignore[import-untyped]

from graft.kv import KVStore, SnapshotFormatError, chunks_of
from graft.raft import Configuration, HardState, SnapshotMeta
from graft.raft.messages import SnapshotData
from graft.storage.errors import StorageCorruption
from graft.storage.snapshot import encode_file_tail, open_snapshot_file, snapshot_name

__all__ = [
    "RestoreRefused",
    "SnapshotInProgress",
    "SnapshotProducer",
    "SnapshotUnusable",
    "StoredSnapshot",
    "load_newest_snapshot",
    "restore_backup",
    "thread_runner",
    "write_snapshot",
]

#: Bytes handed to the HTTP transport per ``resumeProducing``.
DOWNLOAD_CHUNK_BYTES = 256 * 1024

#: Runs ``f(*args)`` somewhere and fires with its result.
RunInThread = Callable[..., Deferred[Any]]


class SnapshotInProgress(Exception):
    """A snapshot is being taken already (POST /v1/snapshot answers 409)."""


class SnapshotUnusable(Exception):
    """No snapshot can start the node: the newest is damaged and the log no
    longer covers the gap after an older one. The message names the files."""


class RestoreRefused(Exception):
    """``--restore`` refused: damaged backup, or a data directory in use."""


class SnapshotStore(Protocol):
    """What the driver needs of an ``ISnapshotStore``."""

    def writer(self, meta: SnapshotMeta) -> Any: ...
    def names(self) -> list[str]: ...
    def load(self, name: str) -> tuple[SnapshotMeta, SnapshotData]: ...


class LogExtent(Protocol):
    @property
    def first_index(self) -> int: ...
    @property
    def last_index(self) -> int: ...


@attrs.frozen
class StoredSnapshot:
    """A snapshot that is durable in the store: its metadata and its data
    (a memory-mapped :class:`graft.storage.SnapshotFile`, or bytes in the
    in-memory store). As a download it is the whole snapshot file."""

    meta: SnapshotMeta
    data: SnapshotData = attrs.field(repr=False)

    @property
    def file_size(self) -> int:
        size = getattr(self.data, "file_size", None)
        return size if size is not None else len(self._image())

    def read_file(self, offset: int, size: int) -> bytes:
        """Bytes of the snapshot file (data, metadata, footer) from ``offset``."""
        read = getattr(self.data, "read_file", None)
        if read is not None:
            return read(offset, size)  # type: ignore[no-any-return]
        return self._image()[offset : offset + size]

    def file_crc32(self) -> int:
        """CRC-32 of the whole file, as sent in ``X-Graft-Snapshot-CRC32``."""
        crc = getattr(self.data, "file_crc32", None)
        if crc is not None:
            return crc()  # type: ignore[no-any-return]
        return zlib.crc32(self._image())

    def _image(self) -> bytes:
        # The in-memory twin keeps bytes: build the file they would be.
        data = bytes(self.data[0 : len(self.data)])
        return data + encode_file_tail(self.meta, len(data), zlib.crc32(data))


def thread_runner(reactor: Any) -> RunInThread:
    """Run functions on ``reactor``'s thread pool; with a reactor that has
    none (``task.Clock`` in tests), run them at once, inline."""
    if hasattr(reactor, "getThreadPool"):
        return lambda f, *args: deferToThreadPool(reactor, reactor.getThreadPool(), f, *args)
    return lambda f, *args: maybeDeferred(f, *args)


def write_snapshot(store: SnapshotStore, meta: SnapshotMeta, chunks: Iterable[bytes]) -> Any:
    """Stream ``chunks`` into the store as the snapshot ``meta`` and make it
    durable; return the stored ``(meta, data)``. Blocking: call it on a
    worker thread, one at a time per store."""
    writer = store.writer(meta)
    try:
        offset = 0
        for chunk in chunks:
            writer.write(offset, chunk)
            offset += len(chunk)
    except BaseException:
        writer.abort()
        raise
    return commit_writer(store, writer)


def commit_writer(store: SnapshotStore, writer: Any) -> Any:
    """Make the snapshot ``writer`` holds durable and the newest; return
    the stored ``(meta, data)``. Blocking: call it on a worker thread."""
    writer.commit()
    name = snapshot_name(writer.meta)
    open_file = getattr(store, "open", None)
    if open_file is not None:
        # Just written with its checksum: no need to read it all back.
        snap = open_file(name, verify=False)
        return snap.meta, snap
    return store.load(name)


def data_chunks(data: SnapshotData) -> Iterable[bytes]:
    """A snapshot's data in pieces, read from its file when it has one."""
    chunks = getattr(data, "chunks", None)
    return chunks() if chunks is not None else chunks_of(data)


def load_newest_snapshot(
    store: SnapshotStore, log: LogExtent, warn: Callable[[str], None]
) -> tuple[SnapshotMeta, SnapshotData] | None:
    """The newest snapshot whose checksums hold, or None if there is none.

    A damaged snapshot is skipped (``warn`` says which and why) only if the
    log still holds every entry after the older one used instead (or, with
    none left, every entry from index 1): nothing committed may be lost.
    Otherwise :class:`SnapshotUnusable` names the files and the gap."""
    damaged: list[str] = []
    for name in reversed(store.names()):
        try:
            meta, data = store.load(name)
        except StorageCorruption as e:
            damaged.append(str(e))
            continue
        if damaged:
            _check_log_covers(log, meta.index, name, damaged)
            warn(
                f"using the older snapshot {name} (index {meta.index}) and replaying the "
                f"log after it, because {'; '.join(damaged)}"
            )
        return meta, data
    if damaged:
        _check_log_covers(log, 0, None, damaged)
        warn(f"replaying the whole log, because {'; '.join(damaged)}")
    return None


def _check_log_covers(log: LogExtent, index: int, name: str | None, damaged: list[str]) -> None:
    if log.first_index <= index + 1:
        return
    older = f"the older snapshot {name} ends at index {index}" if name else "no older snapshot"
    raise SnapshotUnusable(
        f"{'; '.join(damaged)}; {older} and the log starts at index {log.first_index}, so "
        f"entries {index + 1}..{log.first_index - 1} are lost: restore this node from a "
        "backup (graft node run --restore FILE) or start it with an empty data directory "
        "so the leader sends it a snapshot"
    )


@implementer(IPushProducer)
class SnapshotProducer:
    """Writes a stored snapshot file to ``request``, one chunk per reactor
    turn (``clock.callLater(0)``) while the transport is not paused, so a
    large download neither stalls the reactor nor piles up in memory.
    ``done`` fires once all is written or the client went away. Keeps the
    snapshot (its mapping) alive while it runs, even if the store deletes
    the file meanwhile.

    A push producer, not a pull one: twisted.web drives pull producers
    with the global cooperator, which a ``task.Clock`` never runs."""

    def __init__(
        self,
        request: Any,
        snapshot: StoredSnapshot,
        clock: Any,
        chunk_bytes: int = DOWNLOAD_CHUNK_BYTES,
    ) -> None:
        self._request = request
        self._snapshot = snapshot
        self._clock = clock
        self._size = snapshot.file_size
        self._chunk_bytes = chunk_bytes
        self._offset = 0
        self._paused = False
        self._finished = False
        self._call: Any = None
        self.done: Deferred[None] = Deferred()

    def start(self) -> Deferred[None]:
        self._request.registerProducer(self, True)
        self._schedule()
        return self.done

    def _schedule(self) -> None:
        if self._call is None and not self._paused and not self._finished:
            self._call = self._clock.callLater(0, self._write_chunk)

    def _write_chunk(self) -> None:
        self._call = None
        if self._paused or self._finished:
            return
        chunk = self._snapshot.read_file(self._offset, self._chunk_bytes)
        self._offset += len(chunk)
        if chunk:
            self._request.write(chunk)
        if self._offset >= self._size or not chunk:
            self._finish()
        else:
            self._schedule()

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        self._schedule()

    def stopProducing(self) -> None:
        self._finish()

    def _finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        self._request.unregisterProducer()
        self.done.callback(None)


def restore_backup(
    backup_path: str,
    data_dir_path: str,
    *,
    open_data_dir: Callable[[str], Any],
    configuration: Configuration,
) -> tuple[SnapshotMeta, int]:
    """Seed the empty data directory ``data_dir_path`` from the backup file
    ``backup_path``: its state becomes the node's first snapshot, at the
    backup's index and term, with ``configuration`` (the new cluster's
    members) as the membership. ``open_data_dir(path)`` creates the
    directory for this node and cluster. Returns the snapshot's metadata
    and key count.

    Refuses (:class:`RestoreRefused`) a file whose checksums or contents
    do not hold, and a data directory that exists and is not empty: a
    restore never mixes a backup with a node's own history."""
    if os.path.isdir(data_dir_path) and os.listdir(data_dir_path):
        raise RestoreRefused(
            f"data directory {data_dir_path} is not empty: --restore only seeds a new node; "
            "give an empty or missing --data-dir"
        )
    try:
        backup = open_snapshot_file(backup_path, verify=True)
    except OSError as e:
        raise RestoreRefused(f"cannot read backup {backup_path}: {e.strerror or e}") from None
    except StorageCorruption as e:
        raise RestoreRefused(f"backup {backup_path} is damaged: {e}") from None
    try:
        state = KVStore.from_snapshot(backup.chunks())
    except SnapshotFormatError as e:
        raise RestoreRefused(f"backup {backup_path} is damaged: {e}") from None
    index, term = backup.meta.index, backup.meta.term
    if state.applied_index != index:
        raise RestoreRefused(
            f"backup {backup_path} is inconsistent: its state is at index "
            f"{state.applied_index} but its metadata says {index}"
        )
    meta = SnapshotMeta(index=index, term=term, configuration=configuration)
    data_dir = open_data_dir(data_dir_path)
    try:
        write_snapshot(data_dir.snapshots, meta, backup.chunks())
        # The log continues after the snapshot; the term may not go back.
        data_dir.log.reset(index)
        data_dir.log.sync()
        data_dir.log.save_hard_state(HardState(term=term, commit=index))
    finally:
        data_dir.close()
        backup.close()
    return meta, len(state)
