"""The write-ahead log in segment files: :class:`FileLogStorage`.

A log directory holds numbered segment files (``00000000000000000001.wal``)
and the ``hard_state`` file. Records (framing in :mod:`graft.storage.record`)
are only ever appended: a cut-and-append writes the new entries after the
old ones and replay lets each entry cut the log at its index; dropping a
prefix or resetting writes a marker record, then deletes whole old segments
that hold no live entry. So a crash can only ever tear the end of the last
file, and no write is a read-modify-write.

The active segment rolls once it reaches ``segment_bytes_max`` *and* every
byte of it is durable (a sync returned); until then writes keep going to it.
That is what lets recovery treat only the last segment's tail as torn.

An in-memory :class:`~graft.storage.recovery.LogIndex` maps each live index
to (segment, offset, length, term); opening rebuilds it from headers alone.

Syncing is split so the fsync can run off the reactor thread
(:mod:`graft.storage.group_commit`): ``begin_sync`` and ``end_sync`` run on
the owner's thread, ``run_sync`` on any thread; ``sync`` does all three.

This module may import the standard library, attrs, zope.interface,
graft.raft and graft.storage.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence

import attrs
from zope.interface import implementer  # type: ignore[import-untyped]

from graft.raft.messages import Entry, HardState
from graft.storage import hard_state as hard_state_file
from graft.storage.errors import StorageCorruption, StorageFailed
from graft.storage.fileops import FileOps
from graft.storage.interfaces import ILogStorage
from graft.storage.memory import check_batch
from graft.storage.record import (
    HEADER_SIZE,
    KIND_DROP_PREFIX,
    KIND_RESET,
    SEGMENT_MAGIC,
    decode_entries,
    encode_entries,
    encode_record,
)
from graft.storage.recovery import LogIndex, recover, segment_name

SEGMENT_BYTES_MAX_DEFAULT = 64 * 1024 * 1024
HARD_STATE_NAME = "hard_state"


@attrs.define(eq=False)
class _Segment:
    seq: int
    path: str
    fd: int
    #: Bytes in the file; records are appended at this offset.
    size: int
    #: Bytes known durable: covered by a sync that returned.
    durable_size: int


@attrs.frozen
class SyncJob:
    """What one fsync round must flush, captured on the owner's thread."""

    fds: tuple[int, ...]
    directory: str | None
    sizes: tuple[tuple[_Segment, int], ...]


