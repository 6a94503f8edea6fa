"""The AMP transport: the same codec envelopes as HTTP, carried as AMP
commands (twisted.protocols.amp) over one long-lived TCP connection per
peer.

Addresses. The address book keeps the addresses of the configuration
(``http://host:port``: the node's client API). A node serves AMP on a
separate port, by default the HTTP port plus :data:`AMP_PORT_OFFSET`
(1000), so ``http://10.0.0.1:8001`` is reached at ``10.0.0.1:9001``. The
mapping is the constructor argument ``endpoint_for`` (default
:func:`amp_endpoint_for`, which also accepts ``amp://host:port`` meaning
that port exactly), so a node can choose another rule. Why a separate port
and not the HTTP one: AMP is not HTTP, and sniffing the first bytes of
every connection to tell them apart would put a protocol switch in front
of the client API for no gain.

Wire protocol (both commands answer an empty box or an error)::

    Hello    token: bytes       once per connection, first; the cluster token
    Deliver  body: bytes        one codec envelope (a batch), of any size:
                                ``body`` holds the number of chunks and
                                ``body.0``, ``body.1``... the chunks of at
                                most 65,535 bytes (AMP's limit per value)
    errors:  REFUSED      no or wrong token (or no Hello yet), another
                          cluster's id, a sender that is not a current peer
             MALFORMED    a body the codec rejects
             UNAVAILABLE  the transport is stopped

An error's description is JSON like the HTTP transport's 4xx bodies:
``{"error": reason}``, plus ``initial_members`` when the refusal is a
cluster id mismatch, so the sender can log which member lists differ.

Client side: connections are opened on the first message to a peer and
kept: when one is lost (or an attempt fails) the next attempt comes after
an exponential backoff (``reconnect_initial_seconds`` doubling up to
``reconnect_max_seconds``), whether or not messages wait. Messages sent
while there is no connection wait in the peer's bounded queue for the next
attempt and are dropped if it fails (Raft retries). Messages to one peer
sent within one reactor turn share a ``Deliver``, cut to a byte budget; up
to ``in_flight_max`` calls per peer are out at once (AMP pipelines them on
the one connection); see :mod:`graft.transport._outbox`. A call without
an answer within ``request_timeout_seconds`` fails and drops the
connection, whose other calls fail with it: a link that stalls one call
stalls them all.

Server side: :meth:`AMPTransport.factory` is the protocol factory peers
connect to. Either give the transport a ``listen`` endpoint (``start``
listens on it and ``stop`` closes it), or listen on ``factory()`` yourself.
Nothing a peer sends raises into the reactor: a bad body or a refusal gets
an AMP error on that call and the connection stays up; a broken AMP
framing, an unknown answer or a box over the size limit drops that one
connection.

May import the standard library, attrs, zope.interface, Twisted and
graft.raft / graft.transport; never graft.server, storage or kv.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Mapping
from typing import Any, Final, Self
from urllib.parse import urlsplit

import attrs
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    DeferredList,
    TimeoutError,
    maybeDeferred,
)
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    serverFromString,
)
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols import amp
from twisted.python.failure import Failure
from zope.interface import implementer  # type: ignore[import-untyped]

from graft.raft.messages import NodeId
from graft.transport._admission import refusal, token_matches
from graft.transport._outbox import OutboxLimits
from graft.transport._peers import Peer, PeerTransport
from graft.transport.codec import DEFAULT_LIMITS, CodecError, CodecLimits, decode
from graft.transport.interfaces import ITransport, ReactorTime, Receive

__all__ = [
    "AMP_PORT_OFFSET",
    "AMPTransport",
    "AMPTransportSettings",
    "Deliver",
    "Hello",
    "Malformed",
    "Refused",
    "Unavailable",
    "amp_endpoint_for",
]

#: The default AMP port of a node is its HTTP port plus this.
AMP_PORT_OFFSET: Final = 1000

#: AMP's largest value (one chunk of a body).
CHUNK_BYTES: Final = amp.MAX_VALUE_LENGTH

#: An error's text is cut to this, so its description fits one AMP value.
_ERROR_CHARS_MAX: Final = 2000

_log = Logger()


def amp_endpoint_for(address: str) -> tuple[str, int]:
    """Where a peer with this address book entry serves AMP.

    ``http://host:port`` and ``https://host:port`` map to the same host and
    ``port + AMP_PORT_OFFSET`` (port 80 or 443 when none is given);
    ``amp://host:port`` names the AMP port itself. Raises ``ValueError``
    for anything else."""
    parts = urlsplit(address)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError as e:
        raise ValueError(f"address {address!r}: {e}") from None
    host = parts.hostname
    if not host:
        raise ValueError(f"address {address!r} names no host")
    if scheme == "amp":
        if port is None:
            raise ValueError(f"address {address!r} names no port")
        return host, port
    if scheme in ("http", "https"):
        base = port if port is not None else (443 if scheme == "https" else 80)
        amp_port = base + AMP_PORT_OFFSET
        if amp_port > 65535:
            raise ValueError(
                f"address {address!r}: its AMP port {base} + {AMP_PORT_OFFSET} "
                "is past 65535; give the node an amp:// address"
            )
        return host, amp_port
    raise ValueError(f"address {address!r}: expected http://, https:// or amp://host:port")


# --- Wire protocol ---------------------------------------------------------


class _RemoteError(Exception):
    """An AMP error whose description is a JSON object with ``error``."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description

    @classmethod
    def of(cls, error: str, **extra: object) -> Self:
        if len(error) > _ERROR_CHARS_MAX:  # a codec error may quote what it got
            error = error[:_ERROR_CHARS_MAX] + "..."
        return cls(json.dumps({"error": error, **extra}))

    @property
    def body(self) -> dict[str, Any]:
        """The decoded description (``{"error": <the raw text>}`` if it is
        not a JSON object)."""
        try:
            value = json.loads(self.description)
        except ValueError:
            value = None
        if isinstance(value, dict) and isinstance(value.get("error"), str):
            return value
        return {"error": self.description[:200]}

    @property
    def error(self) -> str:
        return str(self.body["error"])


