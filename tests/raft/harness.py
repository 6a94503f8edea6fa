"""A fault-free, synchronous world for unit tests of the core: in-memory
durable state per node and a message queue that the test pumps by hand.

Unlike the simulator this has no randomness in the network: a test decides
exactly which messages are delivered, dropped or held back.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any

from graft.raft import (
    Configuration,
    Entry,
    EntryKind,
    HardState,
    Member,
    Message,
    PersistentState,
    RaftConfig,
    RaftNode,
    ReadState,
    Ready,
    Role,
    Snapshot,
    SnapshotMeta,
)


def configuration(voters: Iterable[int], learners: Iterable[int] = ()) -> Configuration:
    members = [Member(id=i, address=f"n{i}", voter=True) for i in voters]
    members += [Member(id=i, address=f"n{i}", voter=False) for i in learners]
    return Configuration(members=tuple(sorted(members, key=lambda m: m.id)))


class Disk:
    """A node's durable state."""

    def __init__(self, snapshot: SnapshotMeta) -> None:
        self.hard_state = HardState()
        self.snapshot = snapshot
        self.snapshot_data: bytes | None = None
        self.entries: list[Entry] = []
        #: A snapshot arriving from the leader, as written so far.
        self.receiving = bytearray()

    def persist(self, ready: Ready) -> None:
        for chunk in ready.snapshot_chunks:
            if chunk.offset == 0:
                self.receiving = bytearray()
            assert chunk.offset == len(self.receiving), "chunks are handed out in order"
            self.receiving += chunk.data
        if ready.snapshot is not None:
            self.snapshot = ready.snapshot
            self.snapshot_data = bytes(self.receiving)
            self.receiving = bytearray()
            self.entries = []
        if ready.entries:
            first = ready.entries[0].index
            self.entries = [e for e in self.entries if e.index < first]
            self.entries.extend(ready.entries)
        if ready.hard_state is not None:
            self.hard_state = ready.hard_state

    def state(self) -> PersistentState:
        return PersistentState(
            hard_state=self.hard_state,
            snapshot=self.snapshot,
            snapshot_data=self.snapshot_data,
            entries=tuple(self.entries),
        )


