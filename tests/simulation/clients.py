"""The simulated clients: proposals, reads, membership changes, transfers
and compactions, plus the bookkeeping that judges their outcomes.

A proposal is *resolved* once an entry at its index is applied anywhere:
committed if that entry has the proposal's term, failed otherwise
(docs/core-api.md). A committed write is *acknowledged* from the moment the
first node applies it (DESIGN.md: a write is acknowledged once committed).

Linearizable reads (thesis §6.4): when a read is issued, the clients note,
for its key, the revision (index) of the newest write acknowledged so far.
When the read is served, the serving node's state machine must hold that
revision of the key or a newer one.

This module imports only the standard library, graft.raft and the
simulator's own modules.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from graft.raft import (
    ChangeKind,
    MembershipChange,
    NotLeader,
    ProposalDropped,
    RaftError,
    ReadState,
    Role,
)
from graft.raft.messages import Entry
from tests.simulation.checks import Violation
from tests.simulation.knobs import Knobs
from tests.simulation.statemachine import encode_set

if TYPE_CHECKING:
    from tests.simulation.world import SimNode, World

#: Clients stop writing to a leader this far ahead of its commit index, as
#: real clients back off (etcd's MaxUncommittedEntriesSize does it in the core).
UNCOMMITTED_MAX = 64


class Clients:
    """Every client request of a run and what became of it."""

    def __init__(self, world: World, knobs: Knobs, rng: random.Random) -> None:
        self._world = world
        self._knobs = knobs
        self._rng = rng
        #: index -> [(term, key)] of proposals not yet resolved (key "" for barriers).
        self.pending: dict[int, list[tuple[int, str]]] = {}
        #: key -> revision of the newest acknowledged write.
        self.acked: dict[str, int] = {}
        #: request id -> (node id, key, revision required, tick issued).
        self.reads: dict[int, tuple[int, str, int, int]] = {}
        self._next_value = 0
        self._next_read = 0
        self.barriers_committed = 0
        self.counts: dict[str, int] = {}

    def count(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1

    # --- choosing whom to ask ---------------------------------------------

    def _target(self) -> SimNode | None:
        """Usually a node that thinks it leads; sometimes anyone."""
        world = self._world
        rng = self._rng
        up = [n for n in world.nodes if n.raft is not None and not n.paused]
        if not up:
            return None
        leaders = [n for n in up if n.raft is not None and n.raft.role is Role.LEADER]
        if leaders and rng.random() < 0.9:
            return rng.choice(leaders)
        return rng.choice(up)

    def _newest_leader(self) -> SimNode | None:
        best = None
        for n in self._world.nodes:
            raft = n.raft
            if raft is None or n.paused or raft.role is not Role.LEADER:
                continue
            if best is None or raft.term > best.raft.term:  # type: ignore[union-attr]
                best = n
        return best

    def _times(self, rate: float) -> int:
        """How many requests of a kind this tick: ``rate`` on average."""
        whole = int(rate)
        return whole + (1 if self._rng.random() < rate - whole else 0)

    # --- the fault phase ----------------------------------------------------

    def act(self) -> None:
        """This tick's random requests."""
        knobs = self._knobs
        for _ in range(self._times(knobs.propose_rate)):
            self._propose_write()
        if knobs.read_rate:
            for _ in range(self._times(knobs.read_rate)):
                self._read()
        rng = self._rng
        if knobs.membership_rate and rng.random() < knobs.membership_rate:
            self._change_membership()
        if knobs.transfer_rate and rng.random() < knobs.transfer_rate:
            self._transfer()
        if knobs.compact_rate and rng.random() < knobs.compact_rate:
            self._compact()

    def _propose_write(self) -> None:
        node = self._target()
        if node is None:
            return
        raft = node.raft
        assert raft is not None
        if raft.last_index - raft.commit_index > UNCOMMITTED_MAX:
            self.count("propose held back")  # clients back off a slow leader
            return
        key = f"k{self._rng.randrange(self._knobs.keys)}"
        self._next_value += 1
        self.propose(node, key, encode_set(key, f"v{self._next_value}"))

    def propose(self, node: SimNode, key: str, data: bytes) -> bool:
        """Propose ``data`` at ``node``; returns whether it was accepted."""
        raft = node.raft
        assert raft is not None
        try:
            index = raft.propose(data)
        except (NotLeader, ProposalDropped) as e:
            self.count(f"propose rejected: {type(e).__name__}")
            return False
        term = raft.term
        self.count("proposed")
        self._world.trace(f"n{node.node_id} propose {data.decode()} -> {index}/{term}")
        known = self._world.checker.applied.get(index)
        if known is not None:
            # A stale leader proposed at an index already decided elsewhere.
            if known.term == term:
                raise Violation(
                    "§5.3 Log Matching",
                    f"node {node.node_id} proposed at {index}/{term}, which was already"
                    f" applied as {known!r}",
                )
            self.count("proposal failed")
        else:
            self.pending.setdefault(index, []).append((term, key))
        self._world.after_input(node)
        return True

    def _read(self) -> None:
        node = self._target()
        if node is None:
            return
        raft = node.raft
        assert raft is not None
        key = f"k{self._rng.randrange(self._knobs.keys)}"
        self._next_read += 1
        request_id = self._next_read
        try:
            raft.read(request_id)
        except NotLeader:
            self.count("read rejected: NotLeader")
            return
        self.count("read issued")
        required = self.acked.get(key, 0)
        self.reads[request_id] = (node.node_id, key, required, self._world.now)
        self._world.trace(f"n{node.node_id} read#{request_id} {key} needs rev>={required}")
        self._world.after_input(node)

    def _change_membership(self) -> None:
        node = self._newest_leader()
        if node is None:
            return
        raft = node.raft
        assert raft is not None
        world = self._world
        rng = self._rng
        config = raft.configuration
        voters = sorted(config.voters)
        learners = sorted(config.learners)
        choices: list[MembershipChange] = []
        spares = [i for i in world.node_ids if i not in config.ids and i not in world.retired]
        if spares:
            spare = rng.choice(spares)
            # Even ids ask the leader to promote them once caught up; no
            # extra random draw, so every seed's schedule stays put.
            choices.append(
                MembershipChange(
                    kind=ChangeKind.ADD_LEARNER, node_id=spare, auto_promote=spare % 2 == 0
                )
            )
        if learners:
            choices.append(MembershipChange(kind=ChangeKind.PROMOTE, node_id=rng.choice(learners)))
        if len(voters) > 3:
            choices.append(MembershipChange(kind=ChangeKind.REMOVE, node_id=rng.choice(voters)))
        if learners and rng.random() < 0.2:
            choices.append(MembershipChange(kind=ChangeKind.REMOVE, node_id=rng.choice(learners)))
        if not choices:
            return
        change = rng.choice(choices)
        try:
            index = raft.change_membership(change)
        except RaftError as e:
            self.count(f"membership rejected: {type(e).__name__}")
            return
        self.count(f"membership {change.kind.name}")
        if change.kind is ChangeKind.REMOVE:
            world.retired.add(change.node_id)
        world.trace(
            f"n{node.node_id} membership {change.kind.name} {change.node_id} -> {index}/{raft.term}"
        )
        world.after_input(node)

    def _transfer(self) -> None:
        node = self._newest_leader()
        if node is None:
            return
        raft = node.raft
        assert raft is not None
        voters = sorted(raft.configuration.voters)
        if not voters:
            return
        target = self._rng.choice(voters)
        try:
            raft.transfer_leadership(target)
        except RaftError as e:
            self.count(f"transfer rejected: {type(e).__name__}")
            return
        self.count("transfer")
        self._world.trace(f"n{node.node_id} transfer leadership to {target}")
        self._world.after_input(node)

    def _compact(self) -> None:
        world = self._world
        ready = [
            n
            for n in world.nodes
            if n.raft is not None
            and n.sm is not None
            and not n.paused
            and n.in_flight is None
            and n.sm.applied_index > n.raft.snapshot_meta.index
        ]
        if not ready:
            return
        node = self._rng.choice(ready)
        world.compact(node)
        self.count("compaction")

    # --- outcomes ----------------------------------------------------------

    def on_first_apply(self, entry: Entry) -> None:
        """The first node applied ``entry``: resolve proposals at its index."""
        waiting = self.pending.pop(entry.index, None)
        if not waiting:
            return
        for term, key in waiting:
            if term != entry.term:
                self.count("proposal failed")
                continue
            self.count("proposal committed")
            if key:
                if entry.index > self.acked.get(key, 0):
                    self.acked[key] = entry.index
            else:
                self.barriers_committed += 1

    def serve_read(self, node: SimNode, read: ReadState) -> None:
        """``node`` answers ``read`` from its state machine (thesis §6.4)."""
        issued = self.reads.pop(read.request_id, None)  # type: ignore[call-overload]
        if issued is None:
            raise Violation("Ready contract (ready.py step 6)", f"unknown read {read!r}")
        node_id, key, required, tick = issued
        sm = node.sm
        assert sm is not None
        if node_id != node.node_id:
            raise Violation(
                "Ready contract (ready.py step 6)",
                f"read {read.request_id} issued to node {node_id} answered by {node.node_id}",
            )
        if read.index > sm.applied_index:
            raise Violation(
                "Ready contract (ready.py step 6)",
                f"read index {read.index} above applied index {sm.applied_index}",
            )
        revision = sm.revision(key)
        self._world.trace(
            f"n{node.node_id} read#{read.request_id} {key} at {read.index}: rev {revision}"
        )
        self.count("read served")
        if revision < required:
            raise Violation(
                "thesis §6.4 Linearizable reads",
                f"read {read.request_id} of {key} issued at tick {tick} to node {node_id}"
                f" returned revision {revision} (read index {read.index}, applied"
                f" {sm.applied_index}), but revision {required} was acknowledged before",
            )

    def fail_read(self, request_id: object) -> None:
        if self.reads.pop(request_id, None) is not None:  # type: ignore[call-overload]
            self.count("read failed")

    def forget_reads_of(self, node_id: int) -> None:
        """``node_id`` crashed: its reads will never be answered."""
        lost = [rid for rid, read in self.reads.items() if read[0] == node_id]
        for rid in lost:
            del self.reads[rid]
            self.count("read lost in crash")

    # --- the liveness phase -------------------------------------------------

    def barrier_tick(self) -> None:
        """Propose barriers at the newest leader until every pending
        proposal is resolved: when none of the leader's own term is pending,
        one barrier, or several while its log is shorter than the highest
        pending index (those indexes resolve only once something is applied
        there)."""
        node = self._newest_leader()
        if node is None or node.raft is None:
            return
        raft = node.raft
        term = raft.term
        for waiting in self.pending.values():
            for pending_term, _ in waiting:
                if pending_term == term:
                    return
        if not self.pending and self.barriers_committed:
            return
        highest = max(self.pending, default=0)
        wanted = max(1, min(8, highest - raft.last_index))
        for _ in range(wanted):
            self._next_value += 1
            if not self.propose(node, "", f"barrier {self._next_value}".encode()):
                return

    def unresolved(self) -> int:
        return sum(len(w) for w in self.pending.values())
