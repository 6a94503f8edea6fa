"""A lean HTTP/1.1 client for the peer transport's one kind of request:
``POST`` a body already in memory, read back the status and a small body.

Why not twisted.web's ``Agent``: under load its layers (header objects,
body producers and consumers, response body delivery) cost the leader a
sixth of its CPU for a request whose answer is almost always a bodiless
204. This client writes each request in one ``write`` and parses the
response from the bytes as they come.

What it does:

- Persistent connections per ``(host, port)``, at most ``max_connections``
  of them; a request beyond that waits (first come, first served) for one
  to free up. One request at a time per connection, no pipelining.
- Responses framed by ``Content-Length``, by ``Transfer-Encoding: chunked``
  (extensions and trailers read and ignored) or, failing both, by the
  server closing the connection; none for 1xx (skipped), 204 and 304.
- A connection is reused after a complete response, unless the server
  said ``Connection: close``, spoke HTTP/1.0, or framed the body by EOF.
- Cancelling a request (a timeout, a stopping transport) aborts its
  connection; a connection that fails mid-response fails its request.
  A request sent on an idle connection the server had just closed fails
  too: ``POST`` is not idempotent, so it is not retried (Raft retransmits).

May import only the standard library and Twisted.
"""

from __future__ import annotations

from collections import deque
from typing import Any
from urllib.parse import urlsplit

from twisted.internet.abstract import isIPAddress
from twisted.internet.defer import Deferred, DeferredList, fail, succeed
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure

__all__ = [
    "BODY_BYTES_MAX",
    "ClientClosed",
    "ConnectionClosed",
    "HTTPClientError",
    "LeanHTTPClient",
    "MalformedResponse",
    "ResponseTooLarge",
]

#: The largest response body accepted by default (peers answer with a
#: short JSON error at most).
BODY_BYTES_MAX = 1 << 20
#: The largest status line plus headers (and, apart, trailers) accepted.
HEAD_BYTES_MAX = 64 * 1024
#: A chunk-size line longer than this is not one.
_CHUNK_LINE_MAX = 1024
_HEX_DIGITS = b"0123456789abcdefABCDEF"


class HTTPClientError(Exception):
    """A request failed for a reason of this client's (not a status)."""


class MalformedResponse(HTTPClientError):
    """The server's answer is not HTTP/1.1 as this client reads it."""


class ResponseTooLarge(HTTPClientError):
    """The response body is over the client's bound."""


class ConnectionClosed(HTTPClientError):
    """The connection ended before the response was complete."""


class ClientClosed(HTTPClientError):
    """``close()`` was called while the request waited for a connection."""


_Key = tuple[str, int]


class _Target:
    """What a URL tells the client: where to connect, and the request's
    first lines (parsed once per distinct URL)."""

    __slots__ = ("head", "key")

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname or "@" in parts.netloc:
            raise ValueError(f"not an http://host[:port]/path URL: {url!r}")
        port = parts.port or 80
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.key: _Key = (parts.hostname, port)
        self.head = f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n".encode("ascii")


class _Request:
    __slots__ = ("connecting", "connection", "data", "deferred", "key")

    def __init__(self, key: _Key, data: bytes, client: LeanHTTPClient) -> None:
        self.key = key
        self.data = data
        self.deferred: Deferred[tuple[int, bytes]] = Deferred(lambda _: client._cancel(self))
        #: The connection attempt made for this request, while it lasts.
        self.connecting: Deferred[Any] | None = None
        #: The connection the request was written to.
        self.connection: _Connection | None = None


# Parser states.
_HEAD = 0
_LENGTH = 1
_CHUNK_SIZE = 2
_CHUNK_DATA = 3
_CHUNK_END = 4
_TRAILERS = 5
_UNTIL_EOF = 6
_DONE = 7


