"""Per-peer sending discipline shared by connection-based transports:
a bounded queue of encoded messages, batches cut to a byte budget, and a
bound on requests in flight (pipelining).

Pure bookkeeping: no Twisted, no I/O, so HTTP and a future AMP transport
share it and it is tested on its own. May import the standard library,
attrs and graft.raft.
"""

from __future__ import annotations

from collections import deque

import attrs

__all__ = ["Outbox", "OutboxLimits"]


@attrs.frozen(kw_only=True)
class OutboxLimits:
    """Bounds on one peer's outgoing traffic."""

    #: Requests (batches) in flight to one peer at a time: enough to keep a
    #: link busy during bulk replication without unbounded concurrency.
    in_flight_max: int = 4
    #: A batch closes once adding the next message would pass this budget
    #: (a single larger message still goes, alone).
    batch_bytes_max: int = 1024 * 1024
    #: Messages in one batch.
    batch_messages_max: int = 1024
    #: Messages waiting while ``in_flight_max`` requests are out.
    queue_messages_max: int = 4096
    #: Bytes waiting while ``in_flight_max`` requests are out.
    queue_bytes_max: int = 64 * 1024 * 1024

    def __attrs_post_init__(self) -> None:
        assert self.in_flight_max >= 1, self.in_flight_max
        assert self.batch_bytes_max >= 1, self.batch_bytes_max
        assert self.batch_messages_max >= 1, self.batch_messages_max
        assert self.queue_messages_max >= 1, self.queue_messages_max
        assert self.queue_bytes_max >= 1, self.queue_bytes_max


@attrs.define
class _Queued:
    packed: bytes
    #: Heartbeats and their responses: superseded by the next ones, so they
    #: are the first to go when the queue overflows.
    droppable: bool


@attrs.define
class Outbox:
    """One peer's queue and in-flight count.

    Invariants: ``0 <= in_flight <= limits.in_flight_max``; after every
    :meth:`push`, ``len(queue) <= queue_messages_max`` and
    ``queued_bytes <= queue_bytes_max`` (or the queue holds one message).
    """

    limits: OutboxLimits
    in_flight: int = 0
    queued_bytes: int = 0
    _queue: deque[_Queued] = attrs.field(factory=deque)

    def __len__(self) -> int:
        return len(self._queue)

    def push(self, packed: bytes, *, droppable: bool) -> int:
        """Queue one encoded message; returns how many queued messages were
        dropped to stay within bounds (oldest droppable ones first, then the
        oldest of any kind: Raft copes with loss, §5.3)."""
        self._queue.append(_Queued(packed, droppable))
        self.queued_bytes += len(packed)
        dropped = 0
        while len(self._queue) > 1 and (
            len(self._queue) > self.limits.queue_messages_max
            or self.queued_bytes > self.limits.queue_bytes_max
        ):
            self._drop_one()
            dropped += 1
        return dropped

    def _drop_one(self) -> None:
        victim = next((q for q in self._queue if q.droppable), self._queue[0])
        self._queue.remove(victim)
        self.queued_bytes -= len(victim.packed)

    def take_batch(self) -> list[bytes] | None:
        """The next batch to send, counted as in flight until
        :meth:`finished`; ``None`` when the queue is empty or the in-flight
        bound is reached."""
        if not self._queue or self.in_flight >= self.limits.in_flight_max:
            return None
        batch: list[bytes] = []
        size = 0
        while self._queue and len(batch) < self.limits.batch_messages_max:
            packed = self._queue[0].packed
            if batch and size + len(packed) > self.limits.batch_bytes_max:
                break
            self._queue.popleft()
            self.queued_bytes -= len(packed)
            batch.append(packed)
            size += len(packed)
        self.in_flight += 1
        return batch

    def finished(self) -> None:
        """A batch from :meth:`take_batch` is done, delivered or not."""
        assert self.in_flight > 0, "finished() without a batch in flight"
        self.in_flight -= 1

    def clear(self) -> int:
        """Drop everything queued; returns how many messages that was."""
        count = len(self._queue)
        self._queue.clear()
        self.queued_bytes = 0
        return count
