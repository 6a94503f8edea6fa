"""The core's view of the replicated log: a compacted prefix summarised by
its base (index, term and configuration of the entry before the first one
held), the entries after it, the newest snapshot, and how much is durable.

The base is usually the snapshot's last entry, but may lie before it: a
node can keep a tail of entries the snapshot already covers, so followers
slightly behind replicate from the log instead of receiving a snapshot.

Invariants, kept by every method:
- ``base.index <= snapshot.index``, and entries up to ``snapshot.index`` are
  committed;
- entries are contiguous: ``entries[i].index == base.index + 1 + i``;
- terms never decrease along the log (§5.3);
- ``persisted_index <= last_index``: entries above it are not yet durable;
- ``unstable_from - 1 <= last_index``: entries from ``unstable_from`` on have
  not been handed to the driver in a Ready yet.

This module may import only the standard library, attrs and graft.raft.
"""

from __future__ import annotations

from collections.abc import Sequence

from graft.raft.messages import Configuration, Entry, EntryKind, SnapshotMeta


class RaftLog:
    def __init__(self, snapshot: SnapshotMeta, entries: Sequence[Entry]) -> None:
        #: The newest snapshot: what a follower behind ``base`` is sent.
        self.snapshot = snapshot
        #: The entry before the first one held (index, term, configuration).
        self.base = snapshot
        self._entries: list[Entry] = list(entries)
        for offset, entry in enumerate(self._entries):
            assert entry.index == snapshot.index + 1 + offset, "log entries must be contiguous"
        #: Configuration entries still in the log, as (index, configuration).
        self._configs: list[tuple[int, Configuration]] = [
            (e.index, Configuration.decode(e.data))
            for e in self._entries
            if e.kind is EntryKind.CONFIG
        ]
        self.persisted_index = self.last_index
        self.unstable_from = self.last_index + 1

    # --- reading -----------------------------------------------------------

    @property
    def first_index(self) -> int:
        """The first index still held as an entry (may be last_index + 1)."""
        return self.base.index + 1

    @property
    def last_index(self) -> int:
        return self.base.index + len(self._entries)

    @property
    def last_term(self) -> int:
        return self._entries[-1].term if self._entries else self.base.term

    @property
    def configuration(self) -> Configuration:
        """The newest configuration in the log: in force from its append
        (thesis §4.1), whether committed or not."""
        return self._configs[-1][1] if self._configs else self.base.configuration

    @property
    def configuration_index(self) -> int:
        return self._configs[-1][0] if self._configs else self.base.index

    def configuration_at(self, index: int) -> Configuration:
        """The configuration in force once the log up to ``index`` is applied."""
        for config_index, config in reversed(self._configs):
            if config_index <= index:
                return config
        return self.base.configuration

    def term_at(self, index: int) -> int | None:
        """The term of the entry at ``index``; None if compacted or absent.
        The base keeps its term (§7)."""
        if index == self.base.index:
            return self.base.term
        offset = index - self.base.index - 1
        if 0 <= offset < len(self._entries):
            return self._entries[offset].term
        return None

    def entry(self, index: int) -> Entry:
        offset = index - self.base.index - 1
        assert 0 <= offset < len(self._entries), f"no entry at {index}"
        return self._entries[offset]

    def slice(
        self, lo: int, hi: int, count_max: int | None = None, bytes_max: int | None = None
    ) -> tuple[Entry, ...]:
        """Entries in [lo, hi), at most ``count_max`` of them and, past the
        first, no more than ``bytes_max`` bytes of data in all."""
        base = self.base.index + 1
        assert lo >= base, f"entries before {base} are compacted"
        start = lo - base
        stop = min(hi, self.last_index + 1) - base
        if count_max is not None:
            stop = min(stop, start + count_max)
        if stop <= start:
            return ()
        if bytes_max is None:
            return tuple(self._entries[start:stop])
        out: list[Entry] = []
        size = 0
        for entry in self._entries[start:stop]:
            size += len(entry.data)
            if out and size > bytes_max:
                break
            out.append(entry)
        return tuple(out)

    def unstable_entries(self) -> tuple[Entry, ...]:
        return self.slice(self.unstable_from, self.last_index + 1)

    def is_up_to_date(self, last_log_index: int, last_log_term: int) -> bool:
        """Whether a log ending at (index, term) is at least as up-to-date
        as this one (§5.4.1): the later last term wins, then the longer log."""
        return (last_log_term, last_log_index) >= (self.last_term, self.last_index)

    def first_index_of_term(self, index: int) -> int:
        """The first index, at or after ``first_index``, holding the term of
        the entry at ``index`` (the follower's backtracking hint)."""
        term = self.term_at(index)
        assert term is not None
        lo, hi = self.first_index, index
        while lo < hi:  # terms never decrease, so binary search
            mid = (lo + hi) // 2
            if self._entries[mid - self.base.index - 1].term < term:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def last_index_of_term(self, term: int, at_most: int) -> int | None:
        """The last index <= ``at_most`` whose entry has ``term``, if any is
        still in the log (the leader's side of fast backtracking)."""
        lo, hi = self.first_index, min(at_most, self.last_index)
        best = None
        while lo <= hi:
            mid = (lo + hi) // 2
            mid_term = self._entries[mid - self.base.index - 1].term
            if mid_term <= term:
                if mid_term == term:
                    best = mid
                lo = mid + 1
            else:
                hi = mid - 1
        return best

    # --- changing ----------------------------------------------------------

    def append(self, entry: Entry) -> None:
        """Append one entry right after the last."""
        assert entry.index == self.last_index + 1, "append must extend the log"
        assert entry.term >= self.last_term, "terms never decrease along the log"
        self._entries.append(entry)
        if entry.kind is EntryKind.CONFIG:
            self._configs.append((entry.index, Configuration.decode(entry.data)))

    def truncate_from(self, index: int) -> None:
        """Drop every entry at ``index`` and after (a conflicting suffix, §5.3)."""
        assert index > self.snapshot.index, "cannot truncate into the snapshot"
        del self._entries[index - self.base.index - 1 :]
        while self._configs and self._configs[-1][0] >= index:
            self._configs.pop()
        self.persisted_index = min(self.persisted_index, index - 1)
        self.unstable_from = min(self.unstable_from, index)

    def compact(self, index: int, retain: int = 0) -> None:
        """A snapshot now covers entries up to ``index`` (§7); drop them,
        but keep the last ``retain`` of them as a tail."""
        assert self.snapshot.index <= index <= self.persisted_index
        assert retain >= 0
        self.snapshot = self._meta_at(index)
        base_index = max(self.base.index, index - retain)
        if base_index == self.base.index:
            return
        base = self._meta_at(base_index)
        del self._entries[: base_index - self.base.index]
        self._configs = [(i, c) for i, c in self._configs if i > base_index]
        self.base = base

    def _meta_at(self, index: int) -> SnapshotMeta:
        term = self.term_at(index)
        assert term is not None, f"no term known at {index}"
        return SnapshotMeta(index=index, term=term, configuration=self.configuration_at(index))

    def restore(self, meta: SnapshotMeta) -> None:
        """Throw the whole log away for a snapshot received from the leader."""
        self.snapshot = meta
        self.base = meta
        self._entries = []
        self._configs = []
        self.persisted_index = meta.index
        self.unstable_from = meta.index + 1
