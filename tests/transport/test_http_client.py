"""The HTTP transport's client side: batching, bounded pipelining, bounded
queues, timeouts, and failures logged rather than raised. Loopback tests
use a real reactor on 127.0.0.1 port 0 (pytest-twisted)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
from treq.testing import RequestTraversalAgent
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from zope.interface.verify import verifyObject

from graft.raft.messages import AppendEntries, Entry, Heartbeat
from graft.transport._outbox import OutboxLimits
from graft.transport.codec import decode
from graft.transport.http import (
    CLUSTER_TOKEN_HEADER,
    HTTPTransport,
    HTTPTransportSettings,
)
from graft.transport.interfaces import ITransport
from tests.transport.backends import reactor, wait
from tests.transport.helpers import CLUSTER, TOKEN, Inbox, site_root


def hb(commit: int = 0, target: int = 2) -> Heartbeat:
    return Heartbeat(source=1, target=target, term=1, commit_index=commit)


def append(index: int) -> AppendEntries:
    return AppendEntries(
        source=1,
        target=2,
        term=1,
        prev_log_index=index - 1,
        prev_log_term=1 if index > 1 else 0,
        entries=(Entry(index=index, term=1, data=b"x" * 10),),
        leader_commit=0,
    )


def sender(peers: dict[int, str], **settings: Any) -> HTTPTransport:
    transport = HTTPTransport(
        reactor=reactor,
        node_id=1,
        cluster_id=CLUSTER,
        cluster_token=TOKEN,
        receive=Inbox(),
        peers=peers,
        settings=HTTPTransportSettings(**settings),
    )
    transport.start()
    return transport


class HoldingPeer(Resource):
    """A fake peer that records each request and answers only when told:
    lets a test see how many requests are in flight at once."""

    isLeaf = True

    def __init__(self, hold: bool = True) -> None:
        super().__init__()
        self.hold = hold
        self.pending: list[Request] = []
        self.bodies: list[bytes] = []
        self.tokens: list[bytes | None] = []
        self.concurrent_max = 0
        self._waiters: list[tuple[int, Deferred[None]]] = []

    def render_POST(self, request: Request) -> Any:
        assert request.content is not None
        self.bodies.append(request.content.read())
        self.tokens.append(request.getHeader(CLUSTER_TOKEN_HEADER.encode()))
        if not self.hold:
            request.setResponseCode(204)
            return b""
        self.pending.append(request)
        self.concurrent_max = max(self.concurrent_max, len(self.pending))
        request.notifyFinish().addErrback(lambda _: None)
        self._check()
        return NOT_DONE_YET

    def _check(self) -> None:
        ready = [(n, d) for n, d in self._waiters if len(self.bodies) >= n]
        self._waiters = [(n, d) for n, d in self._waiters if len(self.bodies) < n]
        for _, d in ready:
            d.callback(None)

    def requests_seen(self, count: int) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self._waiters.append((count, d))
        self._check()
        return d

    def release_all(self) -> None:
        self.hold = False
        pending, self.pending = self.pending, []
        for request in pending:
            if not request.finished and not request._disconnected:
                request.setResponseCode(204)
                request.finish()

    def messages(self) -> list[Any]:
        return [m for body in self.bodies for m in decode(body).messages]


@pytest.fixture
def peer() -> Iterator[tuple[HoldingPeer, str]]:
    resource = HoldingPeer()
    port = reactor.listenTCP(0, Site(resource), interface="127.0.0.1")
    yield resource, f"http://127.0.0.1:{port.getHost().port}"
    resource.release_all()
    pytest_twisted.blockon(port.stopListening())


def test_http_transport_provides_itransport() -> None:
    transport = HTTPTransport(
        reactor=MemoryReactorClock(),
        node_id=1,
        cluster_id=CLUSTER,
        cluster_token=TOKEN,
        receive=Inbox(),
    )
    assert verifyObject(ITransport, transport)


def test_the_client_uses_the_injected_agent() -> None:
    """With an IAgent injected (here one that walks a resource tree in
    memory), requests go through it: no sockets, deterministic clock."""
    clock = MemoryReactorClock()
    inbox = Inbox()
    receiver = HTTPTransport(
        reactor=clock,
        node_id=2,
        cluster_id=CLUSTER,
        cluster_token=TOKEN,
        receive=inbox,
        peers={1: "http://one"},
    )
    receiver.start()
    agent = RequestTraversalAgent(site_root(receiver))
    transport = HTTPTransport(
        reactor=clock,
        node_id=1,
        cluster_id=CLUSTER,
        cluster_token=TOKEN,
        receive=Inbox(),
        peers={2: "http://two"},
        agent=agent,
    )
    transport.start()
    transport.send(hb(1))
    transport.send(hb(2))
    assert inbox.messages == []  # nothing happens inside send()
    clock.advance(0)
    agent.flush()
    assert inbox.messages == [hb(1), hb(2)]
    stats = transport.peer_stats(2)
    assert stats is not None
    assert (stats.requests_sent, stats.messages_sent, stats.requests_failed) == (1, 2, 0)


@pytest_twisted.ensureDeferred
async def test_messages_sent_in_one_turn_share_one_request(
    peer: tuple[HoldingPeer, str],
) -> None:
    """Batching: a burst to one peer is one POST, not one per message."""
    resource, address = peer
    resource.hold = False
    transport = sender({2: address})
    for i in range(50):
        transport.send(hb(i))
    await wait(transport.flushed())
    assert len(resource.bodies) == 1
    assert [m.commit_index for m in resource.messages()] == list(range(50))
    assert resource.tokens == [TOKEN]
    await transport.stop()


@pytest_twisted.ensureDeferred
async def test_a_batch_is_cut_at_the_byte_budget(peer: tuple[HoldingPeer, str]) -> None:
    resource, address = peer
    resource.hold = False
    transport = sender({2: address}, outbox=OutboxLimits(batch_bytes_max=100))
    for i in range(1, 31):
        transport.send(append(i))
    await wait(transport.flushed())
    assert len(resource.bodies) > 1
    assert all(len(body) < 200 for body in resource.bodies)
    assert sorted(m.prev_log_index for m in resource.messages()) == list(range(30))
    await transport.stop()


@pytest_twisted.ensureDeferred
async def test_requests_in_flight_per_peer_are_bounded(peer: tuple[HoldingPeer, str]) -> None:
    """Pipelining: up to in_flight_max requests at once, never more; the
    rest waits and goes out in bigger batches as slots free up."""
    resource, address = peer
    transport = sender({2: address}, outbox=OutboxLimits(in_flight_max=3))
    for i in range(20):  # one message per reactor turn: 20 separate batches
        transport.send(hb(i))
        await deferLater(reactor, 0, lambda: None)
    await wait(resource.requests_seen(3))
    for _ in range(20):  # give any excess request time to show up
        await deferLater(reactor, 0.001, lambda: None)
    assert len(resource.pending) == 3
    resource.release_all()
    await wait(transport.flushed())
    assert resource.concurrent_max == 3
    assert sorted(m.commit_index for m in resource.messages()) == list(range(20))
    assert len(resource.bodies) < 20  # the queued ones were batched
    stats = transport.peer_stats(2)
    assert stats is not None and stats.in_flight_max_seen == 3
    await transport.stop()


@pytest_twisted.ensureDeferred
async def test_a_full_queue_drops_heartbeats_before_entries(
    peer: tuple[HoldingPeer, str],
) -> None:
    """The queue behind a stalled peer is bounded; heartbeats go first."""
    resource, address = peer
    transport = sender({2: address}, outbox=OutboxLimits(in_flight_max=1, queue_messages_max=4))
    transport.send(hb(100))
    await wait(resource.requests_seen(1))
    with capturedLogs() as events:
        transport.send(hb(1))
        for i in range(1, 5):
            transport.send(append(i))
        transport.send(append(5))
    resource.release_all()
    await wait(transport.flushed())
    delivered = resource.messages()[1:]
    assert [type(m).__name__ for m in delivered] == ["AppendEntries"] * 4
    assert [m.prev_log_index + 1 for m in delivered] == [2, 3, 4, 5]
    stats = transport.peer_stats(2)
    assert stats is not None and stats.messages_dropped == 2
    warnings = [e for e in events if e["log_level"].name == "warn"]
    assert len(warnings) == 1 and "queue to peer" in warnings[0]["log_format"]
    await transport.stop()


@pytest_twisted.ensureDeferred
async def test_a_request_without_answer_times_out_and_frees_its_slot(
    peer: tuple[HoldingPeer, str],
) -> None:
    """A peer that never answers costs one timeout, not a stuck pipeline."""
    resource, address = peer
    transport = sender(
        {2: address}, request_timeout_seconds=0.1, outbox=OutboxLimits(in_flight_max=1)
    )
    with capturedLogs() as events:
        transport.send(hb(1))
        await wait(transport.flushed())
    stats = transport.peer_stats(2)
    assert stats is not None and stats.requests_failed == 1
    assert any("unreachable" in e.get("log_format", "") for e in events)
    resource.release_all()
    transport.send(hb(2))
    await wait(transport.flushed())
    assert stats.requests_failed == 1
    assert resource.messages()[-1] == hb(2)
    await transport.stop()


@pytest_twisted.ensureDeferred
async def test_a_down_peer_is_logged_once_and_never_raised() -> None:
    """Connection refused: warn on the first failure, debug after, and
    nothing propagates to the caller of send()."""
    probe = reactor.listenTCP(0, Site(Resource()), interface="127.0.0.1")
    address = f"http://127.0.0.1:{probe.getHost().port}"
    await probe.stopListening()
    transport = sender({2: address})
    with capturedLogs() as events:
        for i in range(3):
            transport.send(hb(i))
            await wait(transport.flushed())
    levels = [e["log_level"].name for e in events if "peer_id" in e]
    assert levels.count("warn") == 1
    assert levels.count("debug") >= 2
    stats = transport.peer_stats(2)
    assert stats is not None and stats.requests_failed == 3
    await transport.stop()


@pytest_twisted.ensureDeferred
async def test_a_refusal_is_logged_with_the_peers_reason() -> None:
    """A 403 names the misconfiguration in our log (wrong token here)."""
    receiver = HTTPTransport(
        reactor=reactor,
        node_id=2,
        cluster_id=CLUSTER,
        cluster_token=b"other",
        receive=Inbox(),
        peers={1: "http://unused"},
    )
    receiver.start()
    port = reactor.listenTCP(0, Site(site_root(receiver)), interface="127.0.0.1")
    transport = sender({2: f"http://127.0.0.1:{port.getHost().port}"})
    with capturedLogs() as events:
        transport.send(hb(1))
        await wait(transport.flushed())
    refusals = [e for e in events if "refused" in e.get("log_format", "") and "error" in e]
    assert refusals and "cluster token" in refusals[0]["error"]
    await transport.stop()
    await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_removing_a_peer_drops_its_queue(peer: tuple[HoldingPeer, str]) -> None:
    resource, address = peer
    transport = sender({2: address}, outbox=OutboxLimits(in_flight_max=1))
    transport.send(hb(1))
    await wait(resource.requests_seen(1))
    transport.send(hb(2))
    transport.send(hb(3))
    transport.set_peers({})
    resource.release_all()
    await wait(transport.flushed())
    assert resource.messages() == [hb(1)]
    await transport.stop()


@pytest_twisted.ensureDeferred
async def test_stop_abandons_requests_in_flight(peer: tuple[HoldingPeer, str]) -> None:
    """stop() does not wait for a stalled peer."""
    resource, address = peer
    transport = sender({2: address})
    transport.send(hb(1))
    await wait(resource.requests_seen(1))
    await wait(transport.stop(), seconds=1.0)
    assert transport.peer_stats(2).requests_failed == 1  # type: ignore[union-attr]
