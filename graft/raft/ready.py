"""The core's output: one ``Ready`` batch of work for the driver.

The driver's contract, in the order it must act:

1. Write ``snapshot_chunks`` into the snapshot being received from the
   leader: each goes at its offset of the snapshot its ``meta`` names, and
   offset 0 starts that snapshot afresh (drop any partial one). Chunks
   are streamed so that a big snapshot never sits whole in memory. If
   ``snapshot`` is set, the received snapshot with that metadata is
   complete: make it durable, restore the state machine from it, and drop
   the whole stored log (the core's log now starts after it). After step
   7, hand the stored snapshot back with ``RaftNode.compact(snapshot.index,
   data)`` so the node can send it on if it leads, unless
   ``snapshot_meta`` shows a newer one arrived meanwhile.
2. Make ``entries`` and ``hard_state`` durable. The stored log is first cut
   at ``entries[0].index`` (everything from there on is dropped), then the
   entries are appended. ``hard_state`` replaces the stored one.
3. ``messages`` may be sent at any time, even before step 2 (thesis §10.2.1:
   a leader may write its log in parallel with replicating it).
4. ``messages_after_persist`` only once steps 1 and 2 are done: vote
   grants and append and snapshot-chunk acknowledgements promise what was
   written (thesis §3.8).
5. Apply ``committed_entries`` in order. They are already durable locally.
6. Serve ``reads`` once step 5 is done: each was confirmed by a quorum
   heartbeat round and its read index is at or below the last entry of
   step 5 (thesis §6.4). ``failed_reads`` will never be confirmed here.
7. Call ``RaftNode.advance(ready)``. Only then may ``ready()`` be called
   again; inputs (``step``, ``tick``, ``propose``...) may arrive meanwhile
   and form the next batch: that is the group commit.

This module may import only the standard library, attrs and graft.raft.
"""

from __future__ import annotations

import enum
from collections.abc import Hashable

import attrs

from graft.raft.messages import Entry, HardState, Message, NodeId, SnapshotMeta


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


@attrs.frozen(kw_only=True)
class Fact:
    """Something worth logging or counting: the driver logs it, metrics
    count it and the simulator traces it, so all three agree."""

    name: str
    term: int
    detail: str = ""


@attrs.frozen(kw_only=True)
class SnapshotChunk:
    """Bytes of a snapshot arriving from the leader: ``data`` goes at
    ``offset`` of the snapshot ``meta`` describes."""

    meta: SnapshotMeta
    offset: int
    data: bytes


@attrs.frozen(kw_only=True)
class ReadState:
    """A read that is safe to serve: the state machine has applied at
    least ``index``, the commit index when the read arrived."""

    request_id: Hashable
    index: int


@attrs.frozen(kw_only=True)
class Ready:
    """One batch of work; see the module docstring for the order."""

    #: The new hard state, or None when it did not change.
    hard_state: HardState | None = None
    #: Pieces of a snapshot arriving from the leader, to write in order.
    snapshot_chunks: tuple[SnapshotChunk, ...] = ()
    #: The snapshot received from the leader is complete: install it first.
    snapshot: SnapshotMeta | None = None
    #: Entries to persist; the stored log is cut at ``entries[0].index``.
    entries: tuple[Entry, ...] = ()
    #: Messages to send now.
    messages: tuple[Message, ...] = ()
    #: Messages to send only once ``entries`` and ``hard_state`` are durable.
    messages_after_persist: tuple[Message, ...] = ()
    #: Entries to apply, in order; contiguous and after the last applied.
    committed_entries: tuple[Entry, ...] = ()
    #: Reads now safe to serve, after applying ``committed_entries``.
    reads: tuple[ReadState, ...] = ()
    #: Reads that can no longer be confirmed (leadership lost).
    failed_reads: tuple[Hashable, ...] = ()
    #: Role, term and leader as of this batch.
    role: Role = Role.FOLLOWER
    term: int = 0
    leader_id: NodeId | None = None
    #: Things that happened, for logs, metrics and traces.
    facts: tuple[Fact, ...] = ()

    def is_empty(self) -> bool:
        return not (
            self.hard_state
            or self.snapshot
            or self.snapshot_chunks
            or self.entries
            or self.messages
            or self.messages_after_persist
            or self.committed_entries
            or self.reads
            or self.failed_reads
            or self.facts
        )
