"""ReadIndex bookkeeping for a leader (thesis §6.4).

A read arriving at the leader records the commit index at that moment (its
read index). It is safe once (1) a heartbeat round sent *after* it arrived
was acknowledged by a majority, proving nobody else led at that time, and
(2) the state machine has applied up to its read index. Reads arriving in
one batch share one round, and so do reads arriving while a round is in
flight: the leader starts the next round only once the last is confirmed.
Rounds are numbered by one counter that never goes back, so a reply naming
round r confirms every round <= r.

This module may import only the standard library, attrs and graft.raft.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable

from graft.raft.ready import ReadState


class ReadIndexQueue:
    def __init__(self) -> None:
        #: Reads waiting for the leader's first commit in its term (§8).
        self.awaiting_term_commit: list[Hashable] = []
        #: Reads not yet given a round: the next heartbeat round takes them.
        self.unsent: list[ReadState] = []
        #: (round, reads) awaiting a majority of acknowledgements.
        self.in_flight: deque[tuple[int, list[ReadState]]] = deque()
        #: Confirmed reads waiting for the state machine to catch up, in order.
        self.confirmed: deque[ReadState] = deque()
        self.last_round = 0

    def __len__(self) -> int:
        return (
            len(self.awaiting_term_commit)
            + len(self.unsent)
            + sum(len(reads) for _, reads in self.in_flight)
            + len(self.confirmed)
        )

    def start_round(self) -> int | None:
        """Give the unsent reads a new round; returns it, or None if none waits."""
        if not self.unsent:
            return None
        self.last_round += 1
        self.in_flight.append((self.last_round, self.unsent))
        self.unsent = []
        return self.last_round

    def confirm_up_to(self, round_: int) -> None:
        """A majority acknowledged ``round_``: its reads and older ones are confirmed."""
        while self.in_flight and self.in_flight[0][0] <= round_:
            self.confirmed.extend(self.in_flight.popleft()[1])

    def pop_servable(self, applied_index: int) -> tuple[ReadState, ...]:
        out = []
        while self.confirmed and self.confirmed[0].index <= applied_index:
            out.append(self.confirmed.popleft())
        # Read indexes only grow in arrival order, so the first that cannot
        # be served yet blocks nothing that could.
        return tuple(out)

    def drain(self) -> tuple[Hashable, ...]:
        """Every read not yet served: leadership is lost, they all fail."""
        failed: list[Hashable] = list(self.awaiting_term_commit)
        failed.extend(r.request_id for r in self.unsent)
        for _, reads in self.in_flight:
            failed.extend(r.request_id for r in reads)
        failed.extend(r.request_id for r in self.confirmed)
        self.awaiting_term_commit = []
        self.unsent = []
        self.in_flight.clear()
        self.confirmed.clear()
        return tuple(failed)
