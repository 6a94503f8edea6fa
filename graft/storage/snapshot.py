"""Snapshot files: :class:`FileSnapshotStore`, its chunk writer and a
read-only view of a stored snapshot.

One file per snapshot, ``snapshot-<index>-<term>.snap``, laid out as::

    data | metadata (JSON) | footer

with the footer ``data_len u64, meta_len u32, data_crc u32, meta_crc u32,
magic 8 bytes``, little-endian, CRC-32 (``zlib.crc32``). A snapshot is
written to a ``.tmp`` file, fsynced, renamed and the directory fsynced, so it
appears whole or not at all; leftover ``.tmp`` files are deleted on open.
The newest ``retain`` snapshots (by index) are kept.

:class:`SnapshotFile` maps a snapshot's data with ``mmap``: it has
``len()``, slicing and ``read(offset, n)``, so chunks for InstallSnapshot
(§7) are read without loading the whole snapshot into memory.

This module may import the standard library, attrs, zope.interface,
graft.raft and graft.storage.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import re
import struct
import zlib
from collections.abc import Iterator
from typing import Any

from zope.interface import implementer  # type: ignore[import-untyped]

from graft.raft.messages import Configuration, Member, SnapshotData, SnapshotMeta
from graft.storage.errors import StorageCorruption
from graft.storage.fileops import FileOps
from graft.storage.interfaces import ISnapshotStore, ISnapshotWriter

_FOOTER = struct.Struct("<QIII8s")
_MAGIC = b"GRFTSNP1"
_NAME = re.compile(r"^snapshot-(\d{20})-(\d{20})\.snap$")
RETAIN_DEFAULT = 2


def snapshot_name(meta: SnapshotMeta) -> str:
    return f"snapshot-{meta.index:020d}-{meta.term:020d}.snap"


def encode_meta(meta: SnapshotMeta) -> bytes:
    members = [
        {"id": m.id, "address": m.address, "voter": m.voter} for m in meta.configuration.members
    ]
    return json.dumps(
        {"index": meta.index, "term": meta.term, "members": members}, sort_keys=True
    ).encode()


def decode_meta(data: bytes) -> SnapshotMeta:
    raw: dict[str, Any] = json.loads(data)
    members = tuple(
        Member(id=m["id"], address=m["address"], voter=m["voter"]) for m in raw["members"]
    )
    return SnapshotMeta(
        index=raw["index"], term=raw["term"], configuration=Configuration(members=members)
    )


def encode_file_tail(meta: SnapshotMeta, data_len: int, data_crc: int) -> bytes:
    """What follows ``data_len`` bytes of data with CRC-32 ``data_crc`` in a
    snapshot file: the metadata and the footer."""
    meta_bytes = encode_meta(meta)
    footer = _FOOTER.pack(data_len, len(meta_bytes), data_crc, zlib.crc32(meta_bytes), _MAGIC)
    return meta_bytes + footer


class SnapshotFile:
    """A stored snapshot's data, memory-mapped, read-only: ``len()``,
    slicing (``data[a:b]`` gives bytes) and ``read(offset, n)``."""

    def __init__(self, path: str, meta: SnapshotMeta, data_len: int, data_crc: int) -> None:
        self.path = path
        self.meta = meta
        self.data_crc32 = data_crc
        self._len = data_len
        # Reads go through the open file (pread), not the mapping: pages
        # read once do not stay counted in the node's resident memory, and
        # the data stays readable after the store deletes the file.
        self._file = open(path, "rb")  # noqa: SIM115 (closed by close())
        self._map = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, key: slice, /) -> bytes:
        if not isinstance(key, slice):
            raise TypeError("snapshot data supports slices only")
        start, stop, step = key.indices(self._len)
        if step != 1:
            raise ValueError("snapshot data slices must be contiguous")
        return os.pread(self._file.fileno(), stop - start, start) if start < stop else b""

    def read(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes from ``offset`` (fewer at the end)."""
        return self[offset : offset + size]

    @property
    def file_size(self) -> int:
        """Bytes in the whole file: data, metadata and footer."""
        return len(self._map)

    def read_file(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes of the whole file (a backup copy) from ``offset``."""
        size = min(size, len(self._map) - offset)
        return os.pread(self._file.fileno(), size, offset) if size > 0 else b""

    def chunks(self, chunk_bytes: int = 1 << 20) -> Iterator[bytes]:
        """The data in chunks of ``chunk_bytes`` (to restore a state machine)."""
        for start in range(0, self._len, chunk_bytes):
            yield self[start : start + chunk_bytes]

    def file_crc32(self) -> int:
        """CRC-32 of the whole file, from the data's stored checksum and the
        (small) metadata and footer: no pass over the data."""
        return zlib.crc32(self._map[self._len :], self.data_crc32)

    def close(self) -> None:
        self._map.close()
        self._file.close()


def _read_footer(path: str, buf: bytes | mmap.mmap) -> tuple[SnapshotMeta, int, int]:
    """``(meta, data_len, data_crc)`` from a snapshot file's footer and
    metadata; StorageCorruption if they are damaged."""
    size = len(buf)
    if size < _FOOTER.size:
        raise StorageCorruption(path, 0, "snapshot file shorter than its footer")
    data_len, meta_len, data_crc, meta_crc, magic = _FOOTER.unpack_from(buf, size - _FOOTER.size)
    if magic != _MAGIC:
        raise StorageCorruption(path, size - _FOOTER.size, "not a graft snapshot (bad magic)")
    if data_len + meta_len + _FOOTER.size != size:
        raise StorageCorruption(path, size - _FOOTER.size, "snapshot footer lengths disagree")
    meta_bytes = bytes(buf[data_len : data_len + meta_len])
    if zlib.crc32(meta_bytes) != meta_crc:
        raise StorageCorruption(path, data_len, "snapshot metadata checksum mismatch")
    return decode_meta(meta_bytes), data_len, data_crc


def _crc32_of(fd: int, length: int, chunk_bytes: int = 1 << 20) -> int:
    """CRC-32 of the first ``length`` bytes of file ``fd``, a chunk at a
    time (bounded memory, and no mapped pages left resident)."""
    crc = 0
    for start in range(0, length, chunk_bytes):
        crc = zlib.crc32(os.pread(fd, min(chunk_bytes, length - start), start), crc)
    return crc


def open_snapshot_file(path: str, *, verify: bool = True) -> SnapshotFile:
    """The snapshot file at ``path`` (in a store or a backup copy); with
    ``verify`` its data checksum is checked. StorageCorruption if damaged."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < _FOOTER.size:
            raise StorageCorruption(path, 0, "snapshot file shorter than its footer")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            meta, data_len, data_crc = _read_footer(path, m)
            if verify and _crc32_of(f.fileno(), data_len) != data_crc:
                raise StorageCorruption(path, 0, "snapshot data checksum mismatch")
    return SnapshotFile(path, meta, data_len, data_crc)


@implementer(ISnapshotWriter)
class FileSnapshotWriter:
    """A snapshot arriving in chunks, written to a temporary file and made
    the newest snapshot atomically on ``commit``."""

    def __init__(self, store: FileSnapshotStore, meta: SnapshotMeta) -> None:
        self.meta = meta
        self.next_offset = 0
        self._store = store
        self._ops = store.ops
        self._final = os.path.join(store.path, snapshot_name(meta))
        self._tmp = self._final + ".tmp"
        self._crc = 0
        self._fd: int | None = self._ops.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)

    def write(self, offset: int, data: bytes) -> None:
        if self._fd is None:
            raise ValueError("snapshot writer is closed")
        if offset != self.next_offset:
            raise ValueError(f"chunk at offset {offset}, expected {self.next_offset}")
        self._ops.write_all(self._fd, data)
        self._crc = zlib.crc32(data, self._crc)
        self.next_offset += len(data)

    def commit(self, expected_crc32: int | None = None) -> None:
        if self._fd is None:
            raise ValueError("snapshot writer is closed")
        if expected_crc32 is not None and expected_crc32 != self._crc:
            self.abort()
            raise StorageCorruption(
                self._tmp,
                0,
                f"received snapshot checksum {self._crc:#010x}, expected {expected_crc32:#010x}",
            )
        tail = encode_file_tail(self.meta, self.next_offset, self._crc)
        fd, self._fd = self._fd, None
        try:
            self._ops.write_all(fd, tail)
            self._ops.fsync(fd)
        except BaseException:
            self._ops.close(fd)
            self._discard()
            raise
        self._ops.close(fd)
        self._ops.rename(self._tmp, self._final)
        self._ops.fsync_dir(self._store.path)
        self._store.prune()

    def abort(self) -> None:
        if self._fd is not None:
            self._ops.close(self._fd)
            self._fd = None
        self._discard()

    def _discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._ops.unlink(self._tmp)


