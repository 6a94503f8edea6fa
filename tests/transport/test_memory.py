"""The in-memory twin: an ITransport, delivery through the injected clock,
and the faults tests need (blocks, partitions, loss)."""

from __future__ import annotations

import random

from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from graft.raft.messages import Heartbeat
from graft.transport.interfaces import ITransport
from graft.transport.memory import MemoryNetwork, MemoryTransport, memory_address
from tests.transport.helpers import CLUSTER, Inbox


def network_of(
    *ids: int, **knobs: object
) -> tuple[Clock, MemoryNetwork, dict[int, Inbox], dict[int, MemoryTransport]]:
    clock = Clock()
    network = MemoryNetwork(clock=clock, **knobs)  # type: ignore[arg-type]
    inboxes = {i: Inbox() for i in ids}
    book = {i: memory_address(i) for i in ids}
    transports = {
        i: MemoryTransport(
            network=network, node_id=i, cluster_id=CLUSTER, receive=inboxes[i], peers=book
        )
        for i in ids
    }
    for t in transports.values():
        t.start()
    return clock, network, inboxes, transports


def hb(source: int, target: int) -> Heartbeat:
    return Heartbeat(source=source, target=target, term=1, commit_index=0)


def test_memory_transport_provides_itransport() -> None:
    _, _, _, transports = network_of(1)
    assert verifyObject(ITransport, transports[1])


def test_delivery_waits_for_the_clock_not_for_send() -> None:
    """send() never calls into the receiver: delivery is a later turn."""
    clock, _, inboxes, transports = network_of(1, 2)
    transports[1].send(hb(1, 2))
    assert inboxes[2].messages == []
    clock.advance(0)
    assert inboxes[2].messages == [hb(1, 2)]


def test_delay_holds_messages_for_that_long() -> None:
    clock, _, inboxes, transports = network_of(1, 2, delay_seconds=0.5)
    transports[1].send(hb(1, 2))
    clock.advance(0.4)
    assert inboxes[2].messages == []
    clock.advance(0.1)
    assert inboxes[2].messages == [hb(1, 2)]


def test_a_one_way_block_loses_messages_in_that_direction_only() -> None:
    clock, network, inboxes, transports = network_of(1, 2)
    network.block(1, 2)
    transports[1].send(hb(1, 2))
    transports[2].send(hb(2, 1))
    clock.advance(0)
    assert inboxes[2].messages == []
    assert inboxes[1].messages == [hb(2, 1)]
    assert network.counts.blocked == 1


def test_a_partition_cuts_both_ways_between_groups_and_heals() -> None:
    clock, network, inboxes, transports = network_of(1, 2, 3)
    network.partition([1], [2, 3])
    transports[1].send(hb(1, 2))
    transports[3].send(hb(3, 1))
    transports[2].send(hb(2, 3))
    clock.advance(0)
    assert inboxes[1].messages == inboxes[2].messages == []
    assert inboxes[3].messages == [hb(2, 3)]
    network.heal()
    transports[1].send(hb(1, 2))
    clock.advance(0)
    assert inboxes[2].messages == [hb(1, 2)]


def test_a_partition_also_cuts_messages_already_in_flight() -> None:
    clock, network, inboxes, transports = network_of(1, 2, delay_seconds=1.0)
    transports[1].send(hb(1, 2))
    network.isolate(2, [1])
    clock.advance(1.0)
    assert inboxes[2].messages == []


def test_random_loss_is_drawn_from_the_injected_rng() -> None:
    """Same seed, same losses."""

    def survivors(seed: int) -> int:
        clock, _, inboxes, transports = network_of(1, 2, loss=0.5, rng=random.Random(seed))
        for _ in range(100):
            transports[1].send(hb(1, 2))
        clock.advance(0)
        return len(inboxes[2].messages)

    assert survivors(7) == survivors(7)
    assert 20 < survivors(7) < 80


def test_a_stopped_transport_is_unreachable() -> None:
    clock, network, inboxes, transports = network_of(1, 2)
    transports[2].stop()
    transports[1].send(hb(1, 2))
    clock.advance(0)
    assert inboxes[2].messages == []
    assert network.counts.unreachable == 1


def test_without_the_codec_messages_still_pass_admission() -> None:
    """use_codec=False skips encoding but not the membership check."""
    clock = Clock()
    network = MemoryNetwork(clock=clock)
    inbox = Inbox()
    a = MemoryTransport(
        network=network,
        node_id=1,
        cluster_id=CLUSTER,
        receive=Inbox(),
        peers={2: memory_address(2)},
        use_codec=False,
    )
    b = MemoryTransport(
        network=network, node_id=2, cluster_id=CLUSTER, receive=inbox, peers={}, use_codec=False
    )
    a.start()
    b.start()
    a.send(hb(1, 2))
    clock.advance(0)
    assert inbox.messages == []
    assert network.counts.refused == 1
    b.set_peers({1: memory_address(1)})
    a.send(hb(1, 2))
    clock.advance(0)
    assert inbox.messages == [hb(1, 2)]
