"""KVStore applies commands deterministically: compare-and-set, create-only,
deletes, revisions, listing, and malformed entries (API.md §2)."""

from __future__ import annotations

import pytest
from zope.interface.verify import verifyObject

from graft.kv import (
    ApplyResult,
    Delete,
    IStateMachine,
    KVStore,
    Outcome,
    Put,
    Record,
    canonical_json,
    encode_command,
)


def put(key: str, document: object = 1, **conditions: object) -> bytes:
    return encode_command(Put(key=key, value_json=canonical_json(document), **conditions))  # type: ignore[arg-type]


def delete(key: str, **conditions: object) -> bytes:
    return encode_command(Delete(key=key, **conditions))  # type: ignore[arg-type]


class Applier:
    """A store fed entries at consecutive indexes, as a driver would."""

    def __init__(self) -> None:
        self.store = KVStore()

    def __call__(self, data: bytes) -> ApplyResult:
        return self.store.apply(self.store.applied_index + 1, data)


@pytest.fixture
def apply() -> Applier:
    return Applier()


def test_kv_store_provides_the_state_machine_interface() -> None:
    """KVStore provides IStateMachine, checked by verifyObject (STYLE §4)."""
    assert verifyObject(IStateMachine, KVStore())


def test_put_then_get_returns_the_exact_canonical_json(apply: Applier) -> None:
    """GET returns the value as canonical compact JSON with its revision."""
    result = apply(put("app/config", {"a": "b", "c": {"d": "e"}}))
    assert result == ApplyResult(index=1, outcome=Outcome.OK, key="app/config", revision=1)
    assert result.ok
    assert apply.store.get("app/config") == Record(
        key="app/config", value=b'{"a":"b","c":{"d":"e"}}', revision=1
    )


def test_get_of_a_missing_key_is_none(apply: Applier) -> None:
    """A key never written, or not even valid, is absent."""
    apply(put("a"))
    assert apply.store.get("b") is None
    assert apply.store.get("") is None


def test_every_successful_write_adds_one_to_the_revision(apply: Applier) -> None:
    """The cluster revision grows by one per put or delete; a key's revision
    is that of its last write."""
    assert apply(put("a")).revision == 1
    assert apply(put("b")).revision == 2
    assert apply(put("a", 2)).revision == 3
    assert apply(delete("b")).revision == 4
    assert apply.store.revision == 4
    assert apply.store.get("a") == Record(key="a", value=b"2", revision=3)
    assert apply.store.get("b") is None


def test_failed_writes_do_not_change_the_revision(apply: Applier) -> None:
    """412, 404 and invalid entries leave the revision as it was."""
    apply(put("a"))
    apply(put("a", if_absent=True))
    apply(put("a", if_revision=9))
    apply(delete("missing"))
    apply(b"garbage")
    assert apply.store.revision == 1
    assert apply.store.applied_index == 5


def test_if_match_with_the_current_revision_writes(apply: Applier) -> None:
    """PUT with If-Match equal to the key's revision succeeds (compare-and-set)."""
    apply(put("a", 1))
    result = apply(put("a", 2, if_revision=1))
    assert result.outcome is Outcome.OK and result.revision == 2
    assert apply.store.get("a") == Record(key="a", value=b"2", revision=2)


def test_if_match_with_another_revision_fails_with_the_current_one(apply: Applier) -> None:
    """PUT with a stale If-Match gives 412 carrying the key's current revision
    and changes nothing."""
    apply(put("a", 1))
    apply(put("a", 2))
    result = apply(put("a", 3, if_revision=1))
    assert result.outcome is Outcome.PRECONDITION_FAILED
    assert result.revision == 2
    assert result.error == "key 'a' is at revision 2, not 1"
    assert apply.store.get("a") == Record(key="a", value=b"2", revision=2)


def test_if_match_on_a_missing_key_fails_with_no_revision(apply: Applier) -> None:
    """If-Match on a key that does not exist is 412 with revision None
    (RFC 9110 §13.1.1), for puts and deletes alike."""
    for data in (put("a", if_revision=1), put("a", if_revision=0), delete("a", if_revision=1)):
        result = apply(data)
        assert result.outcome is Outcome.PRECONDITION_FAILED
        assert result.revision is None
        assert result.error == "key 'a' does not exist"
    assert apply.store.get("a") is None


def test_if_none_match_creates_a_missing_key(apply: Applier) -> None:
    """PUT with If-None-Match: * writes a key that does not exist."""
    assert apply(put("a", if_absent=True)).outcome is Outcome.OK


def test_if_none_match_on_an_existing_key_fails(apply: Applier) -> None:
    """PUT with If-None-Match: * on an existing key is 412 with its revision."""
    apply(put("a", "first"))
    result = apply(put("a", "second", if_absent=True))
    assert result.outcome is Outcome.PRECONDITION_FAILED
    assert result.revision == 1
    assert apply.store.get("a") == Record(key="a", value=b'"first"', revision=1)


