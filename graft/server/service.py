"""The node as a Twisted service: :func:`make_node_service` builds it from
:class:`~graft.server.settings.NodeSettings`.

A :class:`NodeService` is a MultiService of, in start order, the durable
storage, the driver with its ticker and transport, and the HTTP listener
(client API and peer routes on one port); it stops them in reverse, one
after the other, so the listener is closed first and the log last, once
the fsync in flight has finished (STYLE.md §3).

Only this module and the entry points that call it know about files,
ports and the real thread pool; everything below takes them injected.

May import the standard library, attrs, Twisted, Klein, graft.raft,
graft.kv, graft.storage, graft.transport and graft.server.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Iterable
from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger
from twisted.web.server import Request, Site

from graft.kv import KVStore
from graft.raft import Configuration, Member, RaftConfig
from graft.server import heap
from graft.server.api import ClientAPI
from graft.server.bootstrap import start_point
from graft.server.driver import DurableLog, RaftDriver
from graft.server.lean_http import LeanSite
from graft.server.membership import MembershipRoutes, MembershipWatch
from graft.server.settings import NodeSettings
from graft.storage import DataDir, GroupCommitLog, open_data_dir
from graft.transport import (
    AMPTransport,
    HTTPTransport,
    HTTPTransportSettings,
    Receive,
    amp_endpoint_for,
)
from graft.transport.http import MESSAGES_PATH

__all__ = [
    "NodeService",
    "cluster_id_for",
    "initial_configuration",
    "make_node_service",
    "make_site",
]


def initial_configuration(settings: NodeSettings) -> Configuration:
    """The initial members: this node and its peers, all voters; an entry
    for this node in ``peers`` is ignored (API.md section 1)."""
    members = {settings.id: Member(id=settings.id, address=settings.advertise)}
    for peer in settings.peers:
        if peer.id != settings.id:
            members[peer.id] = Member(id=peer.id, address=peer.address)
    return Configuration(members=tuple(members[i] for i in sorted(members)))


def cluster_id_for(members: Iterable[Member]) -> str:
    """A cluster's id, derived from its initial membership: every node
    started with the same members computes the same id, and a node started
    with another list gets another id, so it is refused by the others and
    by its own data directory (DESIGN.md "Safety at the edges")."""
    pairs = sorted((m.id, m.address.rstrip("/")) for m in members)
    digest = hashlib.sha256(json.dumps(pairs, separators=(",", ":")).encode()).hexdigest()
    return digest[:32]


class _BoundedRequest(Request):
    """A request that stops buffering its body past ``body_bytes_max``
    bytes and says so in ``body_too_large`` (the route answers 413), so an
    oversize body costs neither memory nor disk."""

    body_bytes_max = 1 << 20
    body_too_large = False
    _body_received = 0

    def handleContentChunk(self, data: bytes) -> None:
        self._body_received += len(data)
        if self._body_received > self.body_bytes_max:
            self.body_too_large = True
            return
        super().handleContentChunk(data)  # type: ignore[no-untyped-call]


def make_site(
    resource: Any, body_bytes_max: int, *, access_log: bool = False, reactor: Any = None
) -> Site:
    """A Site serving ``resource`` whose requests buffer at most
    ``body_bytes_max`` (plus one) body bytes. The access log (a line per
    request, peers' included) costs a tenth of a request's time: only at
    log level debug, where every request goes through twisted.web. Without
    it the hot routes of a resource that names them (``serves_fast``) are
    served by graft.server.lean_http."""
    request_class = type(
        "BoundedRequest", (_BoundedRequest,), {"body_bytes_max": body_bytes_max + 1}
    )
    site: Site
    if not access_log and hasattr(resource, "serves_fast"):
        site = LeanSite(resource, body_bytes_max, reactor=reactor)
    else:
        site = Site(resource, reactor=reactor)  # type: ignore[no-untyped-call]
    site.requestFactory = request_class  # type: ignore[assignment]
    site.displayTracebacks = False
    if not access_log:
        site.log = lambda request: None  # type: ignore[method-assign]
    return site


class _StorageService(Service):
    """Owns the durable log: closes it last, after the fsync in flight."""

    def __init__(self, log: DurableLog) -> None:
        self.log_storage = log

    def stopService(self) -> Deferred[None]:
        super().stopService()  # type: ignore[no-untyped-call]
        return self.log_storage.close()


class _DriverService(Service):
    def __init__(self, driver: RaftDriver) -> None:
        self.driver = driver

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self.driver.start()

    def stopService(self) -> Deferred[None]:
        super().stopService()  # type: ignore[no-untyped-call]
        return self.driver.stop()


class NodeService(MultiService):
    """One graft node. ``driver`` is its RaftDriver, ``api`` its client
    API, ``site`` the HTTP site the listener serves."""

    log = Logger()

    def __init__(
        self,
        *,
        settings: NodeSettings,
        driver: RaftDriver,
        api: ClientAPI,
        log_storage: DurableLog,
        site: Site | None,
        listener: Service | None,
        data_dir: DataDir | None = None,
        peer_listener: Service | None = None,
        own_process: bool = False,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        #: The node is its process's one job: settle the heap once started
        #: (graft.server.heap).
        self.own_process = own_process
        self.settings = settings
        self.driver = driver
        self.api = api
        self.site = site
        self.data_dir = data_dir
        self.storage_service = _StorageService(log_storage)
        self.storage_service.setServiceParent(self)  # type: ignore[no-untyped-call]
        self.driver_service = _DriverService(driver)
        self.driver_service.setServiceParent(self)  # type: ignore[no-untyped-call]
        self.listener = listener
        # Peers first: a port in use for either is refused before clients come.
        self.peer_listener = peer_listener
        if peer_listener is not None:
            peer_listener.setServiceParent(self)  # type: ignore[no-untyped-call]
        if listener is not None:
            listener.setServiceParent(self)  # type: ignore[no-untyped-call]

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        if self.own_process:
            # After this turn: the start-up's own garbage is gone by then.
            self.driver.clock.callLater(0, self._settle_heap)

    def _settle_heap(self) -> None:
        frozen = heap.settle()
        self.log.debug(
            "node {node_id}: {frozen} objects from start-up frozen out of garbage collection",
            node_id=self.settings.id,
            frozen=frozen,
        )

    def stopService(self) -> Deferred[None]:
        """Stop the children one at a time, in reverse order."""
        return Deferred.fromCoroutine(self._stop_in_reverse())

    async def _stop_in_reverse(self) -> None:
        Service.stopService(self)  # type: ignore[no-untyped-call]
        for child in reversed(list(self)):
            try:
                await Deferred.fromCoroutine(_maybe_await(child.stopService()))
            except Exception:
                self.log.failure(
                    "node {node_id}: stopping {child} failed",
                    node_id=self.settings.id,
                    child=type(child).__name__,
                )
        self.log.info("node {node_id} stopped", node_id=self.settings.id)


async def _maybe_await(result: object) -> None:
    if isinstance(result, Deferred):
        await result


def amp_listen_description(settings: NodeSettings) -> str:
    """Where the AMP peer transport listens: its advertised address's port
    plus AMP_PORT_OFFSET (what peers dial, graft.transport.amp), on the
    interface the client API listens on."""
    _, port = amp_endpoint_for(settings.advertise)
    interface = ""
    for part in settings.listen.split(":")[1:]:
        if part.startswith("interface="):
            interface = ":" + part
    return f"tcp:{port}{interface}"


def _listener(reactor: Any, description: str, factory: Any) -> Service:
    endpoint = serverFromString(reactor, description)  # type: ignore[no-untyped-call]
    listener = StreamServerEndpointService(endpoint, factory)  # type: ignore[no-untyped-call]
    # Let a port in use surface from startService, for the entry points.
    listener._raiseSynchronously = True
    return listener


def make_node_service(
    settings: NodeSettings, reactor: Any, *, own_process: bool = False
) -> NodeService:
    """Build the node that ``settings`` describe, ready to start.

    Opens (creating if needed) the data directory now, so a directory of
    another cluster or node is refused here with
    :class:`graft.storage.IdentityMismatch` (a damaged one with
    ``StorageCorruption``); the listener binds when the service starts.
    ``reactor`` provides time, threads and TCP (the global reactor, from
    the entry points only). ``own_process``: the node is all its process
    does (the entry points), see graft.server.heap."""
    start = start_point(
        settings, initial=initial_configuration(settings), cluster_id_for=cluster_id_for
    )
    configuration = start.configuration
    cluster_id = start.cluster_id
    data_dir = open_data_dir(
        settings.data_dir, cluster_id, settings.id, segment_bytes_max=settings.log_segment_bytes
    )
    log_storage = GroupCommitLog(reactor, data_dir.log)
    transport_settings = HTTPTransportSettings()
    initial_members = {m.id: m.address for m in configuration.members}

    def make_transport(receive: Receive) -> Any:
        if settings.transport == "amp":
            return AMPTransport(
                reactor=reactor,
                node_id=settings.id,
                cluster_id=cluster_id,
                cluster_token=settings.cluster_token,
                receive=receive,
                initial_members=initial_members,
            )
        return HTTPTransport(
            reactor=reactor,
            node_id=settings.id,
            cluster_id=cluster_id,
            cluster_token=settings.cluster_token,
            receive=receive,
            settings=transport_settings,
            initial_members=initial_members,
        )

    driver = RaftDriver(
        config=raft_config(settings),
        clock=reactor,
        log_storage=log_storage,
        snapshots=data_dir.snapshots,
        transport=make_transport,
        state_machine=KVStore(),
        rng=random.Random(os.urandom(16)),
        initial_configuration=configuration,
        tick_seconds=settings.tick_seconds,
        snapshot_threshold=settings.snapshot_threshold,
        snapshot_retain_entries=settings.snapshot_retain_entries,
    )
    driver.bootstrap_peers = dict(start.bootstrap_peers)
    api = ClientAPI(
        driver,
        max_body_bytes=settings.max_body_bytes,
        request_timeout_seconds=settings.request_timeout_seconds,
    )
    election_timeout_seconds = settings.election_timeout_ticks * settings.tick_seconds
    watch = MembershipWatch(driver, election_timeout_seconds=election_timeout_seconds)
    MembershipRoutes(
        api, watch, cluster_id=cluster_id, election_timeout_seconds=election_timeout_seconds
    ).mount()
    transport: Any = driver.transport
    peer_listener: Service | None = None
    if settings.transport == "amp":
        fast_routes: dict[bytes, Any] = {}
        peer_listener = _listener(reactor, amp_listen_description(settings), transport.factory())
    else:
        transport.mount(api.app)
        fast_routes = {MESSAGES_PATH.encode(): transport.render_messages}
    site = make_site(
        api.resource(fast_routes),
        max(settings.max_body_bytes, transport_settings.codec.body_bytes_max),
        access_log=settings.log_level == "debug",
        reactor=reactor,
    )
    listener = _listener(reactor, settings.listen, site)
    service = NodeService(
        settings=settings,
        driver=driver,
        api=api,
        log_storage=log_storage,
        site=site,
        listener=listener,
        data_dir=data_dir,
        peer_listener=peer_listener,
        own_process=own_process,
    )
    watch.setServiceParent(service)  # type: ignore[no-untyped-call]
    return service


def raft_config(settings: NodeSettings) -> RaftConfig:
    return RaftConfig(
        node_id=settings.id,
        election_timeout_ticks=settings.election_timeout_ticks,
        heartbeat_interval_ticks=settings.heartbeat_interval_ticks,
    )
