"""The key/value state machine that Raft's committed entries are applied to.

Deterministic: its results depend only on the entries applied, in order,
never on a clock, randomness, threads or the iteration order of a set or a
hash; so every node that applies the same log holds the same state and
gives the same results (Raft's state machine safety, §5.4.3 of the paper).

This module imports only the standard library, attrs and graft.kv.
"""

from __future__ import annotations

import builtins
import enum
from collections.abc import Iterable

import attrs
from zope.interface import implementer  # type: ignore[import-untyped]

from graft.kv._commands import Command, Delete, Put, decode_command
from graft.kv._errors import CommandError
from graft.kv._records import RecordMap
from graft.kv._snapshot import SnapshotView, parse
from graft.kv.interfaces import IStateMachine


class Outcome(enum.Enum):
    """How applying one command turned out; the client API's status."""

    #: The write happened (200, or 204 for a delete).
    OK = "ok"
    #: Its ``if_revision`` or ``if_absent`` condition failed (412).
    PRECONDITION_FAILED = "precondition_failed"
    #: A delete without a condition found no key (404).
    NOT_FOUND = "not_found"
    #: The entry's data is not a valid command: nothing changed (400). The
    #: client API validates before proposing, so only a damaged or foreign
    #: entry gets here.
    INVALID_COMMAND = "invalid_command"


@attrs.frozen(kw_only=True)
class ApplyResult:
    """What applying the entry at ``index`` did."""

    index: int
    outcome: Outcome
    #: The command's key; None only for ``INVALID_COMMAND``.
    key: str | None = None
    #: ``OK``: the revision of this write. ``PRECONDITION_FAILED``: the
    #: key's current revision, None if it does not exist. Otherwise None.
    revision: int | None = None
    #: Why it was not ``OK``, for the client's ``{"error": ...}``.
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK


@attrs.frozen(kw_only=True)
class Record:
    """One key's state: its value (canonical JSON bytes) and the revision of
    its last write."""

    key: str
    value: bytes
    revision: int


