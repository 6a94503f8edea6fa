"""Values that cross the core's boundary: log entries, hard state,
configurations, snapshots' metadata and the messages peers exchange.

Every class is an attrs frozen, keyword-only value; sequences are tuples.
Names follow the Raft paper (Ongaro & Ousterhout, 2014) and thesis (Ongaro,
2014). This module may import only the standard library and attrs.
"""

from __future__ import annotations

import enum
from typing import Protocol, TypeAlias

import attrs

NodeId: TypeAlias = int

#: A vote of ``NO_VOTE`` means "voted for nobody in this term".
NO_VOTE: NodeId = 0


class EntryKind(enum.IntEnum):
    """What an entry carries; stored on disk, so values never change."""

    #: Appended by every new leader (§8 of the paper): commits the entries of
    #: earlier terms and lets the leader learn its commit index for reads.
    NOOP = 0
    #: An opaque state-machine command from a client.
    COMMAND = 1
    #: A configuration; in force from the moment it is appended (thesis §4.1).
    CONFIG = 2


@attrs.frozen(kw_only=True)
class Member:
    """One server of a configuration. ``address`` is opaque to the core.
    A learner with ``auto_promote`` is promoted by the leader once it has
    caught up (thesis §4.2.1); without it, it stays a learner."""

    id: NodeId
    address: str = ""
    voter: bool = True
    auto_promote: bool = False

    def __attrs_post_init__(self) -> None:
        assert not (self.voter and self.auto_promote), "only a learner awaits promotion"


@attrs.frozen(kw_only=True)
class Configuration:
    """The cluster's membership: ``members`` sorted by id, ids unique."""

    members: tuple[Member, ...] = ()
    # Derived once: the leader asks for these on every batch.
    voters: frozenset[NodeId] = attrs.field(init=False, eq=False, repr=False)
    learners: frozenset[NodeId] = attrs.field(init=False, eq=False, repr=False)
    ids: tuple[NodeId, ...] = attrs.field(init=False, eq=False, repr=False)
    #: Whether some learner waits to be promoted once caught up.
    awaits_promotion: bool = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        ids = tuple(m.id for m in self.members)
        assert list(ids) == sorted(set(ids)), f"members must be sorted and unique: {ids}"
        set_ = object.__setattr__
        set_(self, "ids", ids)
        set_(self, "voters", frozenset(m.id for m in self.members if m.voter))
        set_(self, "learners", frozenset(m.id for m in self.members if not m.voter))
        set_(self, "awaits_promotion", any(m.auto_promote for m in self.members))

    def member(self, node_id: NodeId) -> Member | None:
        for m in self.members:
            if m.id == node_id:
                return m
        return None

    def with_member(self, member: Member) -> Configuration:
        """This configuration with ``member`` added or replaced."""
        rest = [m for m in self.members if m.id != member.id]
        return Configuration(members=tuple(sorted([*rest, member], key=lambda m: m.id)))

    def without(self, node_id: NodeId) -> Configuration:
        return Configuration(members=tuple(m for m in self.members if m.id != node_id))

    def encode(self) -> bytes:
        """A compact, stable text form, used as a CONFIG entry's data."""
        return ";".join(f"{m.id},{_role_flag(m)},{m.address}" for m in self.members).encode()

    @classmethod
    def decode(cls, data: bytes) -> Configuration:
        """Inverse of :meth:`encode`; raises ``ValueError`` on malformed data."""
        text = data.decode()
        if not text:
            return cls()
        members = []
        for part in text.split(";"):
            node_id, flag, address = part.split(",", 2)
            if flag not in ("0", "1", "p"):
                raise ValueError(f"bad voter flag {flag!r} in configuration")
            members.append(
                Member(
                    id=int(node_id), address=address, voter=flag == "1", auto_promote=flag == "p"
                )
            )
        members.sort(key=lambda m: m.id)
        return cls(members=tuple(members))


def _role_flag(member: Member) -> str:
    """1: voter; 0: learner; p: learner to promote once caught up."""
    if member.voter:
        return "1"
    return "p" if member.auto_promote else "0"


@attrs.frozen(kw_only=True)
class Entry:
    """One log entry. ``index`` starts at 1; ``term`` is the leader's term
    when it was created (§5.3)."""

    index: int
    term: int
    kind: EntryKind = EntryKind.COMMAND
    data: bytes = b""


@attrs.frozen(kw_only=True)
class HardState:
    """What must be durable before any message that depends on it is sent
    (Figure 2, "persistent state"): ``term`` and ``vote`` so a server never
    votes twice in a term; ``commit`` only to speed up recovery."""

    term: int = 0
    vote: NodeId = NO_VOTE
    commit: int = 0


