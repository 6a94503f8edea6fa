"""Rebuilding the log's index from its segment files when a log opens.

Segments are replayed oldest first, reading only record headers and
checking both CRCs: each entry record cuts the log at its index and
appends itself (cut-and-append is written as plain appends, so files are
only ever appended to); a marker record drops a prefix or everything.

What counts as damage and what as a crash (DESIGN.md "Durability"):

- A segment is rolled only once it is durable, so only the *last* segment
  can end in a record that a crash (or a failed write) left incomplete.
- In the last segment, a damaged record with no intact record header after
  it is that torn write: the log ends at the record before it, and the file
  is cut there when the log opens.
- Any other damage (a checksum failure in an older segment, or one followed
  by intact records, a missing segment, an index gap) raises
  StorageCorruption naming the file and offset. Nothing is repaired silently.

This module may import the standard library, attrs, graft.raft and
graft.storage.
"""

from __future__ import annotations

import os
import re
import zlib
from array import array

import attrs

from graft.storage.errors import StorageCorruption
from graft.storage.fileops import FileOps
from graft.storage.record import (
    HEADER,
    HEADER_SIZE,
    KIND_DROP_PREFIX,
    KIND_RESET,
    SEGMENT_MAGIC,
    header_is_intact,
)

SEGMENT_NAME = re.compile(r"^(\d{20})\.wal$")
_LAST_ENTRY_KIND = 2


def segment_name(seq: int) -> str:
    return f"{seq:020d}.wal"


@attrs.define
class RecoveredSegment:
    seq: int
    path: str
    #: Bytes of whole records (plus the magic); the file is cut to this.
    size: int
    #: The file's size on disk when read; larger than ``size`` if torn.
    file_size: int


@attrs.define
class LogIndex:
    """Where each live entry is: parallel arrays indexed by
    ``index - first_index``. Segment numbers never decrease along them."""

    first_index: int = 1
    seg: array[int] = attrs.field(factory=lambda: array("Q"))
    offset: array[int] = attrs.field(factory=lambda: array("Q"))
    length: array[int] = attrs.field(factory=lambda: array("I"))
    term: array[int] = attrs.field(factory=lambda: array("Q"))

    def __len__(self) -> int:
        return len(self.seg)

    def truncate(self, count: int) -> None:
        """Keep the first ``count`` entries."""
        for a in (self.seg, self.offset, self.length, self.term):
            del a[count:]

    def drop_front(self, count: int) -> None:
        """Forget the first ``count`` entries."""
        for a in (self.seg, self.offset, self.length, self.term):
            del a[:count]
        self.first_index += count


@attrs.define
class Recovered:
    segments: list[RecoveredSegment]
    index: LogIndex
    #: ``(path, offset, problem)`` of a torn tail that was cut off, if any.
    torn: tuple[str, int, str] | None = None


def list_segments(directory: str, ops: FileOps) -> list[tuple[int, str]]:
    """``(seq, path)`` of every segment file in ``directory``, oldest first."""
    found = []
    for name in ops.listdir(directory):
        m = SEGMENT_NAME.match(name)
        if m:
            found.append((int(m.group(1)), os.path.join(directory, name)))
    found.sort()
    return found


def _intact_header_after(buf: bytes, pos: int) -> int | None:
    """The offset of the first intact record header after ``pos``, if any."""
    for p in range(pos + 1, len(buf) - HEADER_SIZE + 1):
        if header_is_intact(buf, p):
            return p
    return None


