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

Client side: by default our own lean HTTP/1.1 client
(:mod:`graft.transport._http_client`: persistent connections, at most
``in_flight_max`` per peer, each request written at once and its answer
parsed from the bytes), since twisted.web's ``Agent`` cost the leader a
sixth of its CPU; with an ``IAgent`` injected (tests that keep the network
in memory), treq's ``HTTPClient`` over it. Messages to one
peer sent within one reactor turn share a request, cut to a byte budget;
up to ``in_flight_max`` requests per peer are out at once; beyond that
messages queue, boundedly (see :mod:`graft.transport._outbox`). Failures
are logged and dropped, never raised to the core.

May import the standard library, attrs, zope.interface, Twisted, Klein,
treq and graft.raft / graft.transport; never graft.server, storage or kv.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import attrs
from klein import Klein
from treq.client import HTTPClient
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.web.iweb import IAgent, IBodyProducer
from twisted.web.resource import IResource
from twisted.web.server import Request
from zope.interface import implementer  # type: ignore[import-untyped]

from graft.raft.messages import NodeId
from graft.transport._admission import refusal, token_matches
from graft.transport._http_client import LeanHTTPClient
from graft.transport._outbox import OutboxLimits
from graft.transport._peers import Peer, PeerStats, PeerTransport

# Re-exported: it lived here before the peer machinery moved to _peers.
from graft.transport._peers import describe_membership_mismatch as describe_membership_mismatch
from graft.transport.codec import DEFAULT_LIMITS, CodecError, CodecLimits, decode
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
class HTTPTransport(PeerTransport[Peer, str]):
    """Sends this node's messages to peers over HTTP and serves the route
    on which peers send theirs.

    ``reactor`` must provide ``IReactorTime`` (and, when no ``agent`` is
    given, what the lean client connects with: ``IReactorTCP``).
    ``cluster_token`` is shared by all members and sent in
    ``X-Graft-Cluster-Token``; ``cluster_id`` travels in every envelope.
    """

    log = Logger()
    settings: HTTPTransportSettings
    _peer_type = Peer
    _request_word = "request"

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
        super().__init__(reactor, node_id, cluster_id, cluster_token, receive, initial_members)
        self.settings = settings if settings is not None else HTTPTransportSettings()
        self._lean: LeanHTTPClient | None = None
        self._client: HTTPClient | None = None
        if agent is None:
            # As many connections per peer as requests may be in flight to it.
            self._lean = LeanHTTPClient(reactor, max_connections=self.settings.outbox.in_flight_max)
        else:
            producer: Any = _BytesProducer
            self._client = HTTPClient(agent, data_to_body_producer=producer)
        self._headers = [
            (b"Content-Type", CONTENT_TYPE.encode("ascii")),
            (CLUSTER_TOKEN_HEADER.encode("ascii"), self._token),
        ]
        self._app = self._build_app()
        self.set_peers(peers or {})

    # --- ITransport -------------------------------------------------------

    def start(self) -> Deferred[None]:
        self._running = True
        return succeed(None)

    def stop(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        await self._stop_sending()
        if self._lean is not None:
            await self._lean.close()
        self._maybe_notify_idle()

    # --- Client side --------------------------------------------------------

    def _link(self, peer: Peer) -> str:
        return peer.address.rstrip("/") + MESSAGES_PATH

    def _post(self, peer: Peer, url: str, body: bytes) -> Deferred[None]:
        return Deferred.fromCoroutine(self._request(url, body))

    async def _request(self, url: str, body: bytes) -> None:
        if self._lean is not None:
            status, answer = await self._lean.post(url, self._headers, body)
            if status != 204:
                raise _RequestFailed(status, _error_text(answer), _json_or_none(answer))
            return
        assert self._client is not None
        response = await self._client.post(
            url,
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

    def _refusal(self, failure: Any) -> tuple[str, object] | None:
        # A 503 is a peer shutting down, not refusing: it counts as down.
        if failure.check(_RequestFailed) and failure.value.status != 503:
            return str(failure.value), failure.value.body
        return None

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
        self._hand_over(envelope)
        request.setResponseCode(204)
        return b""

    def _refuse(self, request: Request, reason: str) -> bytes:
        client = str(request.getClientAddress())  # type: ignore[no-untyped-call]
        members = self._log_refusal(client, reason)
        extra = {} if members is None else {"initial_members": members}
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