@attrs.frozen(kw_only=True)
class SnapshotMeta:
    """What a snapshot replaces: the log up to ``index`` (whose entry had
    ``term``) and the configuration in force at ``index`` (§7)."""

    index: int = 0
    term: int = 0
    configuration: Configuration = Configuration()


class SnapshotData(Protocol):
    """Snapshot bytes as the core sees them: a length and slices. ``bytes``
    fits; so does an ``mmap`` of a snapshot file, which keeps memory bounded
    while chunks are sent."""

    def __len__(self) -> int: ...

    def __getitem__(self, key: slice, /) -> bytes: ...


@attrs.frozen(kw_only=True)
class Snapshot:
    """A snapshot to install: metadata plus the state machine's bytes,
    which are opaque to the core."""

    meta: SnapshotMeta
    data: bytes


# --- Messages ------------------------------------------------------------
# Every message names its ``source`` and ``target`` and carries the sender's
# ``term`` (§5.1: a stale term is rejected, a newer one adopted).


@attrs.frozen(kw_only=True)
class RequestVote:
    """A (pre-)candidate asks for a vote (§5.2). With ``pre_vote`` the term
    is the one the sender *would* use and nobody changes state (thesis
    §9.6). ``leadership_transfer`` lets it through followers' leader lease
    (thesis §3.10)."""

    source: NodeId
    target: NodeId
    term: int
    last_log_index: int
    last_log_term: int
    pre_vote: bool = False
    leadership_transfer: bool = False


@attrs.frozen(kw_only=True)
class RequestVoteResponse:
    source: NodeId
    target: NodeId
    term: int
    vote_granted: bool
    pre_vote: bool = False


@attrs.frozen(kw_only=True)
class AppendEntries:
    """Replicate ``entries`` after ``prev_log_index``/``prev_log_term``
    (§5.3). ``leader_commit`` is the leader's commit index."""

    source: NodeId
    target: NodeId
    term: int
    prev_log_index: int
    prev_log_term: int
    entries: tuple[Entry, ...]
    leader_commit: int


@attrs.frozen(kw_only=True)
class AppendEntriesResponse:
    """On success ``match_index`` is the last index known to match the
    leader's log. On failure ``prev_log_index`` echoes the rejected request
    and ``conflict_term``/``conflict_index`` are the fast-backtracking hint
    (§5.3, end): the term of the follower's entry at ``prev_log_index`` and
    the first index it holds of that term, or term 0 and the follower's last
    index + 1 when its log is too short."""

    source: NodeId
    target: NodeId
    term: int
    success: bool
    match_index: int = 0
    prev_log_index: int = 0
    conflict_term: int = 0
    conflict_index: int = 0


@attrs.frozen(kw_only=True)
class Heartbeat:
    """Leader liveness plus commit, without entries. ``commit_index`` is
    capped at what the follower is known to hold, so it never commits an
    entry it has not been shown to match. ``read_round`` ties the reply to a
    ReadIndex round (thesis §6.4)."""

    source: NodeId
    target: NodeId
    term: int
    commit_index: int
    read_round: int = 0


@attrs.frozen(kw_only=True)
class HeartbeatResponse:
    source: NodeId
    target: NodeId
    term: int
    read_round: int = 0


@attrs.frozen(kw_only=True)
class InstallSnapshot:
    """One chunk of a snapshot (§7): ``data`` goes at ``offset`` of the
    snapshot whose metadata is ``meta``; ``done`` marks the last chunk."""

    source: NodeId
    target: NodeId
    term: int
    meta: SnapshotMeta
    offset: int
    data: bytes
    done: bool


@attrs.frozen(kw_only=True)
class InstallSnapshotResponse:
    """``next_offset`` is the offset the follower expects next for the
    snapshot at ``snapshot_index``; with ``done`` it has installed it (or
    already had everything it covers) and matches up to ``match_index``."""

    source: NodeId
    target: NodeId
    term: int
    snapshot_index: int
    next_offset: int
    done: bool = False
    match_index: int = 0


@attrs.frozen(kw_only=True)
class TimeoutNow:
    """Start an election now, skipping pre-vote (thesis §3.10)."""

    source: NodeId
    target: NodeId
    term: int


Message: TypeAlias = (
    RequestVote
    | RequestVoteResponse
    | AppendEntries
    | AppendEntriesResponse
    | Heartbeat
    | HeartbeatResponse
    | InstallSnapshot
    | InstallSnapshotResponse
    | TimeoutNow
)

MESSAGE_TYPES: tuple[type, ...] = (
    RequestVote,
    RequestVoteResponse,
    AppendEntries,
    AppendEntriesResponse,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    TimeoutNow,
)
