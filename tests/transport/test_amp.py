"""The AMP transport beyond the behavioural suite: the chunked body, big
batches, the Hello handshake and admission, reconnection, bounded
pipelining, timeouts, and peers that break the protocol. Loopback tests
use a real reactor on 127.0.0.1 port 0 (pytest-twisted); waiting is on
Deferreds with deadlines, never on sleeps."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs
from twisted.protocols import amp
from zope.interface.verify import verifyObject

from graft.raft.messages import (
    AppendEntries,
    Configuration,
    Entry,
    Heartbeat,
    InstallSnapshot,
    Member,
    SnapshotMeta,
)
from graft.transport import AMP_PORT_OFFSET, amp_endpoint_for
from graft.transport._outbox import OutboxLimits
from graft.transport.amp import (
    CHUNK_BYTES,
    AMPTransport,
    AMPTransportSettings,
    Deliver,
    Hello,
    Malformed,
    Refused,
    _BadBody,
    _ChunkedBytes,
)
from graft.transport.codec import CodecLimits, decode, encode
from graft.transport.interfaces import ITransport
from tests.transport.backends import reactor, wait
from tests.transport.helpers import CLUSTER, TOKEN, Inbox

A1 = "http://127.0.0.1:9001"
A2 = "http://127.0.0.1:9002"
A3 = "http://127.0.0.1:9003"


def hb(commit: int = 0, source: int = 1, target: int = 2) -> Heartbeat:
    return Heartbeat(source=source, target=target, term=1, commit_index=commit)


class Nodes:
    """Makes transports and listening ports, and closes them all after the
    test."""

    def __init__(self) -> None:
        self.transports: list[AMPTransport] = []
        self.ports: list[Any] = []

    def make(
        self,
        node_id: int,
        peers: dict[int, str] | None = None,
        *,
        inbox: Any = None,
        token: bytes = TOKEN,
        cluster_id: str = CLUSTER,
        initial_members: dict[int, str] | None = None,
        **settings: Any,
    ) -> AMPTransport:
        transport = AMPTransport(
            reactor=reactor,
            node_id=node_id,
            cluster_id=cluster_id,
            cluster_token=token,
            receive=inbox if inbox is not None else Inbox(),
            peers=peers,
            settings=AMPTransportSettings(**settings),
            initial_members=initial_members,
        )
        transport.start()
        self.transports.append(transport)
        return transport

    def listen(self, factory: Any, port: int = 0) -> tuple[Any, str]:
        listening = reactor.listenTCP(port, factory, interface="127.0.0.1")
        self.ports.append(listening)
        return listening, f"amp://127.0.0.1:{listening.getHost().port}"

    def serve(self, transport: AMPTransport) -> str:
        return self.listen(transport.factory())[1]

    async def close(self) -> None:
        for port in self.ports:
            if port.connected:
                await port.stopListening()
        for transport in self.transports:
            await transport.stop()
        await deferLater(reactor, 0, lambda: None)


@pytest.fixture
def nodes() -> Iterator[Nodes]:
    made = Nodes()
    yield made
    pytest_twisted.blockon(Deferred.fromCoroutine(made.close()))


class HoldingPeer:
    """A fake AMP peer that records each Deliver and answers only when told:
    lets a test see how many calls are in flight at once."""

    def __init__(self, hold: bool = True) -> None:
        self.hold = hold
        self.tokens: list[bytes | None] = []
        self.bodies: list[bytes] = []
        self.pending: list[Deferred[dict[str, object]]] = []
        self.concurrent_max = 0
        self.connections = 0
        self._waiters: list[tuple[int, Deferred[None]]] = []
        peer = self

        class Server(amp.AMP):
            def connectionMade(self) -> None:
                peer.connections += 1

            @Hello.responder
            def hello(self, token: bytes | None) -> dict[str, object]:
                peer.tokens.append(token)
                return {}

            @Deliver.responder
            def deliver(self, body: bytes) -> Any:
                peer.bodies.append(body)
                peer._check()
                if not peer.hold:
                    return {}
                d: Deferred[dict[str, object]] = Deferred()
                peer.pending.append(d)
                open_calls = sum(1 for p in peer.pending if not p.called)
                peer.concurrent_max = max(peer.concurrent_max, open_calls)
                return d

        self.factory = Factory.forProtocol(Server)

    def _check(self) -> None:
        ready = [(n, d) for n, d in self._waiters if len(self.bodies) >= n]
        self._waiters = [(n, d) for n, d in self._waiters if len(self.bodies) < n]
        for _, d in ready:
            d.callback(None)

    def calls_seen(self, count: int) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self._waiters.append((count, d))
        self._check()
        return d

    def open_calls(self) -> int:
        return sum(1 for d in self.pending if not d.called)

    def release_all(self) -> None:
        self.hold = False
        pending, self.pending = self.pending, []
        for d in pending:
            if not d.called:
                d.callback({})

    def messages(self) -> list[Any]:
        return [m for body in self.bodies for m in decode(body).messages]


@pytest.fixture
def holding(nodes: Nodes) -> Iterator[tuple[HoldingPeer, str]]:
    peer = HoldingPeer()
    _, address = nodes.listen(peer.factory)
    yield peer, address
    peer.release_all()


async def raw_amp(address: str) -> amp.AMP:
    """A bare AMP client connection to ``address``, for speaking the wire
    protocol directly."""
    host, port = amp_endpoint_for(address)
    endpoint = TCP4ClientEndpoint(reactor, host, port)
    return await connectProtocol(endpoint, amp.AMP())  # type: ignore[no-any-return]


class RawBytes(Protocol):
    """A client that writes bytes and notices when the server hangs up."""

    def __init__(self) -> None:
        self.lost: Deferred[None] = Deferred()

    def connectionLost(self, reason: Any) -> None:
        self.lost.callback(None)


async def raw_bytes(address: str) -> RawBytes:
    host, port = amp_endpoint_for(address)
    return await connectProtocol(TCP4ClientEndpoint(reactor, host, port), RawBytes())  # type: ignore[no-any-return]


async def turns(count: int = 1) -> None:
    for _ in range(count):
        await deferLater(reactor, 0, lambda: None)


# --- Interface and addresses -------------------------------------------------


def test_amp_transport_provides_itransport() -> None:
    transport = AMPTransport(
        reactor=MemoryReactorClock(),
        node_id=1,
        cluster_id=CLUSTER,
        cluster_token=TOKEN,
        receive=Inbox(),
    )
    assert verifyObject(ITransport, transport)


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("http://127.0.0.1:8001", ("127.0.0.1", 8001 + AMP_PORT_OFFSET)),
        ("http://node-1.example:8001/", ("node-1.example", 9001)),
        ("https://10.0.0.1:8443", ("10.0.0.1", 9443)),
        ("http://10.0.0.1", ("10.0.0.1", 1080)),
        ("http://[::1]:8001", ("::1", 9001)),
        ("amp://127.0.0.1:7000", ("127.0.0.1", 7000)),
    ],
)
def test_the_amp_port_is_the_http_port_plus_the_offset(
    address: str, expected: tuple[str, int]
) -> None:
    assert amp_endpoint_for(address) == expected


@pytest.mark.parametrize(
    "address",
    ["memory://1", "http://:8001", "amp://127.0.0.1", "http://h:65000", "http://h:port", "x"],
)
def test_an_address_without_an_amp_port_is_refused_with_a_reason(address: str) -> None:
    with pytest.raises(ValueError, match="address"):
        amp_endpoint_for(address)


@pytest_twisted.ensureDeferred
async def test_an_unmappable_address_drops_messages_with_one_error(nodes: Nodes) -> None:
    sender = nodes.make(1, {2: "memory://2"})
    with capturedLogs() as events:
        for i in range(3):
            sender.send(hb(i))
            await wait(sender.flushed())
    errors = [e for e in events if e["log_level"].name == "error"]
    assert len(errors) == 1 and "memory://2" in errors[0]["error"]
    assert sender.peer_stats(2).messages_dropped == 3  # type: ignore[union-attr]


@pytest_twisted.ensureDeferred
async def test_the_node_can_choose_its_own_address_mapping(nodes: Nodes) -> None:
    """``endpoint_for`` is the node's to override (here: every peer at one
    port, whatever the address book says)."""
    inbox = Inbox()
    receiver = nodes.make(2, {1: A1}, inbox=inbox)
    host, port = amp_endpoint_for(nodes.serve(receiver))
    sender = AMPTransport(
        reactor=reactor,
        node_id=1,
        cluster_id=CLUSTER,
        cluster_token=TOKEN,
        receive=Inbox(),
        peers={2: A2},
        endpoint_for=lambda address: (host, port),
    )
    nodes.transports.append(sender)
    await sender.start()
    sender.send(hb(7))
    assert await wait(inbox.wait_for(1)) == [hb(7)]


# --- The chunked body --------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, CHUNK_BYTES, CHUNK_BYTES + 1, 1024 * 1024 + 3])
def test_a_body_of_any_size_survives_the_chunked_argument(size: int) -> None:
    data = bytes(i % 251 for i in range(size))
    box: dict[bytes, bytes] = {}
    _ChunkedBytes().toBox(b"body", box, {"body": data}, None)
    assert all(len(v) <= amp.MAX_VALUE_LENGTH for v in box.values())
    assert box[b"body"] == b"%d" % -(-size // CHUNK_BYTES)
    out: dict[str, Any] = {}
    _ChunkedBytes().fromBox(b"body", box, out, None)
    assert out == {"body": data}


@pytest.mark.parametrize(
    ("box", "problem"),
    [
        ({}, "no 'body'"),
        ({b"body": b"x1"}, "not a number"),
        ({b"body": b"2", b"body.0": b"a"}, "chunk 1 of 2 is missing"),
    ],
)
def test_a_malformed_chunked_body_is_reported_not_raised(
    box: dict[bytes, bytes], problem: str
) -> None:
    out: dict[str, Any] = {}
    _ChunkedBytes().fromBox(b"body", box, out, None)
    assert isinstance(out["body"], _BadBody) and problem in out["body"].reason


# --- Sending -------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_batch_over_64_kib_goes_through(nodes: Nodes) -> None:
    """AMP values stop at 64 KiB; a 1 MiB snapshot chunk and a batch of
    large entries still arrive unchanged."""
    inbox = Inbox()
    receiver = nodes.make(2, {1: A1}, inbox=inbox)
    sender = nodes.make(1, {2: nodes.serve(receiver)})
    meta = SnapshotMeta(index=10, term=1, configuration=Configuration(members=(Member(id=1),)))
    chunk = InstallSnapshot(
        source=1,
        target=2,
        term=1,
        meta=meta,
        offset=0,
        data=bytes(i % 256 for i in range(1024 * 1024)),
        done=False,
    )
    entries = AppendEntries(
        source=1,
        target=2,
        term=1,
        prev_log_index=0,
        prev_log_term=0,
        entries=tuple(Entry(index=i, term=1, data=b"e" * 100_000) for i in range(1, 6)),
        leader_commit=0,
    )
    sender.send(chunk)
    sender.send(entries)
    received = await wait(inbox.wait_for(2))
    assert sorted(map(repr, received)) == sorted(map(repr, [chunk, entries]))
    assert sender.peer_stats(2).requests_failed == 0  # type: ignore[union-attr]


@pytest_twisted.ensureDeferred
async def test_messages_sent_in_one_turn_share_one_call(
    nodes: Nodes, holding: tuple[HoldingPeer, str]
) -> None:
    """Batching: a burst is one Deliver; the token goes once, in Hello."""
    peer, address = holding
    peer.hold = False
    sender = nodes.make(1, {2: address})
    for i in range(50):
        sender.send(hb(i))
    await wait(sender.flushed())
    assert len(peer.bodies) == 1
    assert [m.commit_index for m in peer.messages()] == list(range(50))
    assert peer.tokens == [TOKEN]
    sender.send(hb(50))
    await wait(sender.flushed())
    assert (peer.connections, peer.tokens) == (1, [TOKEN])  # the connection is kept
    assert sender.peer_connected(2)


@pytest_twisted.ensureDeferred
async def test_calls_in_flight_per_peer_are_bounded(
    nodes: Nodes, holding: tuple[HoldingPeer, str]
) -> None:
    """Pipelining on one connection: up to in_flight_max calls at once,
    never more; the rest waits and goes out in bigger batches."""
    peer, address = holding
    sender = nodes.make(1, {2: address}, outbox=OutboxLimits(in_flight_max=3))
    sender.send(hb(0))  # opens the connection (what waits meanwhile is one batch)
    await wait(peer.calls_seen(1))
    for i in range(1, 20):  # one message per reactor turn: separate batches
        sender.send(hb(i))
        await turns()
    await wait(peer.calls_seen(3))
    await turns(20)  # room for any excess call to show up
    assert peer.open_calls() == 3
    peer.release_all()
    await wait(sender.flushed())
    assert peer.concurrent_max == 3
    assert sorted(m.commit_index for m in peer.messages()) == list(range(20))
    assert len(peer.bodies) < 20
    stats = sender.peer_stats(2)
    assert stats is not None and stats.in_flight_max_seen == 3
    assert peer.connections == 1


@pytest_twisted.ensureDeferred
async def test_a_call_without_answer_times_out_and_the_link_is_reopened(
    nodes: Nodes, holding: tuple[HoldingPeer, str]
) -> None:
    """A peer that never answers costs one timeout and one reconnection,
    not a stuck pipeline."""
    peer, address = holding
    sender = nodes.make(
        1, {2: address}, request_timeout_seconds=0.5, outbox=OutboxLimits(in_flight_max=1)
    )
    with capturedLogs() as events:
        sender.send(hb(1))
        await wait(sender.flushed())
    stats = sender.peer_stats(2)
    assert stats is not None and stats.requests_failed == 1
    assert any("no answer within" in str(e.get("reason", "")) for e in events)
    peer.release_all()
    sender.send(hb(2))
    await wait(sender.flushed())
    assert stats.requests_failed == 1
    assert peer.messages()[-1] == hb(2)
    assert peer.connections == 2


@pytest_twisted.ensureDeferred
async def test_a_full_queue_drops_heartbeats_first(
    nodes: Nodes, holding: tuple[HoldingPeer, str]
) -> None:
    peer, address = holding
    sender = nodes.make(1, {2: address}, outbox=OutboxLimits(in_flight_max=1, queue_messages_max=2))
    sender.send(hb(100))
    await wait(peer.calls_seen(1))
    entries = [
        AppendEntries(
            source=1,
            target=2,
            term=1,
            prev_log_index=i - 1,
            prev_log_term=1 if i > 1 else 0,
            entries=(Entry(index=i, term=1),),
            leader_commit=0,
        )
        for i in (1, 2)
    ]
    sender.send(hb(1))
    for m in entries:
        sender.send(m)
    peer.release_all()
    await wait(sender.flushed())
    assert peer.messages()[1:] == entries
    assert sender.peer_stats(2).messages_dropped == 1  # type: ignore[union-attr]


# --- Admission -----------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_wrong_token_is_refused_at_hello(nodes: Nodes) -> None:
    inbox = Inbox()
    receiver = nodes.make(2, {1: A1}, inbox=inbox, token=b"other")
    sender = nodes.make(1, {2: nodes.serve(receiver)})
    with capturedLogs() as events:
        sender.send(hb(1))
        await wait(sender.flushed())
    assert inbox.messages == []
    assert receiver.refused_requests == 1
    assert not sender.peer_connected(2)
    told = [e for e in events if "refused our connection" in e.get("log_format", "")]
    assert told and told[0]["error"] == "missing or wrong cluster token"
    assert told[0]["log_level"].name == "warn"


@pytest_twisted.ensureDeferred
async def test_a_sender_that_is_not_a_member_is_told_why(nodes: Nodes) -> None:
    inbox = Inbox()
    receiver = nodes.make(2, {3: A3}, inbox=inbox)
    sender = nodes.make(1, {2: nodes.serve(receiver)})
    with capturedLogs() as events:
        sender.send(hb(1))
        await wait(sender.flushed())
    assert inbox.messages == []
    assert receiver.refused_requests == 1
    refusals = [e for e in events if "refused {count} messages" in e.get("log_format", "")]
    assert [e["error"] for e in refusals] == ["node 1 is not a member of this cluster"]


@pytest_twisted.ensureDeferred
async def test_another_cluster_is_refused_with_its_initial_members(nodes: Nodes) -> None:
    """Node 3 was started without node 1 in its list: node 2 refuses it and
    says its own list, and node 3 logs one line naming what it lacks."""
    inbox = Inbox()
    receiver = nodes.make(
        2,
        {1: A1, 3: A3},
        inbox=inbox,
        cluster_id="cluster-123",
        initial_members={1: A1, 2: A2, 3: A3},
    )
    sender = nodes.make(
        3,
        {2: nodes.serve(receiver)},
        cluster_id="cluster-23",
        initial_members={2: A2, 3: A3},
    )
    with capturedLogs() as events:
        for i in range(3):
            sender.send(hb(i, source=3))
            await wait(sender.flushed())
    assert inbox.messages == []
    assert sender.membership_mismatch is not None
    assert "our list lacks node 1 (http://127.0.0.1:9001)" in sender.membership_mismatch
    errors = [e for e in events if e["log_level"].name == "error"]
    assert [e["mismatch"] for e in errors] == [sender.membership_mismatch]


@pytest_twisted.ensureDeferred
async def test_the_wire_protocol_answers_errors_and_keeps_the_connection(
    nodes: Nodes,
) -> None:
    """Deliver before Hello, a body the codec rejects and a broken chunk
    set each get an AMP error; the same connection then delivers."""
    inbox = Inbox()
    receiver = nodes.make(2, {1: A1}, inbox=inbox)
    client = await raw_amp(nodes.serve(receiver))
    good = encode([hb(5)], cluster_id=CLUSTER, sender=1)
    with pytest.raises(Refused) as refused:
        await client.callRemote(Deliver, body=good)
    assert refused.value.error == "missing or wrong cluster token"
    await client.callRemote(Hello, token=TOKEN)
    with pytest.raises(Malformed) as malformed:
        await client.callRemote(Deliver, body=b"\xc1 not msgpack")
    assert "not valid msgpack" in malformed.value.error
    with pytest.raises(amp.RemoteAmpError) as broken:
        await client.callRemoteString(b"Deliver", body=b"2", **{"body.0": b"x"})
    assert broken.value.errorCode == b"MALFORMED"
    assert "chunk 1 of 2 is missing" in json.loads(broken.value.description)["error"]
    await client.callRemote(Deliver, body=good)
    assert inbox.messages == [hb(5)]
    client.transport.loseConnection()  # type: ignore[union-attr]


@pytest_twisted.ensureDeferred
async def test_broken_framing_drops_only_that_connection(nodes: Nodes) -> None:
    """An empty box is not AMP: that connection goes, nothing raises, and
    another connection is served as before."""
    inbox = Inbox()
    receiver = nodes.make(2, {1: A1}, inbox=inbox)
    address = nodes.serve(receiver)
    sender = nodes.make(1, {2: address})
    sender.send(hb(1))
    await wait(inbox.wait_for(1))
    rogue = await raw_bytes(address)
    rogue.transport.write(b"\x00\x00")  # type: ignore[union-attr]
    await wait(rogue.lost)
    sender.send(hb(2))
    assert await wait(inbox.wait_for(2)) == [hb(1), hb(2)]


@pytest_twisted.ensureDeferred
async def test_an_oversized_box_drops_the_connection(nodes: Nodes) -> None:
    """A box far past the body limit is not buffered: the connection goes."""
    receiver = nodes.make(2, {1: A1}, codec=CodecLimits(body_bytes_max=100_000))
    rogue = await raw_bytes(nodes.serve(receiver))
    value = b"v" * 60_000
    for i in range(10):
        key = b"k%d" % i
        rogue.transport.write(  # type: ignore[union-attr]
            len(key).to_bytes(2, "big") + key + len(value).to_bytes(2, "big") + value
        )
    await wait(rogue.lost)


# --- Connections -----------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_peer_down_then_up_is_reconnected(nodes: Nodes) -> None:
    """Messages sent while the peer is down are dropped; once it is back on
    the same port, the next attempt reconnects and later sends arrive."""
    inbox = Inbox()
    receiver = nodes.make(2, {1: A1}, inbox=inbox)
    port, address = nodes.listen(receiver.factory())
    port_number = port.getHost().port
    sender = nodes.make(1, {2: address}, reconnect_max_seconds=0.2)
    sender.send(hb(1))
    await wait(inbox.wait_for(1))
    assert sender.peer_connected(2)

    await port.stopListening()
    await receiver.stop()
    sender.send(hb(2))
    await wait(sender.flushed())
    assert not sender.peer_connected(2)

    nodes.listen(receiver.factory(), port_number)
    await receiver.start()
    sender.send(hb(3))
    assert await wait(inbox.wait_for(2)) == [hb(1), hb(3)]
    assert sender.peer_connected(2)


@pytest_twisted.ensureDeferred
async def test_reconnection_backs_off_up_to_the_cap(nodes: Nodes) -> None:
    """A peer that stays down is retried ever less often, up to the cap;
    the first failure warns and the rest log at debug."""
    probe, address = nodes.listen(Factory.forProtocol(Protocol))
    await probe.stopListening()
    sender = nodes.make(1, {2: address}, reconnect_initial_seconds=0.01, reconnect_max_seconds=0.04)
    backoffs = []
    with capturedLogs() as events:
        for i in range(5):  # each flushed() waits for one attempt to fail
            sender.send(hb(i))
            await wait(sender.flushed())
            backoffs.append(sender._peers[2].backoff)
    assert backoffs == [0.01, 0.02, 0.04, 0.04, 0.04]
    levels = [e["log_level"].name for e in events if e.get("peer_id") == 2]
    assert levels.count("warn") == 1 and levels.count("debug") >= 4
    assert sender.peer_stats(2).messages_dropped == 5  # type: ignore[union-attr]


@pytest_twisted.ensureDeferred
async def test_start_listens_on_the_given_endpoint_and_stop_closes_it(nodes: Nodes) -> None:
    """With ``listen``, the transport owns its port: stop() closes it and
    the connections it accepted; start() opens it again."""
    inbox = Inbox()
    receiver = AMPTransport(
        reactor=reactor,
        node_id=2,
        cluster_id=CLUSTER,
        cluster_token=TOKEN,
        receive=inbox,
        peers={1: A1},
        listen="tcp:0:interface=127.0.0.1",
    )
    nodes.transports.append(receiver)
    await receiver.start()
    address = f"amp://127.0.0.1:{receiver.listening_port.getHost().port}"
    sender = nodes.make(1, {2: address})
    sender.send(hb(1))
    await wait(inbox.wait_for(1))
    client = await raw_amp(address)
    lost: Deferred[None] = Deferred()
    client.connectionLost = lambda reason: lost.callback(None)  # type: ignore[method-assign]

    await receiver.stop()
    assert receiver.listening_port is None
    await wait(lost)
    with pytest.raises(ConnectionRefusedError):
        await raw_amp(address)


@pytest_twisted.ensureDeferred
async def test_removing_a_peer_drops_its_queue_and_connection(
    nodes: Nodes, holding: tuple[HoldingPeer, str]
) -> None:
    peer, address = holding
    sender = nodes.make(1, {2: address}, outbox=OutboxLimits(in_flight_max=1))
    sender.send(hb(1))
    await wait(peer.calls_seen(1))
    sender.send(hb(2))
    with capturedLogs() as events:
        sender.set_peers({})
        await wait(sender.flushed())
    assert peer.messages() == [hb(1)]
    assert not sender.peer_connected(2)
    assert not [e for e in events if e["log_level"].name in ("warn", "error")]


@pytest_twisted.ensureDeferred
async def test_a_peer_with_a_new_address_is_reached_there(nodes: Nodes) -> None:
    old_inbox, new_inbox = Inbox(), Inbox()
    old = nodes.make(2, {1: A1}, inbox=old_inbox)
    new = nodes.make(2, {1: A1}, inbox=new_inbox)
    sender = nodes.make(1, {2: nodes.serve(old)})
    sender.send(hb(1))
    await wait(old_inbox.wait_for(1))
    sender.set_peers({2: nodes.serve(new)})
    sender.send(hb(2))
    assert await wait(new_inbox.wait_for(1)) == [hb(2)]
    assert old_inbox.messages == [hb(1)]


@pytest_twisted.ensureDeferred
async def test_a_long_codec_error_still_fits_one_amp_value(nodes: Nodes) -> None:
    """An error that quotes a huge bad value is cut, so the answer is sent
    (an over-long description would drop the connection instead)."""
    import msgpack

    receiver = nodes.make(2, {1: A1})
    client = await raw_amp(nodes.serve(receiver))
    await client.callRemote(Hello, token=TOKEN)
    body = msgpack.packb([1, CLUSTER, 1, [["t" * 100_000, 1, 2, 1]]])
    with pytest.raises(Malformed) as malformed:
        await client.callRemote(Deliver, body=body)
    assert malformed.value.error.startswith("messages[0].tag: unknown message type")
    assert malformed.value.error.endswith("...")
    client.transport.loseConnection()  # type: ignore[union-attr]


@pytest_twisted.ensureDeferred
async def test_stop_abandons_calls_in_flight(
    nodes: Nodes, holding: tuple[HoldingPeer, str]
) -> None:
    peer, address = holding
    sender = nodes.make(1, {2: address})
    sender.send(hb(1))
    await wait(peer.calls_seen(1))
    with capturedLogs() as events:
        await wait(sender.stop(), seconds=1.0)
    assert sender.peer_stats(2).requests_failed == 1  # type: ignore[union-attr]
    assert not [e for e in events if e["log_level"].name in ("warn", "error")]


@pytest_twisted.ensureDeferred
async def test_a_failing_receive_callback_does_not_stop_delivery(nodes: Nodes) -> None:
    seen = []

    def receive(message: Any) -> None:
        seen.append(message)
        if len(seen) == 1:
            raise RuntimeError("core bug")

    receiver = nodes.make(2, {1: A1}, inbox=receive)
    sender = nodes.make(1, {2: nodes.serve(receiver)})
    with capturedLogs():
        sender.send(hb(1))
        sender.send(hb(2))
        await wait(sender.flushed())
    assert seen == [hb(1), hb(2)]
    assert sender.peer_stats(2).requests_failed == 0  # type: ignore[union-attr]
