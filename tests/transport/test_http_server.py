"""The HTTP transport's server routes, driven in memory with StubTreq:
members are admitted, everyone else gets a 4xx with a JSON error, never a
500 (DESIGN.md, "Safety at the edges")."""

from __future__ import annotations

from typing import Any

import pytest
from klein import Klein
from treq.testing import StubTreq
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from graft.raft.messages import Heartbeat, TimeoutNow
from graft.transport.codec import CodecLimits, encode
from graft.transport.http import (
    CLUSTER_TOKEN_HEADER,
    MESSAGES_PATH,
    HTTPTransport,
    HTTPTransportSettings,
)
from tests.transport.helpers import CLUSTER, TOKEN, Inbox, json_of, site_root

URL = "http://node2" + MESSAGES_PATH
HB = Heartbeat(source=1, target=2, term=3, commit_index=4)

_sync = SynchronousTestCase()


def make_server(**settings: Any) -> tuple[HTTPTransport, Inbox, StubTreq]:
    inbox = Inbox()
    transport = HTTPTransport(
        reactor=MemoryReactorClock(),
        node_id=2,
        cluster_id=CLUSTER,
        cluster_token=TOKEN,
        receive=inbox,
        peers={1: "http://node1", 3: "http://node3"},
        settings=HTTPTransportSettings(**settings),
    )
    transport.start()
    return transport, inbox, StubTreq(site_root(transport))


def post(
    stub: StubTreq,
    body: bytes,
    *,
    token: bytes | None = TOKEN,
    method: str = "POST",
    url: str = URL,
) -> tuple[int, bytes, Any]:
    headers = {} if token is None else {CLUSTER_TOKEN_HEADER: token}
    d = stub.request(method, url, data=body, headers=headers)
    stub.flush()
    response = _sync.successResultOf(d)
    content = _sync.successResultOf(response.content())
    return response.code, content, response.headers


def body(*messages: Any, cluster: str = CLUSTER, sender: int = 1) -> bytes:
    return encode(list(messages or [HB]), cluster_id=cluster, sender=sender)


def assert_json_error(status: int, content: bytes, headers: Any, expected: int, words: str) -> None:
    assert status == expected, content
    assert headers.getRawHeaders(b"content-type") == [b"application/json"]
    assert words in json_of(content)["error"]


def test_a_members_batch_is_delivered_with_204() -> None:
    """A valid batch from a current peer reaches the receive callback in order."""
    _, inbox, stub = make_server()
    messages = [HB, TimeoutNow(source=1, target=2, term=3)]
    status, content, _ = post(stub, body(*messages))
    assert (status, content) == (204, b"")
    assert inbox.messages == messages


def test_a_missing_token_is_refused_with_403() -> None:
    _, inbox, stub = make_server()
    assert_json_error(*post(stub, body(), token=None), 403, "cluster token")
    assert inbox.messages == []


def test_a_wrong_token_is_refused_with_403() -> None:
    transport, inbox, stub = make_server()
    assert_json_error(*post(stub, body(), token=b"guess"), 403, "cluster token")
    assert inbox.messages == []
    assert transport.refused_requests == 1


def test_a_non_member_is_refused_with_403() -> None:
    """A node that is not a current peer cannot reach the core."""
    _, inbox, stub = make_server()
    hb = Heartbeat(source=9, target=2, term=3, commit_index=4)
    assert_json_error(*post(stub, body(hb, sender=9)), 403, "node 9 is not a member")
    assert inbox.messages == []


def test_a_removed_peer_is_refused_with_403() -> None:
    """set_peers takes effect for inbound messages too."""
    transport, inbox, stub = make_server()
    transport.set_peers({3: "http://node3"})
    assert_json_error(*post(stub, body()), 403, "not a member")
    assert inbox.messages == []


def test_another_clusters_id_is_refused_with_403_naming_both() -> None:
    """A node started with other initial members refuses clearly."""
    _, inbox, stub = make_server()
    status, content, headers = post(stub, body(cluster="other"))
    assert_json_error(status, content, headers, 403, "cluster id mismatch")
    assert "'other'" in json_of(content)["error"]
    assert CLUSTER in json_of(content)["error"]
    assert inbox.messages == []


def test_another_clusters_refusal_lists_our_initial_members() -> None:
    """The refused node learns our initial members, so it can say which
    member its own list lacks (API.md section 1)."""
    transport, _, stub = make_server()
    transport.initial_members = {1: "http://node1", 2: "http://node2", 3: "http://node3"}

    status, content, _ = post(stub, body(cluster="other"))

    assert status == 403
    assert json_of(content)["initial_members"] == [
        {"id": 1, "address": "http://node1"},
        {"id": 2, "address": "http://node2"},
        {"id": 3, "address": "http://node3"},
    ]


def test_a_malformed_body_is_refused_with_400() -> None:
    _, inbox, stub = make_server()
    assert_json_error(*post(stub, b"\x93not msgpack"), 400, "trailing bytes")
    assert inbox.messages == []


def test_an_empty_body_is_refused_with_400() -> None:
    _, _, stub = make_server()
    assert_json_error(*post(stub, b""), 400, "empty")


def test_a_message_for_another_node_is_refused_with_400() -> None:
    _, inbox, stub = make_server()
    hb = Heartbeat(source=1, target=3, term=3, commit_index=4)
    assert_json_error(*post(stub, body(hb)), 400, "addressed to 3, this is 2")
    assert inbox.messages == []


def test_an_oversize_body_is_refused_with_413() -> None:
    _, inbox, stub = make_server(codec=CodecLimits(body_bytes_max=64))
    big = body(*[HB] * 20)
    assert len(big) > 64
    assert_json_error(*post(stub, big), 413, "over 64 bytes")
    assert inbox.messages == []


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_other_methods_get_405(method: str) -> None:
    _, _, stub = make_server()
    status, content, headers = post(stub, b"", method=method)
    assert_json_error(status, content, headers, 405, "POST")
    assert headers.getRawHeaders(b"allow") == [b"POST"]


def test_unknown_peer_routes_get_404_json() -> None:
    _, _, stub = make_server()
    assert_json_error(*post(stub, body(), url="http://node2/raft/v9/nope"), 404, "no such")


def test_a_stopped_transport_answers_503() -> None:
    transport, inbox, stub = make_server()
    _sync.successResultOf(transport.stop())
    assert_json_error(*post(stub, body()), 503, "stopped")
    assert inbox.messages == []


def test_a_failing_receive_callback_does_not_fail_the_request() -> None:
    """The core's trouble is logged; the peer still gets 204, later
    messages in the batch are still delivered."""
    transport, _, stub = make_server()
    seen: list[object] = []

    def receive(message: object) -> None:
        seen.append(message)
        raise RuntimeError("core bug")

    transport._receive = receive
    with capturedLogs() as events:
        status, _, _ = post(stub, body(HB, HB))
    assert status == 204
    assert len(seen) == 2
    failures = [e["log_failure"] for e in events if "log_failure" in e]
    assert [f.type for f in failures] == [RuntimeError, RuntimeError]


def test_routes_mount_on_a_klein_app_beside_the_client_api() -> None:
    """mount() puts the peer routes at /raft on the node's own Klein app."""
    transport, inbox, _ = make_server()
    app = Klein()

    @app.route("/v1/status")
    def status(request: object) -> bytes:
        return b"client api"

    transport.mount(app)
    stub = StubTreq(app.resource())
    assert post(stub, body())[0] == 204
    assert inbox.messages == [HB]
    code, content, _ = post(stub, b"", method="GET", url="http://node2/v1/status")
    assert (code, content) == (200, b"client api")