class _ResponseParser:
    """Reads one response from the bytes fed to it; :meth:`feed` returns
    True once it is complete (then ``status``, ``body``, ``keep_alive``
    and any ``leftover`` bytes are set). Raises :class:`HTTPClientError`
    on anything it cannot read."""

    __slots__ = (
        "_body",
        "_body_bytes_max",
        "_body_length",
        "_buffer",
        "_remaining",
        "_state",
        "_trailer_bytes",
        "keep_alive",
        "leftover",
        "status",
    )

    def __init__(self, body_bytes_max: int) -> None:
        self._body_bytes_max = body_bytes_max
        self._buffer = bytearray()
        self._state = _HEAD
        self._body: list[bytes] = []
        self._body_length = 0
        self._remaining = 0
        self._trailer_bytes = 0
        self.status = 0
        self.keep_alive = True
        self.leftover = b""

    @property
    def body(self) -> bytes:
        return b"".join(self._body)

    @property
    def until_eof(self) -> bool:
        """Whether the body ends where the connection does."""
        return self._state == _UNTIL_EOF

    def feed(self, data: bytes) -> bool:
        if self._buffer:
            # A line or head is still incomplete: add to it in place and
            # look for its end only in what is new, so a head trickling in
            # byte by byte costs time in proportion to its size.
            self._buffer += data
            delimiter = b"\r\n\r\n" if self._state == _HEAD else b"\r\n"
            if self._state in (_HEAD, _CHUNK_SIZE, _TRAILERS):
                start = max(0, len(self._buffer) - len(data) - len(delimiter) + 1)
                if self._buffer.find(delimiter, start) < 0:
                    self._check_partial(len(self._buffer))
                    return False
            buf = bytes(self._buffer)
            self._buffer = bytearray()
        else:
            buf = data
        while True:
            state = self._state
            if state == _HEAD:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    self._check_partial(len(buf))
                    self._buffer = bytearray(buf)
                    return False
                self._read_head(buf[:end])
                buf = buf[end + 4 :]
            elif state in (_LENGTH, _CHUNK_DATA):
                need = self._remaining
                if len(buf) < need:
                    self._remaining -= len(buf)
                    if buf:
                        self._body.append(buf)
                    return False
                self._body.append(buf[:need])
                buf = buf[need:]
                self._state = _DONE if state == _LENGTH else _CHUNK_END
            elif state == _CHUNK_SIZE:
                end = buf.find(b"\r\n")
                if end < 0:
                    self._check_partial(len(buf))
                    self._buffer = bytearray(buf)
                    return False
                self._read_chunk_size(buf[:end])
                buf = buf[end + 2 :]
            elif state == _CHUNK_END:
                if len(buf) < 2:
                    self._buffer = bytearray(buf)
                    return False
                if buf[:2] != b"\r\n":
                    raise MalformedResponse("chunk data not followed by CRLF")
                buf = buf[2:]
                self._state = _CHUNK_SIZE
            elif state == _TRAILERS:
                end = buf.find(b"\r\n")
                if end < 0:
                    self._check_partial(len(buf))
                    self._buffer = bytearray(buf)
                    return False
                line = buf[:end]
                buf = buf[end + 2 :]
                if not line:
                    self._state = _DONE
                    continue
                self._trailer_bytes += end + 2
                if self._trailer_bytes > HEAD_BYTES_MAX:
                    raise MalformedResponse(f"trailers over {HEAD_BYTES_MAX} bytes")
                if b":" not in line:
                    raise MalformedResponse(f"malformed trailer line {line[:80]!r}")
            elif state == _UNTIL_EOF:
                if buf:
                    self._grow(len(buf))
                    self._body.append(buf)
                return False
            else:  # _DONE
                self.leftover = buf
                return True

    def _check_partial(self, size: int) -> None:
        """``size`` bytes of an unfinished head or line are buffered."""
        state = self._state
        if state == _HEAD and size > HEAD_BYTES_MAX:
            raise MalformedResponse(f"response head over {HEAD_BYTES_MAX} bytes")
        if state == _CHUNK_SIZE and size > _CHUNK_LINE_MAX:
            raise MalformedResponse("chunk size line too long")
        if state == _TRAILERS and self._trailer_bytes + size > HEAD_BYTES_MAX:
            raise MalformedResponse(f"trailers over {HEAD_BYTES_MAX} bytes")

    def _grow(self, size: int) -> None:
        self._body_length += size
        if self._body_length > self._body_bytes_max:
            raise ResponseTooLarge(f"response body over {self._body_bytes_max} bytes")

    def _read_head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        status_line = lines[0]
        parts = status_line.split(b" ", 2)
        if (
            len(parts) < 2
            or parts[0] not in (b"HTTP/1.1", b"HTTP/1.0")
            or len(parts[1]) != 3
            or not parts[1].isdigit()
        ):
            raise MalformedResponse(f"malformed status line {status_line[:80]!r}")
        status = int(parts[1])
        if 100 <= status < 200:
            if status == 101:
                raise MalformedResponse("unexpected 101 Switching Protocols")
            return  # an interim response (100 Continue): the real one follows
        self.status = status
        keep_alive = parts[0] == b"HTTP/1.1"
        length: bytes | None = None
        codings: list[bytes] = []
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or not name or name != name.strip():
                raise MalformedResponse(f"malformed header line {line[:80]!r}")
            name = name.lower()
            value = value.strip()
            if name == b"content-length":
                if (
                    not value.isdigit()
                    or len(value) > 18
                    or (length is not None and value != length)
                ):
                    raise MalformedResponse(f"bad Content-Length {value[:40]!r}")
                length = value
            elif name == b"transfer-encoding":
                codings += [c.strip().lower() for c in value.split(b",") if c.strip()]
            elif name == b"connection" and b"close" in (
                t.strip().lower() for t in value.split(b",")
            ):
                keep_alive = False
        if status in (204, 304):
            self._state = _DONE
        elif codings:
            # Transfer-Encoding overrides Content-Length (RFC 9112 6.3);
            # both at once is suspect, so the connection is not reused.
            if length is not None:
                keep_alive = False
            if codings[-1] == b"chunked":
                self._state = _CHUNK_SIZE
            else:
                keep_alive = False
                self._state = _UNTIL_EOF
        elif length is not None:
            size = int(length)
            self._grow(size)
            self._remaining = size
            self._state = _LENGTH if size else _DONE
        else:
            keep_alive = False
            self._state = _UNTIL_EOF
        self.keep_alive = keep_alive

    def _read_chunk_size(self, line: bytes) -> None:
        text = line.split(b";", 1)[0].strip(b" \t")
        if not text or len(text) > 16 or text.strip(_HEX_DIGITS):
            raise MalformedResponse(f"malformed chunk size {line[:80]!r}")
        size = int(text, 16)
        if size == 0:
            self._state = _TRAILERS
            return
        self._grow(size)
        self._remaining = size
        self._state = _CHUNK_DATA


