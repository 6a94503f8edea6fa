"""Whole nodes on one task.Clock: RaftDriver + KVStore + in-memory log,
snapshot store and transport, each node's client API behind a StubTreq."""

from __future__ import annotations

import json
import random
from typing import Any

import attrs
from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from graft.kv import KVStore
from graft.raft import Configuration, Member, RaftConfig, Role
from graft.server import ClientAPI, MemoryDurableLog, RaftDriver
from graft.server.service import make_site
from graft.storage import MemorySnapshotStore
from graft.transport import MemoryNetwork, MemoryTransport

CLUSTER = "cluster-test"
TICK = 0.05
_sync = SynchronousTestCase()


def production_stub(api: ClientAPI) -> StubTreq:
    """A StubTreq talking to the site production builds around ``api``
    (make_site), so the key routes go through graft.server.lean_http and
    the others through twisted.web, as on a real node."""
    stub = StubTreq(api.resource())
    agent: Any = stub._agent
    agent._serverFactory = make_site(
        api.resource(), api.max_body_bytes, reactor=agent._memoryReactor
    )
    return stub


def has_result(d: Deferred[Any]) -> bool:
    """Whether ``d`` has a result of its own (not waiting on another)."""
    return d.called and not isinstance(getattr(d, "result", None), Deferred)


def address(node_id: int) -> str:
    return f"http://node{node_id}"


@attrs.define
class Answer:
    code: int
    headers: Any
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        values = self.headers.getRawHeaders(name)
        return None if not values else values[0]


@attrs.define(eq=False)
class Node:
    node_id: int
    driver: RaftDriver
    log: MemoryDurableLog
    snapshots: MemorySnapshotStore
    kv: KVStore
    api: ClientAPI
    stub: StubTreq


class Cluster:
    """Several nodes on one MemoryNetwork and one Clock."""

    def __init__(
        self, size: int = 3, *, seed: int = 1, snapshot_threshold: int = 10000, **api: Any
    ) -> None:
        self.clock = Clock()
        self.network = MemoryNetwork(clock=self.clock)
        ids = range(1, size + 1)
        self.configuration = Configuration(
            members=tuple(Member(id=i, address=address(i)) for i in ids)
        )
        self.nodes: dict[int, Node] = {}
        for i in ids:
            self.nodes[i] = self._make_node(i, seed, snapshot_threshold, api)

    def _make_node(self, i: int, seed: int, snapshot_threshold: int, api: dict[str, Any]) -> Node:
        return self.build_node(
            i, MemoryDurableLog(), MemorySnapshotStore(), seed, snapshot_threshold, api
        )

    def build_node(
        self,
        i: int,
        log: MemoryDurableLog,
        snapshots: Any,
        seed: int,
        snapshot_threshold: int,
        api: dict[str, Any],
        **driver_options: Any,
    ) -> Node:
        """Node ``i`` over the given durable state; ``driver_options`` go
        to RaftDriver as they are."""
        kv = KVStore()

        def transport(receive: Any) -> MemoryTransport:
            return MemoryTransport(
                network=self.network,
                node_id=i,
                cluster_id=CLUSTER,
                receive=receive,
                address=address(i),
            )

        driver = RaftDriver(
            config=RaftConfig(node_id=i),
            clock=self.clock,
            log_storage=log,
            snapshots=snapshots,
            transport=transport,
            state_machine=kv,
            rng=random.Random(seed * 100 + i),
            initial_configuration=self.configuration,
            tick_seconds=TICK,
            snapshot_threshold=snapshot_threshold,
            **driver_options,
        )
        client_api = ClientAPI(driver, **api)
        return Node(
            node_id=i,
            driver=driver,
            log=log,
            snapshots=snapshots,
            kv=kv,
            api=client_api,
            stub=production_stub(client_api),
        )

    def start(self) -> None:
        for node in self.nodes.values():
            node.driver.start()

    def run(self, seconds: float) -> None:
        """Let ``seconds`` of simulated time pass, in small steps."""
        steps = round(seconds / (TICK / 5))
        for _ in range(steps):
            self.clock.advance(TICK / 5)

    def leader(self) -> Node | None:
        leaders = [n for n in self.nodes.values() if n.driver.node.role is Role.LEADER]
        return leaders[0] if len(leaders) == 1 else None

    def elect(self, max_seconds: float = 10.0) -> Node:
        """Run until there is exactly one leader and every node knows it."""
        for _ in range(round(max_seconds / TICK)):
            leader = self.leader()
            if leader is not None and all(
                n.driver.node.leader_id == leader.node_id for n in self.nodes.values()
            ):
                return leader
            self.run(TICK)
        raise AssertionError("no leader elected")

    def followers(self) -> list[Node]:
        leader = self.leader()
        return [n for n in self.nodes.values() if n is not leader]

    def request(
        self,
        node: Node,
        method: str,
        path: str,
        *,
        max_seconds: float = 5.0,
        **kwargs: Any,
    ) -> Answer:
        """Send a request to ``node`` and let time pass until it is answered."""
        d = node.stub.request(method, address(node.node_id) + path, allow_redirects=False, **kwargs)
        self.wait(node, d, max_seconds)
        return self.answer_of(node, d)

    def wait(self, node: Node, d: Any, max_seconds: float = 5.0) -> None:
        """Let time pass until ``d`` has a result (or ``max_seconds``)."""
        done: list[object] = []
        d.addBoth(lambda result: done.append(True) or result)
        for _ in range(round(max_seconds / (TICK / 5))):
            node.stub.flush()
            if done:
                return
            self.clock.advance(TICK / 5)

    def pending(self, node: Node, method: str, path: str, **kwargs: Any) -> Any:
        """Start a request and return its Deferred without waiting."""
        return node.stub.request(
            method, address(node.node_id) + path, allow_redirects=False, **kwargs
        )

    def answer_of(self, node: Node, d: Any) -> Answer:
        node.stub.flush()
        response = _sync.successResultOf(d)
        node.stub.flush()
        body = _sync.successResultOf(response.content())
        return Answer(code=response.code, headers=response.headers, body=body)
