"""The driver loop of graft/raft/__init__.py's docstring, run as written
for a three-node in-memory cluster."""

from __future__ import annotations

import random

from graft.raft import (
    Configuration,
    Entry,
    EntryKind,
    HardState,
    Member,
    Message,
    NotLeader,
    PersistentState,
    RaftConfig,
    RaftNode,
    Snapshot,
    SnapshotMeta,
)


class Storage:
    def __init__(self) -> None:
        self.snapshot: Snapshot | None = None
        self.entries: list[Entry] = []
        self.hard_state = HardState()

    def install(self, snapshot: Snapshot | None) -> None:
        if snapshot is not None:
            self.snapshot = snapshot
            self.entries = []

    def append(self, entries: tuple[Entry, ...], hard_state: HardState | None) -> None:
        if entries:
            self.entries = [e for e in self.entries if e.index < entries[0].index]
            self.entries.extend(entries)
        if hard_state is not None:
            self.hard_state = hard_state


class Transport:
    def __init__(self, outbox: list[Message]) -> None:
        self.outbox = outbox

    def send(self, messages: tuple[Message, ...]) -> None:
        self.outbox.extend(messages)


class StateMachine:
    def __init__(self) -> None:
        self.commands: list[bytes] = []

    def apply(self, entries: tuple[Entry, ...]) -> None:
        self.commands.extend(e.data for e in entries if e.kind is EntryKind.COMMAND)


def test_driver_loop_from_the_package_docstring_replicates_a_command():
    """§5.3: driven exactly as documented, a proposed command is applied by
    every node."""
    members = Configuration(members=tuple(Member(id=i, address=f"n{i}") for i in (1, 2, 3)))
    seed = 7
    nodes = {
        i: RaftNode(
            RaftConfig(node_id=i),
            PersistentState(snapshot=SnapshotMeta(configuration=members)),
            random.Random(seed + i),
        )
        for i in (1, 2, 3)
    }
    storages = {i: Storage() for i in nodes}
    machines = {i: StateMachine() for i in nodes}
    network: list[Message] = []
    transports = {i: Transport(network) for i in nodes}
    served: list[object] = []
    proposed = False

    for _ in range(1000):
        inbox, network[:] = list(network), []
        for node_id, node in nodes.items():
            storage, transport = storages[node_id], transports[node_id]
            state_machine = machines[node_id]
            # inputs_since_last_time(): a tick, the node's messages, a proposal.
            node.tick()
            for message in inbox:
                if message.target == node_id:
                    node.step(message)
            if not proposed:
                try:
                    node.propose(b"hello")
                    proposed = True
                except NotLeader:
                    pass
            if node.has_ready():
                ready = node.ready()
                storage.install(ready.snapshot)  # 1. if any
                storage.append(ready.entries, ready.hard_state)  # 2. durable
                transport.send(ready.messages)  # 3. any time
                transport.send(ready.messages_after_persist)  # 4. after 2
                state_machine.apply(ready.committed_entries)  # 5.
                served.extend(ready.reads)  # 6.
                node.advance(ready)  # 7.
        if all(m.commands == [b"hello"] for m in machines.values()):
            break

    for node_id in nodes:
        assert machines[node_id].commands == [b"hello"]
        assert storages[node_id].entries[-1].data == b"hello"
        assert storages[node_id].hard_state.commit >= storages[node_id].entries[-1].index
