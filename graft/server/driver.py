"""The driver: feeds a :class:`graft.raft.RaftNode` its inputs and carries
out each ``Ready`` it returns, in the order of graft/raft/ready.py.

One Ready is in flight at a time. Inputs (ticks, peer messages, client
writes and reads) arriving while its entries are being made durable go
straight into the core and form the next batch: the group commit
(STYLE.md §3). Waiting clients are Deferreds resolved when their entry is
applied (writes) or their read is confirmed (linearizable reads).

Everything here takes its clock, storage, transport, state machine and
randomness from the constructor, so tests run whole nodes on one
``task.Clock`` with in-memory twins.

May import the standard library, attrs, Twisted, graft.raft, graft.kv,
graft.storage and graft.transport.
"""

from __future__ import annotations

import collections
import itertools
import random
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Protocol

import attrs
from twisted.internet.defer import Deferred, DeferredLock, TimeoutError, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from graft.kv import ApplyResult, KVStore
from graft.raft import (
    Configuration,
    Entry,
    EntryKind,
    HardState,
    Member,
    MembershipChange,
    NotLeader,
    PersistentState,
    ProposalDropped,
    RaftConfig,
    RaftNode,
    Ready,
    Role,
    SnapshotChunk,
    SnapshotMeta,
)
from graft.raft.messages import Message, NodeId, SnapshotData
from graft.server.errors import LeadershipChanged, NodeFailed, NodeStopping, Unavailable
from graft.server.snapshots import (
    RunInThread,
    SnapshotInProgress,
    StoredSnapshot,
    commit_writer,
    data_chunks,
    load_newest_snapshot,
    thread_runner,
    write_snapshot,
)
from graft.storage.errors import StorageCorruption, StorageFailed
from graft.transport.interfaces import ITransport, Receive

__all__ = ["DurableLog", "RaftDriver", "SnapshotStore"]


class DurableLog(Protocol):
    """What the driver needs of its log: GroupCommitLog, or the in-memory
    twin :class:`graft.server.memory.MemoryDurableLog`."""

    failed_reason: str | None

    @property
    def first_index(self) -> int: ...
    @property
    def last_index(self) -> int: ...
    def entries(self, lo: int, hi: int) -> Sequence[Entry]: ...
    def term_at(self, index: int) -> int | None: ...
    def load_hard_state(self) -> HardState: ...
    def append(
        self, entries: Sequence[Entry], hard_state: HardState | None = None
    ) -> Deferred[None]: ...
    def drop_prefix(self, index: int) -> Deferred[None]: ...
    def reset(self, index: int) -> Deferred[None]: ...
    def close(self) -> Deferred[None]: ...


class SnapshotStore(Protocol):
    """What the driver needs of an ``ISnapshotStore``."""

    def writer(self, meta: SnapshotMeta) -> Any: ...
    def names(self) -> list[str]: ...
    def load(self, name: str) -> tuple[SnapshotMeta, SnapshotData]: ...


@attrs.define
class _PendingWrite:
    index: int
    term: int
    done: Deferred[ApplyResult]
    #: When to give up waiting (clock seconds), or None for never.
    deadline: float | None = None


def _silence(failure: Failure) -> None:
    """Errback of last resort on Deferreds nobody may be waiting on."""
    return None


