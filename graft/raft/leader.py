"""What only a leader does: replicate the log to each follower with flow
control, decide the commit index, confirm ReadIndex rounds, hand leadership
over, change membership and send snapshots to followers behind the log.

Mixed into ``RaftNode`` (graft.raft.node), which owns the state this uses.
Sends to followers are collected during a batch of inputs and made once, in
``_flush``, when the driver asks for the next Ready: entries proposed in one
batch travel in one AppendEntries per follower.

This module may import only the standard library, attrs and graft.raft.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING

from graft.raft.errors import (
    LearnerNotCaughtUp,
    MembershipChangeInProgress,
    NotLeader,
    ProposalDropped,
    TransferRefused,
)
from graft.raft.membership import ChangeKind, MembershipChange, apply_change
from graft.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    EntryKind,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    Message,
    NodeId,
    TimeoutNow,
)
from graft.raft.progress import Progress, ProgressState
from graft.raft.quorum import committed_index, has_quorum
from graft.raft.ready import ReadState, Role

if TYPE_CHECKING:
    from graft.raft.config import RaftConfig
    from graft.raft.log import RaftLog
    from graft.raft.messages import Configuration, SnapshotData
    from graft.raft.read_index import ReadIndexQueue


class LeaderMixin:
    if TYPE_CHECKING:
        # Owned by RaftNode; declared here for the type checker.
        config: RaftConfig
        node_id: NodeId
        log: RaftLog
        role: Role
        term: int
        leader_id: NodeId | None
        commit_index: int
        _reads: ReadIndexQueue
        _messages: list[Message]
        _failed_reads: list[Hashable]
        _snapshot_data: SnapshotData | None
        _election_elapsed: int
        _heartbeat_elapsed: int

        @property
        def configuration(self) -> Configuration: ...
        @property
        def is_voter(self) -> bool: ...
        def _fact(self, name: str, detail: str = "") -> None: ...
        def _reset_election_timer(self) -> None: ...
        def become_follower(self, term: int, leader_id: NodeId | None) -> None: ...
        def _may_commit(self, index: int) -> bool: ...
        def _read_needs_quorum_round(self) -> bool: ...

    def _init_leader_state(self) -> None:
        #: The leader's view of every other member (learners included).
        self._progress: dict[NodeId, Progress] = {}
        self._lead_transferee: NodeId | None = None
        self._transfer_elapsed = 0
        #: Index of the newest configuration entry this leader may not
        #: know to be committed; a new change waits until it is (§4.1).
        self._pending_config_index = 0
        self._send_to: set[NodeId] = set()
        self._probe_to: set[NodeId] = set()
        self._broadcast_pending = False
        self._commit_advanced = False

    def progress(self, node_id: NodeId) -> Progress | None:
        """The leader's view of ``node_id``'s log, for status and tests."""
        return self._progress.get(node_id)

    # --- becoming and stopping --------------------------------------------

    def _become_leader(self) -> None:
        assert self.role is Role.CANDIDATE
        self.role = Role.LEADER
        self.leader_id = self.node_id
        self._reset_election_timer()
        self._progress = {}
        self._sync_progress()
        self._lead_transferee = None
        self._fact("became_leader")
        # §8: a no-op of the new term commits what earlier terms left and
        # tells the leader its commit index before it serves reads.
        noop_index = self._append_own(EntryKind.NOOP, b"")
        # No configuration change until an entry of this term commits: an
        # earlier leader's uncommitted change could otherwise combine with
        # ours into two disjoint majorities (Ongaro, raft-dev, 2015).
        self._pending_config_index = noop_index
        self._maybe_commit()

    def _stop_leading(self) -> None:
        self._failed_reads.extend(self._reads.drain())
        self._progress = {}
        self._lead_transferee = None
        self._send_to.clear()
        self._probe_to.clear()
        self._broadcast_pending = False
        self._commit_advanced = False

    def _sync_progress(self) -> None:
        """Track exactly the members of the newest configuration."""
        ids = self.configuration.ids
        for node_id in ids:
            if node_id != self.node_id and node_id not in self._progress:
                self._progress[node_id] = Progress(
                    next=self.log.last_index + 1,
                    inflight_max=self.config.inflight_messages_max,
                    recent_active=True,
                )
                self._probe_to.add(node_id)
        if self._pending_config_index > self.commit_index:
            # Keep replicating to a removed node until its removal commits,
            # so it learns it was removed and stops campaigning.
            return
        for node_id in [n for n in self._progress if n not in ids]:
            pr = self._progress.pop(node_id)
            if self.role is Role.LEADER:
                self._send_farewell(node_id, pr)

    def _send_farewell(self, node_id: NodeId, pr: Progress) -> None:
        """One last append from where a removed node is known to match,
        carrying the commit index: it learns its removal committed."""
        prev_term = self.log.term_at(pr.match)
        if prev_term is None:
            return  # compacted past it; it will time out on its own
        entries = self.log.slice(
            pr.match + 1,
            self.log.last_index + 1,
            self.config.append_entries_max,
            self.config.append_bytes_max,
        )
        self._messages.append(
            AppendEntries(
                source=self.node_id,
                target=node_id,
                term=self.term,
                prev_log_index=pr.match,
                prev_log_term=prev_term,
                entries=entries,
                leader_commit=self.commit_index,
            )
        )

    # --- time --------------------------------------------------------------

    def _tick_leader(self) -> None:
        self._heartbeat_elapsed += 1
        self._election_elapsed += 1
        timeout = self.config.election_timeout_ticks
        if self._lead_transferee is not None:
            self._transfer_elapsed += 1
            if self._transfer_elapsed >= timeout:
                self._fact("transfer_aborted", f"to {self._lead_transferee}: timed out")
                self._lead_transferee = None
        if self._election_elapsed >= timeout:
            self._election_elapsed = 0
            if self.config.check_quorum:
                active = {self.node_id}
                for node_id, pr in self._progress.items():
                    if pr.recent_active:
                        active.add(node_id)
                    pr.recent_active = False
                if not has_quorum(self.configuration.voters, active):
                    # Thesis §6.2: a leader cut off from a majority steps
                    # down, so clients look for the real one.
                    self._fact("check_quorum_failed", f"heard from {sorted(active)}")
                    self.become_follower(self.term, None)
                    return
        if self._heartbeat_elapsed >= self.config.heartbeat_interval_ticks:
            self._heartbeat_elapsed = 0
            self._broadcast_heartbeat()

    def _broadcast_heartbeat(self) -> None:
        read_round = self._reads.last_round
        for node_id in sorted(self._progress):
            pr = self._progress[node_id]
            self._messages.append(
                Heartbeat(
                    source=self.node_id,
                    target=node_id,
                    term=self.term,
                    commit_index=min(pr.match, self.commit_index),
                    read_round=read_round,
                )
            )

    # --- client inputs -------------------------------------------------------

    def _append_own(self, kind: EntryKind, data: bytes) -> int:
        entry = Entry(index=self.log.last_index + 1, term=self.term, kind=kind, data=data)
        self.log.append(entry)
        self._broadcast_pending = True
        return entry.index

    def _propose_command(self, data: bytes) -> int:
        self._check_accepting_proposals()
        return self._append_own(EntryKind.COMMAND, data)

    def _check_accepting_proposals(self) -> None:
        if self._lead_transferee is not None:
            raise ProposalDropped(
                f"leadership transfer to node {self._lead_transferee} in progress"
            )
        if not self.is_voter:
            # It steps down once its removal commits (thesis §4.2.2).
            raise ProposalDropped(f"node {self.node_id} is being removed from the cluster")

    def change_membership(self, change: MembershipChange) -> int:
        """Append the configuration ``change`` makes; returns its index.
        In force at once; the next change waits for this one to commit."""
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader_id)
        self._check_accepting_proposals()
        if self._pending_config_index > self.commit_index:
            raise MembershipChangeInProgress(
                f"the configuration change at index {self._pending_config_index} "
                "is not committed yet"
            )
        after = apply_change(self.configuration, change)
        if change.kind is ChangeKind.PROMOTE:
            pr = self._progress.get(change.node_id)
            lag = self.log.last_index - (pr.match if pr else 0)
            if lag > self.config.learner_promotion_lag_max:
                raise LearnerNotCaughtUp(f"learner {change.node_id} is {lag} entries behind")
        index = self._append_own(EntryKind.CONFIG, after.encode())
        self._pending_config_index = index
        self._sync_progress()
        self._fact("configuration_appended", f"{change.kind.value} {change.node_id} at {index}")
        # Dropping a lagging voter can let entries commit at once.
        self._maybe_commit()
        return index

    def transfer_leadership(self, target: NodeId) -> None:
        """Hand leadership to ``target``: catch it up, then TimeoutNow
        (thesis §3.10). Proposals are refused until it ends."""
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader_id)
        if target == self.node_id:
            raise TransferRefused(f"node {target} is already the leader")
        if target not in self.configuration.voters:
            raise TransferRefused(f"node {target} is not a voting member")
        if self._lead_transferee is not None:
            if self._lead_transferee == target:
                return
            raise TransferRefused(f"a transfer to node {self._lead_transferee} is in progress")
        self._lead_transferee = target
        self._transfer_elapsed = 0
        self._fact("transfer_started", f"to {target}")
        if self._progress[target].match == self.log.last_index:
            self._send_timeout_now(target)
        else:
            self._probe_to.add(target)

    def _send_timeout_now(self, target: NodeId) -> None:
        self._messages.append(TimeoutNow(source=self.node_id, target=target, term=self.term))

    def _read(self, request_id: Hashable) -> None:
        if self.log.term_at(self.commit_index) != self.term:
            self._reads.awaiting_term_commit.append(request_id)
            return
        self._queue_read(request_id)

    def _queue_read(self, request_id: Hashable) -> None:
        state = ReadState(request_id=request_id, index=self.commit_index)
        if self._read_needs_quorum_round():
            self._reads.unsent.append(state)
        else:
            self._reads.confirmed.append(state)

    # --- replies from followers ------------------------------------------------

    def _step_leader(self, m: Message) -> None:
        pr = self._progress.get(m.source)
        if pr is None:
            self._fact("dropped", f"{type(m).__name__} from non-member {m.source}")
            return
        if isinstance(m, AppendEntriesResponse):
            self._handle_append_response(m, pr)
        elif isinstance(m, HeartbeatResponse):
            self._handle_heartbeat_response(m, pr)
        elif isinstance(m, InstallSnapshotResponse):
            self._handle_snapshot_response(m, pr)
        else:
            self._fact("dropped", f"{type(m).__name__} from {m.source} as leader")

    def _handle_append_response(self, m: AppendEntriesResponse, pr: Progress) -> None:
        pr.recent_active = True
        if not m.success:
            if pr.maybe_decrease_next(m.prev_log_index, self._hinted_next(m)):
                self._probe_to.add(m.source)
            else:
                self._fact("dropped_stale", f"rejection from {m.source}")
            return
        if m.match_index > self.log.last_index:
            self._fact("dropped", f"append reply from {m.source} beyond our log")
            return
        advanced = pr.maybe_update(m.match_index)
        if advanced or (pr.state is ProgressState.PROBE and pr.match == m.match_index):
            if pr.state is ProgressState.PROBE:
                pr.become_replicate()
            elif pr.state is ProgressState.SNAPSHOT and pr.match >= pr.snapshot_index:
                pr.become_probe()
            self._send_to.add(m.source)
        if advanced:
            self._after_match_advanced(m.source, pr)

    def _after_match_advanced(self, node_id: NodeId, pr: Progress) -> None:
        self._maybe_commit()
        if self.role is not Role.LEADER:
            return
        if node_id == self._lead_transferee and pr.match == self.log.last_index:
            self._send_timeout_now(node_id)

    def _hinted_next(self, m: AppendEntriesResponse) -> int:
        """Fast backtracking (§5.3): skip the follower's whole conflicting
        term, or past our last entry of that term if we hold it."""
        if m.conflict_term > 0:
            index = self.log.last_index_of_term(m.conflict_term, m.prev_log_index)
            if index is not None:
                return index + 1
        return m.conflict_index

    def _handle_heartbeat_response(self, m: HeartbeatResponse, pr: Progress) -> None:
        pr.heard_heartbeat_reply()
        read_round = min(m.read_round, self._reads.last_round)  # never a round not yet sent
        if read_round > pr.read_round_acked:
            pr.read_round_acked = read_round
            self._confirm_reads()
        if pr.state is ProgressState.SNAPSHOT:
            self._send_snapshot_chunk(m.source, pr)  # the last chunk may be lost
        elif pr.match < self.log.last_index:
            self._probe_to.add(m.source)

    def _confirm_reads(self) -> None:
        acks = [
            self._reads.last_round
            if voter == self.node_id
            else (pr.read_round_acked if (pr := self._progress.get(voter)) else 0)
            for voter in self.configuration.voters
        ]
        self._reads.confirm_up_to(committed_index(acks))

    def _handle_snapshot_response(self, m: InstallSnapshotResponse, pr: Progress) -> None:
        pr.recent_active = True
        if m.done:
            if m.match_index > self.log.last_index:
                self._fact("dropped", f"snapshot reply from {m.source} beyond our log")
                return
            advanced = pr.maybe_update(m.match_index)
            if pr.state is ProgressState.SNAPSHOT:
                pr.become_probe()
            self._probe_to.add(m.source)
            if advanced:
                self._after_match_advanced(m.source, pr)
            return
        if pr.state is not ProgressState.SNAPSHOT or m.snapshot_index != pr.snapshot_index:
            self._fact("dropped_stale", f"snapshot reply from {m.source}")
            return
        if m.next_offset == pr.snapshot_offset:
            return  # a duplicate; a lost chunk is resent on the next heartbeat reply
        pr.snapshot_offset = m.next_offset
        self._send_snapshot_chunk(m.source, pr)

    # --- commit ------------------------------------------------------------------

    def _leader_persisted(self) -> None:
        self._maybe_commit()

    def _maybe_commit(self) -> bool:
        """Advance the commit index to what a majority of voters hold, if
        that entry is of this term (§5.4.2)."""
        matches = [
            self.log.persisted_index
            if voter == self.node_id
            else (pr.match if (pr := self._progress.get(voter)) else 0)
            for voter in self.configuration.voters
        ]
        index = committed_index(matches)
        if index <= self.commit_index or not self._may_commit(index):
            return False
        self.commit_index = index
        self._commit_advanced = True
        if self._reads.awaiting_term_commit and self.log.term_at(index) == self.term:
            waiting = self._reads.awaiting_term_commit
            self._reads.awaiting_term_commit = []
            for request_id in waiting:
                self._queue_read(request_id)
        if index >= self._pending_config_index:
            self._sync_progress()  # forget nodes whose removal just committed
        if not self.is_voter and index >= self.log.configuration_index:
            self._step_down_removed()
        return True

    def _step_down_removed(self) -> None:
        """Thesis §4.2.2: a leader not in the committed configuration steps
        down, handing over to the most up-to-date voter to save a timeout."""
        candidates = sorted(
            (pr.match, node_id)
            for node_id, pr in self._progress.items()
            if node_id in self.configuration.voters
        )
        if candidates:
            self._send_timeout_now(candidates[-1][1])
        self._fact("removed_stepping_down")
        self.become_follower(self.term, None)

    # --- sending -------------------------------------------------------------------

    def _maybe_promote_learners(self) -> None:
        """Thesis §4.2.1: promote learners that asked for it once their log
        is within ``learner_promotion_lag_max`` of ours, one at a time."""
        if not self.configuration.awaits_promotion:
            return
        if self._pending_config_index > self.commit_index or self._lead_transferee is not None:
            return
        if not self.is_voter:
            return
        for member in self.configuration.members:
            if member.voter or not member.auto_promote:
                continue
            pr = self._progress.get(member.id)
            if pr is None or self.log.last_index - pr.match > self.config.learner_promotion_lag_max:
                continue
            self.change_membership(MembershipChange(kind=ChangeKind.PROMOTE, node_id=member.id))
            self._fact("learner_promoted", f"{member.id}")
            return

    def _flush(self) -> None:
        """Make the sends this batch of inputs called for."""
        if self.role is not Role.LEADER:
            return
        self._maybe_promote_learners()
        # One round in flight at a time (as etcd's read loop): reads that
        # arrive meanwhile wait and share the next round, so under load a
        # round serves many reads instead of each read costing a heartbeat
        # to every follower. A lost round heartbeat is repeated by the
        # periodic ones, which carry the newest round.
        if not self._reads.in_flight and self._reads.start_round() is not None:
            self._broadcast_heartbeat()
        for node_id in sorted(self._progress):
            pr = self._progress[node_id]
            # With nothing in flight, an empty append carries a new commit
            # index; otherwise the next append or heartbeat will.
            allow_empty = node_id in self._probe_to or (
                self._commit_advanced and pr.match == pr.next - 1
            )
            if allow_empty or self._broadcast_pending or node_id in self._send_to:
                self._send_append(node_id, pr, allow_empty=allow_empty)
        self._send_to.clear()
        self._probe_to.clear()
        self._broadcast_pending = False
        self._commit_advanced = False

    def _send_append(self, node_id: NodeId, pr: Progress, *, allow_empty: bool) -> None:
        if pr.is_paused():
            return
        prev = pr.next - 1
        prev_term = self.log.term_at(prev)
        if prev_term is None:
            # §7: what this follower needs next is compacted away.
            pr.become_snapshot(self.log.snapshot.index)
            self._fact("snapshot_sending", f"to {node_id} up to {self.log.snapshot.index}")
            self._send_snapshot_chunk(node_id, pr)
            return
        entries = self.log.slice(
            pr.next,
            self.log.last_index + 1,
            self.config.append_entries_max,
            self.config.append_bytes_max,
        )
        if not entries and not allow_empty:
            return
        self._messages.append(
            AppendEntries(
                source=self.node_id,
                target=node_id,
                term=self.term,
                prev_log_index=prev,
                prev_log_term=prev_term,
                entries=entries,
                leader_commit=self.commit_index,
            )
        )
        if entries:
            pr.sent_entries(entries[-1].index)
        else:
            pr.sent_probe()

    def _send_snapshot_chunk(self, node_id: NodeId, pr: Progress) -> None:
        if pr.snapshot_index != self.log.snapshot.index:
            pr.become_snapshot(self.log.snapshot.index)  # compacted again: send the newer one
        data = self._snapshot_data
        if data is None:
            self._fact("snapshot_unavailable", f"for {node_id}")
            return
        offset = pr.snapshot_offset
        chunk = bytes(data[offset : offset + self.config.snapshot_chunk_bytes])
        self._messages.append(
            InstallSnapshot(
                source=self.node_id,
                target=node_id,
                term=self.term,
                meta=self.log.snapshot,
                offset=offset,
                data=chunk,
                done=offset + len(chunk) >= len(data),
            )
        )