class Refused(_RemoteError):
    """The peer does not admit us (token, cluster id or membership)."""


class Malformed(_RemoteError):
    """The peer could not decode our body."""


class Unavailable(_RemoteError):
    """The peer's transport is stopped."""


@attrs.frozen
class _BadBody:
    """What a ``Deliver`` carried instead of a well-formed chunked body."""

    reason: str


class _ChunkedBytes(amp.Argument):
    """Bytes of any length as several AMP values: ``name`` holds the number
    of chunks (ASCII decimal), ``name.0``... the chunks in order.

    Parsing never raises: a malformed set of keys becomes a
    :class:`_BadBody`, which the responder answers with ``MALFORMED``
    (an exception here would make AMP drop the connection instead)."""

    def toBox(self, name: bytes, strings: Any, objects: Any, proto: Any) -> None:
        data: bytes = objects.pop(name.decode("ascii"))
        chunks = [data[i : i + CHUNK_BYTES] for i in range(0, len(data), CHUNK_BYTES)]
        strings[name] = b"%d" % len(chunks)
        for i, chunk in enumerate(chunks):
            strings[name + b".%d" % i] = chunk

    def fromBox(self, name: bytes, strings: Any, objects: Any, proto: Any) -> None:
        objects[name.decode("ascii")] = _join_chunks(name, strings)


def _join_chunks(name: bytes, strings: Mapping[bytes, bytes]) -> bytes | _BadBody:
    count = strings.get(name)
    if count is None:
        return _BadBody(f"no {name.decode()!r} argument")
    if not count.isdigit() or len(count) > 9:
        return _BadBody(f"{name.decode()!r}: chunk count {count[:20]!r} is not a number")
    chunks: list[bytes] = []
    for i in range(int(count)):
        chunk = strings.get(name + b".%d" % i)
        if chunk is None:
            return _BadBody(f"{name.decode()!r}: chunk {i} of {int(count)} is missing")
        chunks.append(chunk)
    return b"".join(chunks)


class Hello(amp.Command):
    """The first call on a connection: present the cluster token."""

    commandName = b"Hello"
    arguments = [(b"token", amp.String(optional=True))]  # type: ignore[no-untyped-call]
    errors = {Refused: b"REFUSED", Unavailable: b"UNAVAILABLE"}


class Deliver(amp.Command):
    """One codec envelope (a batch of messages) for the receiving node."""

    commandName = b"Deliver"
    arguments = [(b"body", _ChunkedBytes())]  # type: ignore[no-untyped-call]
    errors = {Refused: b"REFUSED", Malformed: b"MALFORMED", Unavailable: b"UNAVAILABLE"}