class RaftDriver:
    """One node: its core, the storage it persists to, the transport it
    talks on and the key/value store it applies to.

    Invariants: at most one Ready is outstanding (``_in_flight``); a client
    write is answered only once its entry is applied, which implies it was
    committed on a majority and durable here; once ``failed_reason`` is set
    the node takes no more input and acknowledges nothing.
    """

    log = Logger()

    def __init__(
        self,
        *,
        config: RaftConfig,
        clock: Any,
        log_storage: DurableLog,
        snapshots: SnapshotStore,
        transport: Callable[[Receive], ITransport],
        state_machine: KVStore,
        rng: random.Random,
        initial_configuration: Configuration,
        tick_seconds: float = 0.05,
        snapshot_threshold: int = 10000,
        snapshot_retain_entries: int = 1000,
        run_in_thread: RunInThread | None = None,
    ) -> None:
        self.clock = clock
        self.log_storage = log_storage
        self.snapshots = snapshots
        self.kv = state_machine
        self.tick_seconds = tick_seconds
        self.snapshot_threshold = snapshot_threshold
        #: Entries kept in the log before a snapshot's index, so followers
        #: slightly behind catch up from the log rather than a snapshot.
        self.snapshot_retain_entries = snapshot_retain_entries
        #: Where snapshots are serialised, written and parsed: the reactor's
        #: thread pool (inline under task.Clock).
        self._run_in_thread = run_in_thread if run_in_thread is not None else thread_runner(clock)
        #: The newest durable snapshot (set by _load).
        self._snapshot = StoredSnapshot(meta=SnapshotMeta(), data=b"")
        #: While a snapshot is being taken (at most one): who waits for it.
        self._snapshotting: list[Deferred[StoredSnapshot]] | None = None
        #: A stored snapshot whose compaction waits for the Ready in flight.
        self._compaction_due: StoredSnapshot | None = None
        #: Snapshot writes (taken or received) go to the store one at a time.
        self._snapshot_store_lock = DeferredLock()
        #: The writer of the snapshot arriving from the leader, if any.
        self._receiving_snapshot: Any = None
        #: Entries replayed from the log at start-up (after the snapshot).
        self.replayed_entries = 0
        #: Why the node stopped acknowledging writes, or None while healthy.
        self.failed_reason: str | None = None
        #: How often the core reported each fact (elections, drops...), for /metrics.
        self.fact_counts: collections.Counter[str] = collections.Counter()
        self._stopping = False
        self._in_flight = False
        self._idle_waiters: list[Deferred[None]] = []
        self._writes: dict[int, _PendingWrite] = {}
        self._reads: dict[Hashable, Deferred[None]] = {}
        #: Reads that give up at a deadline (clock seconds).
        self._read_deadlines: dict[Hashable, float] = {}
        self._read_ids = itertools.count(1)
        self._role: Role | None = None
        self._leader_id: NodeId | None = None
        #: Why this node no longer serves clients (it was removed from the
        #: cluster), or None; set by graft.server.membership.MembershipWatch.
        self.removed_reason: str | None = None
        #: Peers to talk to while the configuration is still empty: a node
        #: that joined learns the members from the leader, whose messages
        #: it must admit first (graft.server.bootstrap).
        self.bootstrap_peers: dict[NodeId, str] = {}
        #: The transport's address book as last set (see _update_peers).
        self._peers: dict[NodeId, str] = {}
        #: Whether ``_peers`` holds ids outside the configuration.
        self._peers_outside = False
        state = self._load(config.node_id, initial_configuration)
        self.node = RaftNode(config, state, rng)
        self.node_id: NodeId = config.node_id
        self._configuration = self.node.configuration
        # zope interfaces are opaque to mypy: keep the transport untyped.
        self.transport: Any = transport(self.receive)
        self._ticker = LoopingCall(self.tick)
        self._ticker.clock = clock

    # --- start-up -------------------------------------------------------

    def _load(self, node_id: NodeId, initial: Configuration) -> PersistentState:
        """Read back hard state, newest snapshot and the entries after it;
        restore the state machine from the snapshot (the newest whose
        checksums hold; see :func:`load_newest_snapshot`)."""
        log = self.log_storage

        def warn(problem: str) -> None:
            self.log.warn("node {node_id}: {problem}", node_id=node_id, problem=problem)

        latest = load_newest_snapshot(self.snapshots, log, warn)
        data: SnapshotData | None = None
        if latest is None:
            meta = SnapshotMeta(index=0, term=0, configuration=initial)
        else:
            meta, data = latest
            self.kv.restore(data_chunks(data))
            self._snapshot = StoredSnapshot(meta=meta, data=data)
        if log.last_index < meta.index or (
            log.first_index <= meta.index and log.term_at(meta.index) != meta.term
        ):
            # The log ends before the snapshot (it was installed from the
            # leader, or compacted past), or disagrees with it (a crash
            # between installing a snapshot and cutting the log): continue
            # the log after it (§7).
            log.reset(meta.index).addErrback(_silence)
            entries: tuple[Entry, ...] = ()
        else:
            lo = max(meta.index + 1, log.first_index)
            if lo > meta.index + 1:
                raise ValueError(
                    f"log starts at {log.first_index} but the newest snapshot ends at "
                    f"{meta.index}: entries in between are missing"
                )
            entries = tuple(log.entries(lo, log.last_index + 1))
        hard_state = log.load_hard_state()
        self.replayed_entries = len(entries)
        self.log.info(
            "node {node_id} loaded term {term}, snapshot at {snapshot_index}, "
            "{count} entries after it",
            node_id=node_id,
            term=hard_state.term,
            snapshot_index=meta.index,
            count=len(entries),
        )
        return PersistentState(
            hard_state=hard_state, snapshot=meta, snapshot_data=data, entries=entries
        )

    def start(self) -> Deferred[None]:
        """Start the transport and the ticker."""
        self._update_peers(force=True)
        d: Deferred[None] = self.transport.start()
        self._ticker.start(self.tick_seconds, now=False).addErrback(
            lambda f: self.log.failure("ticker of node {node_id} failed", f, node_id=self.node_id)
        )
        self._kick()
        return d

    def stop(self) -> Deferred[None]:
        """Stop taking input, fail waiting clients, let the Ready in flight
        finish persisting, stop the transport."""
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        self._stopping = True
        if self._ticker.running:
            self._ticker.stop()
        self._fail_waiters(NodeStopping("the node is shutting down"))
        if self._in_flight:
            d: Deferred[None] = Deferred()
            self._idle_waiters.append(d)
            await d
        if self._snapshotting is not None:
            # Let the worker thread finish its file: no torn .tmp left.
            await self._wait_for_snapshot().addErrback(_silence)
        # A snapshot half received from the leader: the next start asks
        # for it again from offset 0, so drop its file and descriptor now.
        await self._snapshot_store_lock.acquire()
        try:
            writer, self._receiving_snapshot = self._receiving_snapshot, None
            if writer is not None:
                writer.abort()
        finally:
            self._snapshot_store_lock.release()
        await self.transport.stop()

    # --- inputs ---------------------------------------------------------

    @property
    def accepting(self) -> bool:
        return self.failed_reason is None and not self._stopping

    def tick(self) -> None:
        self._expire_waiters()
        if not self.accepting:
            return
        self.node.tick()
        self._kick()

    def receive(self, message: Message) -> None:
        """The transport's callback: one valid message from a peer."""
        if not self.accepting:
            return
        self.node.step(message)
        self._kick()

    def propose(
        self, data: bytes, *, timeout_seconds: float | None = None
    ) -> Deferred[ApplyResult]:
        """Propose a command; fires with its ApplyResult once applied here.

        Fails at once with NotLeader (carrying who is) or Unavailable;
        later with LeadershipChanged if another leader's entry took its
        index, or with TimeoutError once ``timeout_seconds`` passed (to
        within a tick; the entry may still commit)."""
        try:
            self._check_accepting()
            index = self.node.propose(data)
        except (NotLeader, Unavailable) as e:
            return _failed(e)
        except ProposalDropped as e:
            return _failed(Unavailable(f"the leader is not taking writes now: {e}"))
        done: Deferred[ApplyResult] = Deferred()
        overwritten = self._writes.pop(index, None)
        if overwritten is not None:
            # This node lost and regained leadership before the old entry
            # at this index was settled: a new entry of ours replaced it.
            overwritten.done.errback(
                LeadershipChanged("leadership changed before the write committed, retry")
            )
        deadline = None if timeout_seconds is None else self.clock.seconds() + timeout_seconds
        self._writes[index] = _PendingWrite(
            index=index, term=self.node.term, done=done, deadline=deadline
        )
        self._kick()
        return done

    def read_barrier(self, *, timeout_seconds: float | None = None) -> Deferred[None]:
        """Fires once the state machine may serve a linearizable read
        (ReadIndex, thesis §6.4): read ``kv`` in the callback. Fails with
        TimeoutError once ``timeout_seconds`` passed (to within a tick)."""
        try:
            self._check_accepting()
            request_id = next(self._read_ids)
            self.node.read(request_id)
        except (NotLeader, Unavailable) as e:
            return _failed(e)
        done: Deferred[None] = Deferred()
        self._reads[request_id] = done
        if timeout_seconds is not None:
            self._read_deadlines[request_id] = self.clock.seconds() + timeout_seconds
        self._kick()
        return done

    def change_membership(self, change: MembershipChange) -> int:
        """Append the configuration ``change`` makes (on the leader);
        returns its index. Raises what ``RaftNode.change_membership`` does,
        or Unavailable."""
        self._check_accepting()
        index = self.node.change_membership(change)
        self._kick()
        return index

    def transfer_leadership(self, target: NodeId) -> None:
        """Start handing leadership to ``target`` (thesis §3.10). Raises
        NotLeader, TransferRefused or Unavailable."""
        self._check_accepting()
        self.node.transfer_leadership(target)
        self._kick()

    def _check_accepting(self) -> None:
        if self.failed_reason is not None:
            raise NodeFailed(f"storage failed: {self.failed_reason}")
        if self._stopping:
            raise NodeStopping("the node is shutting down")

    # --- views for the client API ----------------------------------------

    @property
    def configuration(self) -> Configuration:
        return self.node.configuration

    def leader(self) -> Member | None:
        """The leader as far as this node knows, with its address."""
        leader_id = self.node.leader_id
        if leader_id is None:
            return None
        member = self.node.configuration.member(leader_id)
        return member if member is not None else Member(id=leader_id, address="")

    # --- the Ready loop -----------------------------------------------------

    def _kick(self) -> None:
        """After any input: start working on a Ready unless one is in flight
        (then the loop picks the new input up when it is done)."""
        if self._in_flight or not self.accepting or not self.node.has_ready():
            return
        self._in_flight = True
        Deferred.fromCoroutine(self._loop()).addErrback(self._loop_crashed)

    async def _loop(self) -> None:
        try:
            while self.failed_reason is None and self.node.has_ready():
                await self._handle(self.node.ready())
        finally:
            self._in_flight = False
            idle, self._idle_waiters = self._idle_waiters, []
            for d in idle:
                d.callback(None)

    def _loop_crashed(self, failure: Failure) -> None:
        # A bug of ours: stop acknowledging rather than run on in an
        # unknown state.
        self.log.failure("driver of node {node_id} crashed", failure, node_id=self.node_id)
        self._enter_failed(f"internal error: {failure.getErrorMessage()}")

    async def _handle(self, ready: Ready) -> None:
        """Carry out one Ready, in the contract's order (ready.py)."""
        self._note(ready)
        # 3. Messages that may go before persisting (thesis §10.2.1).
        for m in ready.messages:
            self.transport.send(m)
        try:
            # 1. A snapshot from the leader, streamed to its file as it
            # arrives, installed once complete, before the entries after it.
            if ready.snapshot_chunks:
                await self._write_snapshot_chunks(ready.snapshot_chunks)
            if ready.snapshot is not None:
                await self._install_snapshot(ready)
            # 2. Entries and hard state, durable before anything promises them.
            if ready.entries or ready.hard_state is not None:
                await self.log_storage.append(ready.entries, ready.hard_state)
        except StorageFailed as e:
            self._enter_failed(str(e))
            return
        # 4. Votes and acknowledgements promise durable state (thesis §3.8).
        for m in ready.messages_after_persist:
            self.transport.send(m)
        # 5. Apply, then resolve the writes waiting on those entries.
        for entry in ready.committed_entries:
            self._apply(entry)
        # 6. Reads confirmed by a quorum and covered by what was applied.
        deadlines = self._read_deadlines
        for read in ready.reads:
            deadlines.pop(read.request_id, None)
            waiting = self._reads.pop(read.request_id, None)
            if waiting is not None:
                assert read.index <= self.kv.applied_index, (read, self.kv.applied_index)
                waiting.callback(None)
        for request_id in ready.failed_reads:
            deadlines.pop(request_id, None)
            waiting = self._reads.pop(request_id, None)
            if waiting is not None:
                waiting.errback(LeadershipChanged("leadership changed during the read, retry"))
        # 7.
        self.node.advance(ready)
        self._update_peers()
        if ready.entries or ready.snapshot is not None or ready.role is not Role.LEADER:
            self._fail_overwritten_writes()
        self._maybe_compact()

    async def _write_snapshot_chunks(self, chunks: Sequence[SnapshotChunk]) -> None:
        """Write pieces of a snapshot arriving from the leader into the
        store's writer, on a worker thread; the core acknowledges them only
        after this, and never holds the whole snapshot (bounded memory)."""
        await self._snapshot_store_lock.acquire()
        try:
            await self._run_in_thread(self._write_chunks_blocking, chunks)
        except (StorageCorruption, OSError, ValueError) as e:
            raise StorageFailed(f"could not write the snapshot from the leader: {e}") from e
        finally:
            self._snapshot_store_lock.release()

    def _write_chunks_blocking(self, chunks: Sequence[SnapshotChunk]) -> None:
        for chunk in chunks:
            writer = self._receiving_snapshot
            if chunk.offset == 0 or writer is None or writer.meta != chunk.meta:
                if writer is not None:
                    writer.abort()  # a newer transfer replaces a partial one
                writer = self._receiving_snapshot = self.snapshots.writer(chunk.meta)
            writer.write(chunk.offset, chunk.data)

    async def _install_snapshot(self, ready: Ready) -> None:
        """A snapshot from the leader is complete (§7): make its file
        durable and parse it on a worker thread, then, on the reactor, cut
        the log and swap the state machine's contents in one step. The
        core gets the stored file back (after ``advance``, by the
        compaction below) to send on if it leads."""
        meta = ready.snapshot
        assert meta is not None
        await self._snapshot_store_lock.acquire()
        try:
            writer, self._receiving_snapshot = self._receiving_snapshot, None
            if writer is None or writer.meta != meta:
                raise StorageFailed(f"snapshot {meta.index} complete, but it was not received")
            _, data = await self._run_in_thread(commit_writer, self.snapshots, writer)
            restored: KVStore = await self._run_in_thread(KVStore.from_snapshot, data_chunks(data))
        except StorageCorruption as e:
            raise StorageFailed(f"could not store the snapshot from the leader: {e}") from e
        except OSError as e:
            raise StorageFailed(f"could not store the snapshot from the leader: {e}") from e
        finally:
            self._snapshot_store_lock.release()
        if self.log_storage.term_at(meta.index) == meta.term:
            await self.log_storage.drop_prefix(meta.index)
        else:
            await self.log_storage.reset(meta.index)
        self.kv.replace_with(restored)
        stored = StoredSnapshot(meta=meta, data=data)
        self._snapshot = stored
        self._compaction_due = stored
        self.log.info(
            "node {node_id} installed a snapshot up to {index} (term {term})",
            node_id=self.node_id,
            index=meta.index,
            term=meta.term,
        )
        # Writes at or below the snapshot: their fate is in it, not
        # knowable here. They were proposed by this node as leader, which
        # it no longer is.
        for index in sorted(i for i in self._writes if i <= meta.index):
            self._writes.pop(index).done.errback(
                LeadershipChanged("leadership changed; the write's outcome is unknown, retry")
            )

    def _apply(self, entry: Entry) -> None:
        if entry.index <= self.kv.applied_index:
            return  # covered by a snapshot restored meanwhile
        result: ApplyResult | None = None
        if entry.kind is EntryKind.COMMAND:
            result = self.kv.apply(entry.index, entry.data)
        else:
            self.kv.mark_applied(entry.index)
        waiting = self._writes.pop(entry.index, None)
        if waiting is None:
            return
        if waiting.term == entry.term and result is not None:
            waiting.done.callback(result)
        else:
            waiting.done.errback(
                LeadershipChanged("leadership changed before the write committed, retry")
            )

    def _expire_waiters(self) -> None:
        """Fail the writes and reads that waited past their deadline. One
        sweep a tick costs less than a timer per request (addTimeout took
        a tenth of a key read's time on the leader).

        The sweep walks both tables in arrival order and stops at the first
        request not yet due, so a tick costs what expires, not what waits.
        Requests that share one timeout (the client API's) are thus failed
        within a tick of their deadline; one with a shorter timeout behind
        a longer one waits for it."""
        now = self.clock.seconds()
        expired_writes: list[int] = []
        for index, write in self._writes.items():
            if write.deadline is None:
                continue
            if write.deadline > now:
                break
            expired_writes.append(index)
        late_reads: list[Hashable] = []
        for request_id, deadline in self._read_deadlines.items():
            if deadline > now:
                break
            late_reads.append(request_id)
        # Failing a request answers it, which may serve the client's next
        # request at once and change the tables: hence the lists and pops.
        for index in expired_writes:
            pending = self._writes.pop(index, None)
            if pending is not None:
                pending.done.errback(TimeoutError(f"write at index {index} not applied in time"))
        for request_id in late_reads:
            self._read_deadlines.pop(request_id, None)
            waiting = self._reads.pop(request_id, None)
            if waiting is not None:
                waiting.errback(TimeoutError("read not confirmed in time"))

    def _fail_overwritten_writes(self) -> None:
        """Fail writes whose entry is no longer in the log with their term:
        another leader overwrote it (§5.3), so it will never apply."""
        node = self.node
        for index in sorted(self._writes):
            write = self._writes[index]
            term = node.term_at(index) if index <= node.last_index else None
            if term is not None and term == write.term:
                continue
            if term is None and index <= node.snapshot_meta.index:
                continue  # compacted: applied already or soon
            del self._writes[index]
            write.done.errback(
                LeadershipChanged("leadership changed before the write committed, retry")
            )

    def _note(self, ready: Ready) -> None:
        """Log what the core reports: role changes at info, the rest debug."""
        if ready.role is not self._role or ready.leader_id != self._leader_id:
            self.log.info(
                "node {node_id} is {role} in term {term}, leader {leader_id}",
                node_id=self.node_id,
                role=ready.role.value,
                term=ready.term,
                leader_id=ready.leader_id,
            )
            self._role, self._leader_id = ready.role, ready.leader_id
        for fact in ready.facts:
            self.fact_counts[fact.name] += 1
            self.log.debug(
                "node {node_id} term {term}: {fact} {detail}",
                node_id=self.node_id,
                term=fact.term,
                fact=fact.name,
                detail=fact.detail,
            )

    def _update_peers(self, force: bool = False) -> None:
        """Configurations are in force from their append (thesis §4.1), so
        the address book follows the core's current one."""
        configuration = self.node.configuration
        if configuration == self._configuration and not force and not self._peers_outside:
            return
        changed = configuration != self._configuration
        self._configuration = configuration
        peers = {m.id: m.address for m in configuration.members if m.id != self.node_id}
        if not configuration.members:
            peers = dict(self.bootstrap_peers)
        for node_id, address in self._peers.items():
            # A node being removed stays in the loop until its removal
            # commits (§4.2.2): the leader keeps replicating to it, so that
            # it learns it was removed, and a leader removing itself keeps
            # hearing its followers, so that the removal can commit.
            if node_id not in peers and (
                node_id == self.node.leader_id or self.node.progress(node_id) is not None
            ):
                peers[node_id] = address
        self._peers_outside = any(configuration.member(i) is None for i in peers)
        if peers != self._peers or force:
            self._peers = peers
            self.transport.set_peers(peers)
        if changed and not force:
            self.log.info(
                "node {node_id} term {term}: members now {members}",
                node_id=self.node_id,
                term=self.node.term,
                members=", ".join(f"{m.id}={m.address}" for m in configuration.members),
            )

    # --- snapshots and compaction (§7) -------------------------------------

    @property
    def snapshot_index(self) -> int:
        """Index of the newest durable snapshot (0 if none)."""
        return self._snapshot.meta.index

    @property
    def log_length(self) -> int:
        """Entries held in the durable log."""
        return self.log_storage.last_index - self.log_storage.first_index + 1

    @property
    def snapshot_in_progress(self) -> bool:
        return self._snapshotting is not None

    def _maybe_compact(self) -> None:
        """After each Ready: hand the core a snapshot stored meanwhile, and
        start a new one once ``snapshot_threshold`` entries were applied
        past the last (one at a time)."""
        self._compact_if_due()
        if self._snapshotting is not None or not self.accepting:
            return
        if self.kv.applied_index - self.snapshot_index < self.snapshot_threshold:
            return
        self._take_snapshot().addErrback(_silence)  # failures are logged

    def take_snapshot(self) -> Deferred[StoredSnapshot]:
        """Snapshot the state machine now and compact the log (POST
        /v1/snapshot); fires once the snapshot is durable. Fails at once
        with SnapshotInProgress if one is being taken. With nothing applied
        since the newest snapshot, fires with that one."""
        if self._snapshotting is not None:
            return _failed(SnapshotInProgress("a snapshot is being taken already; retry shortly"))
        return self._take_snapshot()

    def newest_snapshot(self) -> Deferred[StoredSnapshot]:
        """The newest durable snapshot, taking one first if entries were
        applied since (GET /v1/snapshot: a backup as of now)."""
        return Deferred.fromCoroutine(self._newest_snapshot())

    async def _newest_snapshot(self) -> StoredSnapshot:
        if self._snapshotting is not None:
            await self._wait_for_snapshot()
        if self._snapshotting is not None:  # another one started meanwhile
            stored: StoredSnapshot = await self._wait_for_snapshot()
            return stored
        return await self._take_snapshot()

    def _wait_for_snapshot(self) -> Deferred[StoredSnapshot]:
        assert self._snapshotting is not None
        d: Deferred[StoredSnapshot] = Deferred()
        self._snapshotting.append(d)
        return d

    def _take_snapshot(self) -> Deferred[StoredSnapshot]:
        try:
            self._check_accepting()
        except (NodeFailed, NodeStopping) as e:
            return _failed(e)
        index = self.kv.applied_index
        if index == self.snapshot_index and index > 0:
            return succeed(self._snapshot)
        node = self.node
        term = node.term_at(index)
        if index == 0 or term is None:
            return _failed(Unavailable("nothing applied yet to snapshot; retry shortly"))
        meta = SnapshotMeta(index=index, term=term, configuration=node.log.configuration_at(index))
        # Cheap on the reactor (a frozen view); serialising it is not.
        view = self.kv.snapshot()
        self._snapshotting = []
        done = self._wait_for_snapshot()
        Deferred.fromCoroutine(self._write_snapshot(meta, view.chunks())).addErrback(
            self._loop_crashed
        )
        return done

    async def _write_snapshot(self, meta: SnapshotMeta, chunks: Any) -> None:
        """On a worker thread, write the snapshot; then, on the reactor,
        compact, and answer whoever waits (``_snapshotting``)."""
        started = self.clock.seconds()
        try:
            await self._snapshot_store_lock.acquire()
            try:
                _, data = await self._run_in_thread(write_snapshot, self.snapshots, meta, chunks)
            finally:
                self._snapshot_store_lock.release()
        except Exception as e:
            self.log.warn(
                "node {node_id}: could not save a snapshot at {index}: {error}",
                node_id=self.node_id,
                index=meta.index,
                error=str(e),
            )
            waiters, self._snapshotting = self._snapshotting or [], None
            for d in waiters:
                d.errback(e)
            return
        waiters, self._snapshotting = self._snapshotting or [], None
        stored = StoredSnapshot(meta=meta, data=data)
        if meta.index > self.snapshot_index:
            self._snapshot = stored
            self._compaction_due = stored
            if not self._in_flight:
                self._compact_if_due()
        self.log.info(
            "node {node_id} term {term}: snapshot at {index} saved ({size} bytes, {seconds:.2f}s)",
            node_id=self.node_id,
            term=self.node.term,
            index=meta.index,
            size=stored.file_size,
            seconds=self.clock.seconds() - started,
        )
        for d in waiters:
            d.callback(stored)

    def _compact_if_due(self) -> None:
        """Give the core the stored snapshot (to send to followers behind
        the log) and drop the log before it, but for the last
        ``snapshot_retain_entries`` entries. Only between Readies."""
        stored, self._compaction_due = self._compaction_due, None
        if stored is None or not self.accepting:
            return
        node = self.node
        index = stored.meta.index
        if not node.snapshot_meta.index <= index <= node.applied_index:
            return  # overtaken by a snapshot from the leader
        node.compact(index, stored.data, retain=self.snapshot_retain_entries)
        keep_from = node.log.first_index
        if keep_from > self.log_storage.first_index:
            self.log_storage.drop_prefix(keep_from - 1).addErrback(self._storage_errback)
        self.log.info(
            "node {node_id} term {term}: log compacted up to {index}, {kept} entries kept",
            node_id=self.node_id,
            term=node.term,
            index=index,
            kept=index - keep_from + 1,
        )

    def _storage_errback(self, failure: Failure) -> None:
        if not isinstance(failure.value, StorageFailed):
            self._loop_crashed(failure)
            return
        self._enter_failed(failure.getErrorMessage())

    # --- failure ------------------------------------------------------------

    def _enter_failed(self, reason: str) -> None:
        if self.failed_reason is not None:
            return
        self.failed_reason = reason
        self.log.error(
            "node {node_id} term {term} stopped acknowledging writes: {reason}",
            node_id=self.node_id,
            term=self.node.term,
            reason=reason,
        )
        if self._ticker.running:
            self._ticker.stop()
        self._fail_waiters(NodeFailed(f"storage failed: {reason}"))

    def _fail_waiters(self, error: Exception) -> None:
        writes, self._writes = self._writes, {}
        reads, self._reads = self._reads, {}
        self._read_deadlines = {}
        for index in sorted(writes):
            writes[index].done.errback(error)
        for d in reads.values():
            d.errback(error)


def _failed(error: Exception) -> Deferred[Any]:
    d: Deferred[Any] = Deferred()
    d.errback(error)
    return d
