"""The blocked sorted map stays sorted across splits and deletes, and its
frozen copies never change."""

from __future__ import annotations

import random

import pytest

from graft.kv import _records
from graft.kv._records import BLOCK_RECORDS, RecordMap


def test_many_random_inserts_and_deletes_keep_order_and_invariants() -> None:
    """Thousands of keys in random order split blocks and stay sorted."""
    rng = random.Random(7)
    records = RecordMap()
    model: dict[str, tuple[bytes, int]] = {}
    for revision in range(1, 6 * BLOCK_RECORDS):
        key = f"{rng.randrange(4 * BLOCK_RECORDS):05d}"
        if rng.random() < 0.3:
            assert records.delete(key) == (model.pop(key, None) is not None)
        else:
            records.put(key, b"v", revision)
            model[key] = (b"v", revision)
    records.check_invariants()
    assert len(records._blocks) > 1
    assert [(k, v, r) for k, v, r in records.scan("")] == [(k, *model[k]) for k in sorted(model)]
    for key in ("", "00000", "02000", "99999"):
        assert records.get(key) == model.get(key)


def test_deleting_every_key_leaves_an_empty_map() -> None:
    """Blocks that become empty are removed."""
    records = RecordMap()
    keys = [f"{i:05d}" for i in range(3 * BLOCK_RECORDS)]
    for key in keys:
        records.put(key, b"", 1)
    for key in reversed(keys):
        assert records.delete(key)
    records.check_invariants()
    assert len(records) == 0 and records._blocks == []
    assert not records.delete("00000")


def test_a_frozen_copy_does_not_see_later_writes() -> None:
    """Blocks handed out by freeze never change, while the map goes on."""
    records = RecordMap()
    for i in range(3 * BLOCK_RECORDS):
        records.put(f"{i:05d}", b"old", 1)
    frozen = records.freeze()
    before = [(b.key_list(), b.value_list(), list(b.revisions)) for b in frozen]
    for i in range(0, 3 * BLOCK_RECORDS, 3):
        records.put(f"{i:05d}", b"new", 2)
        records.delete(f"{i + 1:05d}")
        records.put(f"{i:05d}x", b"added", 3)
    records.check_invariants()
    assert [(b.key_list(), b.value_list(), list(b.revisions)) for b in frozen] == before


def test_small_blocks_split_and_stay_consistent(monkeypatch: pytest.MonkeyPatch) -> None:
    """With two-record blocks every operation crosses block boundaries."""
    monkeypatch.setattr(_records, "BLOCK_RECORDS", 2)
    records = RecordMap()
    for i in range(50):
        records.put(f"{(i * 37) % 50:02d}", b"", i + 1)
    records.check_invariants()
    assert len(records._blocks) > 10
    assert [k for k, _, _ in records.scan("1")] == [f"{i:02d}" for i in range(10, 50)]
    assert [k for k, _, _ in records.scan("10", inclusive=False)][:2] == ["11", "12"]


def test_blocks_split_by_value_bytes_so_large_values_stay_apart(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A block whose values pass BLOCK_VALUE_BYTES splits, so a write next
    to a large value does not copy it."""
    monkeypatch.setattr(_records, "BLOCK_VALUE_BYTES", 1000)
    records = RecordMap()
    records.put("m", b"x" * 5000, 1)
    for i, key in enumerate(["a", "b", "n", "o", "z"], start=2):
        records.put(key, b"small", i)
    records.check_invariants()
    sizes = [block.value_ends[-1] for block in records._blocks]
    assert 5000 in sizes and all(size < 1000 for size in sizes if size != 5000)
    assert records.get("m") == (b"x" * 5000, 1)
    assert [k for k, _, _ in records.scan("")] == ["a", "b", "m", "n", "o", "z"]


def test_keys_compare_as_utf8_bytes() -> None:
    """A key with a 4-byte character sorts after one with U+FFFF, as in
    UTF-8 byte order (and code point order)."""
    records = RecordMap()
    for key in ["😀", "\uffff", "z", "é"]:
        records.put(key, b"", 1)
    assert [k for k, _, _ in records.scan("")] == ["z", "é", "\uffff", "😀"]