class Cluster:
    """Nodes wired through one queue of messages in flight."""

    def __init__(
        self,
        voters: Iterable[int] = (1, 2, 3),
        learners: Iterable[int] = (),
        *,
        seed: int = 0,
        node_class: type[RaftNode] = RaftNode,
        **config: Any,
    ) -> None:
        self.config = config
        self.node_class = node_class
        self.rng = random.Random(seed)
        initial = configuration(voters, learners)
        self.disks = {m.id: Disk(SnapshotMeta(configuration=initial)) for m in initial.members}
        self.nodes: dict[int, RaftNode] = {}
        for node_id in self.disks:
            self.start(node_id)
        self.in_flight: list[Message] = []
        self.applied: dict[int, list[Entry]] = {i: [] for i in self.disks}
        self.reads: dict[int, list[ReadState]] = {i: [] for i in self.disks}
        self.failed_reads: dict[int, list[object]] = {i: [] for i in self.disks}
        self.snapshots_installed: dict[int, list[Snapshot]] = {i: [] for i in self.disks}
        self.facts: list[tuple[int, str, str]] = []
        #: Drop messages for which this returns True.
        self.drop: Callable[[Message], bool] = lambda m: False
        #: Every message a Ready handed out, in order, dropped or not.
        self.sent: list[Message] = []
        #: Nodes that are down: not ticked, not processed, sent nothing.
        self.down: set[int] = set()

    def start(self, node_id: int) -> RaftNode:
        cfg = RaftConfig(node_id=node_id, **self.config)
        node = self.node_class(cfg, self.disks[node_id].state(), random.Random(self.rng.random()))
        self.nodes[node_id] = node
        return node

    def add_empty_node(self, node_id: int) -> RaftNode:
        """A node that will join: empty log, empty configuration."""
        self.disks[node_id] = Disk(SnapshotMeta())
        for table in (self.applied, self.reads, self.failed_reads, self.snapshots_installed):
            table[node_id] = []  # type: ignore[index]
        return self.start(node_id)

    def stop(self, node_id: int) -> None:
        """Take ``node_id`` down until ``restart``: messages to it are lost."""
        self.down.add(node_id)
        self.in_flight = [m for m in self.in_flight if m.target != node_id]

    def restart(self, node_id: int) -> RaftNode:
        """Bring a stopped node back from its disk."""
        self.down.discard(node_id)
        self.applied[node_id] = []
        return self.start(node_id)

    def isolate(self, *node_ids: int) -> None:
        """Cut ``node_ids`` off from the rest (they still talk among themselves)."""
        group = set(node_ids)
        self.drop = lambda m: (m.source in group) != (m.target in group)

    def heal(self) -> None:
        self.drop = lambda m: False

    def compact(self, node_id: int, index: int, data: bytes, retain: int = 0) -> None:
        """What a driver does on taking a snapshot: save it, then compact.
        The disk drops the whole prefix; only the core keeps a tail."""
        node = self.nodes[node_id]
        node.compact(index, data, retain)
        disk = self.disks[node_id]
        disk.snapshot = node.snapshot_meta
        disk.snapshot_data = data
        disk.entries = [e for e in disk.entries if e.index > index]

    def crash(self, node_id: int) -> None:
        """Lose everything not durable and start again from the disk."""
        self.in_flight = [m for m in self.in_flight if m.target != node_id]
        self.start(node_id)
        self.applied[node_id] = []

    # --- driving -------------------------------------------------------------

    def process(self, node_id: int) -> bool:
        node = self.nodes[node_id]
        if not node.has_ready():
            return False
        ready = node.ready()
        self.disks[node_id].persist(ready)
        self.in_flight.extend(ready.messages)
        self.in_flight.extend(ready.messages_after_persist)
        self.sent.extend(ready.messages)
        self.sent.extend(ready.messages_after_persist)
        if ready.snapshot is not None:
            data = self.disks[node_id].snapshot_data
            assert data is not None
            self.snapshots_installed[node_id].append(Snapshot(meta=ready.snapshot, data=data))
        self.applied[node_id].extend(ready.committed_entries)
        self.reads[node_id].extend(ready.reads)
        self.failed_reads[node_id].extend(ready.failed_reads)
        self.facts.extend((node_id, f.name, f.detail) for f in ready.facts)
        node.advance(ready)
        if ready.snapshot is not None and node.snapshot_meta == ready.snapshot:
            # Hand the stored snapshot back, so the node can send it on.
            node.compact(ready.snapshot.index, self.disks[node_id].snapshot_data or b"")
        return True

    def deliver(self, limit: int = 100_000) -> int:
        """Process every node and deliver every message until quiet."""
        delivered = 0
        for _ in range(limit):
            progressed = False
            for node_id in sorted(self.nodes):
                if node_id not in self.down:
                    progressed |= self.process(node_id)
            batch, self.in_flight = self.in_flight, []
            for m in batch:
                alive = m.target in self.nodes and m.target not in self.down
                if alive and not self.drop(m):
                    self.nodes[m.target].step(m)
                    delivered += 1
                progressed = True
            if not progressed:
                return delivered
        raise AssertionError("cluster did not quiesce")

    def tick(self, n: int = 1, nodes: Iterable[int] | None = None) -> None:
        for _ in range(n):
            for node_id in sorted(nodes if nodes is not None else self.nodes):
                if node_id not in self.down:
                    self.nodes[node_id].tick()
            self.deliver()

    def campaign(self, node_id: int) -> None:
        """Make ``node_id`` time out now and run the election to its end."""
        node = self.nodes[node_id]
        while self.process(node_id):
            pass
        for _ in range(node.config.election_timeout_ticks * 2 + 1):
            node.tick()
            if node.role is not Role.FOLLOWER and node.has_ready():
                break
        self.deliver()

    def elect(self, node_id: int = 1, attempts: int = 1) -> RaftNode:
        """Campaign ``node_id`` (up to ``attempts`` times: a candidate behind
        in term loses its first election but learns the term)."""
        node = self.nodes[node_id]
        for _ in range(attempts):
            self.campaign(node_id)
            if node.role is Role.LEADER:
                break
        assert node.role is Role.LEADER, node.role
        return node

    def leader(self) -> RaftNode | None:
        leaders = [n for n in self.nodes.values() if n.role is Role.LEADER]
        return max(leaders, key=lambda n: n.term) if leaders else None

    def messages(
        self, kind: type[Any], *, source: int | None = None, target: int | None = None
    ) -> list[Any]:
        """The messages of ``kind`` handed out so far, optionally by endpoint."""
        return [
            m
            for m in self.sent
            if isinstance(m, kind)
            and (source is None or m.source == source)
            and (target is None or m.target == target)
        ]

    def log(self, node_id: int) -> list[Entry]:
        node = self.nodes[node_id]
        return list(node.entries(node.first_index, node.last_index + 1))

    def commands(self, node_id: int) -> list[bytes]:
        return [e.data for e in self.applied[node_id] if e.kind is EntryKind.COMMAND]


def log_of_terms(terms: Iterable[int], start: int = 1) -> list[Entry]:
    """Entries at ``start``, ``start + 1``... whose terms are ``terms``."""
    return [
        Entry(index=start + i, term=t, data=f"{start + i}@{t}".encode())
        for i, t in enumerate(terms)
    ]


def make_node(
    node_id: int,
    voters: Iterable[int] = (1, 2, 3),
    learners: Iterable[int] = (),
    *,
    entries: Iterable[Entry] = (),
    term: int = 0,
    vote: int = 0,
    commit: int = 0,
    seed: int = 0,
    **config: Any,
) -> RaftNode:
    """One core on its own, started from the given durable state."""
    state = PersistentState(
        hard_state=HardState(term=term, vote=vote, commit=commit),
        snapshot=SnapshotMeta(configuration=configuration(voters, learners)),
        entries=tuple(entries),
    )
    return RaftNode(RaftConfig(node_id=node_id, **config), state, random.Random(seed))


def set_log(cluster: Cluster, node_id: int, entries: Iterable[Entry], term: int) -> RaftNode:
    """Replace ``node_id``'s durable log and term, then restart it from them."""
    disk = cluster.disks[node_id]
    disk.entries = list(entries)
    disk.hard_state = HardState(term=term)
    return cluster.restart(node_id)


def drain(node: RaftNode) -> Ready:
    """Take the node's Ready and report it done at once (a perfect driver)."""
    ready = node.ready()
    node.advance(ready)
    return ready
