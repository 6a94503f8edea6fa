"""The lean HTTP/1.1 client under the HTTP transport: connection reuse and
bounds, response framing (Content-Length, chunked, none, EOF), failures
and cancellation. Most tests talk to real servers on 127.0.0.1 port 0
(twisted.web's, or a scripted one for answers twisted.web never gives);
a few drive one connection through a MemoryReactor where the exact bytes
or an exact interleaving matter."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from graft.transport._http_client import (
    ConnectionClosed,
    LeanHTTPClient,
    MalformedResponse,
    ResponseTooLarge,
)
from tests.transport.backends import reactor, wait

HEADERS = [(b"Content-Type", b"application/test"), (b"X-Token", b"t")]


# --- Servers ---------------------------------------------------------------


class Answering(Resource):
    """Answers every POST with ``render(request)``; records what came in
    and can hold requests unanswered until told."""

    isLeaf = True

    def __init__(self, render: Callable[[Request], bytes | int] | None = None) -> None:
        super().__init__()
        self.render_answer = render or (lambda request: _no_content(request))
        self.hold = False
        self.held: list[Request] = []
        self.bodies: list[bytes] = []
        self.headers: list[dict[bytes, bytes]] = []
        self._waiters: list[tuple[int, Deferred[None]]] = []

    def render_POST(self, request: Request) -> bytes | int:
        assert request.content is not None
        self.bodies.append(request.content.read())
        self.headers.append(dict(request.requestHeaders.getAllRawHeaders()))  # type: ignore[arg-type]
        ready = [d for n, d in self._waiters if len(self.bodies) >= n]
        self._waiters = [(n, d) for n, d in self._waiters if len(self.bodies) < n]
        for d in ready:
            d.callback(None)
        if self.hold:
            self.held.append(request)
            request.notifyFinish().addErrback(lambda _: None)
            return NOT_DONE_YET
        return self.render_answer(request)

    def seen(self, count: int) -> Deferred[None]:
        """Fires once ``count`` requests have arrived in total."""
        d: Deferred[None] = Deferred()
        if len(self.bodies) >= count:
            d.callback(None)
        else:
            self._waiters.append((count, d))
        return d

    def answer_one(self) -> None:
        request = self.held.pop(0)
        request.setResponseCode(204)
        request.finish()


def _no_content(request: Request) -> bytes:
    request.setResponseCode(204)
    return b""


class CountingSite(Site):
    """A Site that counts the connections it accepted and keeps the open
    ones, so a test can see reuse and close them from the server side."""

    def __init__(self, resource: Resource) -> None:
        super().__init__(resource)
        self.accepted = 0
        self.open: list[Any] = []
        self.closed: list[Deferred[None]] = []

    def buildProtocol(self, addr: Any) -> Any:
        channel = super().buildProtocol(addr)
        assert channel is not None
        self.accepted += 1
        self.open.append(channel)
        lost: Deferred[None] = Deferred()
        self.closed.append(lost)
        connection_lost = channel.connectionLost

        def on_lost(reason: Failure) -> None:
            connection_lost(reason)
            self.open.remove(channel)
            lost.callback(None)

        channel.connectionLost = on_lost
        return channel


class AndClose(bytes):
    """A canned answer after which the scripted server closes."""


class Scripted(Protocol):
    """A server that reads one request (head and Content-Length body) at a
    time and answers each with the next canned bytes; ``None`` closes the
    connection instead."""

    def __init__(self, answers: list[bytes | None]) -> None:
        self.answers = answers
        self.buffer = b""

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, _, rest = self.buffer.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
            if len(rest) < length:
                return
            self.buffer = rest[length:]
            answer = self.answers.pop(0) if self.answers else None
            assert self.transport is not None
            if answer is None:
                self.transport.loseConnection()
                return
            self.transport.write(answer)
            if isinstance(answer, AndClose):
                self.transport.loseConnection()


class ScriptedFactory(Factory):
    noisy = False

    def __init__(self, *answers: bytes | None) -> None:
        self.answers = list(answers)
        self.accepted = 0

    def buildProtocol(self, addr: Any) -> Protocol:
        self.accepted += 1
        return Scripted(self.answers)


@pytest.fixture
def listen() -> Iterator[Callable[[Factory], str]]:
    """Listens on 127.0.0.1 port 0 with a factory; returns the URL."""
    ports: list[Any] = []

    def start(factory: Factory) -> str:
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        ports.append(port)
        return f"http://127.0.0.1:{port.getHost().port}/raft/v1/messages"

    yield start
    for port in ports:
        pytest_twisted.blockon(port.stopListening())


@pytest.fixture
def client() -> Iterator[LeanHTTPClient]:
    client = LeanHTTPClient(reactor, max_connections=2)
    yield client
    pytest_twisted.blockon(client.close().addTimeout(5, reactor))


async def failure_of(d: Deferred[Any]) -> BaseException:
    """The exception ``d`` fails with (the test fails if it succeeds)."""
    try:
        result = await wait(d)
    except Exception as e:
        return e
    raise AssertionError(f"expected a failure, got {result!r}")


# --- Framing and reuse ------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_sequential_posts_share_one_connection(
    listen: Callable[[Factory], str], client: LeanHTTPClient
) -> None:
    def ok(request: Request) -> bytes:
        request.setResponseCode(200)
        return b"answer " + (request.content.getvalue() if request.content else b"")

    resource = Answering(ok)
    site = CountingSite(resource)
    url = listen(site)
    first = await wait(client.post(url, HEADERS, b"one"))
    second = await wait(client.post(url, HEADERS, b"two"))
    assert (first, second) == ((200, b"answer one"), (200, b"answer two"))
    assert site.accepted == 1
    assert resource.bodies == [b"one", b"two"]
    sent = resource.headers[0]
    assert sent[b"Content-Type"] == [b"application/test"]
    assert sent[b"X-Token"] == [b"t"]
    assert sent[b"Content-Length"] == [b"3"]


@pytest_twisted.ensureDeferred
async def test_a_204_without_body_completes_and_keeps_the_connection(
    listen: Callable[[Factory], str], client: LeanHTTPClient
) -> None:
    site = CountingSite(Answering())
    url = listen(site)
    for _ in range(3):
        assert await wait(client.post(url, HEADERS, b"x")) == (204, b"")
    assert site.accepted == 1


@pytest_twisted.ensureDeferred
async def test_a_chunked_response_is_read_whole(
    listen: Callable[[Factory], str], client: LeanHTTPClient
) -> None:
    """twisted.web answers chunked when a resource writes before it knows
    the length; the connection stays usable after the last chunk."""

    def streamed(request: Request) -> int:
        request.setResponseCode(400)
        request.write(b'{"error": ')
        request.write(b'"x' + b"y" * 5000 + b'"}')
        request.finish()
        return NOT_DONE_YET

    site = CountingSite(Answering(streamed))
    url = listen(site)
    status, body = await wait(client.post(url, HEADERS, b"x"))
    assert (status, body) == (400, b'{"error": "x' + b"y" * 5000 + b'"}')
    assert (await wait(client.post(url, HEADERS, b"x")))[0] == 400
    assert site.accepted == 1


@pytest_twisted.ensureDeferred
async def test_chunk_extensions_and_trailers_are_skipped(
    listen: Callable[[Factory], str], client: LeanHTTPClient
) -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;name=value\r\nhello\r\n1A\r\n" + b"z" * 26 + b"\r\n0\r\nX-Trailer: 1\r\n\r\n"
    )
    factory = ScriptedFactory(chunked, b"HTTP/1.1 204 No Content\r\n\r\n")
    url = listen(factory)
    assert await wait(client.post(url, HEADERS, b"x")) == (200, b"hello" + b"z" * 26)
    assert await wait(client.post(url, HEADERS, b"x")) == (204, b"")
    assert factory.accepted == 1


@pytest_twisted.ensureDeferred
async def test_an_interim_100_continue_is_skipped(
    listen: Callable[[Factory], str], client: LeanHTTPClient
) -> None:
    url = listen(
        ScriptedFactory(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        )
    )
    assert await wait(client.post(url, HEADERS, b"x")) == (200, b"ok")


@pytest_twisted.ensureDeferred
async def test_connection_close_means_a_new_connection_next_time(
    listen: Callable[[Factory], str], client: LeanHTTPClient
) -> None:
    closing = b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"
    factory = ScriptedFactory(closing, closing)
    url = listen(factory)
    assert await wait(client.post(url, HEADERS, b"x")) == (204, b"")
    assert await wait(client.post(url, HEADERS, b"x")) == (204, b"")
    assert factory.accepted == 2


@pytest_twisted.ensureDeferred
async def test_a_body_without_length_is_read_until_the_server_closes(
    listen: Callable[[Factory], str], client: LeanHTTPClient
) -> None:
    factory = ScriptedFactory(AndClose(b"HTTP/1.1 500 Oops\r\n\r\nall of it"))
    url = listen(factory)
    assert await wait(client.post(url, HEADERS, b"x")) == (500, b"all of it")


# --- Bounds -------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_requests_beyond_the_connection_bound_wait_for_a_free_one(
    listen: Callable[[Factory], str], client: LeanHTTPClient
) -> None:
    """Three posts, two connections allowed: the third goes out on a
    connection the first two freed, not a third one."""
    resource = Answering()
    resource.hold = True
    site = CountingSite(resource)
    url = listen(site)
    posts = [client.post(url, HEADERS, b"%d" % i) for i in range(3)]
    await wait(resource.seen(2))
    assert not any(d.called for d in posts)
    resource.answer_one()
    await wait(resource.seen(3))
    resource.hold = False
    while resource.held:
        resource.answer_one()
    assert [await wait(d) for d in posts] == [(204, b"")] * 3
    assert site.accepted == 2
    assert sorted(resource.bodies) == [b"0", b"1", b"2"]


@pytest_twisted.ensureDeferred
async def test_an_oversize_response_body_fails(listen: Callable[[Factory], str]) -> None:
    client = LeanHTTPClient(reactor, body_bytes_max=1000)
    big = b"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n" + b"x" * 2000
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"200\r\n" + b"x" * 512
    factory = ScriptedFactory(big, chunked + b"\r\n" + b"200\r\n" + b"x" * 512 + b"\r\n0\r\n\r\n")
    url = listen(factory)
    error = await failure_of(client.post(url, HEADERS, b"x"))
    assert isinstance(error, ResponseTooLarge) and "1000 bytes" in str(error)
    error = await failure_of(client.post(url, HEADERS, b"x"))
    assert isinstance(error, ResponseTooLarge)
    assert factory.accepted == 2  # the first connection was not reused
    await wait(client.close())


# --- Failures ----------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_malformed_status_line_fails(
    listen: Callable[[Factory], str], client: LeanHTTPClient
) -> None:
    factory = ScriptedFactory(b"HTTP/1.1 2x4 Nope\r\n\r\n", b"SPDY/3 200 OK\r\n\r\n")
    url = listen(factory)
    for _ in range(2):
        error = await failure_of(client.post(url, HEADERS, b"x"))
        assert isinstance(error, MalformedResponse) and "status line" in str(error)


@pytest_twisted.ensureDeferred
async def test_connection_refused_fails_clearly(
    listen: Callable[[Factory], str], client: LeanHTTPClient
) -> None:
    probe = reactor.listenTCP(0, Factory(), interface="127.0.0.1")
    url = f"http://127.0.0.1:{probe.getHost().port}/raft/v1/messages"
    await probe.stopListening()
    error = await failure_of(client.post(url, HEADERS, b"x"))
    assert isinstance(error, ConnectionRefusedError)
    assert "refused" in str(error)


@pytest_twisted.ensureDeferred
async def test_a_connection_lost_mid_response_fails_its_request(
    listen: Callable[[Factory], str], client: LeanHTTPClient
) -> None:
    factory = ScriptedFactory(AndClose(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf"))
    url = listen(factory)
    error = await failure_of(client.post(url, HEADERS, b"x"))
    assert isinstance(error, ConnectionClosed) and "before the response" in str(error)


@pytest_twisted.ensureDeferred
async def test_cancelling_aborts_the_connection_and_frees_its_slot(
    listen: Callable[[Factory], str],
) -> None:
    client = LeanHTTPClient(reactor, max_connections=1)
    resource = Answering()
    resource.hold = True
    site = CountingSite(resource)
    url = listen(site)
    stuck = client.post(url, HEADERS, b"stuck")
    await wait(resource.seen(1))
    stuck.cancel()
    assert isinstance(await failure_of(stuck), CancelledError)
    await wait(site.closed[0])  # the server saw that connection go
    resource.hold = False
    assert await wait(client.post(url, HEADERS, b"next")) == (204, b"")
    assert site.accepted == 2
    await wait(client.close())


@pytest_twisted.ensureDeferred
async def test_an_idle_connection_closed_by_the_server_is_replaced(
    listen: Callable[[Factory], str], client: LeanHTTPClient
) -> None:
    site = CountingSite(Answering())
    url = listen(site)
    assert await wait(client.post(url, HEADERS, b"x")) == (204, b"")
    (pooled,) = client._connections  # to wait for the client to see the close
    site.open[0]._channel.transport.loseConnection()  # twisted.web's proxy
    await wait(pooled.when_lost())
    assert await wait(client.post(url, HEADERS, b"x")) == (204, b"")
    assert site.accepted == 2


@pytest_twisted.ensureDeferred
async def test_close_closes_pooled_connections_and_the_client_stays_usable(
    listen: Callable[[Factory], str],
) -> None:
    client = LeanHTTPClient(reactor, max_connections=2)
    site = CountingSite(Answering())
    url = listen(site)
    await wait(client.post(url, HEADERS, b"a"))
    assert len(site.open) == 1
    await wait(client.close())
    await wait(site.closed[0])
    assert site.open == []
    assert await wait(client.post(url, HEADERS, b"b")) == (204, b"")
    assert site.accepted == 2
    await wait(client.close())


# --- One connection, byte by byte ---------------------------------------------


def connect(memory: MemoryReactor, client: LeanHTTPClient, index: int = 0) -> Any:
    """Completes the client's ``index``-th connection attempt in memory;
    returns the protocol and its StringTransport."""
    host, port, factory, _, _ = memory.tcpClients[index]
    protocol = factory.buildProtocol((host, port))
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport


def one_post_answered(max_connections: int) -> tuple[MemoryReactor, LeanHTTPClient, Any, Any]:
    """A client whose first post was answered 204 on a connection now idle
    in its pool; returns the reactor, the client, and that connection's
    protocol and transport."""
    memory = MemoryReactor()
    client = LeanHTTPClient(memory, max_connections=max_connections)
    first = client.post("http://10.0.0.2:8080/m", HEADERS, b"1")
    protocol, transport = connect(memory, client)
    protocol.dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n")
    assert first.result == (204, b"")
    return memory, client, protocol, transport


def test_the_request_is_one_write_with_host_and_length() -> None:
    memory = MemoryReactor()
    client = LeanHTTPClient(memory)
    d = client.post("http://10.0.0.2:8080/raft/v1/messages", HEADERS, b"body")
    protocol, transport = connect(memory, client)
    assert memory.tcpClients[0][:2] == ("10.0.0.2", 8080)
    assert transport.value() == (
        b"POST /raft/v1/messages HTTP/1.1\r\nHost: 10.0.0.2:8080\r\nContent-Length: 4\r\n"
        b"Content-Type: application/test\r\nX-Token: t\r\n\r\nbody"
    )
    protocol.dataReceived(b"HTTP/1.1 204 No Content\r\n")
    assert not d.called
    protocol.dataReceived(b"\r\n")
    assert d.result == (204, b"")


def test_a_url_that_is_not_plain_http_fails_the_post() -> None:
    memory = MemoryReactor()
    client = LeanHTTPClient(memory)
    failures: list[Failure] = []
    client.post("https://10.0.0.2:8080/m", HEADERS, b"").addErrback(failures.append)
    assert failures and failures[0].check(ValueError)
    assert memory.tcpClients == []


def test_a_post_on_a_connection_the_server_just_closed_fails_without_retry() -> None:
    """POST is not idempotent: the race with an idle close is reported,
    not retried (Raft retransmits)."""
    memory, client, protocol, transport = one_post_answered(max_connections=1)
    second = client.post("http://10.0.0.2:8080/m", HEADERS, b"2")
    assert transport.value().count(b"POST") == 2  # reused, sent at once
    protocol.connectionLost(Failure(ConnectionDone()))
    failures: list[Failure] = []
    second.addErrback(failures.append)
    assert failures and failures[0].check(ConnectionClosed)
    assert len(memory.tcpClients) == 1  # no second attempt
    client.post("http://10.0.0.2:8080/m", HEADERS, b"3")
    assert len(memory.tcpClients) == 2  # the next post opens a new one


def test_a_cancelled_connection_attempt_frees_its_slot() -> None:
    memory = MemoryReactor()
    client = LeanHTTPClient(memory, max_connections=1)
    first = client.post("http://10.0.0.2:8080/m", HEADERS, b"1")
    waiting = client.post("http://10.0.0.2:8080/m", HEADERS, b"2")
    assert len(memory.tcpClients) == 1
    first.cancel()
    first.addErrback(lambda f: f.trap(CancelledError))
    assert len(memory.tcpClients) == 2  # the waiting request got the slot
    protocol, transport = connect(memory, client, 1)
    assert transport.value().endswith(b"\r\n\r\n2")
    protocol.dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n")
    assert waiting.result == (204, b"")


def test_cancelling_a_waiting_request_leaves_the_queue() -> None:
    memory = MemoryReactor()
    client = LeanHTTPClient(memory, max_connections=1)
    client.post("http://10.0.0.2:8080/m", HEADERS, b"1")
    waiting = client.post("http://10.0.0.2:8080/m", HEADERS, b"2")
    third = client.post("http://10.0.0.2:8080/m", HEADERS, b"3")
    waiting.cancel()
    waiting.addErrback(lambda f: f.trap(CancelledError))
    protocol, transport = connect(memory, client)
    protocol.dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n")
    assert transport.value().endswith(b"\r\n\r\n3")  # 2 was skipped
    protocol.dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n")
    assert third.result == (204, b"")


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY",
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 20000,
        b"HTTP/1.1 200 OK\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n",
    ],
)
def test_malformed_responses_fail_and_drop_the_connection(answer: bytes) -> None:
    memory = MemoryReactor()
    client = LeanHTTPClient(memory)
    d = client.post("http://10.0.0.2:8080/m", HEADERS, b"1")
    protocol, transport = connect(memory, client)
    protocol.dataReceived(answer)
    failures: list[Failure] = []
    d.addErrback(failures.append)
    assert failures and failures[0].check(MalformedResponse)
    assert transport.disconnecting or getattr(transport, "aborted", False)


@pytest_twisted.ensureDeferred
async def test_a_host_name_is_resolved(
    listen: Callable[[Factory], str], client: LeanHTTPClient
) -> None:
    url = listen(CountingSite(Answering())).replace("127.0.0.1", "localhost")
    assert await wait(client.post(url, HEADERS, b"x")) == (204, b"")


def test_a_head_arriving_byte_by_byte_is_read_whole() -> None:
    """The end of a head is found wherever the pieces cut it, also when
    its CRLFs straddle two pieces."""
    memory = MemoryReactor()
    client = LeanHTTPClient(memory)
    d = client.post("http://10.0.0.2:8080/m", HEADERS, b"1")
    protocol, _ = connect(memory, client)
    answer = (
        b"HTTP/1.1 200 OK\r\n"
        + b"X-Pad: " + b"p" * 5000 + b"\r\n"
        + b"Transfer-Encoding: chunked\r\n\r\n"
        + b"3;ext=1\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n"
    )  # fmt: skip
    for i in range(len(answer)):
        protocol.dataReceived(answer[i : i + 1])
    assert d.result == (200, b"abc")


def test_a_connection_being_closed_takes_no_new_request() -> None:
    """close() lets idle connections go, but TCP reports them lost only
    later: a post meanwhile opens a new connection instead of failing."""
    memory, client, _, transport = one_post_answered(max_connections=2)
    client.close()
    assert transport.disconnecting  # but connectionLost has not come yet

    second = client.post("http://10.0.0.2:8080/m", HEADERS, b"2")

    assert not second.called
    assert len(memory.tcpClients) == 2
    assert transport.value().count(b"POST") == 1


def test_stray_bytes_retire_an_idle_connection() -> None:
    memory, client, protocol, transport = one_post_answered(max_connections=2)
    protocol.dataReceived(b"HTTP/1.1 408 Request Timeout\r\n\r\n")

    second = client.post("http://10.0.0.2:8080/m", HEADERS, b"2")

    assert not second.called
    assert len(memory.tcpClients) == 2
    assert transport.value().count(b"POST") == 1
