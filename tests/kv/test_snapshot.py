"""Snapshots round-trip exactly, are cheap to take and stable while the
store goes on, and damaged ones are refused without touching the state."""

from __future__ import annotations

import struct
import zlib

import msgpack
import pytest

from graft.kv import (
    KVStore,
    Put,
    SnapshotFormatError,
    _snapshot,
    chunks_of,
    encode_command,
    serialize,
)
from graft.kv._records import BLOCK_RECORDS


def state(store: KVStore) -> tuple[int, int, list[tuple[str, bytes, int]]]:
    return (
        store.applied_index,
        store.revision,
        [(r.key, r.value, r.revision) for r in store.list()],
    )


def build(count: int, *, value: bytes = b'"value"', start: int = 0) -> KVStore:
    store = KVStore()
    for i in range(count):
        key = f"k/{(i * 7919) % max(count, 1):06d}"
        store.apply_command(start + i + 1, Put(key=key, value_json=value))
    return store


def snapshot_bytes(store: KVStore) -> bytes:
    return b"".join(store.snapshot().chunks())


def test_an_empty_store_round_trips() -> None:
    """The snapshot of an empty store restores to an empty store."""
    store = KVStore()
    restored = KVStore.from_snapshot(snapshot_bytes(store))
    assert state(restored) == state(store) == (0, 0, [])


def test_a_store_round_trips_exactly() -> None:
    """Keys, values, revisions, revision and applied_index all survive."""
    store = build(3 * BLOCK_RECORDS + 5)
    store.apply(store.applied_index + 1, encode_command(Put(key="é/😀", value_json=b"[1]")))
    store.mark_applied(store.applied_index + 1)
    restored = KVStore.from_snapshot(store.snapshot().chunks())
    assert state(restored) == state(store)
    assert len(restored) == len(store) == 3 * BLOCK_RECORDS + 6


def test_restored_store_goes_on_applying_like_the_original() -> None:
    """After restore, the same entries give the same results and state."""
    original = build(2 * BLOCK_RECORDS + 1)
    restored = KVStore.from_snapshot(snapshot_bytes(original))
    for store in (original, restored):
        for i in range(0, 2 * BLOCK_RECORDS, 5):
            index = store.applied_index + 1
            store.apply_command(index, Put(key=f"k/{i:06d}", value_json=b"2", if_revision=3))
            store.apply_command(index + 1, Put(key=f"n/{i}", value_json=b"3"))
        store._records.check_invariants()
    assert state(restored) == state(original)


def test_same_state_gives_the_same_bytes_however_it_was_built() -> None:
    """Frames are cut from the records, not the block layout, so snapshots
    of equal states are byte-identical."""
    original = build(5 * BLOCK_RECORDS)
    restored = KVStore.from_snapshot(snapshot_bytes(original))
    assert snapshot_bytes(restored) == snapshot_bytes(original)


def test_chunks_cut_anywhere_restore_the_same_state() -> None:
    """The reader accepts the stream in pieces of any size."""
    store = build(300)
    data = snapshot_bytes(store)
    for size in (1, 7, 4096, len(data)):
        assert state(KVStore.from_snapshot(chunks_of(data, size))) == state(store)
    assert state(KVStore.from_snapshot(memoryview(data))) == state(store)


def test_a_snapshot_view_is_unchanged_by_later_writes() -> None:
    """Writes after snapshot() do not leak into the view's bytes."""
    store = build(3 * BLOCK_RECORDS)
    expected = snapshot_bytes(store)
    view = store.snapshot()
    for i in range(0, 3 * BLOCK_RECORDS, 2):
        index = store.applied_index + 1
        store.apply_command(index, Put(key=f"k/{i:06d}", value_json=b"0"))
        store.apply_command(index + 1, Put(key=f"k/{i:06d}/new", value_json=b"0"))
    assert b"".join(serialize(view)) == expected
    assert (view.applied_index, view.revision, view.count) == (
        3 * BLOCK_RECORDS,
        3 * BLOCK_RECORDS,
        3 * BLOCK_RECORDS,
    )


