"""Membership changes, one server at a time (thesis §4.1, §4.2.1).

A change turns the newest configuration into the next one; the core appends
it as a CONFIG entry, in force from its append. Only one may be uncommitted
at a time, so any two consecutive configurations' majorities overlap.

This module may import only the standard library, attrs and graft.raft.
"""

from __future__ import annotations

import enum

import attrs

from graft.raft.errors import InvalidMembershipChange
from graft.raft.messages import Configuration, Member, NodeId


class ChangeKind(enum.Enum):
    ADD_LEARNER = "add_learner"
    ADD_VOTER = "add_voter"
    PROMOTE = "promote"
    REMOVE = "remove"


@attrs.frozen(kw_only=True)
class MembershipChange:
    kind: ChangeKind
    node_id: NodeId
    #: How peers reach the node; opaque to the core, kept in the configuration.
    address: str = ""
    #: For ADD_LEARNER: the leader promotes it once it has caught up.
    auto_promote: bool = False


def apply_change(config: Configuration, change: MembershipChange) -> Configuration:
    """The configuration after ``change``; raises InvalidMembershipChange
    when it does not fit ``config``."""
    member = config.member(change.node_id)
    if change.node_id < 1:
        raise InvalidMembershipChange(f"node id must be positive, got {change.node_id}")
    if change.kind in (ChangeKind.ADD_LEARNER, ChangeKind.ADD_VOTER):
        if member is not None:
            raise InvalidMembershipChange(f"node {change.node_id} is already a member")
        voter = change.kind is ChangeKind.ADD_VOTER
        return config.with_member(
            Member(
                id=change.node_id,
                address=change.address,
                voter=voter,
                auto_promote=change.auto_promote and not voter,
            )
        )
    if member is None:
        raise InvalidMembershipChange(f"node {change.node_id} is not a member")
    if change.kind is ChangeKind.PROMOTE:
        if member.voter:
            raise InvalidMembershipChange(f"node {change.node_id} is already a voter")
        address = change.address or member.address
        return config.with_member(Member(id=change.node_id, address=address, voter=True))
    assert change.kind is ChangeKind.REMOVE
    after = config.without(change.node_id)
    if not after.voters:
        raise InvalidMembershipChange(f"removing node {change.node_id} would leave no voter")
    return after