@implementer(ILogStorage)
class FileLogStorage:
    """The log and hard state of one node, in directory ``path``.

    Opening replays the segments (StorageCorruption on damage), cuts a torn
    tail off the last segment and makes what it found durable. Not
    thread-safe except ``run_sync`` and ``persist_hard_state``.
    """

    def __init__(
        self,
        path: str,
        *,
        segment_bytes_max: int = SEGMENT_BYTES_MAX_DEFAULT,
        ops: FileOps | None = None,
    ) -> None:
        self.path = path
        self._ops = ops if ops is not None else FileOps()
        self._segment_bytes_max = segment_bytes_max
        #: Why writing stopped (a failed write), or None.
        self.failed_reason: str | None = None
        self._ops.makedirs(path)
        self._hard_state_path = os.path.join(path, HARD_STATE_NAME)
        self._hard_state = hard_state_file.load_hard_state(self._hard_state_path)
        recovered = recover(path, self._ops)
        #: Where the torn tail cut off at opening was, for the driver to log.
        self.torn_tail = recovered.torn
        self._index: LogIndex = recovered.index
        self._segments: dict[int, _Segment] = {}
        self._dirty: dict[int, _Segment] = {}
        self._dir_dirty = False
        self._in_flight: Counter[int] = Counter()
        self._retired: dict[int, _Segment] = {}
        #: (segment, size) a drop-prefix or reset marker ends at: the old
        #: segments it retires are deleted once it is durable.
        self._delete_after: tuple[int, int] | None = None
        for rs in recovered.segments:
            fd = self._ops.open(rs.path, os.O_RDWR | os.O_APPEND)
            seg = _Segment(seq=rs.seq, path=rs.path, fd=fd, size=rs.size, durable_size=0)
            self._segments[rs.seq] = seg
            if rs.file_size != rs.size or rs.size == 0:
                self._ops.ftruncate(fd, rs.size)
                if rs.size == 0:
                    self._ops.write_all(fd, SEGMENT_MAGIC)
                    seg.size = len(SEGMENT_MAGIC)
        if not self._segments:
            self._create_segment(1)
        # What we found may be in the page cache only (a crash of the
        # process, not the machine): make it durable before the core can
        # promise it to anyone.
        self._dirty[self._active.seq] = self._active
        self._dir_dirty = True
        self.sync()
        for seg in self._segments.values():
            seg.durable_size = seg.size

    # --- reading ------------------------------------------------------

    @property
    def first_index(self) -> int:
        return self._index.first_index

    @property
    def last_index(self) -> int:
        return self._index.first_index + len(self._index) - 1

    def term_at(self, index: int) -> int | None:
        k = index - self._index.first_index
        if 0 <= k < len(self._index):
            return self._index.term[k]
        return None

    def entries(self, lo: int, hi: int) -> list[Entry]:
        if lo > hi or (lo < hi and (lo < self.first_index or hi > self.last_index + 1)):
            raise IndexError(f"entries [{lo}, {hi}) outside {self.first_index}..{self.last_index}")
        idx = self._index
        out: list[Entry] = []
        k = lo - idx.first_index
        stop = hi - idx.first_index
        while k < stop:
            seq = idx.seg[k]
            # Segment numbers never decrease along the index: find the run.
            run_end = k
            if idx.seg[stop - 1] == seq:
                run_end = stop - 1
            else:
                while run_end + 1 < stop and idx.seg[run_end + 1] == seq:
                    run_end += 1
            seg = self._segments[seq]
            start = idx.offset[k]
            end = idx.offset[run_end] + idx.length[run_end]
            buf = self._ops.pread(seg.fd, end - start, start)
            starts = [o - start for o in idx.offset[k : run_end + 1]]
            out.extend(decode_entries(buf, starts, seg.path, start))
            k = run_end + 1
        for expected, entry in enumerate(out, lo):
            if entry.index != expected:
                raise StorageCorruption(self.path, 0, f"read entry {entry.index}, not {expected}")
        return out

    # --- writing ------------------------------------------------------

    @property
    def _active(self) -> _Segment:
        return self._segments[max(self._segments)]

    @property
    def roll_blocked(self) -> bool:
        """Whether the active segment is full but not yet durable: the next
        append would go past ``segment_bytes_max`` until a sync returns."""
        active = self._active
        return active.size >= self._segment_bytes_max and active.durable_size < active.size

    def append(self, entries: Sequence[Entry]) -> None:
        if not entries:
            return
        check_batch(entries, self.first_index, self.last_index)
        self._write(encode_entries(entries))
        # Index only what is in the file; a failed write leaves no trace here.
        idx = self._index
        seg = self._active
        idx.truncate(entries[0].index - idx.first_index)
        offset = seg.size
        for e in entries:
            length = HEADER_SIZE + len(e.data)
            idx.seg.append(seg.seq)
            idx.offset.append(offset)
            idx.length.append(length)
            idx.term.append(e.term)
            offset += length
        seg.size = offset

    def drop_prefix(self, index: int) -> None:
        if index < self.first_index:
            return
        self._write(encode_record(index, 0, KIND_DROP_PREFIX, b""))
        self._active.size += HEADER_SIZE
        idx = self._index
        idx.drop_front(min(index + 1 - idx.first_index, len(idx)))
        idx.first_index = index + 1
        self._delete_once_durable()

    def reset(self, index: int) -> None:
        self._write(encode_record(index, 0, KIND_RESET, b""))
        self._active.size += HEADER_SIZE
        self._index.truncate(0)
        self._index.first_index = index + 1
        self._delete_once_durable()

    def _write(self, data: bytes) -> None:
        """Append ``data`` to the active segment (rolling first if it is
        full and durable). A failed write stops all writing for good."""
        if self.failed_reason is not None:
            raise StorageFailed(self.failed_reason)
        try:
            active = self._active
            if active.size >= self._segment_bytes_max and active.durable_size == active.size:
                self._create_segment(active.seq + 1)
            active = self._active
            self._ops.write_all(active.fd, data)
        except OSError as e:
            self.failed_reason = f"write to {self._active.path} failed: {e}"
            raise StorageFailed(self.failed_reason) from e
        self._dirty[active.seq] = active

    def _create_segment(self, seq: int) -> None:
        path = os.path.join(self.path, segment_name(seq))
        fd = self._ops.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL)
        seg = _Segment(seq=seq, path=path, fd=fd, size=0, durable_size=0)
        self._segments[seq] = seg
        self._dir_dirty = True
        self._dirty[seq] = seg
        self._ops.write_all(fd, SEGMENT_MAGIC)
        seg.size = len(SEGMENT_MAGIC)

    def _delete_once_durable(self) -> None:
        """Old segments go only once the marker that retires them is
        durable: deleted before it, a crash could leave a log whose marker
        is lost and whose entries are gone, which would not reopen."""
        active = self._active
        self._delete_after = (active.seq, active.size)
        self._maybe_delete_dead_segments()

    def _maybe_delete_dead_segments(self) -> None:
        pending = self._delete_after
        if pending is None:
            return
        seq, size = pending
        seg = self._segments.get(seq)
        if seg is not None and seg.durable_size < size:
            return
        self._delete_after = None
        self._delete_dead_segments()

    def _delete_dead_segments(self) -> None:
        """Delete the old segments that hold no live entry (the oldest
        first, never the active one, which holds the newest marker)."""
        idx = self._index
        keep_from = idx.seg[0] if len(idx) else self._active.seq
        for seq in sorted(self._segments):
            if seq >= keep_from or seq == self._active.seq:
                break
            seg = self._segments.pop(seq)
            self._dirty.pop(seq, None)
            self._ops.unlink(seg.path)
            self._dir_dirty = True
            if self._in_flight[seq]:
                self._retired[seq] = seg
            else:
                self._ops.close(seg.fd)

    # --- durability ---------------------------------------------------

    def begin_sync(self) -> SyncJob:
        """Capture what the next fsync round must flush (owner's thread)."""
        dirty = sorted(self._dirty.values(), key=lambda s: s.seq)
        self._dirty.clear()
        for seg in dirty:
            self._in_flight[seg.seq] += 1
        directory = self.path if self._dir_dirty else None
        self._dir_dirty = False
        return SyncJob(
            fds=tuple(s.fd for s in dirty),
            directory=directory,
            sizes=tuple((s, s.size) for s in dirty),
        )

    def run_sync(self, job: SyncJob) -> None:
        """fdatasync the job's files, then the directory (any thread)."""
        for fd in job.fds:
            self._ops.fdatasync(fd)
        if job.directory is not None:
            self._ops.fsync_dir(job.directory)

    def end_sync(self, job: SyncJob) -> None:
        """Record that ``job`` returned: its bytes are durable (owner's thread)."""
        for seg, size in job.sizes:
            seg.durable_size = max(seg.durable_size, size)
            self._in_flight[seg.seq] -= 1
            if not self._in_flight[seg.seq]:
                del self._in_flight[seg.seq]
                retired = self._retired.pop(seg.seq, None)
                if retired is not None:
                    self._ops.close(retired.fd)
        self._maybe_delete_dead_segments()

    def abandon_sync(self, job: SyncJob) -> None:
        """Release ``job``'s files after its fsync failed (owner's thread)."""
        for seg, _ in job.sizes:
            self._in_flight[seg.seq] -= 1
            if not self._in_flight[seg.seq]:
                del self._in_flight[seg.seq]
                retired = self._retired.pop(seg.seq, None)
                if retired is not None:
                    self._ops.close(retired.fd)

    def sync(self) -> None:
        job = self.begin_sync()
        try:
            self.run_sync(job)
        except BaseException:
            self.abandon_sync(job)
            raise
        self.end_sync(job)

    # --- hard state ---------------------------------------------------

    def save_hard_state(self, hard_state: HardState) -> None:
        self.persist_hard_state(hard_state)
        self._hard_state = hard_state

    def set_hard_state(self, hard_state: HardState) -> None:
        """Remember ``hard_state`` without writing it; the caller persists
        it with :meth:`persist_hard_state` (possibly from a worker thread)."""
        self._hard_state = hard_state

    def persist_hard_state(self, hard_state: HardState) -> None:
        """Write ``hard_state`` atomically and durably (any thread)."""
        hard_state_file.save_hard_state(self._ops, self._hard_state_path, hard_state)

    def load_hard_state(self) -> HardState:
        return self._hard_state

    def close(self) -> None:
        assert not self._in_flight, "close() while a sync is in flight"
        for seg in self._segments.values():
            self._ops.close(seg.fd)
        self._segments.clear()