class _Connection(Protocol):
    """One persistent connection of the pool; one request at a time."""

    def __init__(self, client: LeanHTTPClient, key: _Key) -> None:
        self._client = client
        self.key = key
        self._tcp: Any = None
        self._request: _Request | None = None
        self._parser: _ResponseParser | None = None
        #: Set once the connection must not take another request.
        self.closing = False
        self.lost = False
        self._lost_waiters: list[Deferred[None]] = []

    @property
    def busy(self) -> bool:
        return self._request is not None

    def connectionMade(self) -> None:
        self._tcp = self.transport
        # The request goes in one write and waits for its answer: Nagle's
        # algorithm could only delay it.
        set_no_delay = getattr(self._tcp, "setTcpNoDelay", None)
        if set_no_delay is not None:
            set_no_delay(True)

    def send(self, request: _Request) -> None:
        assert self._request is None and not self.closing
        self._request = request
        request.connection = self
        self._parser = _ResponseParser(self._client.body_bytes_max)
        self._tcp.write(request.data)

    def abort(self) -> None:
        """Drop the connection now, with whatever request it carries (whose
        caller has given up on it or is told by ``connectionLost``)."""
        self.closing = True
        if not self.lost:
            self._tcp.abortConnection()

    def when_lost(self) -> Deferred[None]:
        if self.lost:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._lost_waiters.append(d)
        return d

    def dataReceived(self, data: bytes) -> None:
        request, parser = self._request, self._parser
        if request is None or parser is None:
            if not self.closing:
                # Bytes nobody asked for (an idle-timeout notice, say): the
                # connection's framing can no longer be trusted.
                self.abort()
            return
        try:
            complete = parser.feed(data)
        except HTTPClientError as e:
            self._request = self._parser = None
            self.abort()
            _fail(request, e)
            return
        if not complete:
            return
        self._request = self._parser = None
        if parser.keep_alive and not parser.leftover:
            self._client._release(self)
        else:
            self.closing = True
            self._tcp.loseConnection()
        if not request.deferred.called:
            request.deferred.callback((parser.status, parser.body))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost = True
        self.closing = True
        request, parser = self._request, self._parser
        self._request = self._parser = None
        if request is not None and parser is not None:
            if parser.until_eof and isinstance(reason.value, ConnectionDone):
                if not request.deferred.called:
                    request.deferred.callback((parser.status, parser.body))
            else:
                host, port = self.key
                error = ConnectionClosed(
                    f"connection to {host}:{port} closed before the response was "
                    f"complete ({reason.getErrorMessage()})"
                )
                _fail(request, error)
        self._client._lost(self)
        waiters, self._lost_waiters = self._lost_waiters, []
        for d in waiters:
            d.callback(None)


