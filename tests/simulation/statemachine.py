"""The simulated nodes' state machine: a tiny deterministic key/value map.

A COMMAND entry's data is ``b"set <key> <value>"``; anything else (the
simulator's barriers, ``b"barrier <n>"``) changes nothing. Each key remembers
the *revision* that last wrote it, the index of that entry, so a read can be
checked against the writes acknowledged before it (thesis §6.4).

A snapshot is the map at ``applied_index``, serialized in sorted key order so
equal maps give equal bytes.

This module imports only the standard library and graft.raft.
"""

from __future__ import annotations

from graft.raft.messages import Entry, EntryKind


def encode_set(key: str, value: str) -> bytes:
    """The command that sets ``key`` to ``value``."""
    return f"set {key} {value}".encode()


class KVStateMachine:
    """key -> (value, revision). Invariant: every revision <= applied_index."""

    def __init__(self) -> None:
        self.items: dict[str, tuple[str, int]] = {}
        self.applied_index = 0

    def apply(self, entry: Entry) -> None:
        """Apply one committed entry; entries come in index order."""
        assert entry.index == self.applied_index + 1, (entry.index, self.applied_index)
        self.applied_index = entry.index
        if entry.kind == EntryKind.COMMAND and entry.data.startswith(b"set "):
            _, key, value = entry.data.decode().split(" ", 2)
            self.items[key] = (value, entry.index)

    def revision(self, key: str) -> int:
        """Index of the entry that last set ``key``; 0 if never set."""
        item = self.items.get(key)
        return 0 if item is None else item[1]

    def snapshot(self) -> bytes:
        """The map as bytes, at ``applied_index``."""
        lines = [f"applied {self.applied_index}"]
        lines.extend(f"{k} {v[1]} {v[0]}" for k, v in sorted(self.items.items()))
        return "\n".join(lines).encode()

    @classmethod
    def restore(cls, data: bytes) -> KVStateMachine:
        """The state machine a snapshot made by :meth:`snapshot` describes."""
        sm = cls()
        lines = data.decode().split("\n")
        head, applied = lines[0].split(" ")
        assert head == "applied", lines[0]
        sm.applied_index = int(applied)
        for line in lines[1:]:
            key, revision, value = line.split(" ", 2)
            sm.items[key] = (value, int(revision))
        return sm
