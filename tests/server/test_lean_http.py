"""graft.server.lean_http: the short path for the hot routes, and the hand
over to twisted.web for everything else."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from graft.server.lean_http import LeanHTTPChannel, LeanSite

FAST = b"/fast/"


class _Root(Resource):
    """Fast paths under /fast/ answer from ``answers`` (bytes, or a
    Deferred to finish later); the rest is twisted.web's business."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Any] = []
        self.later: list[tuple[Any, Deferred[bytes]]] = []
        self.fail = False

    def serves_fast(self, path: bytes) -> bool:
        return path.startswith(FAST)

    def render(self, request: Any) -> Any:
        self.seen.append(request)
        if self.fail:
            raise RuntimeError("a bug")
        if request.path.startswith(b"/fast/later"):
            d: Deferred[bytes] = Deferred()
            self.later.append((request, d))

            def done(body: bytes) -> None:
                if not request.lost:
                    request.write(body)
                    request.finish()

            d.addCallback(done)
            return NOT_DONE_YET
        if request.path == b"/fast/empty":
            request.setResponseCode(204)
            return b""
        request.setHeader(b"Content-Type", b"application/json")
        request.setHeader(b"ETag", b'"7"')
        body = request.content.read()
        query = b",".join(b"%s=%s" % (k, v[-1]) for k, v in sorted(request.args.items()))
        return b"%s %s [%s] %s" % (request.method, request.path, query, body)


def _connect(root: _Root | None = None, body_bytes_max: int = 100) -> tuple[Any, Any, Any, Clock]:
    root = root or _Root()
    clock = Clock()
    site = LeanSite(root, body_bytes_max, reactor=clock)
    addr = IPv4Address("TCP", "127.0.0.1", 40000)
    channel = site.buildProtocol(addr)
    transport = StringTransport(peerAddress=addr)
    channel.makeConnection(transport)
    return root, channel, transport, clock


def _answers(raw: bytes) -> list[tuple[bytes, dict[bytes, bytes], bytes]]:
    """Split a byte stream of responses with Content-Length into
    (status line, headers, body)."""
    out = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b": ")
            headers[name.lower()] = value
        length = int(headers.get(b"content-length", b"0"))
        out.append((lines[0], headers, rest[:length]))
        raw = rest[length:]
    return out


def test_fast_request_is_answered_with_content_length_and_date():
    root, channel, transport, _ = _connect()
    channel.dataReceived(b"GET /fast/k?consistency=stale HTTP/1.1\r\nHost: x\r\n\r\n")

    ((status, headers, body),) = _answers(transport.value())
    assert status == b"HTTP/1.1 200 OK"
    assert body == b"GET /fast/k [consistency=stale] "
    assert headers[b"content-length"] == b"%d" % len(body)
    assert headers[b"etag"] == b'"7"'
    assert b"date" in headers
    assert not transport.disconnecting
    assert type(root.seen[0]).__name__ == "LeanRequest"


def test_body_of_known_length_is_read_even_when_it_arrives_byte_by_byte():
    _, channel, transport, _ = _connect()
    raw = b'PUT /fast/k HTTP/1.1\r\nContent-Length: 9\r\nHost: x\r\n\r\n{"a":"b"}'
    for i in range(len(raw)):
        channel.dataReceived(raw[i : i + 1])

    ((status, _, body),) = _answers(transport.value())
    assert status == b"HTTP/1.1 200 OK"
    assert body == b'PUT /fast/k [] {"a":"b"}'


def test_pipelined_requests_are_answered_in_order():
    root, channel, transport, _ = _connect()
    channel.dataReceived(
        b"GET /fast/later HTTP/1.1\r\n\r\nGET /fast/b HTTP/1.1\r\n\r\nGET /fast/c HTTP/1.1\r\n\r\n"
    )
    assert transport.value() == b""
    assert len(root.seen) == 1  # the next waits for the first answer

    root.later[0][1].callback(b"first")

    answers = _answers(transport.value())
    assert [body for _, _, body in answers] == [b"first", b"GET /fast/b [] ", b"GET /fast/c [] "]


def test_head_sends_the_length_but_no_body():
    _, channel, transport, _ = _connect()
    channel.dataReceived(b"HEAD /fast/k HTTP/1.1\r\n\r\nGET /fast/z HTTP/1.1\r\n\r\n")

    raw = transport.value()
    first, _, second = raw.partition(b"\r\n\r\n")
    assert b"Content-Length: 16" in first  # len(b"HEAD /fast/k [] ")
    assert second.startswith(b"HTTP/1.1 200 OK")


