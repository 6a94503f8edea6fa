"""Bad requests and bad configuration against real processes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.harness import Cluster, Response, graft, key_path, request

LIMIT = 1024

#: (what, method, path, body, headers, raw, expected status). With raw, the
#: headers are exactly those given (no Content-Length added).
BAD_REQUESTS = [
    ("malformed JSON", "PUT", key_path("seed/a"), b'{"a": ', {}, False, 400),
    ("not JSON at all", "PUT", key_path("seed/a"), b"hello", {}, False, 400),
    ("oversized body", "PUT", key_path("seed/a"), b'"' + b"x" * (2 * LIMIT) + b'"', {}, False, 413),
    (
        "oversized chunked body",
        "PUT",
        key_path("seed/a"),
        b"".join(b"%x\r\n%s\r\n" % (512, b" " * 512) for _ in range(4)) + b"3\r\n[1]\r\n0\r\n\r\n",
        {"Transfer-Encoding": "chunked"},
        True,
        413,
    ),
    ("key over 1024 bytes", "PUT", key_path("k" * 1025), b"1", {}, False, 400),
    ("key not UTF-8", "PUT", "/v1/kv/%ff%fe", b"1", {}, False, 400),
    ("empty key", "PUT", "/v1/kv/", b"1", {}, False, 400),
    ("bad If-Match", "PUT", key_path("seed/a"), b"1", {"If-Match": "seven"}, False, 400),
    ("bad If-None-Match", "PUT", key_path("seed/a"), b"1", {"If-None-Match": '"3"'}, False, 400),
    ("bad consistency", "GET", key_path("seed/a") + "?consistency=eventual", None, {}, False, 400),
    ("bad limit", "GET", "/v1/kv?limit=-1", None, {}, False, 400),
    ("unknown route", "GET", "/v2/kv/seed/a", None, {}, False, 404),
    ("unknown route under /v1", "GET", "/v1/nothing", None, {}, False, 404),
    ("wrong method on a key", "POST", key_path("seed/a"), b"1", {}, False, 405),
    ("wrong method on status", "DELETE", "/v1/status", None, {}, False, 405),
    ("wrong method on the listing", "PUT", "/v1/kv", b"1", {}, False, 405),
    ("no body", "PUT", key_path("seed/a"), None, {}, True, 411),
    ("empty body", "PUT", key_path("seed/a"), b"", {"Content-Length": "0"}, True, 411),
]


def _is_json_error(answer: Response) -> bool:
    document = json.loads(answer.body)
    return isinstance(document, dict) and isinstance(document.get("error"), str)


def test_bad_requests_get_json_errors_and_change_nothing(
    make_cluster: Callable[..., Cluster],
) -> None:
    """Each bad request gets its 4xx with a JSON error, and the node serves on with its data
    unchanged."""
    cluster = make_cluster(1, ("--max-body-bytes", str(LIMIT)))
    node = cluster.nodes[1]
    cluster.wait_ready()
    for key, value in [("seed/a", {"a": 1}), ("seed/b", [1, 2, 3]), ("other", "text")]:
        assert node.put(key, value).status == 200
    before = node.listing(stale=False)

    wrong = []
    for what, method, path, body, headers, raw, expected in BAD_REQUESTS:
        answer = request(method, node.url + path, body, headers, raw=raw, timeout=10)
        if answer.status != expected or not _is_json_error(answer):
            wrong.append((what, expected, answer.status, answer.body[:200]))
    assert wrong == []

    assert node.alive()
    assert node.get("/healthz").status == 200
    assert node.listing(stale=False) == before
    assert node.put("seed/c", {"after": True}).status == 200
    assert request("GET", node.url + key_path("seed/c")).json() == {"after": True}


@pytest.mark.parametrize(
    ("text", "named"),
    [
        (
            "id: 1\nlisten: 'tcp:9999:interface=127.0.0.1'\nsnapshot_treshold: 5\n",
            "snapshot_treshold",
        ),
        ("id: 1\nlog_level: loud\n", "log_level"),
        ("id: [1\n", "YAML"),
    ],
    ids=["unknown-key", "bad-value", "bad-yaml"],
)
def test_bad_config_file_exits_with_one_line_naming_the_problem(
    tmp_path: Path, text: str, named: str
) -> None:
    """`graft node run --config bad.yaml` exits non-zero with one line naming the problem and
    no traceback."""
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    done = graft("node", "run", "--config", str(config), "--data-dir", str(tmp_path / "d"))
    assert done.returncode != 0
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert named in lines[0]
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "d").exists()


def test_port_in_use_exits_with_one_line(
    make_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    """A second node on a port already served exits non-zero with one line saying so."""
    taken = make_cluster(1).nodes[1].port
    done = graft(
        "node", "run", "--id", "2", "--port", str(taken), "--data-dir", str(tmp_path / "d")
    )
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert "Traceback" not in done.stderr
    assert "port in use" in lines[-1], done.stderr