class _Connection(amp.AMP):
    """An AMP connection that bounds what one box may cost us and turns any
    protocol violation into dropping this one connection."""

    def __init__(self, box_bytes_max: int) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._box_bytes_max = box_bytes_max
        self._box_bytes = 0
        self._oversized = False
        #: Fires once the connection is lost.
        self.closed: Deferred[None] = Deferred()
        #: Set when we close it on purpose (peer removed or moved), so the
        #: calls that fail with it are not reported as the peer's failure.
        self.abandoned = False

    # AMP logs every connection and disconnection at info; a peer that
    # keeps reconnecting would fill the log, so log at debug instead.
    def makeConnection(self, transport: Any) -> None:
        _log.debug("AMP connection to {peer} made", peer=str(transport.getPeer()))
        amp.BinaryBoxProtocol.makeConnection(self, transport)  # type: ignore[no-untyped-call]

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        _log.debug("AMP connection lost: {reason}", reason=reason.getErrorMessage())
        amp.BinaryBoxProtocol.connectionLost(self, reason)  # type: ignore[no-untyped-call]
        self.transport = None
        self.closed.callback(None)

    def proto_value(self, string: bytes) -> str:
        self._box_bytes += len(self._currentKey or b"") + len(string)
        if self._box_bytes > self._box_bytes_max:
            if not self._oversized:
                self._oversized = True
                _log.warn(
                    "dropping an AMP connection: a box passed {limit} bytes",
                    limit=self._box_bytes_max,
                )
                self.abort()
            self._currentKey = None
            self.MAX_LENGTH = self._MAX_KEY_LENGTH
            return "key"
        return super().proto_value(string)  # type: ignore[no-any-return, no-untyped-call]

    def proto_key(self, string: bytes) -> str:
        if not string:
            self._box_bytes = 0
            if self._oversized:
                self._currentBox = None
                return "init"
        return super().proto_key(string)  # type: ignore[no-any-return, no-untyped-call]

    def ampBoxReceived(self, box: amp.AmpBox) -> None:
        try:
            super().ampBoxReceived(box)  # type: ignore[no-untyped-call]
        except Exception as e:  # an empty box, an answer to nothing asked...
            _log.warn(
                "dropping an AMP connection that broke the protocol: {error}",
                error=f"{type(e).__name__}: {e}",
            )
            self.abort()

    def abort(self) -> None:
        transport: Any = self.transport
        if transport is not None:
            transport.abortConnection()


class _ServerConnection(_Connection):
    """One inbound connection from a peer."""

    def __init__(self, owner: AMPTransport) -> None:
        super().__init__(owner._box_bytes_max)
        self._owner = owner
        #: True once this connection presented the cluster token.
        self.authenticated = False

    def connectionMade(self) -> None:
        self._owner._inbound.add(self)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self._owner._inbound.discard(self)
        super().connectionLost(reason)

    def client(self) -> str:
        transport: Any = self.transport
        return "?" if transport is None else str(transport.getPeer())

    @Hello.responder
    def hello(self, token: bytes | None) -> dict[str, object]:
        return self._owner._hello(self, token)

    @Deliver.responder
    def deliver(self, body: bytes | _BadBody) -> dict[str, object]:
        return self._owner._deliver(self, body)


class _ClientConnection(_Connection):
    """One outbound connection to a peer (it answers no commands)."""

    def __init__(self, owner: AMPTransport) -> None:
        super().__init__(owner._box_bytes_max)
        self._owner = owner

    def connectionMade(self) -> None:
        self._owner._outbound.add(self)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self._owner._outbound.discard(self)
        super().connectionLost(reason)


class _ServerFactory(Factory):
    noisy = False

    def __init__(self, owner: AMPTransport) -> None:
        self._owner = owner

    def buildProtocol(self, addr: Any) -> _ServerConnection:
        return _ServerConnection(self._owner)


class _ClientFactory(Factory):
    noisy = False

    def __init__(self, owner: AMPTransport) -> None:
        self._owner = owner

    def buildProtocol(self, addr: Any) -> _ClientConnection:
        return _ClientConnection(self._owner)


# --- The transport ---------------------------------------------------------


