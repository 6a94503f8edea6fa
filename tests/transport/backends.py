"""Clusters of transports for the behavioural suite: the same tests run
over the in-memory twin, over HTTP and over AMP on loopback (STYLE §4)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

import attrs
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.web.server import Site

from graft.raft.messages import NodeId
from graft.transport.amp import AMPTransport, AMPTransportSettings
from graft.transport.http import HTTPTransport
from graft.transport.interfaces import ITransport
from graft.transport.memory import MemoryNetwork, MemoryTransport, memory_address
from tests.transport.helpers import CLUSTER, TOKEN, Inbox, site_root

reactor: Any = _reactor


@attrs.define
class Node:
    node_id: NodeId
    transport: Any  # provides ITransport
    inbox: Inbox
    address: str = ""
    port: Any = None
    site: Any = None


class Cluster(Protocol):
    nodes: dict[NodeId, Node]

    async def add(self, node_id: NodeId, *, cluster_id: str = CLUSTER) -> Node: ...
    async def take_down(self, node_id: NodeId) -> None: ...
    async def bring_up(self, node_id: NodeId) -> None: ...
    async def settle(self) -> None: ...
    async def close(self) -> None: ...


def connect_all(cluster: Cluster, ids: Iterable[NodeId] | None = None) -> None:
    """Give each node (of ``ids``) every other one of ``ids`` as a peer."""
    chosen = list(cluster.nodes if ids is None else ids)
    book = {i: cluster.nodes[i].address for i in chosen}
    for i in chosen:
        cluster.nodes[i].transport.set_peers(book)


class MemoryCluster:
    def __init__(self) -> None:
        self.network = MemoryNetwork(clock=reactor)
        self.nodes: dict[NodeId, Node] = {}

    async def add(self, node_id: NodeId, *, cluster_id: str = CLUSTER) -> Node:
        inbox = Inbox()
        transport = MemoryTransport(
            network=self.network, node_id=node_id, cluster_id=cluster_id, receive=inbox
        )
        await transport.start()
        node = Node(node_id, transport, inbox, address=memory_address(node_id))
        self.nodes[node_id] = node
        return node

    async def take_down(self, node_id: NodeId) -> None:
        await self.nodes[node_id].transport.stop()

    async def bring_up(self, node_id: NodeId) -> None:
        await self.nodes[node_id].transport.start()

    async def settle(self) -> None:
        await deferLater(reactor, 0, lambda: None)

    async def close(self) -> None:
        for node in self.nodes.values():
            await node.transport.stop()


class _TrackingSite(Site):
    """A Site that can drop its open connections, so "down" means down."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.open_protocols: set[Any] = set()

    def buildProtocol(self, addr: Any) -> Any:
        protocol = super().buildProtocol(addr)
        self.open_protocols.add(protocol)
        original = protocol.connectionLost

        def connection_lost(reason: Any) -> None:
            self.open_protocols.discard(protocol)
            original(reason)

        protocol.connectionLost = connection_lost
        return protocol

    def abort_all(self) -> None:
        for protocol in list(self.open_protocols):
            channel = getattr(protocol, "_channel", protocol)
            transport = getattr(channel, "transport", None)
            if transport is not None:
                transport.abortConnection()


class HTTPCluster:
    def __init__(self, **settings: Any) -> None:
        self.nodes: dict[NodeId, Node] = {}
        self.settings = settings

    async def add(self, node_id: NodeId, *, cluster_id: str = CLUSTER) -> Node:
        from graft.transport.http import HTTPTransportSettings

        inbox = Inbox()
        transport = HTTPTransport(
            reactor=reactor,
            node_id=node_id,
            cluster_id=cluster_id,
            cluster_token=TOKEN,
            receive=inbox,
            settings=HTTPTransportSettings(**self.settings),
        )
        await transport.start()
        site = _TrackingSite(site_root(transport))
        port = reactor.listenTCP(0, site, interface="127.0.0.1")
        address = f"http://127.0.0.1:{port.getHost().port}"
        node = Node(node_id, transport, inbox, address=address, port=port, site=site)
        self.nodes[node_id] = node
        return node

    async def take_down(self, node_id: NodeId) -> None:
        node = self.nodes[node_id]
        await node.port.stopListening()
        node.site.abort_all()
        await node.transport.stop()

    async def bring_up(self, node_id: NodeId) -> None:
        node = self.nodes[node_id]
        port_number = int(node.address.rsplit(":", 1)[1])
        node.port = reactor.listenTCP(port_number, node.site, interface="127.0.0.1")
        await node.transport.start()

    async def settle(self) -> None:
        for node in list(self.nodes.values()):
            await node.transport.flushed()

    async def close(self) -> None:
        for node in self.nodes.values():
            await node.transport.stop()
        for node in self.nodes.values():
            if node.port is not None and node.port.connected:
                await node.port.stopListening()
            node.site.abort_all()
        # Let aborted connections finish closing before the next test.
        await deferLater(reactor, 0, lambda: None)


class AMPCluster:
    """AMP transports on 127.0.0.1 port 0; the address book names each
    node's AMP port directly (``amp://``). The cluster listens on each
    transport's factory itself, so a node brought back up listens on the
    same port again; ``stop()`` closes the connections it accepted."""

    def __init__(self, **settings: Any) -> None:
        self.nodes: dict[NodeId, Node] = {}
        self.settings = settings

    async def add(self, node_id: NodeId, *, cluster_id: str = CLUSTER) -> Node:
        inbox = Inbox()
        transport = AMPTransport(
            reactor=reactor,
            node_id=node_id,
            cluster_id=cluster_id,
            cluster_token=TOKEN,
            receive=inbox,
            settings=AMPTransportSettings(**self.settings),
        )
        await transport.start()
        port = reactor.listenTCP(0, transport.factory(), interface="127.0.0.1")
        address = f"amp://127.0.0.1:{port.getHost().port}"
        node = Node(node_id, transport, inbox, address=address, port=port)
        self.nodes[node_id] = node
        return node

    async def take_down(self, node_id: NodeId) -> None:
        node = self.nodes[node_id]
        await node.port.stopListening()
        await node.transport.stop()

    async def bring_up(self, node_id: NodeId) -> None:
        node = self.nodes[node_id]
        port_number = int(node.address.rsplit(":", 1)[1])
        node.port = reactor.listenTCP(port_number, node.transport.factory(), interface="127.0.0.1")
        await node.transport.start()

    async def settle(self) -> None:
        for node in list(self.nodes.values()):
            await node.transport.flushed()

    async def close(self) -> None:
        for node in self.nodes.values():
            if node.port is not None and node.port.connected:
                await node.port.stopListening()
        for node in self.nodes.values():
            await node.transport.stop()
        await deferLater(reactor, 0, lambda: None)


def make_cluster(kind: str) -> Cluster:
    """A cluster of the named backend: ``memory``, ``http`` or ``amp``."""
    if kind == "memory":
        return MemoryCluster()
    if kind == "http":
        return HTTPCluster()
    assert kind == "amp", kind
    return AMPCluster()


BACKENDS = ["memory", "http", "amp"]


def provides_transport(node: Node) -> bool:
    return ITransport.providedBy(node.transport)


async def wait(d: Deferred[Any], seconds: float = 5.0) -> Any:
    """Await ``d`` but fail the test instead of hanging."""
    return await d.addTimeout(seconds, reactor)