class _ConnectionFactory(Factory):
    """Hands an endpoint the one protocol instance made for the attempt."""

    noisy = False

    def __init__(self, connection: _Connection) -> None:
        self._connection = connection

    def buildProtocol(self, addr: Any) -> _Connection:
        return self._connection


def _fail(request: _Request, failure: Failure | Exception) -> None:
    if not request.deferred.called:
        request.deferred.errback(failure)


class LeanHTTPClient:
    """POSTs bodies over a pool of persistent HTTP/1.1 connections; see
    the module docstring. ``reactor`` must provide ``IReactorTCP`` (and,
    for host names other than IPv4 literals, a name resolver)."""

    def __init__(
        self,
        reactor: Any,
        *,
        max_connections: int = 2,
        body_bytes_max: int = BODY_BYTES_MAX,
        connect_timeout_seconds: float = 30.0,
    ) -> None:
        assert max_connections >= 1, max_connections
        self._reactor = reactor
        self.max_connections = max_connections
        self.body_bytes_max = body_bytes_max
        self._connect_timeout = connect_timeout_seconds
        self._targets: dict[str, _Target] = {}
        self._endpoints: dict[_Key, Any] = {}
        #: Connections open or being opened, per host (the bounded count).
        self._open: dict[_Key, int] = {}
        self._idle: dict[_Key, list[_Connection]] = {}
        self._waiting: dict[_Key, deque[_Request]] = {}
        self._connecting: set[_Request] = set()
        self._connections: set[_Connection] = set()

    def post(
        self, url: str, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> Deferred[tuple[int, bytes]]:
        """POST ``body`` to ``url`` with ``headers`` (besides Host and
        Content-Length); fires with the status code and the response body."""
        target = self._targets.get(url)
        if target is None:
            try:
                target = _Target(url)
            except ValueError as e:
                return fail(e)
            if len(self._targets) >= 1000:  # peers come and go; stay bounded
                self._targets.clear()
            self._targets[url] = target
        parts = [target.head, b"Content-Length: %d\r\n" % len(body)]
        for name, value in headers:
            if b"\r" in name or b"\n" in name or b"\r" in value or b"\n" in value:
                return fail(ValueError(f"header {name!r} contains CR or LF"))
            parts += (name, b": ", value, b"\r\n")
        parts += (b"\r\n", body)
        request = _Request(target.key, b"".join(parts), self)
        self._start(request)
        return request.deferred

    def close(self) -> Deferred[None]:
        """Close every connection (aborting any still carrying a request)
        and fail requests still waiting; fires once all are closed. The
        client stays usable: a later ``post`` opens new connections."""
        waiting, self._waiting = self._waiting, {}
        for queue in waiting.values():
            for request in queue:
                _fail(request, ClientClosed("the HTTP client was closed"))
        for request in list(self._connecting):
            _fail(request, ClientClosed("the HTTP client was closed"))
            if request.connecting is not None:
                request.connecting.cancel()
        closed = []
        for connection in list(self._connections):
            closed.append(connection.when_lost())
            if connection.busy:
                connection.abort()
            elif not connection.lost:
                connection.closing = True
                connection._tcp.loseConnection()
        return DeferredList(closed).addCallback(lambda _: None)

    # --- The pool -----------------------------------------------------------

    def _start(self, request: _Request) -> None:
        key = request.key
        idle = self._idle.get(key)
        while idle:
            connection = idle.pop()
            # One being closed (by close(), or after stray bytes) stays
            # listed until its connectionLost: not for a new request.
            if not connection.closing:
                connection.send(request)
                return
        if self._open.get(key, 0) < self.max_connections:
            self._connect(request)
        else:
            self._waiting.setdefault(key, deque()).append(request)

    def _connect(self, request: _Request) -> None:
        key = request.key
        self._open[key] = self._open.get(key, 0) + 1
        connection = _Connection(self, key)
        attempt = self._endpoint(key).connect(_ConnectionFactory(connection))
        request.connecting = attempt
        self._connecting.add(request)
        attempt.addCallbacks(
            self._connected, self._connect_failed, callbackArgs=(request,), errbackArgs=(request,)
        )

    def _endpoint(self, key: _Key) -> Any:
        endpoint = self._endpoints.get(key)
        if endpoint is None:
            host, port = key
            if isIPAddress(host):
                endpoint = TCP4ClientEndpoint(
                    self._reactor, host, port, timeout=self._connect_timeout
                )
            else:
                endpoint = HostnameEndpoint(
                    self._reactor, host, port, timeout=self._connect_timeout
                )
            self._endpoints[key] = endpoint
        return endpoint

    def _connected(self, connection: _Connection, request: _Request) -> None:
        request.connecting = None
        self._connecting.discard(request)
        self._connections.add(connection)
        if request.deferred.called:  # failed by close() as it connected
            self._release(connection)
        else:
            connection.send(request)

    def _connect_failed(self, failure: Failure, request: _Request) -> None:
        request.connecting = None
        self._connecting.discard(request)
        self._open[request.key] -= 1
        _fail(request, failure)
        self._dispatch(request.key)

    def _release(self, connection: _Connection) -> None:
        """``connection`` finished a request and may take another."""
        queue = self._waiting.get(connection.key)
        if queue:
            connection.send(queue.popleft())
        else:
            self._idle.setdefault(connection.key, []).append(connection)

    def _lost(self, connection: _Connection) -> None:
        key = connection.key
        self._connections.discard(connection)
        idle = self._idle.get(key)
        if idle and connection in idle:
            idle.remove(connection)
        self._open[key] -= 1
        self._dispatch(key)

    def _dispatch(self, key: _Key) -> None:
        """Open connections for waiting requests, as the bound allows."""
        queue = self._waiting.get(key)
        while queue and self._open.get(key, 0) < self.max_connections:
            self._connect(queue.popleft())

    def _cancel(self, request: _Request) -> None:
        connection = request.connection
        if connection is not None:
            if connection._request is request:
                connection._request = connection._parser = None
                connection.abort()  # its slot frees when the abort lands
        elif request.connecting is not None:
            request.connecting.cancel()
        else:
            queue = self._waiting.get(request.key)
            if queue and request in queue:
                queue.remove(request)
