"""The simulated world: real graft.raft cores on a simulated network and
disks, driven by one seed through a fault phase and a healing phase.

Determinism: one ``random.Random(seed)`` hands each component its own
sub-seed in a fixed order (knobs, network, disks, clients, faults, cores),
so adding draws to one component does not shift another's. Time is a heap
of ``(tick, seq, kind, payload)``; ``seq`` breaks ties in scheduling order.
Nodes are kept in a list sorted by id; nothing iterates over a set.

A *step* is one event popped from the heap: a tick (every node ticks, then
faults and clients act), a message delivered, a write completed, a node
restarted or resumed, a partition healed. The safety checks run inside the
step, on each new fact, so a violation is reported at the step that caused
it.

The driver loop per node follows graft/raft/ready.py exactly: take a Ready;
send its ``messages``; start writing its snapshot, entries and hard state;
when the write completes, send ``messages_after_persist``, restore the
snapshot, apply ``committed_entries``, serve ``reads``, fail
``failed_reads``, call ``advance``. One Ready is in flight per node; inputs
keep arriving meanwhile and form the next one.

This module imports only the standard library, graft.raft and the
simulator's own modules.
"""

from __future__ import annotations

import heapq
import random
from typing import Any

import attrs

from graft.raft import (
    Configuration,
    Member,
    PersistentState,
    RaftConfig,
    RaftNode,
    Ready,
    Role,
    SnapshotMeta,
)
from graft.raft.messages import Message
from tests.simulation.checks import SafetyChecker, Violation
from tests.simulation.clients import Clients
from tests.simulation.disk import Disk
from tests.simulation.knobs import Knobs, draw_knobs
from tests.simulation.network import Network
from tests.simulation.statemachine import KVStateMachine
from tests.simulation.trace import Trace, format_message

# Event kinds, in no particular order; the heap orders by (tick, seq).
TICK = 0
DELIVER = 1
PERSISTED = 2
RESTART = 3
RESUME = 4
HEAL = 5
CRASH = 6


class SimNode:
    """One simulated server: its disk always, its core and state machine
    only while it is up."""

    __slots__ = (
        "commit_seen",
        "disk",
        "in_flight",
        "incarnation",
        "leader_term",
        "node_id",
        "paused",
        "raft",
        "role",
        "sm",
    )

    def __init__(self, node_id: int, disk: Disk) -> None:
        self.node_id = node_id
        self.disk = disk
        self.raft: RaftNode | None = None
        self.sm: KVStateMachine | None = None
        #: The Ready being written; None when the node may take the next.
        self.in_flight: Ready | None = None
        #: Bumped at each crash, so a write completing after it is ignored.
        self.incarnation = 0
        self.paused = False
        #: Last role and leader term seen, to notice changes.
        self.role: Role | None = None
        self.leader_term = 0
        #: A leader's commit index already recorded with the checker.
        self.commit_seen = 0


@attrs.frozen(kw_only=True)
class Result:
    """How a run ended. ``violation`` is None when every check passed."""

    seed: int
    profile: str
    #: Whether the knobs were given rather than drawn from the seed.
    pinned: bool
    knobs: Knobs
    steps: int
    ticks: int
    digest: str
    violation: Violation | None
    trace_tail: tuple[str, ...]
    counts: dict[str, int]

    @property
    def ok(self) -> bool:
        return self.violation is None


