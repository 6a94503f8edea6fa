"""The core's tunables, in ticks and counts; the driver sets a tick's length."""

from __future__ import annotations

import attrs

from graft.raft.messages import NodeId


def _positive(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 1:
        raise ValueError(f"{attribute.name} must be at least 1, got {value}")


@attrs.frozen(kw_only=True)
class RaftConfig:
    """Settings of one core. Invariant: heartbeats come several times per
    election timeout, or followers would time out between them."""

    node_id: NodeId = attrs.field(validator=_positive)
    #: Followers wait a random timeout in [election_timeout_ticks, 2x) (§5.2).
    election_timeout_ticks: int = attrs.field(default=10, validator=_positive)
    heartbeat_interval_ticks: int = attrs.field(default=2, validator=_positive)
    #: Bounds on one AppendEntries: entry count and payload bytes.
    append_entries_max: int = attrs.field(default=256, validator=_positive)
    append_bytes_max: int = attrs.field(default=1 << 20, validator=_positive)
    #: AppendEntries in flight to a follower in the replicate state.
    inflight_messages_max: int = attrs.field(default=64, validator=_positive)
    snapshot_chunk_bytes: int = attrs.field(default=1 << 20, validator=_positive)
    #: A learner may be promoted once it is this close to the leader's log.
    learner_promotion_lag_max: int = attrs.field(default=64, validator=_positive)
    pre_vote: bool = True
    check_quorum: bool = True

    def __attrs_post_init__(self) -> None:
        if self.heartbeat_interval_ticks >= self.election_timeout_ticks:
            raise ValueError(
                "heartbeat_interval_ticks must be below election_timeout_ticks "
                f"({self.heartbeat_interval_ticks} >= {self.election_timeout_ticks})"
            )
