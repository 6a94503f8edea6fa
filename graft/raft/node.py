"""One Raft server's consensus state: inputs in, one ``Ready`` out.

``RaftNode`` performs no I/O and reads no clock. The driver feeds it ticks,
peers' messages, proposals, reads, membership changes and leadership
transfers; it collects the resulting work with ``ready()`` and reports it
done with ``advance()`` (see graft.raft.ready for the order).

``step()`` first settles the message's term for every role (§5.1), then
dispatches on the role. Leader-only work (replication, commit, ReadIndex,
transfers) lives in graft.raft.leader, mixed in here.

This module may import only the standard library, attrs and graft.raft.
"""

from __future__ import annotations

import random
from collections.abc import Hashable

import attrs

from graft.raft.config import RaftConfig
from graft.raft.errors import NotLeader
from graft.raft.leader import LeaderMixin
from graft.raft.log import RaftLog
from graft.raft.messages import (
    NO_VOTE,
    AppendEntries,
    AppendEntriesResponse,
    Configuration,
    Entry,
    EntryKind,
    HardState,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    Message,
    NodeId,
    RequestVote,
    RequestVoteResponse,
    SnapshotData,
    SnapshotMeta,
    TimeoutNow,
)
from graft.raft.quorum import VoteResult, vote_result
from graft.raft.read_index import ReadIndexQueue
from graft.raft.ready import Fact, Ready, Role, SnapshotChunk


@attrs.frozen(kw_only=True)
class PersistentState:
    """What the driver read back from durable storage at start-up. A brand
    new cluster member starts from index 0, term 0 and the initial
    configuration; a node that will join later starts with an empty one."""

    hard_state: HardState = HardState()
    snapshot: SnapshotMeta = SnapshotMeta()
    snapshot_data: SnapshotData | None = None
    entries: tuple[Entry, ...] = ()


@attrs.define
class _ReadyInFlight:
    """What the outstanding Ready covered, to settle on ``advance``."""

    last_entry_index: int
    snapshot_index: int
    applied_index: int
    #: Lowest index cut from the log since the Ready left; entries from
    #: there on that the Ready carried are no longer the log's.
    truncated_from: int


_RESPONSES_TO_LEADER = (AppendEntries, Heartbeat, InstallSnapshot)


