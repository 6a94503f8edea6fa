"""Property tests: KVStore behaves like a plain dict model on random
operation sequences, and snapshots of any such state round-trip exactly."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from graft.kv import (
    Delete,
    KVStore,
    Outcome,
    Put,
    _records,
    canonical_json,
    encode_command,
)

# Few distinct keys so operations collide; multibyte characters and "/" so
# byte order and prefixes are exercised.
KEYS = st.text(alphabet="ab/é€😀", min_size=1, max_size=3)
DOCUMENTS = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=5,
)
# A condition: none, create-only, or If-Match on a revision that may or may
# not be current (small numbers make matches likely).
CONDITIONS = st.one_of(
    st.just({}),
    st.just({"if_absent": True}),
    st.integers(min_value=0, max_value=12).map(lambda r: {"if_revision": r}),
)
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), KEYS, DOCUMENTS, CONDITIONS),
        st.tuples(
            st.just("delete"),
            KEYS,
            st.none(),
            st.one_of(CONDITIONS.filter(lambda c: "if_absent" not in c)),
        ),
        st.tuples(st.just("garbage"), st.binary(max_size=8), st.none(), st.just({})),
        st.tuples(st.just("noop"), st.none(), st.none(), st.just({})),
    ),
    max_size=60,
)


class DictModel:
    """The simplest correct store: a dict and a counter."""

    def __init__(self) -> None:
        self.data: dict[str, tuple[bytes, int]] = {}
        self.revision = 0

    def put(self, key: str, value: bytes, conditions: dict[str, Any]) -> tuple[Outcome, int | None]:
        current = self.data.get(key)
        current_revision = current[1] if current else None
        if conditions.get("if_absent") and current is not None:
            return Outcome.PRECONDITION_FAILED, current_revision
        if "if_revision" in conditions and conditions["if_revision"] != current_revision:
            return Outcome.PRECONDITION_FAILED, current_revision
        self.revision += 1
        self.data[key] = (value, self.revision)
        return Outcome.OK, self.revision

    def delete(self, key: str, conditions: dict[str, Any]) -> tuple[Outcome, int | None]:
        current = self.data.get(key)
        current_revision = current[1] if current else None
        if "if_revision" in conditions and conditions["if_revision"] != current_revision:
            return Outcome.PRECONDITION_FAILED, current_revision
        if current is None:
            return Outcome.NOT_FOUND, None
        self.revision += 1
        del self.data[key]
        return Outcome.OK, self.revision

    def listing(self, prefix: str) -> list[tuple[str, bytes, int]]:
        keys = sorted((k for k in self.data if k.startswith(prefix)), key=lambda k: k.encode())
        return [(k, *self.data[k]) for k in keys]


def run(operations: list[tuple[str, Any, Any, dict[str, Any]]]) -> tuple[KVStore, DictModel]:
    store, model = KVStore(), DictModel()
    for index, (kind, key, document, conditions) in enumerate(operations, start=1):
        if kind == "noop":
            store.mark_applied(index)
            continue
        if kind == "garbage":
            result = store.apply(index, key)
            assert result.outcome in (Outcome.INVALID_COMMAND, Outcome.OK, Outcome.NOT_FOUND)
            if result.outcome is Outcome.INVALID_COMMAND:
                continue
            raise AssertionError(f"random bytes {key!r} decoded as a command")
        if kind == "put":
            value = canonical_json(document)
            data = encode_command(Put(key=key, value_json=value, **conditions))
            expected = model.put(key, value, conditions)
        else:
            data = encode_command(Delete(key=key, **conditions))
            expected = model.delete(key, conditions)
        result = store.apply(index, data)
        assert (result.outcome, result.revision) == expected
        assert result.index == index and result.key == key
        assert store.revision == model.revision
    return store, model


def contents(store: KVStore, prefix: str = "") -> list[tuple[str, bytes, int]]:
    return [(r.key, r.value, r.revision) for r in store.list(prefix)]


@contextmanager
def block_records(size: int) -> Iterator[None]:
    """Blocks of ``size`` records that also split past 16 bytes of values."""
    saved = _records.BLOCK_RECORDS, _records.BLOCK_VALUE_BYTES
    _records.BLOCK_RECORDS, _records.BLOCK_VALUE_BYTES = size, 16
    try:
        yield
    finally:
        _records.BLOCK_RECORDS, _records.BLOCK_VALUE_BYTES = saved


@given(OPERATIONS, KEYS, st.integers(min_value=0, max_value=5))
@settings(max_examples=300)
def test_store_agrees_with_a_dict_model_on_random_operations(
    operations: list[tuple[str, Any, Any, dict[str, Any]]], prefix: str, limit: int
) -> None:
    """Every result, the revision, get, and list in UTF-8 byte order match a
    dict model after any sequence of puts, deletes, garbage and no-ops."""
    store, model = run(operations)
    assert store.applied_index == len(operations)
    assert contents(store) == model.listing("")
    assert contents(store, prefix) == model.listing(prefix)
    assert [(r.key, r.value, r.revision) for r in store.list(prefix, limit)] == model.listing(
        prefix
    )[:limit]
    for key, (value, revision) in model.data.items():
        record = store.get(key)
        assert record is not None and (record.value, record.revision) == (value, revision)
    store._records.check_invariants()


@given(OPERATIONS, KEYS)
@settings(max_examples=200)
def test_store_with_tiny_blocks_agrees_with_the_dict_model(
    operations: list[tuple[str, Any, Any, dict[str, Any]]], prefix: str
) -> None:
    """With two-record blocks that also split on 16 bytes of values, splits
    and block removals happen constantly and change nothing observable."""
    with block_records(2):
        store, model = run(operations)
        store._records.check_invariants()
        assert contents(store) == model.listing("")
        assert contents(store, prefix) == model.listing(prefix)


@given(OPERATIONS, st.integers(min_value=1, max_value=64))
@settings(max_examples=200)
def test_snapshot_of_any_state_round_trips_exactly(
    operations: list[tuple[str, Any, Any, dict[str, Any]]], chunk_bytes: int
) -> None:
    """A store restored from the snapshot of any state reached by random
    operations, read in chunks of any size, equals the original and gives
    the same snapshot bytes."""
    with block_records(2):
        store, _ = run(operations)
        data = b"".join(store.snapshot().chunks())
        pieces = [data[i : i + chunk_bytes] for i in range(0, len(data), chunk_bytes)]
        restored = KVStore.from_snapshot(pieces)
        assert contents(restored) == contents(store)
        assert (restored.applied_index, restored.revision, len(restored)) == (
            store.applied_index,
            store.revision,
            len(store),
        )
        assert b"".join(restored.snapshot().chunks()) == data


@given(OPERATIONS, OPERATIONS)
@settings(max_examples=100)
def test_a_snapshot_view_is_unaffected_by_writes_after_it(
    before: list[tuple[str, Any, Any, dict[str, Any]]],
    after: list[tuple[str, Any, Any, dict[str, Any]]],
) -> None:
    """Serializing a view after more writes gives the bytes it had when taken."""
    with block_records(2):
        store, _ = run(before)
        expected = b"".join(store.snapshot().chunks())
        view = store.snapshot()
        offset = store.applied_index
        replay, _ = run(before + after)  # same writes, applied to a twin
        for index, (kind, key, document, conditions) in enumerate(after, start=offset + 1):
            if kind == "put":
                command: Put | Delete = Put(
                    key=key, value_json=canonical_json(document), **conditions
                )
                store.apply(index, encode_command(command))
            elif kind == "delete":
                store.apply(index, encode_command(Delete(key=key, **conditions)))
            else:
                store.mark_applied(index)
        assert b"".join(view.chunks()) == expected
        assert contents(store) == contents(replay)
