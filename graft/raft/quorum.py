"""Majority arithmetic, free of any other Raft state (etcd quorum/).

Pure functions over plain values so they can be property-tested against a
sort-and-pick twin.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping

from graft.raft.messages import NodeId


class VoteResult(enum.Enum):
    PENDING = "pending"
    WON = "won"
    LOST = "lost"


def majority(voter_count: int) -> int:
    """The smallest number of voters that is more than half (§5.2)."""
    return voter_count // 2 + 1


def committed_index(match_indexes: Iterable[int]) -> int:
    """The highest index that a majority of voters hold (§5.3): the
    majority-th largest match index. No voters means nothing is committed."""
    ordered = sorted(match_indexes, reverse=True)
    if not ordered:
        return 0
    return ordered[majority(len(ordered)) - 1]


def vote_result(voters: Iterable[NodeId], votes: Mapping[NodeId, bool]) -> VoteResult:
    """Whether ``votes`` (granted or refused, by voter) decide an election.
    Votes from non-voters are ignored: learners never count (thesis §4.2.1)."""
    voter_set = frozenset(voters)
    granted = sum(1 for v, ok in votes.items() if ok and v in voter_set)
    refused = sum(1 for v, ok in votes.items() if not ok and v in voter_set)
    needed = majority(len(voter_set))
    if granted >= needed:
        return VoteResult.WON
    if len(voter_set) - refused < needed:
        return VoteResult.LOST
    return VoteResult.PENDING


def has_quorum(voters: Iterable[NodeId], active: Iterable[NodeId]) -> bool:
    """Whether the ``active`` nodes include a majority of ``voters``."""
    voter_set = frozenset(voters)
    return len(voter_set & frozenset(active)) >= majority(len(voter_set))