def test_if_none_match_succeeds_again_after_a_delete(apply: Applier) -> None:
    """A deleted key counts as absent for create-only puts."""
    apply(put("a"))
    apply(delete("a"))
    assert apply(put("a", if_absent=True)).revision == 3


def test_delete_of_a_missing_key_is_not_found(apply: Applier) -> None:
    """DELETE of a key that does not exist is 404 and changes nothing."""
    result = apply(delete("nope"))
    assert result == ApplyResult(
        index=1, outcome=Outcome.NOT_FOUND, key="nope", error="key 'nope' does not exist"
    )


def test_delete_honours_if_match(apply: Applier) -> None:
    """DELETE with a stale If-Match is 412; with the current one it deletes."""
    apply(put("a"))
    apply(put("a", 2))
    assert apply(delete("a", if_revision=1)).outcome is Outcome.PRECONDITION_FAILED
    assert apply.store.get("a") is not None
    assert apply(delete("a", if_revision=2)).outcome is Outcome.OK
    assert apply.store.get("a") is None


def test_malformed_entry_data_gives_an_error_result_not_an_exception(apply: Applier) -> None:
    """Damaged entry data applies as a no-op with an INVALID_COMMAND result
    that names the problem; applied_index still moves."""
    for data in (b"", b"\xff\xff", b"\x93\x01\x02\x03", put("a")[:-1]):
        result = apply(data)
        assert result.outcome is Outcome.INVALID_COMMAND
        assert result.key is None and result.revision is None
        assert result.error
    assert len(apply.store) == 0
    assert apply.store.applied_index == 4


def test_entries_without_commands_only_move_applied_index() -> None:
    """Leader no-ops and configurations move applied_index, not the revision."""
    store = KVStore()
    store.mark_applied(1)
    assert store.apply(2, put("a")).revision == 1
    store.mark_applied(3)
    assert (store.applied_index, store.revision) == (3, 1)


def test_applying_an_index_twice_or_backwards_is_refused() -> None:
    """An index not past applied_index is a driver bug: ValueError, no change."""
    store = KVStore()
    store.apply(5, put("a"))
    for index in (5, 4, 0):
        with pytest.raises(ValueError, match="not past applied_index 5"):
            store.apply(index, put("b"))
    with pytest.raises(ValueError):
        store.mark_applied(5)
    assert store.get("b") is None and store.revision == 1


def test_apply_command_equals_apply_of_its_encoding() -> None:
    """apply_command(i, c) does what apply(i, encode_command(c)) does."""
    a, b = KVStore(), KVStore()
    commands = [Put(key="k", value_json=b"1"), Put(key="k", value_json=b"2", if_revision=5)]
    for index, command in enumerate(commands, start=1):
        assert a.apply_command(index, command) == b.apply(index, encode_command(command))


def test_list_returns_keys_with_the_prefix_in_utf8_byte_order(apply: Applier) -> None:
    """Listing gives the keys under a prefix in UTF-8 byte order."""
    keys = ["b", "a/2", "a/10", "a/1", "a", "ab", "a/é", "a/z", "a/😀", "a/\uffff", "c"]
    for key in keys:
        apply(put(key))
    listed = [record.key for record in apply.store.list("a/")]
    expected = sorted((k for k in keys if k.startswith("a/")), key=str.encode)
    assert listed == expected == ["a/1", "a/10", "a/2", "a/z", "a/é", "a/\uffff", "a/😀"]
    everything = [record.key for record in apply.store.list()]
    assert everything == sorted(keys, key=lambda k: k.encode("utf-8"))


def test_list_stops_at_the_limit(apply: Applier) -> None:
    """At most ``limit`` records are returned, the first ones in order."""
    for i in range(10):
        apply(put(f"k/{i}", i))
    records = apply.store.list("k/", 3)
    assert records == [
        Record(key=f"k/{i}", value=str(i).encode(), revision=i + 1) for i in range(3)
    ]
    assert apply.store.list("k/", 0) == []
    assert len(apply.store.list("k/", 100)) == 10
    with pytest.raises(ValueError):
        apply.store.list("k/", -1)


def test_list_after_a_key_continues_a_listing(apply: Applier) -> None:
    """``after`` resumes strictly past the last key of a previous page."""
    for i in range(7):
        apply(put(f"k/{i}"))
    apply(put("l"))
    pages, after = [], None
    while True:
        page = apply.store.list("k/", 3, after=after)
        if not page:
            break
        pages.append([r.key for r in page])
        after = page[-1].key
    assert pages == [["k/0", "k/1", "k/2"], ["k/3", "k/4", "k/5"], ["k/6"]]
    assert [r.key for r in apply.store.list("k/", after="a")] == [f"k/{i}" for i in range(7)]


def test_list_of_an_absent_prefix_is_empty(apply: Applier) -> None:
    """A prefix that no key has lists nothing, wherever it sorts."""
    for key in ("b", "d"):
        apply(put(key))
    assert apply.store.list("a") == apply.store.list("c") == apply.store.list("e") == []
    assert KVStore().list() == []
