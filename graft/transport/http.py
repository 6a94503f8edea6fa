"""The HTTP transport: peers POST batches of encoded messages to each other.

Server side: a Klein app whose routes are relative to where the node
mounts it (``/raft``, beside the client API's ``/v1`` on the same port)::

    POST /raft/v1/messages      body: one codec envelope (a batch)
        204  delivered to the receive callback
        400  malformed body (JSON error naming the problem)
        403  no or wrong cluster token, another cluster's id, or a sender
             that is not a current peer
        405  any other method       413  body over the limit
        503  transport stopped
    anything else under /raft: 404 JSON

Client side: treq's ``HTTPClient`` over an injected ``IAgent`` (by default
an ``Agent`` with a persistent ``HTTPConnectionPool``). Messages to one
peer sent within one reactor turn share a request, cut to a byte budget;
up to ``in_flight_max`` requests per peer are out at once; beyond that
messages queue, boundedly (see :mod:`graft.transport._outbox`). Failures
are logged and dropped, never raised to the core.

May import the standard library, attrs, zope.interface, Twisted, Klein,
treq and graft.raft / graft.transport; never graft.server, storage or kv.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import attrs
from klein import Klein
from treq.client import HTTPClient
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    DeferredList,
    TimeoutError,
    succeed,
)
from twisted.logger import Logger
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.iweb import IAgent, IBodyProducer
from twisted.web.resource import IResource
from twisted.web.server import Request
from zope.interface import implementer  # type: ignore[import-untyped]

from graft.raft.messages import Heartbeat, HeartbeatResponse, Message, NodeId
from graft.transport._admission import refusal, token_matches
from graft.transport._outbox import Outbox, OutboxLimits
from graft.transport.codec import (
    DEFAULT_LIMITS,
    CodecError,
    CodecLimits,
    decode,
    encode_batch,
    encode_message,
)
from graft.transport.interfaces import ITransport, ReactorTime, Receive

__all__ = [
    "CLUSTER_TOKEN_HEADER",
    "CONTENT_TYPE",
    "MESSAGES_PATH",
    "MOUNT_PATH",
    "HTTPTransport",
    "HTTPTransportSettings",
    "PeerStats",
]

#: Where the node mounts :meth:`HTTPTransport.resource` (one path segment).
MOUNT_PATH = "/raft"
#: The messages route, relative to the mount point.
_MESSAGES_ROUTE = "/v1/messages"
#: The full path peers POST to, relative to a peer's address.
MESSAGES_PATH = MOUNT_PATH + _MESSAGES_ROUTE
#: The header carrying the shared cluster token.
CLUSTER_TOKEN_HEADER = "X-Graft-Cluster-Token"
CONTENT_TYPE = "application/vnd.graft.raft+msgpack"


@attrs.frozen(kw_only=True)
class HTTPTransportSettings:
    """Tunables of the HTTP transport; the defaults suit a LAN cluster."""

    #: A request (connect, send, response) abandoned after this long.
    request_timeout_seconds: float = 5.0
    #: Per-peer queue, batching and pipelining bounds.
    outbox: OutboxLimits = OutboxLimits()
    #: Bounds on inbound bodies; ``body_bytes_max`` also gives 413.
    codec: CodecLimits = DEFAULT_LIMITS


@attrs.define
class PeerStats:
    """Counters for one peer, for logs and metrics."""

    messages_sent: int = 0
    requests_sent: int = 0
    requests_failed: int = 0
    messages_dropped: int = 0
    in_flight_max_seen: int = 0


@attrs.define(eq=False)
class _Peer:
    node_id: NodeId
    address: str
    outbox: Outbox
    stats: PeerStats = attrs.field(factory=PeerStats)
    #: False after a failed request, so the first failure warns and the
    #: rest (while it stays down) log at debug.
    reachable: bool = True
    #: Likewise for queue overflow.
    overflowing: bool = False

    @property
    def url(self) -> str:
        return self.address.rstrip("/") + MESSAGES_PATH


@implementer(IBodyProducer)
class _BytesProducer:
    """A body already in memory, written at once. (treq's default wraps it
    in a FileBodyProducer driven by the global cooperator, which an
    injected agent on a test clock would never run.)"""

    def __init__(self, body: bytes) -> None:
        self._body = body
        self.length = len(body)

    def startProducing(self, consumer: Any) -> Deferred[None]:
        consumer.write(self._body)
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


class _RequestFailed(Exception):
    """A peer answered with a status other than 204."""

    def __init__(self, status: int, error: str, body: object = None) -> None:
        super().__init__(f"HTTP {status}: {error}")
        self.status = status
        self.error = error
        #: The decoded JSON body, if it was JSON.
        self.body = body


@implementer(ITransport)
class HTTPTransport:
    """Sends this node's messages to peers over HTTP and serves the route
    on which peers send theirs.

    ``reactor`` must provide ``IReactorTime`` (and, when no ``agent`` is
    given, what ``twisted.web.client.Agent`` needs: ``IReactorTCP``).
    ``cluster_token`` is shared by all members and sent in
    ``X-Graft-Cluster-Token``; ``cluster_id`` travels in every envelope.
    """

    log = Logger()

    def __init__(
        self,
        *,
        reactor: ReactorTime,
        node_id: NodeId,
        cluster_id: str,
        cluster_token: bytes | str,
        receive: Receive,
        peers: Mapping[NodeId, str] | None = None,
        agent: IAgent | None = None,
        settings: HTTPTransportSettings | None = None,
        initial_members: Mapping[NodeId, str] | None = None,
    ) -> None:
        assert node_id >= 1, node_id
        self.node_id = node_id
        self.cluster_id = cluster_id
        #: The membership the cluster id was derived from; told to a peer
        #: of another cluster so it can say what its own list lacks.
        self.initial_members = dict(initial_members or {})
        #: Set once a peer refused us for belonging to another cluster:
        #: what differs, in words an operator can act on.
        self.membership_mismatch: str | None = None
        self.settings = settings if settings is not None else HTTPTransportSettings()
        self.received_messages = 0
        self.refused_requests = 0
        # Twisted's APIs want zope interfaces, which mypy cannot match
        # structurally without mypy-zope: keep an untyped alias for them.
        self._reactor = reactor
        self._twisted_reactor: Any = reactor
        self._token = (
            cluster_token.encode("utf-8") if isinstance(cluster_token, str) else cluster_token
        )
        self._receive = receive
        self._pool: HTTPConnectionPool | None = None
        if agent is None:
            self._pool = HTTPConnectionPool(reactor, persistent=True)  # type: ignore[no-untyped-call]
            self._pool.maxPersistentPerHost = self.settings.outbox.in_flight_max
            agent = Agent(reactor, pool=self._pool)  # type: ignore[no-untyped-call, assignment]
        producer: Any = _BytesProducer
        self._client = HTTPClient(agent, data_to_body_producer=producer)  # type: ignore[arg-type]
        self._peers: dict[NodeId, _Peer] = {}
        self._running = False
        self._flush_call: Any = None  # an IDelayedCall
        self._dirty: dict[NodeId, None] = {}
        self._requests: set[Deferred[None]] = set()
        self._idle_waiters: list[Deferred[None]] = []
        self._refusals_logged: set[str] = set()
        self._app = self._build_app()
        self.set_peers(peers or {})

    # --- ITransport -------------------------------------------------------

    def start(self) -> Deferred[None]:
        self._running = True
        return succeed(None)

    def stop(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        self._running = False
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None
        self._dirty.clear()
        for peer in self._peers.values():
            peer.stats.messages_dropped += peer.outbox.clear()
        requests = list(self._requests)
        for d in requests:
            d.cancel()
        if requests:
            await DeferredList(requests, consumeErrors=True)
        if self._pool is not None:
            await self._pool.closeCachedConnections()  # type: ignore[no-untyped-call]
        self._maybe_notify_idle()

    def send(self, message: Message) -> None:
        peer = self._peers.get(message.target)
        if not self._running or peer is None:
            self.log.debug(
                "dropped {kind} to {target}: transport stopped or not a peer",
                kind=type(message).__name__,
                target=message.target,
            )
            return
        assert message.source == self.node_id, f"{message} is not from {self.node_id}"
        try:
            packed = encode_message(message)
        except Exception:  # a bug in the core or codec: say so, don't raise into the core
            self.log.failure("could not encode {kind}", kind=type(message).__name__)
            return
        dropped = peer.outbox.push(
            packed, droppable=isinstance(message, Heartbeat | HeartbeatResponse)
        )
        if dropped:
            peer.stats.messages_dropped += dropped
            if not peer.overflowing:
                peer.overflowing = True
                self.log.warn(
                    "queue to peer {peer_id} is full ({queued} messages, {in_flight} requests "
                    "in flight): dropping the oldest messages",
                    peer_id=peer.node_id,
                    queued=len(peer.outbox),
                    in_flight=peer.outbox.in_flight,
                )
        self._dirty[peer.node_id] = None
        if self._flush_call is None:
            self._flush_call = self._reactor.callLater(0, self._flush)

    def set_peers(self, peers: Mapping[NodeId, str]) -> None:
        wanted = {i: a for i, a in peers.items() if i != self.node_id}
        for node_id in list(self._peers):
            if node_id not in wanted:
                peer = self._peers.pop(node_id)
                peer.stats.messages_dropped += peer.outbox.clear()
        for node_id, address in wanted.items():
            peer_or_none = self._peers.get(node_id)
            if peer_or_none is None:
                self._peers[node_id] = _Peer(
                    node_id=node_id, address=address, outbox=Outbox(self.settings.outbox)
                )
            else:
                peer_or_none.address = address

    # --- Introspection ----------------------------------------------------

    def flushed(self) -> Deferred[None]:
        """Fires once nothing is queued or in flight (at once if so now):
        for graceful shutdown and for tests that must not sleep."""
        if self._idle():
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._idle_waiters.append(d)
        return d

    def _idle(self) -> bool:
        return (
            self._flush_call is None
            and not self._requests
            and not any(len(p.outbox) for p in self._peers.values())
        )

    def _maybe_notify_idle(self) -> None:
        if self._idle_waiters and self._idle():
            waiters, self._idle_waiters = self._idle_waiters, []
            for d in waiters:
                d.callback(None)

    @property
    def peers(self) -> Mapping[NodeId, str]:
        """The current address book (a copy)."""
        return {i: p.address for i, p in self._peers.items()}

    def peer_stats(self, node_id: NodeId) -> PeerStats | None:
        """Counters for a current peer (for metrics), or ``None``."""
        peer = self._peers.get(node_id)
        return None if peer is None else peer.stats

    # --- Client side --------------------------------------------------------

    def _flush(self) -> None:
        self._flush_call = None
        dirty, self._dirty = self._dirty, {}
        for node_id in dirty:
            peer = self._peers.get(node_id)
            if peer is not None:
                self._pump(peer)
        self._maybe_notify_idle()

    def _pump(self, peer: _Peer) -> None:
        """Start requests for ``peer`` while its outbox allows."""
        while self._running and (batch := peer.outbox.take_batch()) is not None:
            body = encode_batch(batch, cluster_id=self.cluster_id, sender=self.node_id)
            stats = peer.stats
            stats.requests_sent += 1
            stats.messages_sent += len(batch)
            stats.in_flight_max_seen = max(stats.in_flight_max_seen, peer.outbox.in_flight)
            d = Deferred.fromCoroutine(self._post(peer, body, len(batch)))
            d.addTimeout(self.settings.request_timeout_seconds, self._twisted_reactor)
            d.addErrback(self._failed, peer, len(batch))
            self._requests.add(d)
            d.addBoth(self._finished, peer, d)

    async def _post(self, peer: _Peer, body: bytes, count: int) -> None:
        response = await self._client.post(
            peer.url,
            data=body,
            headers={  # type: ignore[arg-type]
                "Content-Type": CONTENT_TYPE,
                CLUSTER_TOKEN_HEADER: self._token,
            },
            allow_redirects=False,
            reactor=self._twisted_reactor,
        )
        content: bytes = await response.content()  # drain, so the connection is reused
        if response.code != 204:
            raise _RequestFailed(response.code, _error_text(content), _json_or_none(content))
        if not peer.reachable:
            peer.reachable = True
            self.log.info(
                "peer {peer_id} at {address} is reachable again",
                peer_id=peer.node_id,
                address=peer.address,
            )
        peer.overflowing = False
        self.log.debug("sent {count} messages to peer {peer_id}", count=count, peer_id=peer.node_id)

    def _failed(self, failure: Any, peer: _Peer, count: int) -> None:
        peer.stats.requests_failed += 1
        peer.stats.messages_dropped += count
        if failure.check(CancelledError) and not self._running:
            return  # abandoned by stop()
        if failure.check(_RequestFailed) and failure.value.status != 503:
            if self._note_membership_mismatch(peer, failure.value.body):
                return
            # The peer answered and refused: a configuration problem worth
            # an operator's attention every time (rare by nature).
            self.log.warn(
                "peer {peer_id} at {address} refused {count} messages: {error}",
                peer_id=peer.node_id,
                address=peer.address,
                count=count,
                error=str(failure.value),
            )
            return
        reason = failure.getErrorMessage() or failure.type.__name__
        if failure.check(TimeoutError, CancelledError):
            reason = f"no answer within {self.settings.request_timeout_seconds}s"
        if peer.reachable:
            peer.reachable = False
            self.log.warn(
                "peer {peer_id} at {address} unreachable ({reason}); dropping messages to it",
                peer_id=peer.node_id,
                address=peer.address,
                reason=reason,
            )
        else:
            self.log.debug(
                "dropped {count} messages to unreachable peer {peer_id}: {reason}",
                count=count,
                peer_id=peer.node_id,
                reason=reason,
            )

    def _finished(self, _: object, peer: _Peer, d: Deferred[None]) -> None:
        self._requests.discard(d)
        peer.outbox.finished()
        if self._running and self._peers.get(peer.node_id) is peer:
            self._pump(peer)
        self._maybe_notify_idle()

    # --- Server side --------------------------------------------------------

    def resource(self) -> IResource:
        """The peer routes, to be mounted at :data:`MOUNT_PATH` (``/raft``):
        ``root.putChild(b"raft", transport.resource())`` or, from a Klein
        app, :meth:`mount`."""
        resource: Any = self._app.resource()
        return resource  # type: ignore[no-any-return]

    def mount(self, app: Klein) -> None:
        """Serve the peer routes under :data:`MOUNT_PATH` of the node's
        Klein app (the client API), so both share one port."""
        resource = self.resource()

        @app.route(MOUNT_PATH + "/", branch=True)
        def peer_routes(request: Request) -> IResource:
            return resource

    def _build_app(self) -> Klein:
        app = Klein()
        app.route(_MESSAGES_ROUTE)(self._messages_route)
        app.route("/", branch=True)(self._not_found)
        return app

    def _not_found(self, request: Request) -> bytes:
        return _json_error(request, 404, "no such peer route")

    def render_messages(self, request: Request) -> bytes:
        """Serve one request to :data:`MESSAGES_PATH`; a node may route
        straight here, skipping Klein on its busiest path."""
        return self._messages_route(request)

    def _messages_route(self, request: Request) -> bytes:
        try:
            return self._messages(request)
        except Exception:
            # A bug of ours; the peer still gets a 4xx and the node lives on.
            self.log.failure("peer request failed unexpectedly")
            return _json_error(request, 400, "request could not be processed")

    def _messages(self, request: Request) -> bytes:
        if request.method != b"POST":
            _set_header(request, b"Allow", b"POST")
            return _json_error(request, 405, "use POST")
        if not token_matches(request.getHeader(CLUSTER_TOKEN_HEADER.encode()), self._token):
            return self._refuse(request, "missing or wrong cluster token")
        body_bytes_max = self.settings.codec.body_bytes_max
        length = request.getHeader(b"content-length")
        if length is not None:
            if not length.isdigit():
                return _json_error(request, 400, "bad Content-Length")
            if int(length) > body_bytes_max:
                return _json_error(request, 413, f"body over {body_bytes_max} bytes")
        content = request.content
        if content is None:
            return _json_error(request, 400, "empty body")
        content.seek(0)
        body = content.read(body_bytes_max + 1)
        if len(body) > body_bytes_max:
            return _json_error(request, 413, f"body over {body_bytes_max} bytes")
        if not self._running:
            _set_header(request, b"Retry-After", b"1")
            return _json_error(request, 503, "transport stopped")
        try:
            envelope = decode(body, receiver=self.node_id, limits=self.settings.codec)
        except CodecError as e:
            self.log.debug("refused a malformed peer body: {error}", error=str(e))
            return _json_error(request, 400, str(e))
        reason = refusal(envelope, cluster_id=self.cluster_id, peers=self._peers)
        if reason is not None:
            return self._refuse(request, reason)
        for message in envelope.messages:
            self.received_messages += 1
            try:
                self._receive(message)
            except Exception:
                self.log.failure(
                    "receive callback failed on {kind} from {sender}",
                    kind=type(message).__name__,
                    sender=envelope.sender,
                )
        request.setResponseCode(204)
        return b""

    def _note_membership_mismatch(self, peer: _Peer, body: object) -> bool:
        """If ``peer`` refused us for another cluster and said its initial
        members, log once which members the two lists disagree on."""
        if not isinstance(body, dict) or not isinstance(body.get("initial_members"), list):
            return False
        theirs: dict[int, str] = {}
        for member in body["initial_members"]:
            if isinstance(member, dict) and isinstance(member.get("id"), int):
                theirs[member["id"]] = str(member.get("address", ""))
        mismatch = describe_membership_mismatch(
            self.node_id, self.initial_members, peer.node_id, theirs
        )
        if mismatch != self.membership_mismatch:
            self.membership_mismatch = mismatch
            self.log.error("{mismatch}", mismatch=mismatch)
        return True

    def _refuse(self, request: Request, reason: str) -> bytes:
        self.refused_requests += 1
        # A misconfigured peer retries every heartbeat: warn once per
        # distinct reason, then debug, so the log stays readable.
        level = self.log.debug if reason in self._refusals_logged else self.log.warn
        if len(self._refusals_logged) >= 1000:
            self._refusals_logged.clear()
        self._refusals_logged.add(reason)
        level(
            "refused a peer request from {client}: {reason}",
            client=str(request.getClientAddress()),  # type: ignore[no-untyped-call]
            reason=reason,
        )
        extra: dict[str, object] = {}
        if reason.startswith("cluster id mismatch") and self.initial_members:
            extra["initial_members"] = [
                {"id": node_id, "address": address}
                for node_id, address in sorted(self.initial_members.items())
            ]
        return _json_error(request, 403, reason, extra)


def _set_header(request: Request, name: bytes, value: bytes) -> None:
    request.setHeader(name, value)  # type: ignore[no-untyped-call]


def _json_error(
    request: Request, status: int, error: str, extra: Mapping[str, object] | None = None
) -> bytes:
    request.setResponseCode(status)
    _set_header(request, b"Content-Type", b"application/json")
    return json.dumps({"error": error, **(extra or {})}).encode("utf-8")


def _json_or_none(content: bytes) -> object:
    try:
        return json.loads(content)
    except ValueError:
        return None


def describe_membership_mismatch(
    node_id: NodeId, ours: Mapping[NodeId, str], peer_id: NodeId, theirs: Mapping[NodeId, str]
) -> str:
    """One line saying how two nodes' initial member lists differ."""

    def listing(ids: Iterable[NodeId], members: Mapping[NodeId, str]) -> str:
        return ", ".join(f"node {i} ({members[i]})" for i in sorted(ids))

    parts = [
        f"node {node_id} and peer {peer_id} were started with different initial members: "
        f"ours are {sorted(ours)}, theirs are {sorted(theirs)}"
    ]
    lacks = set(theirs) - set(ours)
    extra = set(ours) - set(theirs)
    moved = sorted(i for i in set(ours) & set(theirs) if ours[i] != theirs[i])
    if lacks:
        parts.append(f"our list lacks {listing(lacks, theirs)}")
    if extra:
        parts.append(f"their list lacks {listing(extra, ours)}")
    if moved:
        parts.append(
            "addresses differ for "
            + ", ".join(f"node {i} (ours {ours[i]}, theirs {theirs[i]})" for i in moved)
        )
    parts.append(
        "they refuse each other's messages; restart the node whose list is wrong "
        "with the cluster's full member list"
    )
    return "; ".join(parts)


def _error_text(content: bytes) -> str:
    """The ``error`` of a JSON error body, or a prefix of the raw body."""
    try:
        value = json.loads(content)
        error = value.get("error") if isinstance(value, dict) else None
        if isinstance(error, str):
            return error
    except ValueError:
        pass
    return content[:200].decode("utf-8", "replace")
