"""graft.raft's boundary (STYLE.md §1, §7): it imports only the standard
library, attrs and itself, and exports exactly the intended objects."""

from __future__ import annotations

import ast
import importlib
import pathlib
import sys

import graft.raft

PACKAGE = pathlib.Path(graft.raft.__file__).parent
ALLOWED_THIRD_PARTY = {"attrs"}


def imported_modules(path: pathlib.Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.name}: relative import"
            assert node.module is not None
            names.append(node.module)
    return names


def test_core_imports_only_the_standard_library_attrs_and_itself():
    """STYLE.md §1: the core stays sans I/O: no Twisted, files, sockets or
    other dependencies can creep in."""
    files = sorted(PACKAGE.glob("*.py"))
    assert len(files) >= 10

    offenders = [
        (path.name, name)
        for path in files
        for name in imported_modules(path)
        if not (
            name.split(".")[0] in sys.stdlib_module_names
            or name.split(".")[0] in ALLOWED_THIRD_PARTY
            or name == "graft.raft"
            or name.startswith("graft.raft.")
        )
    ]

    assert offenders == []


def test_core_uses_no_global_randomness_or_clock():
    """STYLE.md §2: randomness comes in as a random.Random; time as ticks."""
    forbidden = {"time", "datetime", "socket", "os", "threading", "asyncio"}
    used = {
        (path.name, name)
        for path in sorted(PACKAGE.glob("*.py"))
        for name in imported_modules(path)
        if name.split(".")[0] in forbidden
    }

    assert used == set()


EXPORTS = {
    "graft.raft.config": ["RaftConfig"],
    "graft.raft.errors": [
        "InvalidMembershipChange",
        "LearnerNotCaughtUp",
        "MembershipChangeInProgress",
        "NotLeader",
        "ProposalDropped",
        "RaftError",
        "TransferRefused",
    ],
    "graft.raft.membership": ["ChangeKind", "MembershipChange", "apply_change"],
    "graft.raft.messages": [
        "MESSAGE_TYPES",
        "NO_VOTE",
        "AppendEntries",
        "AppendEntriesResponse",
        "Configuration",
        "Entry",
        "EntryKind",
        "HardState",
        "Heartbeat",
        "HeartbeatResponse",
        "InstallSnapshot",
        "InstallSnapshotResponse",
        "Member",
        "Message",
        "NodeId",
        "RequestVote",
        "RequestVoteResponse",
        "Snapshot",
        "SnapshotData",
        "SnapshotMeta",
        "TimeoutNow",
    ],
    "graft.raft.node": ["PersistentState", "RaftNode"],
    "graft.raft.progress": ["Progress", "ProgressState"],
    "graft.raft.ready": ["Fact", "ReadState", "Ready", "Role", "SnapshotChunk"],
}


def test_exports_are_the_intended_objects():
    """STYLE.md §7: every public name is re-exported from graft.raft and is
    the very object its private module defines."""
    expected = {name for names in EXPORTS.values() for name in names}

    assert set(graft.raft.__all__) == expected
    assert len(graft.raft.__all__) == len(expected), "duplicates in __all__"
    for module_name, names in EXPORTS.items():
        module = importlib.import_module(module_name)
        for name in names:
            assert getattr(graft.raft, name) is getattr(module, name), name


def test_every_message_type_is_exported():
    """STYLE.md §2: the codec can rely on MESSAGE_TYPES naming every message."""
    assert {t.__name__ for t in graft.raft.MESSAGE_TYPES} <= set(graft.raft.__all__)
    assert len(graft.raft.MESSAGE_TYPES) == 9