@attrs.frozen(kw_only=True)
class AMPTransportSettings:
    """Tunables of the AMP transport; the defaults suit a LAN cluster."""

    #: A ``Deliver`` without an answer after this long fails (and the
    #: connection is dropped and reopened).
    request_timeout_seconds: float = 5.0
    #: Connecting plus the ``Hello`` exchange, after which the attempt fails.
    connect_timeout_seconds: float = 5.0
    #: The first wait before reconnecting; doubles after each failure...
    reconnect_initial_seconds: float = 0.05
    #: ...up to this.
    reconnect_max_seconds: float = 1.0
    #: Per-peer queue, batching and pipelining bounds.
    outbox: OutboxLimits = OutboxLimits()
    #: Bounds on inbound bodies.
    codec: CodecLimits = DEFAULT_LIMITS

    def __attrs_post_init__(self) -> None:
        assert 0 < self.reconnect_initial_seconds <= self.reconnect_max_seconds, self


@attrs.define(eq=False)
class _Peer(Peer):
    #: The open connection, past its ``Hello``.
    connection: _ClientConnection | None = None
    #: An attempt in progress (connect, then ``Hello``).
    connecting: Deferred[_ClientConnection] | None = None
    #: The scheduled next attempt (an IDelayedCall).
    retry: Any = None
    #: The wait before the next attempt; 0 after a success.
    backoff: float = 0.0


