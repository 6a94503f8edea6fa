"""A lean HTTP/1.1 server for the node's busiest routes.

twisted.web's ``Request`` costs about half of a key read on the leader
(header objects, content-type parsing, a Date string per response, a
producer registered per request, chunked responses). The key routes and the
peer route need little of it: a request line, a few headers and a body of
known length. :class:`LeanHTTPChannel` parses exactly that and answers with
one ``Content-Length`` response.

Anything else on a connection -- another route, HTTP/1.0, a chunked body,
``Expect: 100-continue``, a body over the limit, anything it cannot parse --
hands the connection, from that request on, to twisted.web's own channel
built by the same :class:`~twisted.web.server.Site`, which then serves it as
it would have from the start. So every edge case keeps twisted.web's
behaviour, and only the well-formed common case takes the short path.

One request at a time per connection, as twisted.web does: bytes that
arrive meanwhile wait in a buffer (reading pauses when it grows), so a
client that pipelines still gets its answers in order.

May import the standard library and Twisted.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote_to_bytes

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress, IPushProducer
from twisted.internet.protocol import Protocol as TwistedProtocol
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import RESPONSES, datetimeToString
from twisted.web.server import NOT_DONE_YET, Site
from zope.interface import implementer  # type: ignore[import-untyped]

__all__ = ["FastResource", "LeanHTTPChannel", "LeanRequest", "LeanSite"]

#: A header block longer than this is left to twisted.web (which refuses it).
_HEADER_BYTES_MAX = 16 * 1024
#: Buffered bytes past this while a request is being served pause reading.
_BUFFER_PAUSE_BYTES = 64 * 1024
#: More header lines than this go to twisted.web (which refuses them).
_HEADERS_MAX = 500
_CRLF2 = b"\r\n\r\n"
#: RFC 9110 token characters (methods, header names).
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: An origin-form request target: printable ASCII, no spaces or controls.
_TARGET = re.compile(rb"/[\x21-\x7e]*")
_NO_BODY_STATUSES = frozenset({204, 304})


class FastResource(Protocol):
    """A site root that can say which paths the lean channel may serve."""

    def serves_fast(self, path: bytes) -> bool: ...

    def render(self, request: Any) -> Any: ...


@attrs.frozen
class _Head:
    """A request line and its headers, parsed; the body starts at
    ``body_start`` in the buffer and is ``length`` bytes long."""

    method: bytes
    uri: bytes
    headers: dict[bytes, bytes]
    body_start: int
    length: int


class _HandOver(Exception):
    """This request is not for the lean path: twisted.web takes the connection."""


class LeanRequest:
    """The part of twisted.web's ``Request`` the fast routes use: method,
    path, query, headers and body in; status, headers and body out."""

    body_too_large = False

    def __init__(
        self,
        channel: LeanHTTPChannel,
        method: bytes,
        uri: bytes,
        headers: dict[bytes, bytes],
        body: bytes,
    ) -> None:
        self.channel = channel
        self.method = method
        self.uri = uri
        path, _, self._query = uri.partition(b"?")
        self.path = path
        self._headers = headers
        self.content = io.BytesIO(body)
        self.code = 200
        self.response_headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._args: dict[bytes, list[bytes]] | None = None
        self.finished = False
        self.lost = False
        self._finish_waiters: list[Deferred[None]] = []

    # --- what came in -------------------------------------------------------

    @property
    def args(self) -> dict[bytes, list[bytes]]:
        if self._args is None:
            self._args = parse_qs(self._query, keep_blank_values=True) if self._query else {}
        return self._args

    @property
    def postpath(self) -> list[bytes]:
        return [unquote_to_bytes(segment) for segment in self.path[1:].split(b"/")]

    def getHeader(self, name: bytes | str) -> Any:
        """The last value of header ``name``; str in, str out, as twisted.web."""
        if isinstance(name, str):
            value = self._headers.get(name.lower().encode("latin-1"))
            return None if value is None else value.decode("latin-1")
        return self._headers.get(name.lower())

    def getRequestHostname(self) -> bytes:
        host = self._headers.get(b"host")
        if host is not None:
            if host.startswith(b"["):  # an IPv6 literal
                return host.split(b"]", 1)[0] + b"]"
            return host.split(b":", 1)[0]
        return self.channel.host_name()

    def getClientAddress(self) -> IAddress:
        return self.channel.peer()

    # --- what goes out ------------------------------------------------------

    def setResponseCode(self, code: int, message: bytes | None = None) -> None:
        self.code = code

    def setHeader(self, name: bytes | str, value: bytes | str) -> None:
        if isinstance(name, str):
            name = name.encode("latin-1")
        if isinstance(value, str):
            value = value.encode("latin-1")
        # As twisted.web's Headers: a line break in a value (a Location
        # built from a request, say) must not start a header of its own.
        name = _sanitize(name)
        value = _sanitize(value)
        lowered = name.lower()
        self.response_headers = [h for h in self.response_headers if h[0].lower() != lowered]
        self.response_headers.append((name, value))

    def write(self, data: bytes) -> None:
        if self.finished:
            raise RuntimeError("write() after finish()")
        self._body.append(data)

    def finish(self) -> None:
        if self.finished:
            raise RuntimeError("finish() called twice")
        self.finished = True
        self.channel.request_done(self, b"".join(self._body))
        waiters, self._finish_waiters = self._finish_waiters, []
        for d in waiters:
            d.callback(None)

    def notifyFinish(self) -> Deferred[None]:
        """Fires when the answer is sent, fails if the client left first."""
        d: Deferred[None] = Deferred()
        if self.lost:
            d.errback(ConnectionError("the client closed the connection"))
        elif self.finished:
            d.callback(None)
        else:
            self._finish_waiters.append(d)
        return d

    def connection_lost(self, reason: Failure) -> None:
        self.lost = True
        waiters, self._finish_waiters = self._finish_waiters, []
        for d in waiters:
            d.errback(reason)


def _sanitize(value: bytes) -> bytes:
    if b"\r" in value or b"\n" in value or b"\x00" in value:
        return (
            value.replace(b"\r\n", b" ")
            .replace(b"\r", b" ")
            .replace(b"\n", b" ")
            .replace(b"\x00", b" ")
        )
    return value


class _DateCache:
    """The Date header changes once a second; format it once a second."""

    def __init__(self, now: Callable[[], float] = time.time) -> None:
        self._now = now
        self._second = -1
        self._value = b""

    def value(self) -> bytes:
        second = int(self._now())
        if second != self._second:
            self._second = second
            self._value = datetimeToString(second)  # type: ignore[no-untyped-call]
        return self._value


_DATE = _DateCache()


@implementer(IPushProducer)
class LeanHTTPChannel(TwistedProtocol):
    """One client connection; see the module's docstring."""

    log = Logger()

    def __init__(self, site: LeanSite, addr: IAddress) -> None:
        self.site = site
        self.addr = addr
        self._buffer = bytearray()
        #: Where to go on looking for the end of the header block.
        self._scanned = 0
        #: The parsed head of a request whose body is still arriving.
        self._head: _Head | None = None
        self._pending: LeanRequest | None = None
        self._delegate: Any = None
        self._processing = False
        #: The transport's send buffer is full (the client reads slowly).
        self._write_blocked = False
        self._reading_paused = False
        self._closing = False
        self._idle_call: Any = None
        self._tcp: Any = None  # the transport, untyped (zope interfaces)

    # --- the connection ---------------------------------------------------

    def connectionMade(self) -> None:
        self._tcp = self.transport
        # As a producer, this channel hears when the client stops reading
        # its answers, and then stops serving and reading requests.
        self._tcp.registerProducer(self, True)
        self._reset_idle_timer()

    def dataReceived(self, data: bytes) -> None:
        if self._delegate is not None:
            self._delegate.dataReceived(data)
            return
        self._buffer += data
        if self._pending is not None or self._write_blocked:
            self._update_reading()
            return
        self._process()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._cancel_idle_timer()
        if self._delegate is not None:
            self._delegate.connectionLost(reason)
            return
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.connection_lost(reason)

    def peer(self) -> IAddress:
        return self._tcp.getPeer()  # type: ignore[no-any-return]

    def host_name(self) -> bytes:
        host = self._tcp.getHost()
        return str(getattr(host, "host", "")).encode("utf-8")

    # --- flow control (IPushProducer, for the transport) ----------------------

    def pauseProducing(self) -> None:
        self._write_blocked = True
        self._update_reading()

    def resumeProducing(self) -> None:
        self._write_blocked = False
        self._update_reading()
        if self._pending is None and self._buffer:
            self._process()

    def stopProducing(self) -> None:
        pass  # the connection is going away; connectionLost follows

    def _update_reading(self) -> None:
        """Read from the socket unless answers cannot be sent or requests
        pile up behind one being served."""
        pause = self._write_blocked or (
            self._pending is not None and len(self._buffer) > _BUFFER_PAUSE_BYTES
        )
        if pause != self._reading_paused and self._delegate is None and not self._closing:
            self._reading_paused = pause
            if pause:
                self._tcp.pauseProducing()
            else:
                self._tcp.resumeProducing()

    # --- requests ---------------------------------------------------------

    def _process(self) -> None:
        """Serve the buffered requests one after another, until one is
        incomplete, one is in flight, the client stopped reading, or
        twisted.web took over."""
        if self._processing:
            return
        self._processing = True
        try:
            while (
                self._pending is None
                and self._delegate is None
                and not self._closing
                and not self._write_blocked
            ):
                try:
                    request = self._next_request()
                except _HandOver:
                    self._hand_over()
                    return
                if request is None:
                    return
                self._serve(request)
        finally:
            self._processing = False
        self._update_reading()

    def _next_request(self) -> LeanRequest | None:
        head = self._head
        if head is None:
            if not self._buffer:
                return None
            head = self._head = self._parse_head()
            if head is None:
                return None
        buffer = self._buffer
        stop = head.body_start + head.length
        if len(buffer) < stop:
            return None
        body = bytes(buffer[head.body_start : stop])
        del buffer[:stop]
        self._head = None
        self._scanned = 0
        return LeanRequest(self, head.method, head.uri, head.headers, body)

    def _parse_head(self) -> _Head | None:
        """The request line and headers, once all arrived; raises _HandOver
        for anything but the plain case (twisted.web then answers it,
        with a 400 where it is malformed)."""
        buffer = self._buffer
        end = buffer.find(_CRLF2, max(0, self._scanned - 3))
        if end < 0:
            self._scanned = len(buffer)
            if len(buffer) > _HEADER_BYTES_MAX:
                raise _HandOver
            return None
        if end > _HEADER_BYTES_MAX:
            raise _HandOver
        block = bytes(buffer[:end])
        lines = block.split(b"\r\n")
        if len(lines) > _HEADERS_MAX + 1 or b"\x00" in block:
            raise _HandOver
        # A bare CR or LF is a line end to some and not to others: the
        # stuff of request smuggling. Not for the short path.
        if block.count(b"\r") != len(lines) - 1 or block.count(b"\n") != len(lines) - 1:
            raise _HandOver
        parts = lines[0].split(b" ")
        if len(parts) != 3 or parts[2] != b"HTTP/1.1":
            raise _HandOver
        method, uri = parts[0], parts[1]
        if _TOKEN.fullmatch(method) is None or _TARGET.fullmatch(uri) is None:
            raise _HandOver
        if not self.site.root.serves_fast(uri.partition(b"?")[0]):
            raise _HandOver
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or _TOKEN.fullmatch(name) is None:
                raise _HandOver  # malformed, or an obsolete folded line
            name = name.lower()
            if name in headers and name in (b"content-length", b"host"):
                raise _HandOver
            headers[name] = value.strip(b" \t")
        if b"transfer-encoding" in headers or b"expect" in headers:
            raise _HandOver
        length_text = headers.get(b"content-length", b"0")
        if not length_text.isdigit() or len(length_text) > 12:
            raise _HandOver
        length = int(length_text)
        if length > self.site.body_bytes_max:
            raise _HandOver
        return _Head(method, uri, headers, end + 4, length)

    def _serve(self, request: LeanRequest) -> None:
        self._pending = request
        self._reset_idle_timer()
        try:
            body = self.site.root.render(request)
        except Exception:
            self.log.failure("request to {path} failed", path=request.path)
            request.setResponseCode(503)
            request.setHeader(b"Content-Type", b"application/json")
            body = b'{"error": "internal error; see the node\'s log"}'
        if body is not NOT_DONE_YET and not request.finished:
            request.write(body)
            request.finish()

    def request_done(self, request: LeanRequest, body: bytes) -> None:
        """``request`` finished: send its answer, then serve what waits."""
        if request is not self._pending:
            return  # the client left while it was served
        self._pending = None
        if request.lost:
            return
        self._send(request, body)
        self._process()

    def _send(self, request: LeanRequest, body: bytes) -> None:
        code = request.code
        reason = RESPONSES.get(code, b"Unknown Status")
        head = [b"HTTP/1.1 %d %s\r\nDate: %s\r\n" % (code, reason, _DATE.value())]
        for name, value in request.response_headers:
            head.append(b"%s: %s\r\n" % (name, value))
        if code not in _NO_BODY_STATUSES:
            head.append(b"Content-Length: %d\r\n" % len(body))
        else:
            body = b""
        connection = request.getHeader(b"connection")
        close = connection is not None and b"close" in (
            token.strip() for token in connection.lower().split(b",")
        )
        if close:
            head.append(b"Connection: close\r\n")
        head.append(b"\r\n")
        if request.method != b"HEAD":
            head.append(body)
        self._tcp.write(b"".join(head))
        if close:
            self._closing = True
            self._tcp.loseConnection()

    # --- handing over to twisted.web -----------------------------------------

    def _hand_over(self) -> None:
        """From this request on, twisted.web's channel serves the connection."""
        self._cancel_idle_timer()
        self._tcp.unregisterProducer()  # twisted.web's channel registers itself
        if self._reading_paused:
            self._reading_paused = False
            self._tcp.resumeProducing()
        channel = self.site.build_twisted_channel(self.addr)
        self._delegate = channel
        channel.makeConnection(self._tcp)
        data = bytes(self._buffer)
        self._buffer = bytearray()
        self._head = None
        if data:
            channel.dataReceived(data)

    # --- idle connections --------------------------------------------------

    def _reset_idle_timer(self) -> None:
        timeout = self.site.timeOut
        if timeout is None:
            return
        if self._idle_call is not None and self._idle_call.active():
            self._idle_call.reset(timeout)
        else:
            reactor: Any = self.site.reactor
            self._idle_call = reactor.callLater(timeout, self._idle)

    def _cancel_idle_timer(self) -> None:
        if self._idle_call is not None and self._idle_call.active():
            self._idle_call.cancel()
        self._idle_call = None

    def _idle(self) -> None:
        self._idle_call = None
        if self._pending is not None:
            self._reset_idle_timer()  # still being served: not idle
            return
        self._tcp.loseConnection()


class LeanSite(Site):
    """A ``Site`` whose connections start on :class:`LeanHTTPChannel`.

    ``resource`` must be a :class:`FastResource`; ``body_bytes_max`` bounds
    the bodies the lean path buffers (larger ones go to twisted.web, whose
    request class answers 413 without buffering them)."""

    def __init__(self, resource: FastResource, body_bytes_max: int, reactor: Any = None) -> None:
        super().__init__(resource, reactor=reactor)  # type: ignore[no-untyped-call]
        self.root = resource
        self.body_bytes_max = body_bytes_max

    def buildProtocol(self, addr: IAddress) -> LeanHTTPChannel:  # type: ignore[override]
        return LeanHTTPChannel(self, addr)

    def build_twisted_channel(self, addr: IAddress) -> Any:
        return Site.buildProtocol(self, addr)  # type: ignore[no-untyped-call]
