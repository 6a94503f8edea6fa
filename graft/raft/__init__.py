"""graft.raft: the Raft consensus core, sans I/O.

The core never touches sockets, files, clocks or global randomness. A
driver feeds it inputs and carries out the work it returns, one ``Ready``
at a time::

    node = RaftNode(RaftConfig(node_id=1), PersistentState(...), random.Random(seed))
    while running:
        for event in inputs_since_last_time():   # any of:
            node.tick()                          #   a tick of logical time
            node.step(message)                   #   a peer's message
            node.propose(command)                #   a client write (leader)
            node.read(request_id)                #   a linearizable read (leader)
        if node.has_ready():
            ready = node.ready()
            storage.write(ready.snapshot_chunks)      # 1. if any, and
            storage.install(ready.snapshot)           #    install when complete
            storage.append(ready.entries, ready.hard_state)  # 2. durable
            for m in ready.messages: transport.send(m)   # 3. any time
            for m in ready.messages_after_persist: transport.send(m)  # 4. after 2
            state_machine.apply(ready.committed_entries)  # 5.
            serve(ready.reads)                        # 6.
            node.advance(ready)                       # 7.

``tests/raft/test_driver_loop.py`` runs exactly this loop.

This package imports only the standard library and attrs.
"""

from graft.raft.config import RaftConfig
from graft.raft.errors import (
    InvalidMembershipChange,
    LearnerNotCaughtUp,
    MembershipChangeInProgress,
    NotLeader,
    ProposalDropped,
    RaftError,
    TransferRefused,
)
from graft.raft.membership import ChangeKind, MembershipChange, apply_change
from graft.raft.messages import (
    MESSAGE_TYPES,
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
    Member,
    Message,
    NodeId,
    RequestVote,
    RequestVoteResponse,
    Snapshot,
    SnapshotData,
    SnapshotMeta,
    TimeoutNow,
)
from graft.raft.node import PersistentState, RaftNode
from graft.raft.progress import Progress, ProgressState
from graft.raft.ready import Fact, ReadState, Ready, Role, SnapshotChunk

__all__ = [
    "MESSAGE_TYPES",
    "NO_VOTE",
    "AppendEntries",
    "AppendEntriesResponse",
    "ChangeKind",
    "Configuration",
    "Entry",
    "EntryKind",
    "Fact",
    "HardState",
    "Heartbeat",
    "HeartbeatResponse",
    "InstallSnapshot",
    "InstallSnapshotResponse",
    "InvalidMembershipChange",
    "LearnerNotCaughtUp",
    "Member",
    "MembershipChange",
    "MembershipChangeInProgress",
    "Message",
    "NodeId",
    "NotLeader",
    "PersistentState",
    "Progress",
    "ProgressState",
    "ProposalDropped",
    "RaftConfig",
    "RaftError",
    "RaftNode",
    "ReadState",
    "Ready",
    "RequestVote",
    "RequestVoteResponse",
    "Role",
    "Snapshot",
    "SnapshotChunk",
    "SnapshotData",
    "SnapshotMeta",
    "TimeoutNow",
    "TransferRefused",
    "apply_change",
]
