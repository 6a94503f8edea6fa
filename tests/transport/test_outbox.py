"""The per-peer outbox: batches cut to a byte budget, a bound on requests
in flight, and a bounded queue that sheds heartbeats first."""

from __future__ import annotations

from graft.transport._outbox import Outbox, OutboxLimits


def outbox(**limits: int) -> Outbox:
    return Outbox(OutboxLimits(**limits))


def test_one_batch_takes_everything_queued_within_budget() -> None:
    """Messages queued together leave together: one request, not many."""
    box = outbox()
    for i in range(5):
        box.push(bytes([i]), droppable=False)
    assert box.take_batch() == [bytes([i]) for i in range(5)]
    assert len(box) == 0
    assert box.in_flight == 1


def test_a_batch_stops_at_the_byte_budget() -> None:
    box = outbox(batch_bytes_max=10)
    for _ in range(5):
        box.push(b"x" * 4, droppable=False)
    assert box.take_batch() == [b"xxxx", b"xxxx"]
    assert box.queued_bytes == 12


def test_a_message_over_the_budget_still_goes_alone() -> None:
    box = outbox(batch_bytes_max=10)
    box.push(b"x" * 50, droppable=False)
    box.push(b"y", droppable=False)
    assert box.take_batch() == [b"x" * 50]


def test_a_batch_stops_at_the_message_count() -> None:
    box = outbox(batch_messages_max=2)
    for _ in range(3):
        box.push(b"m", droppable=False)
    assert box.take_batch() == [b"m", b"m"]


def test_no_batch_past_the_in_flight_bound_until_one_finishes() -> None:
    """Pipelining is bounded: at most in_flight_max requests at a time."""
    box = outbox(in_flight_max=2, batch_messages_max=1)
    for _ in range(4):
        box.push(b"m", droppable=False)
    assert box.take_batch() is not None
    assert box.take_batch() is not None
    assert box.take_batch() is None
    box.finished()
    assert box.take_batch() == [b"m"]
    assert box.in_flight == 2


def test_an_empty_outbox_gives_no_batch() -> None:
    assert outbox().take_batch() is None


def test_overflow_drops_the_oldest_heartbeat_first() -> None:
    """Heartbeats are superseded by the next ones; entries are not."""
    box = outbox(queue_messages_max=3)
    box.push(b"entries-1", droppable=False)
    box.push(b"heartbeat-1", droppable=True)
    box.push(b"entries-2", droppable=False)
    assert box.push(b"entries-3", droppable=False) == 1
    assert box.take_batch() == [b"entries-1", b"entries-2", b"entries-3"]


def test_overflow_without_heartbeats_drops_the_oldest() -> None:
    """Raft copes with loss (§5.3): the leader resends what is not acked."""
    box = outbox(queue_messages_max=2)
    for name in (b"a", b"b", b"c"):
        box.push(name, droppable=False)
    assert box.take_batch() == [b"b", b"c"]


def test_overflow_by_bytes_is_bounded_too() -> None:
    box = outbox(queue_bytes_max=10)
    for _ in range(5):
        box.push(b"x" * 4, droppable=False)
    assert box.queued_bytes <= 10
    assert len(box) == 2


def test_clear_drops_everything_and_counts_it() -> None:
    box = outbox()
    box.push(b"a", droppable=False)
    box.push(b"b", droppable=True)
    assert box.clear() == 2
    assert len(box) == 0
    assert box.queued_bytes == 0
