"""The leader's view of one follower, with every transition it can make
(etcd tracker/progress.go, kept in one place on purpose).

States:
- PROBE: the leader does not know where the follower's log matches; it
  sends one AppendEntries and waits (``probe_sent``) for the answer or the
  next heartbeat reply before sending another. A slow or lagging follower
  is probed, not flooded.
- REPLICATE: the match is known; entries stream optimistically, up to
  ``inflight_max`` messages outstanding.
- SNAPSHOT: the follower's next entry is compacted away; the snapshot at
  ``snapshot_index`` is being sent in chunks, from ``snapshot_offset``.

Invariants: ``match < next``; ``inflight`` holds ascending last indexes,
all >= ``next`` - 1 only in REPLICATE.
"""

from __future__ import annotations

import enum
from collections import deque

import attrs


class ProgressState(enum.Enum):
    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


@attrs.define(kw_only=True)
class Progress:
    next: int
    match: int = 0
    state: ProgressState = ProgressState.PROBE
    probe_sent: bool = False
    inflight_max: int = 64
    inflight: deque[int] = attrs.field(factory=deque)
    snapshot_index: int = 0
    snapshot_offset: int = 0
    #: Heard from since the last check-quorum round (§6.2 of the thesis).
    recent_active: bool = False
    #: Highest ReadIndex round this follower acknowledged in this term.
    read_round_acked: int = 0

    def __attrs_post_init__(self) -> None:
        assert self.match < self.next

    # --- transitions -------------------------------------------------------

    def become_probe(self) -> None:
        if self.state is ProgressState.SNAPSHOT:
            # The snapshot covered everything up to its index.
            self.next = max(self.match + 1, self.snapshot_index + 1)
        else:
            self.next = self.match + 1
        self.state = ProgressState.PROBE
        self.probe_sent = False
        self.inflight.clear()

    def become_replicate(self) -> None:
        self.state = ProgressState.REPLICATE
        self.next = self.match + 1
        self.probe_sent = False
        self.inflight.clear()

    def become_snapshot(self, snapshot_index: int) -> None:
        self.state = ProgressState.SNAPSHOT
        self.snapshot_index = snapshot_index
        self.snapshot_offset = 0
        self.probe_sent = False
        self.inflight.clear()

    # --- events --------------------------------------------------------------

    def maybe_update(self, match: int) -> bool:
        """A success reply says the follower holds everything up to
        ``match``. Returns whether ``match`` advanced."""
        updated = match > self.match
        if updated:
            self.match = match
            self.probe_sent = False
        self.next = max(self.next, match + 1)
        while self.inflight and self.inflight[0] <= match:
            self.inflight.popleft()
        return updated

    def maybe_decrease_next(self, rejected: int, hinted_next: int) -> bool:
        """A rejection of the AppendEntries whose prev_log_index was
        ``rejected``. Returns False when the rejection is stale (answers a
        message sent before the last change of ``next``)."""
        if self.state is ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            self.become_probe()
            self.next = max(self.match + 1, min(hinted_next, rejected))
            return True
        if self.next - 1 != rejected:
            return False
        self.next = max(self.match + 1, min(hinted_next, rejected))
        self.probe_sent = False
        return True

    def sent_entries(self, last_index: int) -> None:
        """Record an AppendEntries sent with entries up to ``last_index``."""
        if self.state is ProgressState.REPLICATE:
            self.next = last_index + 1
            self.inflight.append(last_index)
        elif self.state is ProgressState.PROBE:
            self.probe_sent = True

    def sent_probe(self) -> None:
        if self.state is ProgressState.PROBE:
            self.probe_sent = True

    def heard_heartbeat_reply(self) -> None:
        """A heartbeat reply unblocks a waiting probe and, if the window is
        full, frees one slot so lost messages cannot stall it forever."""
        self.recent_active = True
        if self.state is ProgressState.PROBE:
            self.probe_sent = False
        elif self.state is ProgressState.REPLICATE and self.is_inflight_full():
            self.inflight.popleft()

    # --- queries -----------------------------------------------------------

    def is_inflight_full(self) -> bool:
        return len(self.inflight) >= self.inflight_max

    def is_paused(self) -> bool:
        if self.state is ProgressState.PROBE:
            return self.probe_sent
        if self.state is ProgressState.REPLICATE:
            return self.is_inflight_full()
        return True