def test_a_view_serialized_on_another_thread_is_consistent_while_writes_go_on() -> None:
    """chunks() may run off the reactor thread while the store applies
    entries: the bytes are those of the state when the view was taken."""
    import threading

    store = build(4 * BLOCK_RECORDS)
    expected = snapshot_bytes(store)
    view = store.snapshot()
    chunks: list[bytes] = []
    writer_done = threading.Event()

    def write() -> None:
        for i in range(4 * BLOCK_RECORDS):
            index = store.applied_index + 1
            store.apply_command(index, Put(key=f"k/{i:06d}", value_json=b"[]"))
            store.apply_command(index + 1, Put(key=f"j/{i:06d}", value_json=b"{}"))
        writer_done.set()

    writer = threading.Thread(target=write)
    writer.start()
    for chunk in view.chunks():
        chunks.append(chunk)
    writer.join()
    assert writer_done.is_set()
    assert b"".join(chunks) == expected
    store._records.check_invariants()


def test_large_values_are_cut_into_frames_of_bounded_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """Frames stop growing once their values pass the size limit; a single
    larger value gets a frame of its own."""
    monkeypatch.setattr(_snapshot, "FRAME_VALUE_BYTES", 100)
    store = KVStore()
    sizes = [30, 30, 30, 30, 250, 10, 10]
    for i, size in enumerate(sizes):
        store.apply_command(i + 1, Put(key=f"k{i}", value_json=b'"' + b"x" * (size - 2) + b'"'))
    chunks = list(store.snapshot().chunks())
    frames = [msgpack.unpackb(chunk[9:]) for chunk in chunks[1:-1]]
    assert [[len(v) for v in frame[1]] for frame in frames] == [[30, 30, 30], [30], [250], [10, 10]]
    assert state(KVStore.from_snapshot(chunks)) == state(store)


def test_restore_replaces_the_state_in_place() -> None:
    """restore() makes a store equal to the snapshot's state."""
    source = build(50)
    target = build(10, value=b"0", start=100)
    target.restore(snapshot_bytes(source))
    assert state(target) == state(source)