def test_no_content_answer_has_neither_length_nor_body():
    _, channel, transport, _ = _connect()
    channel.dataReceived(b"DELETE /fast/empty HTTP/1.1\r\n\r\n")

    assert transport.value().startswith(b"HTTP/1.1 204 No Content\r\n")
    assert b"Content-Length" not in transport.value()
    assert transport.value().endswith(b"\r\n\r\n")


def test_connection_close_closes_after_the_answer():
    _, channel, transport, _ = _connect()
    channel.dataReceived(b"GET /fast/k HTTP/1.1\r\nConnection: Close\r\n\r\n")

    assert b"Connection: close" in transport.value()
    assert transport.disconnecting


def test_client_leaving_mid_request_gets_nothing_written():
    root, channel, transport, _ = _connect()
    channel.dataReceived(b"GET /fast/later HTTP/1.1\r\n\r\n")
    request, d = root.later[0]
    finished = request.notifyFinish()
    errors: list[Failure] = []
    finished.addErrback(errors.append)

    channel.connectionLost(Failure(ConnectionError("gone")))
    d.callback(b"too late")

    assert errors and transport.value() == b""


def test_a_handler_that_raises_gets_a_json_503_and_the_connection_lives():
    root, channel, transport, _ = _connect()
    root.fail = True
    channel.dataReceived(b"GET /fast/k HTTP/1.1\r\n\r\n")
    root.fail = False
    channel.dataReceived(b"GET /fast/k HTTP/1.1\r\n\r\n")

    (first, second) = _answers(transport.value())
    assert first[0] == b"HTTP/1.1 503 Service Unavailable"
    assert b"internal error" in first[2]
    assert second[0] == b"HTTP/1.1 200 OK"


def test_reading_pauses_while_a_request_waits_and_much_more_arrives():
    root, channel, transport, _ = _connect()
    channel.dataReceived(b"GET /fast/later HTTP/1.1\r\n\r\n")
    channel.dataReceived(b"GET /fast/b HTTP/1.1\r\nX-Pad: " + b"p" * 70_000)
    assert transport.producerState == "paused"

    root.later[0][1].callback(b"first")

    assert transport.producerState == "producing"


def test_idle_connection_is_closed_after_the_sites_timeout():
    _, channel, transport, clock = _connect()
    channel.dataReceived(b"GET /fast/k HTTP/1.1\r\n\r\n")
    clock.advance(channel.site.timeOut - 1)
    assert not transport.disconnecting

    clock.advance(2)

    assert transport.disconnecting


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(b"GET /other HTTP/1.1\r\n\r\n", id="another route"),
        pytest.param(b"GET /fast/k HTTP/1.0\r\n\r\n", id="HTTP/1.0"),
        pytest.param(
            b"PUT /fast/k HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            id="chunked body",
        ),
        pytest.param(
            b"PUT /fast/k HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
            id="expect continue",
        ),
        pytest.param(b"GET /fast/k HTTP/1.1\r\nbad header line\r\n\r\n", id="malformed header"),
        pytest.param(b"GET /fast/k HTTP/1.1\r\n folded\r\n\r\n", id="folded header"),
        pytest.param(b"GET  /fast/k HTTP/1.1\r\n\r\n", id="bad request line"),
        pytest.param(
            b"PUT /fast/k HTTP/1.1\r\nContent-Length: 101\r\n\r\n" + b"x" * 101,
            id="body over limit",
        ),
        pytest.param(b"PUT /fast/k HTTP/1.1\r\nContent-Length: -1\r\n\r\n", id="bad length"),
        pytest.param(
            b"GET /fast/k HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            id="two lengths",
        ),
    ],
)
def test_anything_but_the_common_case_is_handed_to_twisted_web(request_bytes):
    root, channel, transport, _ = _connect()
    channel.dataReceived(request_bytes)

    assert channel._delegate is not None
    assert all(type(r).__name__ != "LeanRequest" for r in root.seen)
    assert transport.value().startswith(b"HTTP/1.")


def test_after_a_hand_over_the_connection_stays_with_twisted_web():
    root, channel, transport, _ = _connect()
    channel.dataReceived(b"GET /fast/a HTTP/1.1\r\n\r\nGET /other HTTP/1.1\r\n\r\n")
    channel.dataReceived(b"GET /fast/b HTTP/1.1\r\n\r\n")

    kinds = [type(r).__name__ for r in root.seen]
    assert kinds[0] == "LeanRequest"
    assert kinds[1:] == ["Request", "Request"]
    assert transport.value().count(b"HTTP/1.1 200 OK") == 3


