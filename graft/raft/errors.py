"""Why the core refused an input. Raised synchronously by ``propose``,
``read``, ``change_membership`` and ``transfer_leadership``; the driver maps
them to client answers (redirect, 409, 503). Peers' messages never raise:
a bad or stale message is dropped and reported as a fact."""

from __future__ import annotations

from graft.raft.messages import NodeId


class RaftError(Exception):
    """Base of every refusal the core reports to its driver."""


class NotLeader(RaftError):
    """Only the leader takes this input; ``leader_id`` is who to ask, if known."""

    def __init__(self, leader_id: NodeId | None) -> None:
        super().__init__(f"not the leader; leader is {leader_id}")
        self.leader_id = leader_id


class ProposalDropped(RaftError):
    """The leader will not take proposals now (leadership transfer in
    progress, or it is being removed)."""


class MembershipChangeInProgress(RaftError):
    """A configuration entry is still uncommitted: one change at a time
    (thesis §4.1)."""


class InvalidMembershipChange(RaftError):
    """The change makes no sense for the current configuration."""


class LearnerNotCaughtUp(RaftError):
    """Promoting a learner whose log is still far behind would stall commits
    (thesis §4.2.1)."""


class TransferRefused(RaftError):
    """The leadership transfer cannot be started (target unknown, a
    learner, itself, or another transfer is running)."""
