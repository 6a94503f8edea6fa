"""graft.kv: the deterministic key/value state machine under the Raft log.

The driver applies each committed entry in order::

    store = KVStore()
    for entry in committed_entries:
        if entry.kind is EntryKind.COMMAND:
            result = store.apply(entry.index, entry.data)   # -> ApplyResult
        else:
            store.mark_applied(entry.index)                 # no-op, configuration

Clients' writes become entry data with ``encode_command(Put(...))`` or
``encode_command(Delete(...))``; reads are ``store.get(key)`` and
``store.list(prefix, limit)``. For log compaction, ``view = store.snapshot()``
on the reactor thread (cheap), then ``view.chunks()`` anywhere, and
``store.restore(chunks)`` to load one.

Pure: imports only the standard library, attrs, msgpack and zope.interface;
no Twisted, files, clock or randomness. Public names live in private
modules and are re-exported here.
"""

from graft.kv._commands import (
    COMMAND_FORMAT,
    Command,
    Delete,
    Put,
    decode_command,
    encode_command,
)
from graft.kv._errors import (
    CommandError,
    InvalidKey,
    InvalidValue,
    KVError,
    SnapshotFormatError,
)
from graft.kv._keys import (
    KEY_BYTES_MAX,
    canonical_json,
    canonicalize_json,
    key_from_bytes,
    validate_key,
)
from graft.kv._snapshot import SNAPSHOT_FORMAT, SnapshotView, chunks_of, serialize
from graft.kv._store import ApplyResult, KVStore, Outcome, Record
from graft.kv.interfaces import IStateMachine

__all__ = [
    "COMMAND_FORMAT",
    "KEY_BYTES_MAX",
    "SNAPSHOT_FORMAT",
    "ApplyResult",
    "Command",
    "CommandError",
    "Delete",
    "IStateMachine",
    "InvalidKey",
    "InvalidValue",
    "KVError",
    "KVStore",
    "Outcome",
    "Put",
    "Record",
    "SnapshotFormatError",
    "SnapshotView",
    "canonical_json",
    "canonicalize_json",
    "chunks_of",
    "decode_command",
    "encode_command",
    "key_from_bytes",
    "serialize",
    "validate_key",
]