@implementer(ISnapshotStore)
class FileSnapshotStore:
    """Snapshot files in directory ``path``; the newest ``retain`` kept."""

    def __init__(self, path: str, *, retain: int = RETAIN_DEFAULT, ops: FileOps | None = None):
        assert retain >= 1
        self.path = path
        self.ops = ops if ops is not None else FileOps()
        self.retain = retain
        self.ops.makedirs(path)
        for name in self.ops.listdir(path):
            if name.endswith(".tmp"):
                self.ops.unlink(os.path.join(path, name))

    def _names(self) -> list[str]:
        """Snapshot file names, oldest (lowest index, then term) first."""
        return sorted(n for n in self.ops.listdir(self.path) if _NAME.match(n))

    def create(self, meta: SnapshotMeta, data: bytes) -> None:
        writer = self.writer(meta)
        try:
            writer.write(0, data)
        except BaseException:
            writer.abort()
            raise
        writer.commit()

    def writer(self, meta: SnapshotMeta) -> FileSnapshotWriter:
        return FileSnapshotWriter(self, meta)

    def open(self, name: str, *, verify: bool = True) -> SnapshotFile:
        """The snapshot in file ``name``; with ``verify`` its data checksum is
        checked (StorageCorruption if it differs)."""
        return open_snapshot_file(os.path.join(self.path, name), verify=verify)

    def names(self) -> list[str]:
        """Snapshot file names, oldest (lowest index, then term) first."""
        return self._names()

    def load(self, name: str) -> tuple[SnapshotMeta, SnapshotData]:
        """``(meta, data)`` of the snapshot in file ``name``, checksums
        verified (StorageCorruption if damaged)."""
        snap = self.open(name)
        return snap.meta, snap

    def latest(self) -> tuple[SnapshotMeta, SnapshotData] | None:
        names = self._names()
        if not names:
            return None
        snap = self.open(names[-1])
        return snap.meta, snap

    def list_metas(self) -> list[SnapshotMeta]:
        metas = []
        for name in self._names():
            snap = self.open(name, verify=False)
            metas.append(snap.meta)
            snap.close()
        return metas

    def prune(self) -> None:
        """Delete all but the newest ``retain`` snapshots."""
        names = self._names()
        for name in names[: -self.retain]:
            self.ops.unlink(os.path.join(self.path, name))
        if len(names) > self.retain:
            self.ops.fsync_dir(self.path)
