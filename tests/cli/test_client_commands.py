"""graft kv/cluster/snapshot against canned HTTP servers: requests, output, exits."""

from __future__ import annotations

import json
import socket

import pytest
from click.testing import CliRunner

from graft.cli import EXIT_REFUSED, EXIT_UNAVAILABLE, EXIT_USAGE, cli

from .helpers import CannedServer


@pytest.fixture
def follower():
    with CannedServer() as server:
        yield server


@pytest.fixture
def leader():
    with CannedServer() as server:
        yield server


def run(*args: str):
    return CliRunner().invoke(cli, list(args), prog_name="graft")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def assert_one_error_line(result, exit_code: int, text: str) -> None:
    assert result.exit_code == exit_code, result.output
    assert result.stderr == f"graft: {text}\n"
    assert "Traceback" not in result.output


def test_kv_get_prints_the_value_exactly_as_returned(leader):
    leader.route("GET", "/v1/kv/app/config", 200, b'{"a":"b","c":{"d":"e"}}', ETag='"7"')
    result = run("kv", "get", leader.url, "app/config")
    assert result.exit_code == 0
    assert result.stdout == '{"a":"b","c":{"d":"e"}}\n'


def test_kv_get_stale_asks_for_stale_consistency(leader):
    leader.route("GET", "/v1/kv/a?consistency=stale", 200, b"1")
    assert run("kv", "get", leader.url, "a", "--stale").stdout == "1\n"


def test_kv_get_missing_key_is_one_line_exit_1(leader):
    leader.route("GET", "/v1/kv/a", 404, b'{"error":"key not found"}')
    assert_one_error_line(run("kv", "get", leader.url, "a"), EXIT_REFUSED, 'key "a" not found')


def test_keys_are_quoted_but_slashes_kept(leader):
    leader.route("GET", "/v1/kv/app/a%20b%3Fc%25", 200, b"true")
    assert run("kv", "get", leader.url, "app/a b?c%").stdout == "true\n"


def test_url_without_scheme_means_http(leader):
    leader.route("GET", "/v1/kv/a", 200, b"2")
    assert run("kv", "get", leader.url.removeprefix("http://"), "a").stdout == "2\n"


@pytest.mark.parametrize("method", ["PUT", "DELETE", "GET"])
def test_redirect_to_the_leader_resends_method_headers_and_body(follower, leader, method):
    """A follower's 307 is followed for every method, with the body re-sent."""
    follower.redirect(method, "/v1/kv/a", leader)
    leader.route(method, "/v1/kv/a", 204 if method == "DELETE" else 200, b'{"key":"a"}')
    args = {
        "PUT": ("kv", "set", follower.url, "a", '{"x": [1, 2]}', "--if-revision", "4"),
        "DELETE": ("kv", "del", follower.url, "a"),
        "GET": ("kv", "get", follower.url, "a"),
    }[method]
    result = run(*args)
    assert result.exit_code == 0, result.output
    [first] = follower.seen
    [second] = leader.seen
    assert (first.method, second.method) == (method, method)
    assert first.body == second.body
    if method == "PUT":
        assert second.body == b'{"x": [1, 2]}'
        assert second.headers["if-match"] == '"4"'
        assert second.headers["content-type"] == "application/json"
        assert result.stdout == '{"key":"a"}\n'


def test_redirect_for_cluster_post_resends_the_body(follower, leader):
    follower.redirect("POST", "/v1/members", leader)
    leader.route("POST", "/v1/members", 200, b'{"ok":true}')
    result = run("cluster", "add", follower.url, "4", "http://127.0.0.1:9004", "--learner")
    assert result.exit_code == 0, result.output
    assert json.loads(leader.seen[0].body) == {
        "id": 4,
        "address": "http://127.0.0.1:9004",
        "voter": False,
    }


def test_redirect_loop_is_bounded(follower, leader):
    follower.redirect("GET", "/v1/kv/a", leader)
    leader.redirect("GET", "/v1/kv/a", follower)
    result = run("kv", "get", follower.url, "a")
    assert result.exit_code == EXIT_UNAVAILABLE
    assert "more than 5 redirects" in result.stderr
    assert len(follower.seen) + len(leader.seen) == 6


def test_kv_set_validates_json_locally(leader):
    result = run("kv", "set", leader.url, "a", "{not json")
    assert result.exit_code == EXIT_USAGE
    assert result.stderr.startswith('graft: value for key "a" is not valid JSON: ')
    assert result.stderr.count("\n") == 1
    assert leader.seen == []


def test_kv_set_if_absent_sends_if_none_match_and_reports_existing_key(leader):
    leader.route("PUT", "/v1/kv/a", 412, b'{"error":"key exists","revision":3}')
    result = run("kv", "set", leader.url, "a", "1", "--if-absent")
    assert_one_error_line(result, EXIT_REFUSED, 'key "a" already exists')
    assert leader.seen[0].headers["if-none-match"] == "*"


def test_kv_set_failed_condition_is_exit_1_with_the_server_reason(leader):
    leader.route("PUT", "/v1/kv/a", 412, b'{"error":"revision is 9"}')
    result = run("kv", "set", leader.url, "a", "1", "--if-revision", "3")
    assert_one_error_line(result, EXIT_REFUSED, 'key "a": condition failed: revision is 9')


