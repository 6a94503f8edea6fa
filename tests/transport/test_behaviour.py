"""One behavioural suite for every ITransport implementation (STYLE §4):
the in-memory twin, HTTP and AMP on loopback must behave alike for
everything the node relies on."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred

from graft.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Configuration,
    Entry,
    EntryKind,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    Member,
    Message,
    RequestVote,
    RequestVoteResponse,
    SnapshotMeta,
    TimeoutNow,
)
from tests.transport.backends import (
    BACKENDS,
    Cluster,
    connect_all,
    make_cluster,
    provides_transport,
    wait,
)


@pytest.fixture(params=BACKENDS)
def cluster(request: Any) -> Iterator[Cluster]:
    made = make_cluster(request.param)
    yield made
    pytest_twisted.blockon(Deferred.fromCoroutine(made.close()))


async def three(cluster: Cluster) -> None:
    for i in (1, 2, 3):
        await cluster.add(i)
    connect_all(cluster)


def hb(source: int, target: int, commit: int = 0) -> Heartbeat:
    return Heartbeat(source=source, target=target, term=1, commit_index=commit)


def one_of_each(source: int, target: int) -> list[Message]:
    meta = SnapshotMeta(
        index=10,
        term=2,
        configuration=Configuration(members=(Member(id=1, address="a"), Member(id=2))),
    )
    common: dict[str, Any] = {"source": source, "target": target, "term": 3}
    return [
        RequestVote(**common, last_log_index=4, last_log_term=2, pre_vote=True),
        RequestVoteResponse(**common, vote_granted=True),
        AppendEntries(
            **common,
            prev_log_index=4,
            prev_log_term=2,
            entries=(
                Entry(index=5, term=3, kind=EntryKind.NOOP),
                Entry(index=6, term=3, data=b"\x00put"),
                Entry(index=7, term=3, kind=EntryKind.CONFIG, data=b"1,1,a;2,0,b"),
            ),
            leader_commit=4,
        ),
        AppendEntriesResponse(**common, success=False, prev_log_index=4, conflict_index=3),
        Heartbeat(**common, commit_index=4, read_round=7),
        HeartbeatResponse(**common, read_round=7),
        InstallSnapshot(**common, meta=meta, offset=0, data=b"\xff" * 1000, done=False),
        InstallSnapshotResponse(**common, snapshot_index=10, next_offset=1000),
        TimeoutNow(**common),
    ]


@pytest_twisted.ensureDeferred
async def test_every_node_provides_itransport(cluster: Cluster) -> None:
    """Each implementation declares ITransport."""
    await three(cluster)
    assert all(provides_transport(n) for n in cluster.nodes.values())


@pytest_twisted.ensureDeferred
async def test_a_message_arrives_unchanged(cluster: Cluster) -> None:
    await three(cluster)
    cluster.nodes[1].transport.send(hb(1, 2, commit=5))
    assert await wait(cluster.nodes[2].inbox.wait_for(1)) == [hb(1, 2, commit=5)]


@pytest_twisted.ensureDeferred
async def test_every_message_type_arrives_unchanged(cluster: Cluster) -> None:
    """All nine message types cross the transport, in both directions."""
    await three(cluster)
    for m in one_of_each(1, 2):
        cluster.nodes[1].transport.send(m)
    for m in one_of_each(2, 1):
        cluster.nodes[2].transport.send(m)
    received_2 = await wait(cluster.nodes[2].inbox.wait_for(9))
    received_1 = await wait(cluster.nodes[1].inbox.wait_for(9))
    assert sorted(map(repr, received_2)) == sorted(map(repr, one_of_each(1, 2)))
    assert sorted(map(repr, received_1)) == sorted(map(repr, one_of_each(2, 1)))


@pytest_twisted.ensureDeferred
async def test_many_messages_to_several_peers_all_arrive(cluster: Cluster) -> None:
    """A burst to two peers: every message reaches its own target only."""
    await three(cluster)
    for i in range(300):
        cluster.nodes[1].transport.send(hb(1, 2 + i % 2, commit=i))
    got_2 = await wait(cluster.nodes[2].inbox.wait_for(150))
    got_3 = await wait(cluster.nodes[3].inbox.wait_for(150))
    assert sorted(m.commit_index for m in got_2) == list(range(0, 300, 2))
    assert sorted(m.commit_index for m in got_3) == list(range(1, 300, 2))


@pytest_twisted.ensureDeferred
async def test_send_to_an_unknown_node_is_dropped_quietly(cluster: Cluster) -> None:
    """Fire and forget: no exception for a target not in the address book."""
    await three(cluster)
    cluster.nodes[1].transport.send(hb(1, 42))
    cluster.nodes[1].transport.send(hb(1, 2))
    await wait(cluster.nodes[2].inbox.wait_for(1))
    await cluster.settle()
    assert cluster.nodes[3].inbox.messages == []


@pytest_twisted.ensureDeferred
async def test_send_while_stopped_is_dropped_quietly(cluster: Cluster) -> None:
    await three(cluster)
    await cluster.nodes[1].transport.stop()
    cluster.nodes[1].transport.send(hb(1, 2))
    await cluster.settle()
    assert cluster.nodes[2].inbox.messages == []


@pytest_twisted.ensureDeferred
async def test_set_peers_adds_a_peer_at_runtime(cluster: Cluster) -> None:
    """Membership changes add peers (thesis §4.1): once in the address book
    on both sides, a new node can be reached and is admitted."""
    await three(cluster)
    await cluster.add(4)
    cluster.nodes[1].transport.send(hb(1, 4))
    await cluster.settle()
    assert cluster.nodes[4].inbox.messages == []
    connect_all(cluster)
    cluster.nodes[1].transport.send(hb(1, 4, commit=1))
    assert await wait(cluster.nodes[4].inbox.wait_for(1)) == [hb(1, 4, commit=1)]


@pytest_twisted.ensureDeferred
async def test_a_sender_that_is_not_a_peer_is_refused(cluster: Cluster) -> None:
    """Node 4 knows node 2's address, but node 2 does not count it as a
    member, so its message never reaches node 2's core."""
    await three(cluster)
    outsider = await cluster.add(4)
    outsider.transport.set_peers({2: cluster.nodes[2].address})
    outsider.transport.send(hb(4, 2))
    await cluster.settle()
    assert cluster.nodes[2].inbox.messages == []


