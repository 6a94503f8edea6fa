"""The in-memory twin of :class:`~graft.transport.interfaces.ITransport`:
a :class:`MemoryNetwork` hub connecting several :class:`MemoryTransport`\\ s,
with faults on demand (one-way blocks, partitions, isolation, random loss)
for tests of whole nodes.

Delivery happens later, through the injected clock (``callLater``), never
inside :meth:`MemoryTransport.send`: the same re-entrancy as a real network.
By default every message goes through the real codec and the same admission
check as the HTTP server, so what works here works on the wire.

(The deterministic simulator in tests/simulation has its own, richer
network; this twin is for driving real nodes on a ``task.Clock``.)

May import the standard library, attrs, zope.interface, Twisted and
graft.raft / graft.transport.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from zope.interface import implementer  # type: ignore[import-untyped]

from graft.raft.messages import Message, NodeId
from graft.transport._admission import refusal
from graft.transport.codec import CodecError, Envelope, decode, encode
from graft.transport.interfaces import ITransport, ReactorTime, Receive

__all__ = ["MemoryNetwork", "MemoryTransport", "memory_address"]

log = Logger()


def memory_address(node_id: NodeId) -> str:
    """The conventional address of a node on a :class:`MemoryNetwork`."""
    return f"memory://{node_id}"


@attrs.define
class NetworkCounts:
    """What the network did with each message handed to it."""

    sent: int = 0
    delivered: int = 0
    lost: int = 0
    blocked: int = 0
    unreachable: int = 0
    refused: int = 0


@attrs.define(eq=False)
class MemoryNetwork:
    """Connects :class:`MemoryTransport`\\ s by address.

    Faults are checked when a message would be delivered, so a partition
    also cuts messages already on their way. ``loss`` is drawn from ``rng``
    at send time; with no ``rng`` nothing is lost at random."""

    clock: ReactorTime
    #: Seconds between send and delivery (0: the next reactor turn).
    delay_seconds: float = 0.0
    #: Probability that a message is lost; needs ``rng``.
    loss: float = 0.0
    rng: random.Random | None = None
    counts: NetworkCounts = attrs.field(factory=NetworkCounts)
    _attached: dict[str, MemoryTransport] = attrs.field(factory=dict)
    _blocked: set[tuple[NodeId, NodeId]] = attrs.field(factory=set)

    # --- Faults ---------------------------------------------------------

    def block(self, source: NodeId, target: NodeId) -> None:
        """Lose every message from ``source`` to ``target`` (one way)."""
        self._blocked.add((source, target))

    def unblock(self, source: NodeId, target: NodeId) -> None:
        self._blocked.discard((source, target))

    def partition(self, *groups: Iterable[NodeId]) -> None:
        """Cut every link between nodes of different ``groups`` (both ways);
        links within a group, and of nodes in no group, are unchanged."""
        sets = [frozenset(g) for g in groups]
        for i, a in enumerate(sets):
            for b in sets[i + 1 :]:
                for x in sorted(a):
                    for y in sorted(b):
                        self.block(x, y)
                        self.block(y, x)

    def isolate(self, node_id: NodeId, others: Iterable[NodeId]) -> None:
        """Cut ``node_id`` off from ``others`` both ways."""
        self.partition([node_id], others)

    def heal(self) -> None:
        """Remove every block and partition."""
        self._blocked.clear()

    def is_blocked(self, source: NodeId, target: NodeId) -> bool:
        return (source, target) in self._blocked

    # --- Plumbing used by MemoryTransport -------------------------------

    def attach(self, address: str, transport: MemoryTransport) -> None:
        current = self._attached.get(address)
        assert current is None or current is transport, f"address {address} already in use"
        self._attached[address] = transport

    def detach(self, address: str, transport: MemoryTransport) -> None:
        if self._attached.get(address) is transport:
            del self._attached[address]

    def carry(
        self, source: NodeId, target: NodeId, address: str, payload: bytes | Envelope
    ) -> None:
        """Take one message (encoded, or as an envelope when the codec is
        bypassed) and deliver it to whatever is attached at ``address``
        after ``delay_seconds``, unless lost or blocked."""
        self.counts.sent += 1
        if self.rng is not None and self.loss > 0 and self.rng.random() < self.loss:
            self.counts.lost += 1
            return
        self.clock.callLater(self.delay_seconds, self._deliver, source, target, address, payload)

    def _deliver(
        self, source: NodeId, target: NodeId, address: str, payload: bytes | Envelope
    ) -> None:
        if self.is_blocked(source, target):
            self.counts.blocked += 1
            return
        transport = self._attached.get(address)
        if transport is None:
            self.counts.unreachable += 1
            return
        if transport.accept(payload):
            self.counts.delivered += 1
        else:
            self.counts.refused += 1


@implementer(ITransport)
class MemoryTransport:
    """One node's end of a :class:`MemoryNetwork`.

    Invariant: attached to the network (reachable at ``address``) exactly
    while started."""

    def __init__(
        self,
        *,
        network: MemoryNetwork,
        node_id: NodeId,
        cluster_id: str,
        receive: Receive,
        peers: Mapping[NodeId, str] | None = None,
        address: str | None = None,
        use_codec: bool = True,
    ) -> None:
        assert node_id >= 1, node_id
        self.network = network
        self.node_id = node_id
        self.cluster_id = cluster_id
        self.address = address if address is not None else memory_address(node_id)
        self._receive = receive
        self._use_codec = use_codec
        self._peers: dict[NodeId, str] = {}
        self._running = False
        self.set_peers(peers or {})

    @property
    def peers(self) -> Mapping[NodeId, str]:
        """The current address book (a copy)."""
        return dict(self._peers)

    def start(self) -> Deferred[None]:
        self.network.attach(self.address, self)
        self._running = True
        return succeed(None)

    def stop(self) -> Deferred[None]:
        self._running = False
        self.network.detach(self.address, self)
        return succeed(None)

    def set_peers(self, peers: Mapping[NodeId, str]) -> None:
        self._peers = {i: a for i, a in peers.items() if i != self.node_id}

    def send(self, message: Message) -> None:
        assert message.source == self.node_id, f"{message} is not from {self.node_id}"
        address = self._peers.get(message.target)
        if not self._running or address is None:
            log.debug(
                "memory transport {node_id} dropped a message to {target}: stopped or not a peer",
                node_id=self.node_id,
                target=message.target,
            )
            return
        payload: bytes | Envelope
        if self._use_codec:
            payload = encode([message], cluster_id=self.cluster_id, sender=self.node_id)
        else:
            payload = Envelope(cluster_id=self.cluster_id, sender=self.node_id, messages=(message,))
        self.network.carry(self.node_id, message.target, address, payload)

    def accept(self, payload: bytes | Envelope) -> bool:
        """Validate and deliver one inbound envelope, as the HTTP server
        does; returns whether it was admitted."""
        if not self._running:
            return False
        if isinstance(payload, bytes):
            try:
                envelope = decode(payload, receiver=self.node_id)
            except CodecError as e:
                log.warn(
                    "memory transport {node_id} refused a body: {error}",
                    node_id=self.node_id,
                    error=str(e),
                )
                return False
        else:
            envelope = payload
        reason = refusal(envelope, cluster_id=self.cluster_id, peers=self._peers)
        if reason is None and any(m.target != self.node_id for m in envelope.messages):
            reason = "misaddressed message"
        if reason is not None:
            log.warn(
                "memory transport {node_id} refused node {sender}: {reason}",
                node_id=self.node_id,
                sender=envelope.sender,
                reason=reason,
            )
            return False
        for message in envelope.messages:
            try:
                self._receive(message)
            except Exception:
                log.failure("receive callback of node {node_id} failed", node_id=self.node_id)
        return True