@implementer(ITransport)
class AMPTransport(PeerTransport[_Peer, _ClientConnection]):
    """Sends this node's messages to peers over AMP and serves the AMP
    factory on which peers send theirs.

    ``reactor`` must provide ``IReactorTime`` and ``IReactorTCP`` (and what
    ``HostnameEndpoint`` needs to resolve names). ``cluster_token`` is
    shared by all members and presented once per connection;
    ``cluster_id`` travels in every envelope. ``endpoint_for`` maps an
    address book entry to the peer's AMP ``(host, port)``. ``listen``, an
    endpoint or a ``serverFromString`` description such as
    ``"tcp:9001:interface=10.0.0.1"``, is where :meth:`start` listens (none:
    listen on :meth:`factory` yourself).
    """

    log = Logger()
    settings: AMPTransportSettings
    _peer_type = _Peer
    _request_word = "call"

    def __init__(
        self,
        *,
        reactor: ReactorTime,
        node_id: NodeId,
        cluster_id: str,
        cluster_token: bytes | str,
        receive: Receive,
        peers: Mapping[NodeId, str] | None = None,
        settings: AMPTransportSettings | None = None,
        initial_members: Mapping[NodeId, str] | None = None,
        endpoint_for: Callable[[str], tuple[str, int]] = amp_endpoint_for,
        listen: IStreamServerEndpoint | str | None = None,
    ) -> None:
        super().__init__(reactor, node_id, cluster_id, cluster_token, receive, initial_members)
        self.settings = settings if settings is not None else AMPTransportSettings()
        self._endpoint_for = endpoint_for
        self._listen = listen
        self._port: Any = None  # an IListeningPort
        # A body in chunks, plus the keys and lengths around them.
        chunks = self.settings.codec.body_bytes_max // CHUNK_BYTES + 1
        self._box_bytes_max = self.settings.codec.body_bytes_max + 64 * chunks + 4096
        self._server_factory = _ServerFactory(self)
        self._client_factory = _ClientFactory(self)
        self._inbound: set[_ServerConnection] = set()
        self._outbound: set[_ClientConnection] = set()
        self.set_peers(peers or {})

    # --- ITransport -------------------------------------------------------

    def start(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._start())

    async def _start(self) -> None:
        self._running = True
        if self._listen is not None and self._port is None:
            endpoint: Any = self._listen
            if isinstance(endpoint, str):
                endpoint = serverFromString(self._twisted_reactor, endpoint)  # type: ignore[no-untyped-call]
            self._port = await endpoint.listen(self._server_factory)

    def stop(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        await self._stop_sending()
        if self._port is not None:
            port, self._port = self._port, None
            await maybeDeferred(port.stopListening)
        connections: list[_Connection] = [*self._inbound, *self._outbound]
        for connection in connections:
            connection.abort()
        if connections:
            await DeferredList([c.closed for c in connections], consumeErrors=True)
        self._maybe_notify_idle()

    def _forget(self, peer: _Peer) -> None:
        super()._forget(peer)
        self._drop_connection(peer)

    def _moved(self, peer: _Peer) -> None:
        # Reconnect to the new address; queued messages wait.
        self._drop_connection(peer)
        peer.backoff = 0.0
        self._pump(peer)

    # --- Introspection ----------------------------------------------------

    def factory(self) -> Factory:
        """The AMP server factory peers connect to, for a node that listens
        itself (``reactor.listenTCP(port, transport.factory())`` or a
        ``StreamServerEndpointService``); :meth:`stop` still closes the
        connections it accepted."""
        return self._server_factory

    @property
    def listening_port(self) -> Any:
        """The ``IListeningPort`` :meth:`start` listens on (given ``listen``),
        or ``None``."""
        return self._port

    def peer_connected(self, node_id: NodeId) -> bool:
        """Whether a connection to ``node_id`` is open (past its Hello)."""
        peer = self._peers.get(node_id)
        return peer is not None and peer.connection is not None

    # --- Client side: connections -------------------------------------------

    def _connect(self, peer: _Peer) -> None:
        """Start an attempt unless connected, connecting or waiting to."""
        if peer.connection is not None or peer.connecting is not None or peer.retry is not None:
            return
        try:
            host, port = self._endpoint_for(peer.address)
        except Exception as e:  # ValueError, or whatever a node's own mapping raises
            dropped = peer.outbox.clear()
            peer.stats.messages_dropped += dropped
            level = self.log.error if peer.reachable else self.log.debug
            peer.reachable = False
            level(
                "cannot reach peer {peer_id}: {error}; dropped {count} messages",
                peer_id=peer.node_id,
                error=str(e),
                count=dropped,
            )
            return
        timeout = self.settings.connect_timeout_seconds
        endpoint = _client_endpoint(self._twisted_reactor, host, port, timeout)
        d = Deferred.fromCoroutine(self._open(endpoint))
        peer.connecting = d
        d.addTimeout(timeout, self._twisted_reactor)
        d.addCallbacks(
            self._connected,
            self._connect_failed,
            callbackArgs=(peer, d),
            errbackArgs=(peer, d),
        )

    async def _open(self, endpoint: Any) -> _ClientConnection:  # IStreamClientEndpoint
        factory: Any = self._client_factory
        connection: _ClientConnection = await endpoint.connect(factory)
        try:
            await connection.callRemote(Hello, token=self._token)  # type: ignore[no-untyped-call]
        except BaseException:
            connection.abort()
            raise
        return connection

    def _connected(
        self, connection: _ClientConnection, peer: _Peer, attempt: Deferred[_ClientConnection]
    ) -> None:
        if peer.connecting is not attempt:  # abandoned meanwhile
            connection.abort()
            return
        peer.connecting = None
        if not self._current(peer) or connection.closed.called:
            connection.abort()
            if self._current(peer):
                self._schedule_retry(peer)
            return
        peer.connection = connection
        peer.backoff = 0.0
        connection.closed.addCallback(lambda _: self._connection_lost(peer, connection))
        self.log.debug("connected to peer {peer_id}", peer_id=peer.node_id)
        if not peer.reachable:
            peer.reachable = True
            self.log.info(
                "peer {peer_id} at {address} is reachable again",
                peer_id=peer.node_id,
                address=peer.address,
            )
        self._pump(peer)

    def _connect_failed(
        self, failure: Any, peer: _Peer, attempt: Deferred[_ClientConnection]
    ) -> None:
        if peer.connecting is not attempt:
            return  # abandoned by stop() or set_peers()
        peer.connecting = None
        if not self._current(peer):
            return
        dropped = peer.outbox.clear()
        peer.stats.messages_dropped += dropped
        if failure.check(Refused):
            # A configuration problem (the token): worth a warning each time
            # the peer goes from fine to refusing.
            level = self.log.warn if peer.reachable else self.log.debug
            level(
                "peer {peer_id} at {address} refused our connection: {error}; "
                "dropped {count} messages",
                peer_id=peer.node_id,
                address=peer.address,
                error=failure.value.error,
                count=dropped,
            )
        else:
            reason = _reason(failure)
            if failure.check(TimeoutError, CancelledError):
                reason = f"no connection within {self.settings.connect_timeout_seconds}s"
            self._unreachable(peer, reason, dropped)
        peer.reachable = False
        self._schedule_retry(peer)
        self._maybe_notify_idle()

    def _connection_lost(self, peer: _Peer, connection: _ClientConnection) -> None:
        if peer.connection is not connection:
            return
        peer.connection = None
        self.log.debug("connection to peer {peer_id} lost", peer_id=peer.node_id)
        if self._current(peer):
            self._schedule_retry(peer)

    def _schedule_retry(self, peer: _Peer) -> None:
        if peer.retry is not None:
            return
        initial = self.settings.reconnect_initial_seconds
        peer.backoff = min(max(peer.backoff * 2, initial), self.settings.reconnect_max_seconds)
        peer.retry = self._reactor.callLater(peer.backoff, self._retry, peer)

    def _retry(self, peer: _Peer) -> None:
        peer.retry = None
        if self._current(peer):
            self._connect(peer)

    def _drop_connection(self, peer: _Peer) -> None:
        """Close ``peer``'s connection and abandon attempts to open one."""
        if peer.retry is not None:
            if peer.retry.active():
                peer.retry.cancel()
            peer.retry = None
        if peer.connecting is not None:
            connecting, peer.connecting = peer.connecting, None
            connecting.cancel()
        if peer.connection is not None:
            connection, peer.connection = peer.connection, None
            connection.abandoned = True
            connection.abort()

    # --- Client side: calls -------------------------------------------------

    def _link(self, peer: _Peer) -> _ClientConnection | None:
        connection = peer.connection
        if connection is None and len(peer.outbox):
            self._connect(peer)  # the queue waits for the attempt
        return connection

    def _post(self, peer: _Peer, connection: _ClientConnection, body: bytes) -> Deferred[None]:
        return maybeDeferred(connection.callRemote, Deliver, body=body)

    def _refusal(self, failure: Any) -> tuple[str, object] | None:
        if failure.check(Refused, Malformed):
            body = failure.value.body if failure.check(Refused) else None
            return failure.value.error, body
        return None

    def _failure_reason(self, failure: Any) -> str:
        return _reason(failure)

    def _abandoned(self, connection: _ClientConnection) -> bool:
        return connection.abandoned  # the peer was removed or moved

    def _stuck(self, connection: _ClientConnection) -> None:
        connection.abort()  # the link is stuck: reconnect

    # --- Server side --------------------------------------------------------

    def _hello(self, connection: _ServerConnection, token: bytes | None) -> dict[str, object]:
        if not self._running:
            raise Unavailable.of("transport stopped")
        if not token_matches(token, self._token):
            raise self._refuse(connection, "missing or wrong cluster token")
        connection.authenticated = True
        return {}

    def _deliver(self, connection: _ServerConnection, body: bytes | _BadBody) -> dict[str, object]:
        try:
            return self._admit(connection, body)
        except _RemoteError:
            raise
        except Exception:
            # A bug of ours; the peer still gets an error and the node lives on.
            self.log.failure("peer call failed unexpectedly")
            raise Malformed.of("request could not be processed") from None

    def _admit(self, connection: _ServerConnection, body: bytes | _BadBody) -> dict[str, object]:
        if not self._running:
            raise Unavailable.of("transport stopped")
        if not connection.authenticated:
            raise self._refuse(connection, "missing or wrong cluster token")
        if isinstance(body, _BadBody):
            raise Malformed.of(body.reason)
        try:
            envelope = decode(body, receiver=self.node_id, limits=self.settings.codec)
        except CodecError as e:
            self.log.debug("refused a malformed peer body: {error}", error=str(e))
            raise Malformed.of(str(e)) from None
        reason = refusal(envelope, cluster_id=self.cluster_id, peers=self._peers)
        if reason is not None:
            raise self._refuse(connection, reason)
        self._hand_over(envelope)
        return {}

    def _refuse(self, connection: _ServerConnection, reason: str) -> Refused:
        members = self._log_refusal(connection.client(), reason)
        if members is not None:
            refused = Refused.of(reason, initial_members=members)
            if len(refused.description.encode("utf-8")) <= amp.MAX_VALUE_LENGTH:
                return refused
        return Refused.of(reason)


def _client_endpoint(reactor: Any, host: str, port: int, timeout: float) -> Any:
    """An IP literal is connected to directly; a name goes through
    ``HostnameEndpoint`` (which resolves it and races the addresses, but
    reports a refused connection only after its 0.3 s attempt delay)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return HostnameEndpoint(reactor, host, port, timeout=timeout)
    if ip.version == 4:
        return TCP4ClientEndpoint(reactor, host, port, timeout=timeout)
    return TCP6ClientEndpoint(reactor, host, port, timeout=timeout)  # type: ignore[no-untyped-call]


def _reason(failure: Any) -> str:
    value = failure.value
    if isinstance(value, _RemoteError):
        return value.error
    return failure.getErrorMessage() or (failure.type.__name__ if failure.type else "failure")