class World:
    """Everything one seed decides. ``run`` it once."""

    def __init__(
        self,
        seed: int,
        *,
        profile: str = "swarm",
        node_class: type[RaftNode] = RaftNode,
        knobs: Knobs | None = None,
        echo: bool = False,
    ) -> None:
        self.seed = seed
        master = random.Random(seed)
        # Sub-seeds in a fixed order; never reorder, only append.
        drawn = draw_knobs(random.Random(master.getrandbits(64)), profile)
        #: ``knobs`` pins a run's knobs (regressions); the draw still happens
        #: so every other component gets the same sub-seed.
        self.knobs = knobs = drawn if knobs is None else knobs
        self._drawn = drawn
        net_rng = random.Random(master.getrandbits(64))
        self._disk_rng = random.Random(master.getrandbits(64))
        client_rng = random.Random(master.getrandbits(64))
        self._fault_rng = random.Random(master.getrandbits(64))
        self._core_rng = random.Random(master.getrandbits(64))

        self._node_class = node_class
        self.now = 0
        self._seq = 0
        self._heap: list[tuple[int, int, int, Any]] = []
        self._trace = Trace(echo=echo)
        self.checker = SafetyChecker()
        voter_ids = tuple(range(1, knobs.voters + 1))
        self.node_ids = tuple(range(1, knobs.voters + knobs.spares + 1))
        self.retired: set[int] = set()
        self.network = Network(knobs, net_rng, self.node_ids)
        self.clients = Clients(self, knobs, client_rng)
        self.faulty = True
        self.counts: dict[str, int] = {}
        initial = Configuration(members=tuple(Member(id=i) for i in voter_ids))
        self.nodes: list[SimNode] = []
        for node_id in self.node_ids:
            config = initial if node_id in voter_ids else Configuration()
            state = PersistentState(snapshot=SnapshotMeta(configuration=config))
            node = SimNode(node_id, Disk(state))
            self.nodes.append(node)
        self._by_id = {n.node_id: n for n in self.nodes}
        self._config_of: dict[int, RaftConfig] = {
            node_id: RaftConfig(
                node_id=node_id,
                election_timeout_ticks=knobs.election_timeout_ticks,
                heartbeat_interval_ticks=knobs.heartbeat_interval_ticks,
                append_entries_max=knobs.append_entries_max,
                inflight_messages_max=knobs.inflight_messages_max,
                snapshot_chunk_bytes=knobs.snapshot_chunk_bytes,
                learner_promotion_lag_max=knobs.learner_promotion_lag_max,
                pre_vote=knobs.pre_vote,
                check_quorum=knobs.check_quorum,
            )
            for node_id in self.node_ids
        }

    # --- plumbing -------------------------------------------------------------

    def trace(self, text: str) -> None:
        self._trace.line(self.now, text)

    def count(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1

    def _push(self, tick: int, kind: int, payload: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (tick, self._seq, kind, payload))

    # --- running ----------------------------------------------------------------

    def run(self, steps: int) -> Result:
        """``steps`` steps with faults, then heal and check liveness."""
        violation: Violation | None = None
        done = 0
        try:
            for node in self.nodes:
                self._start(node)
            self._push(0, TICK, None)
            heap = self._heap
            while done < steps:
                self._step(heapq.heappop(heap))
                done += 1
            done += self._heal_and_settle()
        except Violation as v:
            violation = v
            self.trace(f"VIOLATION {v}")
        counts = dict(sorted({**self.counts, **self.clients.counts}.items()))
        counts["messages sent"] = self.network.sent
        counts["messages lost"] = self.network.lost
        return Result(
            seed=self.seed,
            profile=self.knobs.profile,
            pinned=self.knobs is not self._drawn,
            knobs=self.knobs,
            steps=done,
            ticks=self.now,
            digest=self._trace.digest(),
            violation=violation,
            trace_tail=tuple(self._trace.tail(50)),
            counts=counts,
        )

    def _step(self, event: tuple[int, int, int, Any]) -> None:
        tick, _, kind, payload = event
        self.now = tick
        if kind == DELIVER:
            self._deliver(payload)
        elif kind == TICK:
            self._tick()
        elif kind == PERSISTED:
            self._persisted(*payload)
        elif kind == RESTART:
            self._restart(payload)
        elif kind == RESUME:
            self._resume(payload)
        elif kind == CRASH:
            self._scheduled_crash(*payload)
        elif kind == HEAL and self.network.heals_at == tick:
            self.network.heal()
            self.trace("partition healed")

    def _heal_and_settle(self) -> int:
        """Stop all faults, heal everything, then require a leader and every
        pending proposal resolved within bounds; returns the steps taken."""
        self.faulty = False
        self.network.stop_faults()
        self.trace("HEAL: faults stop, network whole, every node up")
        for node in self.nodes:
            if node.raft is None:
                self._start(node)
            elif node.paused:
                self._resume(node.node_id)
        healed_at = self.now
        election = self.knobs.election_timeout_ticks
        # Bounds: a leader within 40 election timeouts (pre-vote, check-quorum
        # and removed nodes may each cost a few); then some pending proposal
        # resolved at least every STALL ticks.
        leader_deadline = healed_at + 40 * election + 100
        stall_ticks = 30 * election + 200
        give_up_at = healed_at + 20_000
        heap = self._heap
        clients = self.clients
        checker = self.checker
        leader_seen = False
        progress_at = healed_at
        applied_seen = len(checker.applied)
        steps = 0
        while True:
            event = heapq.heappop(heap)
            self._step(event)
            steps += 1
            if event[2] != TICK:
                continue
            if not leader_seen:
                leader_seen = any(
                    n.raft is not None and n.raft.role is Role.LEADER for n in self.nodes
                )
                if not leader_seen and self.now > leader_deadline:
                    raise Violation(
                        "liveness after healing (§5.2 elections)",
                        f"no leader {self.now - healed_at} ticks after healing",
                    )
            if clients.barriers_committed and not clients.pending:
                self.trace(f"settled {self.now - healed_at} ticks after healing")
                return steps
            if len(checker.applied) != applied_seen:
                applied_seen = len(checker.applied)
                progress_at = self.now
            if self.now - progress_at > stall_ticks or self.now > give_up_at:
                raise Violation(
                    "liveness after healing (§5.3 replication)",
                    f"{clients.unresolved()} proposals unresolved at indexes"
                    f" {sorted(clients.pending)[:10]}; nothing new applied for"
                    f" {self.now - progress_at} ticks ({self.now - healed_at} since healing)",
                )

    # --- events ---------------------------------------------------------------

    def _tick(self) -> None:
        for node in self.nodes:
            raft = node.raft
            if raft is not None and not node.paused:
                raft.tick()
                self.after_input(node)
        if self.faulty:
            self._inject_faults()
            self.clients.act()
        else:
            self.clients.barrier_tick()
        self._push(self.now + 1, TICK, None)

    def _deliver(self, message: Message) -> None:
        node = self._by_id[message.target]
        raft = node.raft
        if raft is None:
            return
        if node.paused:
            return  # a paused process's socket buffers overflow: lost
        if not self.network.connected(message.source, message.target):
            return
        self.trace(format_message(message))
        raft.step(message)
        self.after_input(node)

    def _send(self, messages: tuple[Message, ...]) -> None:
        network = self.network
        now = self.now
        for message in messages:
            for tick in network.delivery_ticks(message.source, message.target, now):
                self._push(tick, DELIVER, message)

    def _persisted(self, node_id: int, incarnation: int) -> None:
        node = self._by_id[node_id]
        if node.incarnation != incarnation or node.raft is None:
            return
        if node.paused:
            self._push(self.now + 1, PERSISTED, (node_id, incarnation))
            return
        node.disk.complete()
        ready = node.in_flight
        assert ready is not None
        self._finish(node, ready)
        self.after_input(node)

    # --- the driver loop ---------------------------------------------------------

    def after_input(self, node: SimNode) -> None:
        """Check the node's role, then take and act on Readies until one
        must wait for the disk."""
        raft = node.raft
        assert raft is not None
        role = raft.role
        if role is not node.role:
            node.role = role
            self.trace(f"n{node.node_id} is {role.value} in term {raft.term}")
        if role is Role.LEADER:
            if node.leader_term != raft.term:
                self._became_leader(node)
            if raft.commit_index > node.commit_seen:
                self._leader_committed(node)
        while node.in_flight is None and raft.has_ready():
            ready = raft.ready()
            self._begin(node, ready)

    def _became_leader(self, node: SimNode) -> None:
        raft = node.raft
        assert raft is not None
        term = raft.term
        node.leader_term = term
        self.checker.observe_leader(node.node_id, term)
        node.commit_seen = raft.commit_index
        self.count("elections won")
        knobs = self.knobs
        if self.faulty and knobs.short_reign_rate:
            rng = self._fault_rng
            if rng.random() < knobs.short_reign_rate:
                when = self.now + rng.randint(1, knobs.short_reign_max_ticks)
                self._push(when, CRASH, (node.node_id, node.incarnation))
        checker = self.checker
        first = raft.snapshot_meta.index + 1
        checker.check_leader_has(
            node.node_id, term, range(first, checker.committed_max + 1), raft.term_at, first - 1
        )

    def _leader_committed(self, node: SimNode) -> None:
        """A leader's commit index moved: record what it committed and check
        every leader of a later term already holds it (§5.4)."""
        raft = node.raft
        assert raft is not None
        term = raft.term
        fresh = range(node.commit_seen + 1, raft.commit_index + 1)
        node.commit_seen = raft.commit_index
        self.checker.observe_commit(node.node_id, term, fresh, raft.term_at)
        for other in self.nodes:
            other_raft = other.raft
            if other_raft is not None and other_raft.role is Role.LEADER and other_raft.term > term:
                self.checker.check_leader_has(
                    other.node_id,
                    other_raft.term,
                    fresh,
                    other_raft.term_at,
                    other_raft.snapshot_meta.index,
                )

    def _begin(self, node: SimNode, ready: Ready) -> None:
        raft = node.raft
        assert raft is not None
        for fact in ready.facts:
            self.trace(f"n{node.node_id} fact {fact.name} t{fact.term} {fact.detail}")
            self.count(f"fact {fact.name}")
        if ready.entries:
            first = ready.entries[0].index
            # None when compacted; a snapshot's last index keeps its term.
            prev_term = raft.term_at(first - 1) if first > 1 else 0
            self.checker.observe_entries(node.node_id, ready.entries, prev_term)
        self._send(ready.messages)
        nothing_to_write = not (ready.snapshot_chunks or ready.entries or ready.hard_state)
        if ready.snapshot is None and nothing_to_write:
            node.in_flight = ready
            self._finish(node, ready)
            return
        node.disk.begin(ready)
        node.in_flight = ready
        knobs = self.knobs
        high = knobs.persist_max_ticks
        if not self.faulty:  # §5.6: keep broadcast time below the timeout
            high = min(high, max(1, knobs.election_timeout_ticks // 5))
        delay = self._disk_rng.randint(min(knobs.persist_min_ticks, high), high)
        self._push(self.now + delay, PERSISTED, (node.node_id, node.incarnation))

    def _finish(self, node: SimNode, ready: Ready) -> None:
        """Steps 4 to 7 of the Ready contract, the write being durable."""
        raft = node.raft
        assert raft is not None
        self._send(ready.messages_after_persist)
        if ready.snapshot is not None:
            meta = ready.snapshot
            assert node.disk.snapshot == meta and node.disk.snapshot_data is not None
            node.sm = KVStateMachine.restore(node.disk.snapshot_data)
            self.trace(f"n{node.node_id} restored snapshot {meta.index}/{meta.term}")
            if node.sm.applied_index != meta.index:
                raise Violation(
                    "§7 snapshots",
                    f"snapshot {meta.index}/{meta.term} holds state at {node.sm.applied_index}",
                )
        sm = node.sm
        assert sm is not None
        checker = self.checker
        clients = self.clients
        for entry in ready.committed_entries:
            if entry.index != sm.applied_index + 1:
                raise Violation(
                    "Ready contract (ready.py step 5)",
                    f"node {node.node_id} told to apply {entry.index} after {sm.applied_index}",
                )
            sm.apply(entry)
            if checker.observe_apply(node.node_id, entry):
                clients.on_first_apply(entry)
        for read in ready.reads:
            clients.serve_read(node, read)
        for request_id in ready.failed_reads:
            clients.fail_read(request_id)
        raft.advance(ready)
        node.in_flight = None
        if ready.snapshot is not None and raft.snapshot_meta == ready.snapshot:
            # The Ready contract: hand the stored snapshot back to the core
            # (unless a newer one arrived meanwhile).
            data = node.disk.snapshot_data
            assert data is not None and node.disk.snapshot == ready.snapshot
            raft.compact(ready.snapshot.index, data)

    def compact(self, node: SimNode) -> None:
        """Snapshot ``node``'s state machine and compact its log to it."""
        raft = node.raft
        sm = node.sm
        assert raft is not None and sm is not None and node.in_flight is None
        data = sm.snapshot()
        # Keep a tail of 0-8 entries behind the snapshot, varied without
        # drawing from a random source, so every seed's schedule stays put.
        retain = (sm.applied_index * 7 + node.node_id) % 5 * 2
        raft.compact(sm.applied_index, data, retain)
        meta = raft.snapshot_meta
        if meta.index != sm.applied_index:
            raise Violation(
                "compact contract (docs/core-api.md)",
                f"compact({sm.applied_index}) left the snapshot at {meta.index}",
            )
        node.disk.save_local_snapshot(meta, data)
        self.trace(f"n{node.node_id} compacted to {meta.index}/{meta.term}")
        self.after_input(node)

    # --- processes ------------------------------------------------------------------

    def _start(self, node: SimNode) -> None:
        """(Re)build a node from its durable state only."""
        disk = node.disk
        state = disk.persistent_state()
        rng = random.Random(self._core_rng.getrandbits(64))
        node.raft = self._node_class(self._config_of[node.node_id], state, rng)
        if disk.snapshot_data is not None:
            node.sm = KVStateMachine.restore(disk.snapshot_data)
        else:
            node.sm = KVStateMachine()
        node.sm.applied_index = max(node.sm.applied_index, disk.snapshot.index)
        node.in_flight = None
        node.paused = False
        node.role = None
        node.leader_term = 0
        self.trace(
            f"n{node.node_id} start: term {disk.hard_state.term} vote {disk.hard_state.vote}"
            f" commit {disk.hard_state.commit} snapshot {disk.snapshot.index}"
            f" log ..{disk.last_index}"
        )
        self.after_input(node)

    def _inject_faults(self) -> None:
        rng = self._fault_rng
        knobs = self.knobs
        leader = self._leader_id()
        text = self.network.maybe_partition(self.now, leader)
        if text is not None:
            self.trace(f"PARTITION {text} until {self.network.heals_at}")
            self.count("partitions")
            self._push(self.network.heals_at, HEAL, None)  # type: ignore[arg-type]
        if knobs.crash_rate and rng.random() < knobs.crash_rate:
            down = sum(1 for n in self.nodes if n.raft is None or n.paused)
            up = [n for n in self.nodes if n.raft is not None and not n.paused]
            if up and down < knobs.max_down:
                victim = self._pick_victim(up, leader)
                self._crash(victim)
                self._push(
                    self.now + rng.randint(knobs.down_min_ticks, knobs.down_max_ticks),
                    RESTART,
                    victim.node_id,
                )
        if knobs.pause_rate and rng.random() < knobs.pause_rate:
            down = sum(1 for n in self.nodes if n.raft is None or n.paused)
            up = [n for n in self.nodes if n.raft is not None and not n.paused]
            if up and down < max(1, knobs.max_down):
                victim = self._pick_victim(up, leader)
                victim.paused = True
                until = self.now + rng.randint(
                    knobs.election_timeout_ticks, 3 * knobs.election_timeout_ticks
                )
                self.trace(f"PAUSE n{victim.node_id} until {until}")
                self.count("pauses")
                self._push(until, RESUME, victim.node_id)

    def _pick_victim(self, up: list[SimNode], leader: int | None) -> SimNode:
        if leader is not None and self._fault_rng.random() < 0.5:
            for node in up:
                if node.node_id == leader:
                    return node
        return self._fault_rng.choice(up)

    def _leader_id(self) -> int | None:
        best: SimNode | None = None
        for node in self.nodes:
            raft = node.raft
            if raft is None or raft.role is not Role.LEADER:
                continue
            if best is None or raft.term > best.raft.term:  # type: ignore[union-attr]
                best = node
        return None if best is None else best.node_id

    def _scheduled_crash(self, node_id: int, incarnation: int) -> None:
        node = self._by_id[node_id]
        if not self.faulty or node.raft is None or node.incarnation != incarnation:
            return
        down = sum(1 for n in self.nodes if n.raft is None or n.paused)
        if down >= self.knobs.max_down:
            return
        self._crash(node)
        knobs = self.knobs
        downtime = self._fault_rng.randint(knobs.down_min_ticks, knobs.down_max_ticks)
        self._push(self.now + downtime, RESTART, node_id)

    def _crash(self, node: SimNode) -> None:
        what = node.disk.crash(self._disk_rng, self.knobs.torn_write)
        node.raft = None
        node.sm = None
        node.in_flight = None
        node.paused = False
        node.incarnation += 1
        self.clients.forget_reads_of(node.node_id)
        self.count("crashes")
        if what.startswith("torn"):
            self.count("torn writes")
        self.trace(f"CRASH n{node.node_id} ({what})")

    def _restart(self, node_id: int) -> None:
        node = self._by_id[node_id]
        if node.raft is None:
            self._start(node)

    def _resume(self, node_id: int) -> None:
        node = self._by_id[node_id]
        if node.raft is not None and node.paused:
            node.paused = False
            self.trace(f"RESUME n{node_id}")
            self.after_input(node)