def test_kv_set_conditions_are_exclusive(leader):
    result = run("kv", "set", leader.url, "a", "1", "--if-revision", "3", "--if-absent")
    assert result.exit_code == EXIT_USAGE
    assert leader.seen == []


def test_kv_del_missing_key(leader):
    leader.route("DELETE", "/v1/kv/gone", 404, b'{"error":"not found"}')
    result = run("kv", "del", leader.url, "gone")
    assert_one_error_line(result, EXIT_REFUSED, 'key "gone" not found')


def test_kv_list_passes_prefix_and_limit(leader):
    body = b'{"items":[{"key":"a/1","value":1,"revision":2}],"revision":5}'
    leader.route("GET", "/v1/kv?prefix=a%2F&limit=10", 200, body)
    result = run("kv", "list", leader.url, "--prefix", "a/", "--limit", "10")
    assert result.exit_code == 0, result.output
    assert result.stdout == body.decode() + "\n"


def test_bad_request_is_exit_1_with_the_server_error(leader):
    leader.route("PUT", "/v1/kv/a", 413, b'{"error":"body over 1048576 bytes"}')
    result = run("kv", "set", leader.url, "a", "1")
    assert_one_error_line(
        result, EXIT_REFUSED, 'key "a": 413 Request Entity Too Large: body over 1048576 bytes'
    )


def test_server_error_is_exit_3(leader):
    leader.route("GET", "/v1/status", 500, b"boom")
    result = run("cluster", "status", leader.url)
    assert_one_error_line(
        result, EXIT_UNAVAILABLE, f"{leader.url}: 500 Internal Server Error: boom"
    )


def test_no_leader_is_retried_then_exit_3(leader):
    leader.route("GET", "/v1/kv/a", 503, b'{"error":"no leader"}', Retry_After="0")
    result = run("kv", "get", leader.url, "a")
    assert_one_error_line(
        result, EXIT_UNAVAILABLE, f"{leader.url}: 503 Service Unavailable: no leader"
    )
    assert len(leader.seen) == 4


def test_unreachable_cluster_is_one_line_exit_3():
    url = f"http://127.0.0.1:{free_port()}"
    result = run("kv", "get", url, "a")
    assert_one_error_line(result, EXIT_UNAVAILABLE, f"cannot reach {url}: connection refused")


def test_timeout_option_is_reported(leader):
    """A server that accepts but never answers: the --timeout bounds the wait."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        result = run("--timeout", "0.2", "kv", "get", url, "a")
    assert_one_error_line(result, EXIT_UNAVAILABLE, f"cannot reach {url}: timed out after 0.2s")


def test_bad_url_is_a_usage_error():
    result = run("kv", "get", "ftp://x", "a")
    assert_one_error_line(result, EXIT_USAGE, "bad URL 'ftp://x': expected http://HOST:PORT")


def test_cluster_status_and_members_print_the_answer(leader):
    leader.route("GET", "/v1/status", 200, b'{"id":1,"role":"leader"}')
    leader.route("GET", "/v1/members", 200, b'[{"id":1}]')
    assert run("cluster", "status", leader.url).stdout == '{"id":1,"role":"leader"}\n'
    assert run("cluster", "members", leader.url).stdout == '[{"id":1}]\n'


def test_cluster_add_voter_by_default(leader):
    leader.route("POST", "/v1/members", 200, b"{}")
    assert run("cluster", "add", leader.url, "4", "http://h:9004").exit_code == 0
    assert json.loads(leader.seen[0].body) == {"id": 4, "address": "http://h:9004", "voter": True}


def test_cluster_remove_and_transfer(leader):
    leader.route("DELETE", "/v1/members/3", 200, b"")
    leader.route("POST", "/v1/leader", 409, b'{"error":"member 5 is a learner"}')
    assert run("cluster", "remove", leader.url, "3").exit_code == 0
    result = run("cluster", "transfer", leader.url, "5")
    assert_one_error_line(
        result, EXIT_REFUSED, "transfer to member 5: 409 Conflict: member 5 is a learner"
    )
    assert json.loads(leader.seen[1].body) == {"id": 5}


def test_cluster_ids_must_be_positive(leader):
    result = run("cluster", "remove", leader.url, "0")
    assert result.exit_code == EXIT_USAGE
    assert result.stderr.count("\n") == 1
    assert leader.seen == []


def test_snapshot_save_follows_redirects_and_writes_the_file(follower, leader, tmp_path):
    data = bytes(range(256)) * 1000
    follower.redirect("GET", "/v1/snapshot", leader)
    leader.route("GET", "/v1/snapshot", 200, data, Content_Type="application/octet-stream")
    target = tmp_path / "backup.snap"
    result = run("snapshot", "save", follower.url, str(target))
    assert result.exit_code == 0, result.output
    assert target.read_bytes() == data
    assert result.stdout == f"saved {len(data)} bytes to {target}\n"
    assert result.stderr == ""  # no progress bar off a terminal
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backup.snap"]


def test_snapshot_save_failure_leaves_no_file(leader, tmp_path):
    leader.route("GET", "/v1/snapshot", 503, b'{"error":"no leader"}', Retry_After="0")
    target = tmp_path / "backup.snap"
    result = run("snapshot", "save", leader.url, str(target))
    assert result.exit_code == EXIT_UNAVAILABLE
    assert list(tmp_path.iterdir()) == []