def test_oversized_header_block_is_handed_over_and_refused():
    """twisted.web drops a connection whose header line is too long."""
    _, channel, transport, _ = _connect()
    channel.dataReceived(b"GET /fast/k HTTP/1.1\r\nX-Big: " + b"b" * 20_000)
    assert isinstance(channel, LeanHTTPChannel)
    assert channel._delegate is not None
    assert transport.disconnecting


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(b"GET /fast/a?x=\nSet-Cookie:evil=1 HTTP/1.1\r\n\r\n", id="LF in target"),
        pytest.param(b"GET /fast/\xc3\xa9 HTTP/1.1\r\n\r\n", id="raw non-ASCII target"),
        pytest.param(
            b"GET /fast/a HTTP/1.1\r\nX: y\nContent-Length: 30\r\n\r\n" + b"x" * 30,
            id="bare LF in a header",
        ),
        pytest.param(b"GET /fast/a HTTP/1.1\r\nX: y\rZ: 5\r\n\r\n", id="bare CR in a header"),
        pytest.param(b"GET /fast/a HTTP/1.1\r\nX: a\x00b\r\n\r\n", id="NUL in a header"),
        pytest.param(b"GET /fast/a HTTP/1.1\r\nX(: y\r\n\r\n", id="header name not a token"),
        pytest.param(
            b"GET /fast/a HTTP/1.1\r\n" + b"X-H: v\r\n" * 501 + b"\r\n", id="too many headers"
        ),
        pytest.param(
            b"GET /fast/a HTTP/1.1\r\nX-Big: " + b"b" * 17_000 + b"\r\n\r\n",
            id="long header block in one piece",
        ),
    ],
)
def test_what_could_be_read_two_ways_is_left_to_twisted_web(request_bytes):
    """Bytes that parsers disagree on (request smuggling, header
    injection) never take the short path; twisted.web refuses them."""
    root, channel, transport, _ = _connect()
    channel.dataReceived(request_bytes)

    assert channel._delegate is not None
    assert root.seen == []
    assert transport.value().startswith(b"HTTP/1.1 400") or transport.disconnecting


def test_a_line_break_in_a_header_value_does_not_start_a_header():
    root, channel, transport, _ = _connect()
    channel.dataReceived(b"GET /fast/later HTTP/1.1\r\n\r\n")
    request, d = root.later[0]
    request.setHeader(b"Location", b"http://leader/x\r\nSet-Cookie: evil=1")

    d.callback(b"")

    assert b"\r\nSet-Cookie" not in transport.value()
    assert b"Location: http://leader/x Set-Cookie: evil=1\r\n" in transport.value()


def test_the_header_block_is_parsed_once_however_the_body_arrives(monkeypatch):
    """A large body arriving in small pieces costs time in proportion to
    its size: the head is not parsed again for every piece."""
    _, channel, transport, _ = _connect(body_bytes_max=100_000)
    calls = []
    parse = channel._parse_head
    monkeypatch.setattr(channel, "_parse_head", lambda: calls.append(1) or parse())
    body = b"x" * 90_000
    channel.dataReceived(b"PUT /fast/k HTTP/1.1\r\nContent-Length: 90000\r\n\r\n")
    for i in range(0, len(body), 1000):
        channel.dataReceived(body[i : i + 1000])

    assert len(calls) == 1
    ((status, _, answer),) = _answers(transport.value())
    assert status == b"HTTP/1.1 200 OK" and answer.endswith(body)


def test_a_client_that_stops_reading_stops_being_served():
    """The transport's send buffer is full: no more requests are served,
    and reading stops, until it drains."""
    root, channel, transport, _ = _connect()
    assert transport.producer is channel
    channel.pauseProducing()  # what the transport does when its buffer fills
    channel.dataReceived(b"GET /fast/a HTTP/1.1\r\n\r\nGET /fast/b HTTP/1.1\r\n\r\n")

    assert root.seen == []
    assert transport.producerState == "paused"

    channel.resumeProducing()

    assert len(_answers(transport.value())) == 2
    assert transport.producerState == "producing"


def test_hand_over_unregisters_the_lean_channel_as_producer():
    _, channel, transport, _ = _connect()
    channel.dataReceived(b"GET /other HTTP/1.1\r\n\r\n")
    assert transport.producer is not channel