@implementer(IStateMachine)
class KVStore:
    """The replicated map from key to JSON value.

    Invariants: ``revision`` counts the successful writes applied (puts and
    deletes), so it only grows, by one per write; every key's revision is in
    ``1..revision`` and no two keys share one; ``applied_index`` is the
    index of the last entry applied and only grows.
    """

    def __init__(self) -> None:
        self._records = RecordMap()
        self._revision = 0
        self._applied_index = 0

    # --- state -----------------------------------------------------------

    @property
    def applied_index(self) -> int:
        """Index of the last log entry applied (Raft's lastApplied), 0 if none."""
        return self._applied_index

    @property
    def revision(self) -> int:
        """The cluster-wide revision: the number of writes applied so far."""
        return self._revision

    def __len__(self) -> int:
        return len(self._records)

    # --- applying entries ------------------------------------------------

    def apply(self, index: int, data: bytes) -> ApplyResult:
        """Apply the command entry at ``index`` whose data is ``data``.

        ``index`` must be past ``applied_index`` (``ValueError`` otherwise: a
        driver bug that would apply an entry twice). Malformed ``data`` never
        raises: it changes nothing but ``applied_index`` and gives an
        ``INVALID_COMMAND`` result, identically on every node.
        """
        self._check_index(index)
        try:
            command = decode_command(data)
        except CommandError as e:
            self._applied_index = index
            return ApplyResult(index=index, outcome=Outcome.INVALID_COMMAND, error=str(e))
        return self._execute(index, command)

    def apply_command(self, index: int, command: Command) -> ApplyResult:
        """Apply an already decoded ``command`` as the entry at ``index``;
        ``apply(index, encode_command(command))`` does the same."""
        self._check_index(index)
        return self._execute(index, command)

    def mark_applied(self, index: int) -> None:
        """Record that the entry at ``index``, which carries no command (a
        new leader's no-op, a configuration), is applied: it moves
        ``applied_index`` and changes nothing else, the revision included."""
        self._check_index(index)
        self._applied_index = index

    def _check_index(self, index: int) -> None:
        if type(index) is not int or index <= self._applied_index:
            raise ValueError(
                f"entry index {index!r} is not past applied_index {self._applied_index}"
            )

    def _execute(self, index: int, command: Command) -> ApplyResult:
        self._applied_index = index
        key = command.key
        current = self._records.get(key)
        current_revision = None if current is None else current[1]
        if isinstance(command, Put) and command.if_absent and current is not None:
            return ApplyResult(
                index=index,
                outcome=Outcome.PRECONDITION_FAILED,
                key=key,
                revision=current_revision,
                error=f"key {key!r} exists (revision {current_revision})",
            )
        if command.if_revision is not None and command.if_revision != current_revision:
            # A condition on a missing key fails too (RFC 9110 §13.1.1:
            # If-Match is false when there is no current representation).
            return ApplyResult(
                index=index,
                outcome=Outcome.PRECONDITION_FAILED,
                key=key,
                revision=current_revision,
                error=(
                    f"key {key!r} is at revision {current_revision}, not {command.if_revision}"
                    if current is not None
                    else f"key {key!r} does not exist"
                ),
            )
        if isinstance(command, Delete):
            if current is None:
                return ApplyResult(
                    index=index,
                    outcome=Outcome.NOT_FOUND,
                    key=key,
                    error=f"key {key!r} does not exist",
                )
            self._revision += 1
            self._records.delete(key)
        else:
            self._revision += 1
            self._records.put(key, command.value_json, self._revision)
        return ApplyResult(index=index, outcome=Outcome.OK, key=key, revision=self._revision)

    # --- reads -----------------------------------------------------------

    def get(self, key: str) -> Record | None:
        """The record at ``key``, or None. An invalid key is simply absent."""
        found = self._records.get(key)
        if found is None:
            return None
        return Record(key=key, value=found[0], revision=found[1])

    def list(
        self, prefix: str = "", limit: int | None = None, *, after: str | None = None
    ) -> builtins.list[Record]:
        """Records whose keys start with ``prefix``, in key order, at most
        ``limit`` of them (all if None); with ``after``, only keys that sort
        after it (to continue a listing).

        Key order is UTF-8 byte order: the keys are stored and compared as
        their UTF-8 bytes. (That is also Python's ``str`` order, code point
        order, since UTF-8 encodes code points so that byte order follows
        them.) O(log n + records returned).
        """
        if limit is not None and (type(limit) is not int or limit < 0):
            raise ValueError(f"limit must be a non-negative integer or None, not {limit!r}")
        if after is not None and after >= prefix:
            records = self._records.scan(after, inclusive=False)
        else:
            records = self._records.scan(prefix)
        found: builtins.list[Record] = []
        if limit == 0:
            return found
        for key, value, revision in records:
            if not key.startswith(prefix):
                break
            found.append(Record(key=key, value=value, revision=revision))
            if len(found) == limit:
                break
        return found

    # --- snapshots -------------------------------------------------------

    def snapshot(self) -> SnapshotView:
        """A consistent frozen copy of the state, in O(number of blocks)
        (about 10,000 per million keys; 0.2 ms): cheap enough for the reactor
        thread. Its ``chunks()`` may then run on any thread while this store
        goes on applying entries."""
        return SnapshotView(
            applied_index=self._applied_index,
            revision=self._revision,
            count=len(self._records),
            blocks=self._records.freeze(),
        )

    #: The name the brief and bench use; the same method.
    snapshot_view = snapshot

    @classmethod
    def from_snapshot(cls, chunks: Iterable[bytes] | bytes) -> KVStore:
        """A new store holding the state that ``chunks`` (a snapshot's
        bytes, whole or in pieces cut anywhere) describe; raise
        ``SnapshotFormatError`` if they are damaged."""
        if isinstance(chunks, bytes | bytearray | memoryview):
            # Iterating bytes would give integers.
            chunks = (bytes(chunks),)
        parsed = parse(chunks)
        store = cls()
        store._records = RecordMap(parsed.blocks, parsed.count)
        store._revision = parsed.revision
        store._applied_index = parsed.applied_index
        return store

    def restore(self, chunks: Iterable[bytes] | bytes) -> None:
        """Replace this store's state with the snapshot in ``chunks``. On
        ``SnapshotFormatError`` the state is left exactly as it was."""
        self.replace_with(self.from_snapshot(chunks))

    def replace_with(self, other: KVStore) -> None:
        """Take ``other``'s whole state in O(1): a store parsed off the
        reactor thread with ``from_snapshot`` replaces this one's state."""
        self._records = other._records
        self._revision = other._revision
        self._applied_index = other._applied_index
