"""Bad input gets a 4xx with a JSON error, never a 500, and changes
nothing (API.md §2)."""

from __future__ import annotations

import pytest
from twisted.web.resource import Resource
from twisted.web.test.requesthelper import DummyChannel

from graft.server import make_site
from tests.server.helpers import Cluster


@pytest.fixture(scope="module")
def cluster() -> Cluster:
    cluster = Cluster(max_body_bytes=64)
    cluster.start()
    cluster.elect()
    return cluster


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status"),
    [
        ("PUT", "/v1/kv/k", b"{not json", {}, 400),
        ("PUT", "/v1/kv/k", b"NaN", {}, 400),
        ("PUT", "/v1/kv/k", b"\xff\xfe", {}, 400),
        ("PUT", "/v1/kv/", b"1", {}, 400),
        ("PUT", "/v1/kv/a%00b", b"1", {}, 400),
        ("PUT", "/v1/kv/%ff", b"1", {}, 400),
        ("PUT", "/v1/kv/" + "x" * 1025, b"1", {}, 400),
        ("GET", "/v1/kv/", None, {}, 400),
        ("PUT", "/v1/kv/k", b"[" + b"1," * 40 + b"1]", {}, 413),
        ("PUT", "/v1/kv/k", None, {}, 411),
        ("POST", "/v1/kv/k", b"1", {}, 405),
        ("PATCH", "/v1/kv", b"1", {}, 405),
        ("PUT", "/v1/status", b"1", {}, 405),
        ("POST", "/v1/members/x", b"1", {}, 404),
        ("GET", "/nope", None, {}, 404),
        ("GET", "/v1/kvx", None, {}, 404),
        ("GET", "/v1/kv?limit=abc", None, {}, 400),
        ("GET", "/v1/kv?limit=-1", None, {}, 400),
        ("GET", "/v1/kv/k?consistency=weird", None, {}, 400),
        ("PUT", "/v1/kv/k", b"1", {"If-Match": "7"}, 400),
        ("PUT", "/v1/kv/k", b"1", {"If-Match": '"x"'}, 400),
        ("PUT", "/v1/kv/k", b"1", {"If-None-Match": '"3"'}, 400),
        ("PUT", "/v1/kv/k", b"1", {"If-None-Match": "*", "If-Match": '"1"'}, 400),
        ("DELETE", "/v1/kv/k", None, {"If-None-Match": "*"}, 400),
    ],
)
def test_bad_requests_get_json_errors_on_the_leader(cluster, method, path, body, headers, status):
    leader = cluster.leader()
    before = leader.kv.revision
    answer = cluster.request(leader, method, path, data=body, headers=headers)
    assert answer.code == status, answer.body
    assert answer.header("Content-Type") == "application/json"
    assert isinstance(answer.json()["error"], str)
    if status == 405:
        assert answer.header("Allow")
    assert leader.kv.revision == before


def test_bad_requests_are_refused_on_followers_before_any_redirect(cluster):
    follower = cluster.followers()[0]
    answer = cluster.request(follower, "PUT", "/v1/kv/k", data=b"{bad")
    assert answer.code == 400


def test_site_stops_buffering_a_body_past_the_limit():
    """An oversize body without Content-Length (chunked) is not kept: the
    request is flagged and the route answers 413."""
    site = make_site(Resource(), body_bytes_max=10)
    request = site.requestFactory(DummyChannel(), False)
    request.gotLength(None)
    request.handleContentChunk(b"x" * 8)
    assert not request.body_too_large
    request.handleContentChunk(b"x" * 8)
    assert request.body_too_large
    request.content.seek(0)
    assert len(request.content.read()) == 8


@pytest.mark.parametrize(
    "path_headers",
    [
        pytest.param({}, id="lean channel"),
        # Expect makes the lean channel hand the request to twisted.web.
        pytest.param({b"Expect": b"100-continue"}, id="twisted.web"),
    ],
)
@pytest.mark.parametrize(
    "headers",
    [{b"If-Match": b'"\xff"'}, {b"If-None-Match": b"\xff\xfe"}],
    ids=["If-Match", "If-None-Match"],
)
def test_condition_headers_that_are_not_utf8_get_a_400(cluster, path_headers, headers):
    leader = cluster.leader()
    before = leader.kv.revision
    answer = cluster.request(
        leader, "PUT", "/v1/kv/k", data=b"1", headers={**headers, **path_headers}
    )
    assert answer.code == 400, answer.body
    assert "bad If-" in answer.json()["error"]
    assert leader.kv.revision == before


@pytest.mark.parametrize(
    "path_headers",
    [
        pytest.param({}, id="lean channel"),
        pytest.param({b"Expect": b"100-continue"}, id="twisted.web"),
    ],
)
@pytest.mark.parametrize(
    ("method", "revision"),
    [
        ("PUT", "9223372036854775808"),  # 2**63: past any revision
        ("DELETE", "18446744073709551616"),  # 2**64: past the log's encoding
        ("PUT", "9" * 5000),  # past Python's int() digit limit
    ],
    ids=["2**63", "2**64", "5000 digits"],
)
def test_if_match_past_any_revision_gets_a_400(cluster, path_headers, method, revision):
    leader = cluster.leader()
    before = leader.kv.revision
    headers = {b"If-Match": b'"%s"' % revision.encode(), **path_headers}
    answer = cluster.request(leader, method, "/v1/kv/k", data=b"1", headers=headers)
    assert answer.code == 400, answer.body
    assert "bad If-Match" in answer.json()["error"]
    assert len(answer.body) < 300  # the header is not echoed whole
    assert leader.kv.revision == before


@pytest.mark.parametrize(
    "path_headers",
    [
        pytest.param({}, id="lean channel"),
        pytest.param({b"Expect": b"100-continue"}, id="twisted.web"),
    ],
)
def test_a_bug_in_the_key_route_is_a_logged_json_503_not_a_500(cluster, monkeypatch, path_headers):
    leader = cluster.leader()

    def broken(**_):
        raise RuntimeError("a bug")

    monkeypatch.setattr("graft.server.api.Put.of_json", broken)
    answer = cluster.request(leader, "PUT", "/v1/kv/k", data=b"1", headers=path_headers)
    assert answer.code == 503, answer.body
    assert answer.header("Content-Type") == "application/json"
    assert "internal error" in answer.json()["error"]
