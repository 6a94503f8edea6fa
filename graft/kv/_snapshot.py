"""The snapshot format: a frozen state as a stream of bytes, and back.

Format 1, all integers big-endian::

    stream  := MAGIC frame(H) frame(R)* frame(E)
    MAGIC   := b"GRAFTKV\\x00"
    frame   := kind: 1 byte | length: u32 | crc32(kind + payload): u32 | payload
    H       := msgpack {"format": 1, "applied_index": int, "revision": int, "count": int}
    R       := msgpack [keys: [bin...], values: [bin...], revisions: [int...]]
    E       := msgpack {"count": int, "crc32": crc32 of every byte before this frame}

Keys travel as their UTF-8 bytes, values as canonical JSON bytes. Records
come in strictly increasing key order, at most ``FRAME_RECORDS`` in a frame
and, past the first record of a frame, at most about ``FRAME_VALUE_BYTES``
of values. Frames are cut from the records
alone, so the same state always gives the same bytes on every node, however
its blocks happen to be laid out.

Writing is a generator over frozen blocks: it may run on any thread while
the store goes on applying entries. Reading validates everything (magic,
format, every checksum, lengths, key order and validity, revisions within
the header's revision, counts, nothing after the end frame) and raises
:class:`SnapshotFormatError` naming the first problem.

This module imports only the standard library, attrs and msgpack.
"""

from __future__ import annotations

import array
import re
import struct
import zlib
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from itertools import accumulate
from typing import Any

import attrs
import msgpack

from graft.kv._errors import SnapshotFormatError
from graft.kv._keys import KEY_BYTES_MAX
from graft.kv._records import Block, blocks_of, new_offsets

MAGIC = b"GRAFTKV\x00"
SNAPSHOT_FORMAT = 1
#: Records in a full frame: part of the format (readers refuse more), and
#: independent of the store's block size.
FRAME_RECORDS = 1024
#: A frame is cut once its values pass this size (a single larger value
#: still gets a frame of its own).
FRAME_VALUE_BYTES = 1 << 20
#: Longest frame payload a reader accepts: bounds its memory on a damaged
#: length field.
FRAME_BYTES_MAX = 1 << 30

_FRAME_HEAD = struct.Struct(">cII")
_HEADER, _RECORDS, _END = b"H", b"R", b"E"
_CONTROL_CHARACTER = re.compile("[\x00-\x1f\x7f-\x9f]")


@attrs.frozen(kw_only=True)
class SnapshotView:
    """A consistent, frozen copy of a store's state, cheap to take (see
    ``KVStore.snapshot``). Its blocks are never changed again, so
    :meth:`chunks` may run on any thread while the store goes on."""

    applied_index: int
    revision: int
    count: int
    blocks: tuple[Block, ...] = attrs.field(repr=False)

    def chunks(self) -> Iterator[bytes]:
        """The snapshot as a stream of byte strings, one frame each."""
        return serialize(self)