@pytest_twisted.ensureDeferred
async def test_a_removed_peer_is_refused(cluster: Cluster) -> None:
    await three(cluster)
    connect_all(cluster, [2, 3])  # node 2 forgets node 1
    cluster.nodes[1].transport.send(hb(1, 2))
    await cluster.settle()
    assert cluster.nodes[2].inbox.messages == []


@pytest_twisted.ensureDeferred
async def test_a_node_of_another_cluster_is_refused(cluster: Cluster) -> None:
    """Same ids, same token, different initial membership: refused."""
    await three(cluster)
    stranger = await cluster.add(5, cluster_id="another-cluster")
    stranger.transport.set_peers({2: cluster.nodes[2].address})
    cluster.nodes[2].transport.set_peers({i: n.address for i, n in cluster.nodes.items() if i != 2})
    stranger.transport.send(hb(5, 2))
    await cluster.settle()
    assert cluster.nodes[2].inbox.messages == []


@pytest_twisted.ensureDeferred
async def test_an_entry_for_this_node_in_peers_is_ignored(cluster: Cluster) -> None:
    """A peer list that contains the node's own id is tolerated (API.md §1)."""
    await three(cluster)
    node = cluster.nodes[1]
    node.transport.send(hb(1, 1))
    node.transport.send(hb(1, 2))
    await wait(cluster.nodes[2].inbox.wait_for(1))
    await cluster.settle()
    assert node.inbox.messages == []
    assert 1 not in node.transport.peers


@pytest_twisted.ensureDeferred
async def test_messages_to_a_down_peer_are_lost_and_later_ones_arrive(cluster: Cluster) -> None:
    """No retries: what is sent while a peer is down is dropped; once it is
    back, new messages arrive and nothing raised meanwhile."""
    await three(cluster)
    await cluster.take_down(2)
    cluster.nodes[1].transport.send(hb(1, 2, commit=1))
    await cluster.settle()
    await cluster.bring_up(2)
    cluster.nodes[1].transport.send(hb(1, 2, commit=2))
    assert await wait(cluster.nodes[2].inbox.wait_for(1)) == [hb(1, 2, commit=2)]
    await cluster.settle()
    assert cluster.nodes[2].inbox.messages == [hb(1, 2, commit=2)]


@pytest_twisted.ensureDeferred
async def test_stop_then_start_resumes_sending(cluster: Cluster) -> None:
    await three(cluster)
    await cluster.nodes[1].transport.stop()
    await cluster.nodes[1].transport.start()
    cluster.nodes[1].transport.send(hb(1, 3))
    assert await wait(cluster.nodes[3].inbox.wait_for(1)) == [hb(1, 3)]