def recover(directory: str, ops: FileOps) -> Recovered:
    """Replay every segment in ``directory``; see the module docstring."""
    index = LogIndex()
    segments: list[RecoveredSegment] = []
    torn: tuple[str, int, str] | None = None
    found = list_segments(directory, ops)
    started = False  # whether any record or marker has set first_index
    for n, (seq, path) in enumerate(found):
        is_last = n == len(found) - 1
        if n and seq != found[n - 1][0] + 1:
            raise StorageCorruption(path, 0, f"segment {found[n - 1][0] + 1} is missing")
        fd = ops.open(path, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            buf = ops.pread(fd, size, 0)
        finally:
            ops.close(fd)
        magic_len = len(SEGMENT_MAGIC)
        if buf[:magic_len] != SEGMENT_MAGIC[: len(buf)]:
            raise StorageCorruption(path, 0, "not a graft WAL segment (bad magic)")
        if len(buf) < magic_len:
            if not is_last:
                raise StorageCorruption(path, 0, "segment shorter than its magic")
            torn = (path, 0, "segment magic incomplete")
            segments.append(RecoveredSegment(seq=seq, path=path, size=0, file_size=len(buf)))
            continue
        good_end, problem, started = _replay(buf, seq, index, started, path)
        if problem is not None:
            bad_at, what = problem
            if not is_last:
                raise StorageCorruption(path, bad_at, what)
            later = _intact_header_after(buf, bad_at)
            if later is not None:
                raise StorageCorruption(
                    path, bad_at, f"{what}, followed by an intact record at offset {later}"
                )
            torn = (path, bad_at, what)
        segments.append(RecoveredSegment(seq=seq, path=path, size=good_end, file_size=len(buf)))
    return Recovered(segments=segments, index=index, torn=torn)


def _replay(
    buf: bytes, seq: int, index: LogIndex, started: bool, path: str
) -> tuple[int, tuple[int, str] | None, bool]:
    """Replay the records of one segment into ``index``.

    Returns the end of the last whole record, the first damage found as
    ``(offset, problem)`` (None if none) and the new ``started``.
    """
    mv = memoryview(buf)
    size = len(buf)
    pos = len(SEGMENT_MAGIC)
    unpack = HEADER.unpack_from
    crc32 = zlib.crc32
    hsize = HEADER_SIZE
    seg_append = index.seg.append
    off_append = index.offset.append
    len_append = index.length.append
    term_append = index.term.append
    nxt = index.first_index + len(index)  # the index an append would take
    while pos < size:
        if size - pos < hsize:
            return pos, (pos, "incomplete record header"), started
        header_crc, data_crc, length, idx, term, kind = unpack(buf, pos)
        if crc32(mv[pos + 4 : pos + hsize]) != header_crc:
            return pos, (pos, "record header checksum mismatch"), started
        end = pos + hsize + length
        if end > size:
            return pos, (pos, f"record of entry {idx} runs past the end of the file"), started
        if crc32(mv[pos + hsize : end]) != data_crc:
            return pos, (pos, f"data checksum mismatch in record of entry {idx}"), started
        if kind <= _LAST_ENTRY_KIND:
            if idx != nxt or not started:
                first = index.first_index
                count = len(index)
                if not started or count == 0 or idx < first:
                    # The first record seen, or one after every earlier
                    # entry was dropped or deleted with its segment.
                    index.truncate(0)
                    index.first_index = idx
                elif idx <= first + count - 1:
                    index.truncate(idx - first)  # cut-and-append
                else:
                    raise StorageCorruption(
                        path, pos, f"entry {idx} follows entry {first + count - 1}: a gap"
                    )
                started = True
            seg_append(seq)
            off_append(pos)
            len_append(end - pos)
            term_append(term)
            nxt = idx + 1
        elif kind == KIND_DROP_PREFIX:
            first = index.first_index
            if not started or idx >= first:
                index.drop_front(min(idx + 1 - first, len(index)))
                index.first_index = idx + 1
                started = True
            nxt = index.first_index + len(index)
        elif kind == KIND_RESET:
            index.truncate(0)
            index.first_index = idx + 1
            started = True
            nxt = idx + 1
        else:
            raise StorageCorruption(path, pos, f"unknown record kind {kind}")
        pos = end
    return pos, None, started