def _frame(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(payload, zlib.crc32(kind))
    return _FRAME_HEAD.pack(kind, len(payload), crc) + payload


def _pack(obj: object) -> bytes:
    data: bytes = msgpack.packb(obj, use_bin_type=True)
    return data


def _record_runs(
    blocks: Sequence[Block],
) -> Iterator[tuple[list[bytes], list[bytes], list[int]]]:
    """Records regrouped into frames: full ones of ``FRAME_RECORDS``
    records, or cut short once values pass ``FRAME_VALUE_BYTES``."""
    keys: list[bytes] = []
    values: list[bytes] = []
    revisions: list[int] = []
    value_bytes = 0
    for block in blocks:
        block_keys, block_values = block.key_list(), block.value_list()
        start, end = 0, len(block)
        while start < end:
            stop = min(end, start + FRAME_RECORDS - len(keys))
            # Running value sizes, in C: where this run crosses the limit.
            sizes = list(accumulate(map(len, block_values[start:stop]), initial=value_bytes))
            over = _records_within(sizes, FRAME_VALUE_BYTES)
            if over is not None:
                stop = start + max(over, 0 if keys else 1)
            keys += block_keys[start:stop]
            values += block_values[start:stop]
            revisions += block.revisions[start:stop].tolist()
            value_bytes = sizes[stop - start]
            start = stop
            if len(keys) == FRAME_RECORDS or over is not None:
                if keys:
                    yield keys, values, revisions
                keys, values, revisions, value_bytes = [], [], [], 0
    if keys:
        yield keys, values, revisions


def _records_within(sizes: list[int], limit: int) -> int | None:
    """Given running byte totals (``sizes[0]`` being the bytes before the
    run), how many records of the run fit within ``limit``, or None if all
    of them do."""
    if sizes[-1] <= limit:
        return None
    # Running totals never decrease: bisect for the first one past the limit.
    return bisect_right(sizes, limit) - 1


def serialize(view: SnapshotView) -> Iterator[bytes]:
    """``view`` in the snapshot format, as one byte string per frame."""
    crc = zlib.crc32(MAGIC)
    header = _frame(
        _HEADER,
        _pack(
            {
                "format": SNAPSHOT_FORMAT,
                "applied_index": view.applied_index,
                "revision": view.revision,
                "count": view.count,
            }
        ),
    )
    crc = zlib.crc32(header, crc)
    yield MAGIC + header
    for keys, values, revisions in _record_runs(view.blocks):
        frame = _frame(_RECORDS, _pack((keys, values, revisions)))
        crc = zlib.crc32(frame, crc)
        yield frame
    yield _frame(_END, _pack({"count": view.count, "crc32": crc}))


@attrs.frozen(kw_only=True)
class ParsedSnapshot:
    """What :func:`parse` found: the header's numbers and the blocks."""

    applied_index: int
    revision: int
    count: int
    blocks: list[Block]


class _Reader:
    """Cuts a stream of chunks of any sizes into frames."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._buffer = bytearray()
        self._position = 0
        self._ended = False
        #: crc32 of every byte consumed so far.
        self.crc = 0
        self.offset = 0

    def _fill(self, size: int) -> bool:
        while len(self._buffer) - self._position < size:
            if self._ended:
                return False
            if self._position:
                del self._buffer[: self._position]
                self._position = 0
            try:
                chunk = next(self._chunks)
            except StopIteration:
                self._ended = True
                return False
            if not isinstance(chunk, bytes | bytearray | memoryview):
                raise SnapshotFormatError(
                    f"snapshot chunks must be bytes, not {type(chunk).__name__}"
                )
            self._buffer += chunk
        return True

    def read(self, size: int, what: str) -> bytes:
        if not self._fill(size):
            raise SnapshotFormatError(
                f"snapshot is truncated: {what} at byte {self.offset} needs {size} bytes, "
                f"only {len(self._buffer) - self._position} left"
            )
        data = bytes(self._buffer[self._position : self._position + size])
        self._position += size
        self.offset += size
        self.crc = zlib.crc32(data, self.crc)
        return data

    def at_end(self) -> bool:
        return not self._fill(1)

    def frame(self) -> tuple[bytes, Any, int]:
        """The next frame's kind, decoded payload and offset."""
        offset = self.offset
        kind, length, crc = _FRAME_HEAD.unpack(self.read(_FRAME_HEAD.size, "frame header"))
        if kind not in (_HEADER, _RECORDS, _END):
            raise SnapshotFormatError(f"unknown frame kind {kind!r} at byte {offset}")
        if length > FRAME_BYTES_MAX:
            raise SnapshotFormatError(
                f"frame at byte {offset} claims {length} bytes; at most {FRAME_BYTES_MAX}"
            )
        payload = self.read(length, "frame payload")
        if zlib.crc32(payload, zlib.crc32(kind)) != crc:
            raise SnapshotFormatError(f"checksum mismatch in frame at byte {offset}")
        try:
            decoded = msgpack.unpackb(payload, raw=False, use_list=True, strict_map_key=True)
        except Exception as e:
            raise SnapshotFormatError(
                f"frame at byte {offset} is not valid msgpack: {type(e).__name__}: {e}"
            ) from None
        return kind, decoded, offset


def _header_int(header: dict[str, Any], name: str) -> int:
    value = header.get(name)
    if type(value) is not int or value < 0:
        raise SnapshotFormatError(f"snapshot header {name} is {value!r}; expected an integer >= 0")
    return value


def _check_records(
    decoded: Any, offset: int, previous: bytes | None, revision: int
) -> tuple[list[bytes], list[bytes], array.array[int]]:
    """The columns a records frame holds, once every record is checked. The
    checks run over whole columns with C-level builtins: a per-record
    Python loop would cost about a second per million keys."""

    def refuse(problem: str) -> SnapshotFormatError:
        return SnapshotFormatError(f"records frame at byte {offset}: {problem}")

    if type(decoded) is not list or len(decoded) != 3:
        raise refuse("expected [keys, values, revisions]")
    keys, values, revisions = decoded
    if not (type(keys) is type(values) is type(revisions) is list):
        raise refuse("keys, values and revisions must be arrays")
    if not keys or not len(keys) == len(values) == len(revisions):
        raise refuse(f"columns of {len(keys)}, {len(values)}, {len(revisions)} records")
    if len(keys) > FRAME_RECORDS:
        raise refuse(f"{len(keys)} records; at most {FRAME_RECORDS}")
    if set(map(type, keys)) != {bytes}:
        raise refuse("a key is not binary")
    if set(map(type, values)) != {bytes}:
        raise refuse("a value is not binary")
    if not set(map(type, revisions)) <= {int}:
        raise refuse("a revision is not an integer")
    if previous is not None and keys[0] <= previous:
        raise refuse(f"key {keys[0]!r} does not come after {previous!r}")
    if keys != sorted(keys) or len(set(keys)) != len(keys):
        raise refuse("keys are not in strictly increasing order")
    # validate_key's rules, over whole columns at once.
    if min(map(len, keys)) == 0:
        raise refuse("empty key")
    if max(map(len, keys)) > KEY_BYTES_MAX:
        raise refuse(f"key longer than {KEY_BYTES_MAX} bytes")
    # Joined with NUL, which is in no valid key and in no multibyte UTF-8
    # sequence: each key must decode alone, and the only controls are ours.
    try:
        text = b"\x00".join(keys).decode("utf-8")
    except UnicodeDecodeError:
        raise refuse("key that is not valid UTF-8") from None
    if len(_CONTROL_CHARACTER.findall(text)) != len(keys) - 1:
        raise refuse("key with a control character")
    if min(revisions) < 1 or max(revisions) > revision:
        raise refuse(f"revision outside 1..{revision}")
    try:
        return keys, values, new_offsets(revisions)
    except OverflowError:
        raise refuse("revision out of range") from None


def parse(chunks: Iterable[bytes]) -> ParsedSnapshot:
    """Read a whole snapshot from ``chunks`` (byte strings of any sizes,
    cut anywhere); raise :class:`SnapshotFormatError` if it is damaged."""
    reader = _Reader(chunks)
    if reader.read(len(MAGIC), "magic") != MAGIC:
        raise SnapshotFormatError("not a graft kv snapshot (bad magic bytes)")
    kind, header, offset = reader.frame()
    if kind != _HEADER or type(header) is not dict:
        raise SnapshotFormatError("snapshot does not start with a header frame")
    if type(header.get("format")) is not int or header["format"] != SNAPSHOT_FORMAT:
        raise SnapshotFormatError(
            f"unknown snapshot format {header.get('format')!r}; expected {SNAPSHOT_FORMAT}"
        )
    applied_index = _header_int(header, "applied_index")
    revision = _header_int(header, "revision")
    count = _header_int(header, "count")
    if count > revision:
        raise SnapshotFormatError(f"header counts {count} keys but only {revision} writes")
    blocks: list[Block] = []
    seen = 0
    previous: bytes | None = None
    while True:
        crc = reader.crc
        kind, decoded, offset = reader.frame()
        if kind == _RECORDS:
            keys, values, revisions = _check_records(decoded, offset, previous, revision)
            blocks.extend(blocks_of(keys, values, revisions))
            seen += len(keys)
            previous = keys[-1]
            if seen > count:
                raise SnapshotFormatError(f"more records than the {count} the header announced")
        elif kind == _END:
            break
        else:
            raise SnapshotFormatError(f"unexpected header frame at byte {offset}")
    if type(decoded) is not dict or decoded.get("crc32") != crc or decoded.get("count") != count:
        raise SnapshotFormatError("end frame does not match the snapshot's checksum or count")
    if seen != count:
        raise SnapshotFormatError(f"snapshot has {seen} records; header announced {count}")
    if not reader.at_end():
        raise SnapshotFormatError(f"unexpected bytes after the end frame at byte {reader.offset}")
    return ParsedSnapshot(
        applied_index=applied_index, revision=revision, count=count, blocks=blocks
    )


def chunks_of(data: Any, chunk_bytes: int = 1 << 20) -> Iterator[bytes]:
    """Slices of ``data`` (``bytes``, or anything with a length and slices,
    such as an ``mmap``) of at most ``chunk_bytes``: feeds :func:`parse`
    from a snapshot file without reading it whole."""
    for start in range(0, len(data), chunk_bytes):
        yield bytes(data[start : start + chunk_bytes])