def damaged_versions(data: bytes) -> list[tuple[str, bytes]]:
    versions = [("empty", b""), ("magic only", data[:8]), ("trailing byte", data + b"\x00")]
    for cut in sorted({1, 9, 17, 30, len(data) // 2, len(data) - 5, len(data) - 1}):
        versions.append((f"truncated to {cut}", data[:cut]))
    for position in sorted({0, 8, 12, 20, 40, len(data) // 3, len(data) // 2, len(data) - 2}):
        for bit in (0, 7):
            flipped = bytearray(data)
            flipped[position] ^= 1 << bit
            versions.append((f"bit {bit} of byte {position} flipped", bytes(flipped)))
    return versions


def test_damaged_snapshots_are_refused_without_touching_the_state() -> None:
    """Truncated, extended and bit-flipped snapshots raise
    SnapshotFormatError and leave the restoring store as it was."""
    data = snapshot_bytes(build(2 * BLOCK_RECORDS + 3))
    target = build(5, value=b"1", start=10)
    before = state(target)
    for name, damaged in damaged_versions(data):
        with pytest.raises(SnapshotFormatError):
            target.restore(damaged)
            pytest.fail(f"{name}: accepted")
        assert state(target) == before, name


def test_every_single_bit_flip_in_a_small_snapshot_is_refused() -> None:
    """No single flipped bit anywhere in the stream goes unnoticed."""
    data = snapshot_bytes(build(3))
    for position in range(len(data)):
        for bit in range(8):
            flipped = bytearray(data)
            flipped[position] ^= 1 << bit
            with pytest.raises(SnapshotFormatError):
                KVStore.from_snapshot(bytes(flipped))


def test_every_truncation_of_a_small_snapshot_is_refused() -> None:
    """Every proper prefix of the stream is refused as truncated or damaged."""
    data = snapshot_bytes(build(3))
    for cut in range(len(data)):
        with pytest.raises(SnapshotFormatError):
            KVStore.from_snapshot(data[:cut])


def frame(kind: bytes, obj: object) -> bytes:
    payload = msgpack.packb(obj, use_bin_type=True)
    return struct.pack(">cII", kind, len(payload), zlib.crc32(payload, zlib.crc32(kind))) + payload


def forge(header: dict[str, object], *records: object, count: int | None = None) -> bytes:
    """A snapshot with valid checksums but whatever content we like; string
    keys in ``records`` are sent as their UTF-8 bytes, as the format wants."""
    body = _snapshot.MAGIC + frame(b"H", header)
    for record_frame in records:
        if isinstance(record_frame, list) and record_frame and isinstance(record_frame[0], list):
            keys = [k.encode() if isinstance(k, str) else k for k in record_frame[0]]
            record_frame = [keys, *record_frame[1:]]
        body += frame(b"R", record_frame)
    end_count = header.get("count") if count is None else count
    return body + frame(b"E", {"count": end_count, "crc32": zlib.crc32(body)})


HEADER = {"format": 1, "applied_index": 5, "revision": 5, "count": 2}


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"NOTGRAFT" + b"\x00" * 20, "bad magic"),
        (forge({**HEADER, "format": 2}), "unknown snapshot format 2"),
        (forge({**HEADER, "format": True}), "unknown snapshot format"),
        (forge({**HEADER, "revision": -1}), "revision is -1"),
        (forge({**HEADER, "count": 9}), "counts 9 keys but only 5 writes"),
        (forge(HEADER, [["a", "b"], [b"1", b"1"], [1, 2]], count=3), "does not match"),
        (forge(HEADER, [["a"], [b"1"], [1]]), "has 1 records; header announced 2"),
        (forge(HEADER, [["a", "b", "c"], [b"1"] * 3, [1, 2, 3]]), "more records"),
        (forge(HEADER, [["b", "a"], [b"1", b"1"], [1, 2]]), "strictly increasing"),
        (forge(HEADER, [["a", "a"], [b"1", b"1"], [1, 2]]), "strictly increasing"),
        (forge(HEADER, [["b"], [b"1"], [1]], [["a"], [b"1"], [2]]), "does not come after"),
        (forge(HEADER, [["", "a"], [b"1", b"1"], [1, 2]]), "empty key"),
        (forge(HEADER, [["a", "x" * 1025], [b"1", b"1"], [1, 2]]), "longer than 1024"),
        (forge(HEADER, [["a", "b\x00"], [b"1", b"1"], [1, 2]]), "control character"),
        (forge(HEADER, [["a", 2], [b"1", b"1"], [1, 2]]), "key is not binary"),
        (forge(HEADER, [["a", b"b\xff"], [b"1", b"1"], [1, 2]]), "not valid UTF-8"),
        (forge(HEADER, [[b"a\xc3", b"\xa9"], [b"1", b"1"], [1, 2]]), "not valid UTF-8"),
        (forge(HEADER, [["a", "b\x85"], [b"1", b"1"], [1, 2]]), "control character"),
        (forge(HEADER, [["a", "b"], [b"1", "1"], [1, 2]]), "not binary"),
        (forge(HEADER, [["a", "b"], [b"1", b"1"], [1, True]]), "not an integer"),
        (forge(HEADER, [["a", "b"], [b"1", b"1"], [0, 2]]), "outside 1..5"),
        (forge(HEADER, [["a", "b"], [b"1", b"1"], [1, 6]]), "outside 1..5"),
        (forge(HEADER, [["a", "b"], [b"1"], [1, 2]]), "columns"),
        (forge(HEADER, {"keys": []}), r"expected \[keys, values, revisions\]"),
        (forge(HEADER, [[], [], []]), "columns of 0"),
        (_snapshot.MAGIC + frame(b"R", [[], [], []]), "does not start with a header"),
        (_snapshot.MAGIC + frame(b"H", HEADER) + frame(b"H", HEADER), "unexpected header"),
        (_snapshot.MAGIC + frame(b"X", {}), "unknown frame kind"),
        (_snapshot.MAGIC + struct.pack(">cII", b"H", 1 << 31, 0), "claims 2147483648 bytes"),
        (_snapshot.MAGIC + frame(b"H", HEADER)[:-3], "truncated"),
    ],
)
def test_snapshots_with_bad_content_are_refused_with_the_reason(data: bytes, problem: str) -> None:
    """Even with valid checksums, content that breaks the format's rules is refused."""
    with pytest.raises(SnapshotFormatError, match=problem):
        KVStore.from_snapshot(data)


def test_a_well_formed_forged_snapshot_is_accepted() -> None:
    """The forging helper above makes valid snapshots when the content is valid."""
    store = KVStore.from_snapshot(forge(HEADER, [["a", "b"], [b"1", b"2"], [1, 5]]))
    assert state(store) == (5, 5, [("a", b"1", 1), ("b", b"2", 5)])


def test_chunks_that_are_not_bytes_are_refused() -> None:
    """An iterable of something else than bytes is a format error."""
    with pytest.raises(SnapshotFormatError, match="must be bytes"):
        KVStore.from_snapshot(["text"])  # type: ignore[list-item]
