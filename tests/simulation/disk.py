"""One node's simulated disk: what is durable, and the write in flight.

Fault model, within what Raft claims to survive (paper Figure 2: "updated on
stable storage before responding to RPCs"; thesis §3.8):

- What a completed write made durable stays durable, uncorrupted, across
  any number of crashes (no bit rot, no lying fsync: Raft assumes stable
  storage).
- A write takes ``[persist_min_ticks, persist_max_ticks]`` ticks. Until it
  completes nothing that depends on it happens: no after-persist message is
  sent, no entry of it is applied, ``advance`` is not called.
- A crash drops the write in flight. With probability ``torn_write`` part of
  it survives instead: the log is cut where the write said and a prefix of
  its entries is appended, as when a process dies midway through appending
  records (the torn tail record itself is cut off at start-up, as the real
  storage does). A torn write never keeps a changed term or vote without the
  rest, and never keeps a commit index: those are one small record written
  last. Keeping more entries than were acknowledged is harmless: nobody was
  promised them.
- A local snapshot (compaction) is written synchronously: the driver makes
  it durable before it drops the log below it.

This module imports only the standard library and graft.raft.
"""

from __future__ import annotations

import random

from graft.raft import HardState, PersistentState, Ready, SnapshotMeta
from graft.raft.messages import Entry
from tests.simulation.checks import Violation


class Disk:
    """Durable hard state, snapshot and log of one node, plus one pending write.

    Invariant: ``entries`` are contiguous and start at ``snapshot.index + 1``.
    """

    def __init__(self, initial: PersistentState) -> None:
        self.hard_state: HardState = initial.hard_state
        #: A snapshot arriving from the leader, as written so far.
        self.receiving = bytearray()
        self.snapshot: SnapshotMeta = initial.snapshot
        self.snapshot_data: bytes | None = (
            None if initial.snapshot_data is None else bytes(initial.snapshot_data[:])
        )
        self.entries: list[Entry] = list(initial.entries)
        self.pending: Ready | None = None

    # --- reading back -----------------------------------------------------

    @property
    def last_index(self) -> int:
        return self.snapshot.index + len(self.entries)

    def persistent_state(self) -> PersistentState:
        """Everything durable, as a restarting node reads it back."""
        return PersistentState(
            hard_state=self.hard_state,
            snapshot=self.snapshot,
            snapshot_data=self.snapshot_data,
            entries=tuple(self.entries),
        )

    # --- writing -----------------------------------------------------------

    def begin(self, ready: Ready) -> None:
        """Start writing ``ready``'s snapshot, entries and hard state."""
        assert self.pending is None, "one Ready in flight per node"
        self.pending = ready

    def complete(self) -> Ready:
        """The write in flight is durable; returns its Ready."""
        ready = self.pending
        assert ready is not None
        self.pending = None
        for chunk in ready.snapshot_chunks:
            if chunk.offset == 0:
                self.receiving = bytearray()
            assert chunk.offset == len(self.receiving), "the core hands chunks out in order"
            self.receiving += chunk.data
        if ready.snapshot is not None:
            self._install_snapshot(ready.snapshot, bytes(self.receiving))
            self.receiving = bytearray()
        if ready.entries:
            self._append(ready.entries)
        if ready.hard_state is not None:
            self.hard_state = ready.hard_state
        return ready

    def save_local_snapshot(self, meta: SnapshotMeta, data: bytes) -> None:
        """Make a local snapshot durable, then drop the log it covers."""
        if meta.index <= self.snapshot.index:
            return
        keep = meta.index - self.snapshot.index
        self.entries = self.entries[keep:]
        self.snapshot = meta
        self.snapshot_data = data

    def crash(self, rng: random.Random, torn_write: float) -> str:
        """Lose the write in flight, or tear it; says which."""
        ready = self.pending
        self.pending = None
        # A snapshot half received is of no use: the restarted core asks
        # for it from offset 0.
        self.receiving = bytearray()
        if ready is None:
            return "nothing pending"
        same_vote = ready.hard_state is None or (
            ready.hard_state.term == self.hard_state.term
            and ready.hard_state.vote == self.hard_state.vote
        )
        if ready.entries and ready.snapshot is None and same_vote and rng.random() < torn_write:
            kept = rng.randint(0, len(ready.entries) - 1)
            self._append(ready.entries[:kept] or (), cut_at=ready.entries[0].index)
            return f"torn: kept {kept}/{len(ready.entries)} entries"
        return f"dropped {len(ready.entries)} entries"

    # --- internals ----------------------------------------------------------

    def _install_snapshot(self, meta: SnapshotMeta, data: bytes) -> None:
        # §7: keep the log after the snapshot if it holds the snapshot's last
        # entry; otherwise the snapshot replaces the whole log.
        position = meta.index - self.snapshot.index - 1
        if 0 <= position < len(self.entries) and self.entries[position].term == meta.term:
            self.entries = self.entries[position + 1 :]
        else:
            self.entries = []
        self.snapshot = meta
        self.snapshot_data = data

    def _append(self, entries: tuple[Entry, ...], cut_at: int | None = None) -> None:
        first = entries[0].index if entries else cut_at
        assert first is not None
        if first <= self.snapshot.index or first > self.last_index + 1:
            raise Violation(
                "Ready contract (ready.py step 2)",
                f"entries start at {first} but the stored log holds"
                f" ({self.snapshot.index}, {self.last_index}]",
            )
        del self.entries[first - self.snapshot.index - 1 :]
        for expected, entry in enumerate(entries, start=first):
            if entry.index != expected:
                raise Violation("Ready contract (ready.py step 2)", "entries not contiguous")
        self.entries.extend(entries)