class RaftNode(LeaderMixin):
    def __init__(self, config: RaftConfig, state: PersistentState, rng: random.Random) -> None:
        self.config = config
        self.node_id = config.node_id
        self._rng = rng
        self.log = RaftLog(state.snapshot, state.entries)
        self._snapshot_data: SnapshotData | None = state.snapshot_data
        hs = state.hard_state
        self.term = hs.term
        self.vote = hs.vote
        # The stored commit may run ahead of a log whose tail was lost.
        self.commit_index = min(max(hs.commit, state.snapshot.index), self.log.last_index)
        self.applied_index = state.snapshot.index
        self._applied_handed = state.snapshot.index
        self._hard_state_sent = HardState(term=self.term, vote=self.vote, commit=self.commit_index)
        self.role = Role.FOLLOWER
        self.leader_id: NodeId | None = None
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._randomized_timeout = 0
        self._votes: dict[NodeId, bool] = {}
        # Outputs collected for the next Ready.
        self._messages: list[Message] = []
        self._messages_after_persist: list[Message] = []
        self._facts: list[Fact] = []
        self._failed_reads: list[Hashable] = []
        self._snapshot_to_install: SnapshotMeta | None = None
        self._snapshot_chunks: list[SnapshotChunk] = []
        self._in_flight: _ReadyInFlight | None = None
        # Follower side of InstallSnapshot: (leader, term, meta) and how many
        # bytes of it were handed out to be written so far.
        self._receiving_key: tuple[NodeId, int, SnapshotMeta] | None = None
        self._receiving_offset = 0
        self._reads = ReadIndexQueue()
        self._init_leader_state()
        self._reset_election_timer()

    # --- views ---------------------------------------------------------------

    @property
    def configuration(self) -> Configuration:
        return self.log.configuration

    @property
    def snapshot_meta(self) -> SnapshotMeta:
        return self.log.snapshot

    @property
    def first_index(self) -> int:
        return self.log.first_index

    @property
    def last_index(self) -> int:
        return self.log.last_index

    @property
    def is_voter(self) -> bool:
        return self.node_id in self.configuration.voters

    def entries(self, lo: int, hi: int) -> tuple[Entry, ...]:
        return self.log.slice(lo, hi)

    def term_at(self, index: int) -> int | None:
        return self.log.term_at(index)

    @property
    def hard_state(self) -> HardState:
        return HardState(term=self.term, vote=self.vote, commit=self.commit_index)

    # --- hooks that deliberately broken variants override --------------------

    def _log_is_up_to_date(self, last_log_index: int, last_log_term: int) -> bool:
        """§5.4.1: vote only for a candidate whose log is at least as up-to-date."""
        return self.log.is_up_to_date(last_log_index, last_log_term)

    def _may_commit(self, index: int) -> bool:
        """§5.4.2: a leader commits by counting replicas only of its own term."""
        return self.log.term_at(index) == self.term

    def _read_needs_quorum_round(self) -> bool:
        """Thesis §6.4: only a one-voter cluster may skip the heartbeat round."""
        return self.configuration.voters != frozenset((self.node_id,))

    # --- role changes ----------------------------------------------------------

    def _reset_election_timer(self) -> None:
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        timeout = self.config.election_timeout_ticks
        self._randomized_timeout = timeout + self._rng.randrange(timeout)

    def _fact(self, name: str, detail: str = "") -> None:
        self._facts.append(Fact(name=name, term=self.term, detail=detail))

    def become_follower(self, term: int, leader_id: NodeId | None) -> None:
        was_leader = self.role is Role.LEADER
        if term > self.term:
            self.term = term
            self.vote = NO_VOTE
        self.role = Role.FOLLOWER
        self.leader_id = leader_id
        self._reset_election_timer()
        if was_leader:
            self._stop_leading()
            self._fact("stepped_down", f"leader {leader_id}")

    def _become_pre_candidate(self) -> None:
        assert self.role is not Role.LEADER
        self.role = Role.PRE_CANDIDATE
        self.leader_id = None
        self._votes = {}
        self._reset_election_timer()
        self._fact("pre_vote_started")

    def _become_candidate(self) -> None:
        assert self.role is not Role.LEADER
        self.term += 1
        self.vote = self.node_id
        self.role = Role.CANDIDATE
        self.leader_id = None
        self._votes = {}
        self._reset_election_timer()
        self._fact("election_started")

    def _campaign(self, *, pre_vote: bool, transfer: bool = False) -> None:
        """Ask every voter for a (pre-)vote (§5.2, thesis §9.6)."""
        if pre_vote:
            self._become_pre_candidate()
            term = self.term + 1
        else:
            self._become_candidate()
            term = self.term
        self._votes[self.node_id] = True
        for voter in sorted(self.configuration.voters):
            if voter == self.node_id:
                continue
            self._messages.append(
                RequestVote(
                    source=self.node_id,
                    target=voter,
                    term=term,
                    last_log_index=self.log.last_index,
                    last_log_term=self.log.last_term,
                    pre_vote=pre_vote,
                    leadership_transfer=transfer,
                )
            )
        self._tally()

    def _tally(self) -> None:
        result = vote_result(self.configuration.voters, self._votes)
        if result is VoteResult.WON:
            if self.role is Role.PRE_CANDIDATE:
                self._campaign(pre_vote=False)
            else:
                self._become_leader()
        elif result is VoteResult.LOST:
            self.become_follower(self.term, None)

    # --- inputs ----------------------------------------------------------------

    def tick(self) -> None:
        """One unit of logical time."""
        if self.role is Role.LEADER:
            self._tick_leader()
            return
        self._election_elapsed += 1
        if self._election_elapsed >= self._randomized_timeout and self.is_voter:
            self._election_elapsed = 0
            self._campaign(pre_vote=self.config.pre_vote)
        # A node that is no voter in its own configuration keeps counting:
        # its lease (step) must run out once its leader falls silent, or it
        # would ignore forever the vote requests of servers whose
        # configuration still counts it as a voter.

    def propose(self, data: bytes) -> int:
        """Append a client command; returns its index. The command is
        committed when an entry at that index with this term is applied."""
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader_id)
        return self._propose_command(data)

    def read(self, request_id: Hashable) -> None:
        """Ask for a linearizable read; it comes back in ``Ready.reads``
        (or ``Ready.failed_reads``)."""
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader_id)
        self._read(request_id)

    def compact(self, index: int, data: SnapshotData, retain: int = 0) -> None:
        """The driver saved a snapshot of the state machine at ``index``
        (applied already): drop the log up to it but for a tail of
        ``retain`` entries, and keep ``data`` to send to followers that fall
        behind the log (§7)."""
        assert self.log.snapshot.index <= index <= self.applied_index, (
            f"compact({index}) outside [{self.log.snapshot.index}, {self.applied_index}]"
        )
        self.log.compact(index, retain)
        self._snapshot_data = data
        self._fact("compacted", f"up to {index}")

    def step(self, m: Message) -> None:
        """Take one message from a peer. Stale or unexpected messages are
        dropped and reported as facts, never raised."""
        if m.target != self.node_id:
            self._fact("dropped", f"{type(m).__name__} for node {m.target}")
            return
        if m.term > self.term:
            if isinstance(m, RequestVote):
                in_lease = (
                    self.config.check_quorum
                    and self.leader_id is not None
                    and self._election_elapsed < self.config.election_timeout_ticks
                )
                if in_lease and not m.leadership_transfer:
                    # Thesis §4.2.3: a server that hears from its leader
                    # ignores vote requests, so removed or partitioned
                    # servers cannot depose it.
                    self._fact("vote_ignored_in_lease", f"from {m.source}")
                    return
                if not m.pre_vote:
                    self.become_follower(m.term, None)
            elif isinstance(m, RequestVoteResponse) and m.pre_vote and m.vote_granted:
                pass  # answers our pre-vote at the term we would use
            elif isinstance(m, _RESPONSES_TO_LEADER):
                self.become_follower(m.term, m.source)
            else:
                self.become_follower(m.term, None)
        elif m.term < self.term:
            self._step_stale_term(m)
            return

        if isinstance(m, RequestVote):
            self._handle_request_vote(m)
        elif self.role is Role.LEADER:
            self._step_leader(m)
        elif isinstance(m, RequestVoteResponse):
            self._handle_vote_response(m)
        elif isinstance(m, _RESPONSES_TO_LEADER):
            if self.role is not Role.FOLLOWER:
                self.become_follower(self.term, m.source)
            self.leader_id = m.source
            self._election_elapsed = 0
            if isinstance(m, AppendEntries):
                self._handle_append_entries(m)
            elif isinstance(m, Heartbeat):
                self._handle_heartbeat(m)
            else:
                self._handle_install_snapshot(m)
        elif isinstance(m, TimeoutNow):
            if self.is_voter and m.source == self.leader_id:
                self._fact("timeout_now", f"from {m.source}")
                self._campaign(pre_vote=False, transfer=True)
            else:
                self._fact("dropped", f"TimeoutNow from {m.source}")
        else:
            self._fact("dropped", f"{type(m).__name__} from {m.source} as {self.role.value}")

    def _step_stale_term(self, m: Message) -> None:
        if isinstance(m, AppendEntries | Heartbeat | InstallSnapshot):
            # A deposed leader that pre-vote keeps from ever seeing a vote
            # request learns the new term from this answer (etcd raft.go).
            self._messages.append(
                AppendEntriesResponse(
                    source=self.node_id, target=m.source, term=self.term, success=False
                )
            )
        elif isinstance(m, RequestVote) and m.pre_vote:
            self._messages.append(
                RequestVoteResponse(
                    source=self.node_id,
                    target=m.source,
                    term=self.term,
                    vote_granted=False,
                    pre_vote=True,
                )
            )
        self._fact("dropped_stale", f"{type(m).__name__} from {m.source} term {m.term}")

    # --- voting ------------------------------------------------------------------

    def _handle_request_vote(self, m: RequestVote) -> None:
        can_vote = (
            self.vote == m.source
            or (self.vote == NO_VOTE and self.leader_id is None)
            or (m.pre_vote and m.term > self.term)
        )
        granted = can_vote and self._log_is_up_to_date(m.last_log_index, m.last_log_term)
        if m.pre_vote:
            # A pre-vote changes nothing here, so it needs no persistence.
            self._messages.append(
                RequestVoteResponse(
                    source=self.node_id,
                    target=m.source,
                    term=m.term if granted else self.term,
                    vote_granted=granted,
                    pre_vote=True,
                )
            )
            return
        if granted:
            self.vote = m.source
            self._election_elapsed = 0
            self._fact("voted", f"for {m.source}")
        response = RequestVoteResponse(
            source=self.node_id, target=m.source, term=self.term, vote_granted=granted
        )
        # A grant promises the durable vote (Figure 2, thesis §3.8).
        (self._messages_after_persist if granted else self._messages).append(response)

    def _handle_vote_response(self, m: RequestVoteResponse) -> None:
        expected = self.role is Role.PRE_CANDIDATE if m.pre_vote else self.role is Role.CANDIDATE
        if not expected:
            self._fact("dropped", f"vote response from {m.source} as {self.role.value}")
            return
        self._votes[m.source] = m.vote_granted
        self._tally()

    # --- follower side of replication ------------------------------------------

    def _handle_append_entries(self, m: AppendEntries) -> None:
        problem = _malformed_entries(m)
        if problem is not None:
            self._fact("dropped", f"AppendEntries from {m.source}: {problem}")
            return
        respond = self._messages_after_persist.append
        if m.prev_log_index < self.commit_index:
            # Everything up to our commit index is known to match (§5.4).
            respond(self._append_success(m.source, self.commit_index))
            return
        prev_term = self.log.term_at(m.prev_log_index)
        if prev_term != m.prev_log_term:
            if m.prev_log_index > self.log.last_index:
                conflict_term, conflict_index = 0, self.log.last_index + 1
            else:
                assert prev_term is not None
                conflict_term = prev_term
                conflict_index = self.log.first_index_of_term(m.prev_log_index)
            self._messages.append(
                AppendEntriesResponse(
                    source=self.node_id,
                    target=m.source,
                    term=self.term,
                    success=False,
                    prev_log_index=m.prev_log_index,
                    conflict_term=conflict_term,
                    conflict_index=conflict_index,
                )
            )
            return
        for i, entry in enumerate(m.entries):
            if entry.index > self.log.last_index:
                for new in m.entries[i:]:
                    self.log.append(new)
                break
            if self.log.term_at(entry.index) != entry.term:
                # §5.3: a conflicting entry and all after it go.
                if entry.index <= self.commit_index:
                    # Only a broken or lying leader contradicts a committed entry.
                    self._fact("dropped", f"AppendEntries from {m.source} rewrites committed")
                    return
                self._note_truncation(entry.index)
                self.log.truncate_from(entry.index)
                for new in m.entries[i:]:
                    self.log.append(new)
                break
        match = m.prev_log_index + len(m.entries)
        new_commit = min(m.leader_commit, match)
        if new_commit > self.commit_index:
            self.commit_index = new_commit
        respond(self._append_success(m.source, match))

    def _append_success(self, leader: NodeId, match: int) -> AppendEntriesResponse:
        return AppendEntriesResponse(
            source=self.node_id, target=leader, term=self.term, success=True, match_index=match
        )

    def _note_truncation(self, index: int) -> None:
        if self._in_flight is not None:
            self._in_flight.truncated_from = min(self._in_flight.truncated_from, index)

    def _handle_heartbeat(self, m: Heartbeat) -> None:
        # The leader caps commit_index at what we are known to hold.
        if m.commit_index > self.commit_index:
            self.commit_index = min(m.commit_index, self.log.last_index)
        self._messages.append(
            HeartbeatResponse(
                source=self.node_id, target=m.source, term=self.term, read_round=m.read_round
            )
        )

    def _handle_install_snapshot(self, m: InstallSnapshot) -> None:
        meta = m.meta

        def answer(
            next_offset: int, done: bool = False, match: int = 0, written: bool = False
        ) -> None:
            response = InstallSnapshotResponse(
                source=self.node_id,
                target=m.source,
                term=self.term,
                snapshot_index=meta.index,
                next_offset=next_offset,
                done=done,
                match_index=match,
            )
            (self._messages_after_persist if written else self._messages).append(response)

        if meta.index <= self.commit_index:
            self._receiving_key = None
            answer(0, done=True, match=self.commit_index, written=True)
            return
        if self.log.term_at(meta.index) == meta.term:
            # We hold the entry the snapshot ends at: it is committed, so
            # just commit up to it (etcd raft.go restore).
            self._receiving_key = None
            self.commit_index = meta.index
            answer(0, done=True, match=meta.index, written=True)
            return
        if self._snapshot_to_install is not None:
            # One snapshot per Ready: the driver installs it after writing
            # the batch's chunks, so a newer one must wait for the next.
            self._fact("dropped", f"snapshot chunk from {m.source} behind an install")
            return
        key = (m.source, m.term, meta)
        if m.offset == 0:
            self._receiving_key = key
            self._receiving_offset = 0
        elif key != self._receiving_key or m.offset != self._receiving_offset:
            answer(self._receiving_offset if key == self._receiving_key else 0)
            return
        # The bytes go to the driver to write; they are acknowledged once
        # written, and never gathered here (bounded memory).
        self._snapshot_chunks.append(SnapshotChunk(meta=meta, offset=m.offset, data=m.data))
        self._receiving_offset += len(m.data)
        if not m.done:
            answer(self._receiving_offset, written=True)
            return
        size = self._receiving_offset
        self._receiving_key = None
        self._receiving_offset = 0
        self._note_truncation(self.log.first_index)
        self.log.restore(meta)
        self._snapshot_data = None  # until the driver hands the stored file back
        self.commit_index = meta.index
        self._applied_handed = meta.index
        self._snapshot_to_install = meta
        self._fact("snapshot_installed", f"up to {meta.index} from {m.source}")
        answer(size, done=True, match=meta.index, written=True)

    # --- output ----------------------------------------------------------------

    def has_ready(self) -> bool:
        """Whether ``ready()`` would return work. Settles deferred sends."""
        if self._in_flight is not None:
            return False
        self._flush()
        return bool(
            self._messages
            or self._messages_after_persist
            or self._facts
            or self._failed_reads
            or self._snapshot_to_install
            or self._snapshot_chunks
            or self.log.unstable_from <= self.log.last_index
            or self._applied_handed < min(self.commit_index, self.log.persisted_index)
            or self._hard_state_changed()
            or self._servable_reads_pending()
        )

    def ready(self) -> Ready:
        """Collect everything to do since the last Ready; see graft.raft.ready."""
        assert self._in_flight is None, "advance() the last Ready first"
        self._flush()
        hard_state = self.hard_state
        changed = hard_state if hard_state != self._hard_state_sent else None
        if changed is not None and (
            (changed.term, changed.vote) != (self._hard_state_sent.term, self._hard_state_sent.vote)
        ):
            # Nothing may speak for a term or vote that is not durable yet:
            # a one-voter leader is elected within this very batch, and its
            # appends must not outlive a crash that forgets its term.
            self._messages_after_persist[:0] = self._messages
            self._messages = []
        self._hard_state_sent = hard_state
        entries = self.log.unstable_entries()
        self.log.unstable_from = self.log.last_index + 1
        apply_to = min(self.commit_index, self.log.persisted_index)
        committed = self.log.slice(self._applied_handed + 1, apply_to + 1)
        if committed:
            self._applied_handed = committed[-1].index
        snapshot = self._snapshot_to_install
        self._snapshot_to_install = None
        chunks = tuple(self._snapshot_chunks)
        self._snapshot_chunks = []
        reads = self._reads.pop_servable(self._applied_handed)
        ready = Ready(
            hard_state=changed,
            snapshot_chunks=chunks,
            snapshot=snapshot,
            entries=entries,
            messages=tuple(self._messages),
            messages_after_persist=tuple(self._messages_after_persist),
            committed_entries=committed,
            reads=reads,
            failed_reads=tuple(self._failed_reads),
            role=self.role,
            term=self.term,
            leader_id=self.leader_id,
            facts=tuple(self._facts),
        )
        self._messages = []
        self._messages_after_persist = []
        self._facts = []
        self._failed_reads = []
        self._in_flight = _ReadyInFlight(
            last_entry_index=entries[-1].index if entries else 0,
            snapshot_index=snapshot.index if snapshot else 0,
            applied_index=self._applied_handed,
            truncated_from=self.log.last_index + 1,
        )
        return ready

    def advance(self, ready: Ready) -> None:
        """The driver did all ``ready`` asked: its entries, hard state and
        snapshot are durable and its committed entries applied."""
        flight = self._in_flight
        assert flight is not None, "advance() without an outstanding Ready"
        self._in_flight = None
        durable = max(flight.last_entry_index, flight.snapshot_index)
        durable = min(durable, flight.truncated_from - 1, self.log.last_index)
        if durable > self.log.persisted_index:
            self.log.persisted_index = durable
        self.applied_index = max(self.applied_index, flight.applied_index)
        if self.role is Role.LEADER:
            self._leader_persisted()

    def _hard_state_changed(self) -> bool:
        sent = self._hard_state_sent
        return (self.term, self.vote, self.commit_index) != (sent.term, sent.vote, sent.commit)

    def _servable_reads_pending(self) -> bool:
        confirmed = self._reads.confirmed
        if not confirmed:
            return False
        apply_to = min(self.commit_index, self.log.persisted_index)
        return confirmed[0].index <= max(self._applied_handed, apply_to)


def _malformed_entries(m: AppendEntries) -> str | None:
    """Why ``m``'s entries cannot be a leader's, or None: they follow
    ``prev_log_index`` contiguously, with terms from ``prev_log_term`` up to
    the message's term, and CONFIG entries decode."""
    expected_index = m.prev_log_index + 1
    term = m.prev_log_term
    for entry in m.entries:
        if entry.index != expected_index:
            return f"entry {entry.index} where {expected_index} was due"
        if not term <= entry.term <= m.term:
            return f"entry {entry.index} has term {entry.term} out of order"
        if entry.kind is EntryKind.CONFIG:
            try:
                Configuration.decode(entry.data)
            except (ValueError, AssertionError) as e:
                return f"entry {entry.index} holds a bad configuration: {e}"
        expected_index += 1
        term = entry.term
    return None
