"""GET /metrics: Prometheus text with the node's Raft state (issue 5:
status and metrics report the snapshot index and log length)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from graft.server.metrics import CONTENT_TYPE
from tests.server.helpers import Cluster


def samples(body: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_metrics_report_term_indexes_snapshot_and_log_length():
    """The leader's scrape names its term, commit, applied and snapshot
    indexes, log length, role, and each follower's replication lag."""
    cluster = Cluster()
    cluster.start()
    leader = cluster.elect()
    assert cluster.request(leader, "PUT", "/v1/kv/a", data=b'{"x":1}').code == 200

    response = cluster.request(leader, "GET", "/metrics")

    assert response.code == 200
    assert response.headers.getRawHeaders(b"content-type") == [CONTENT_TYPE]
    values = samples(response.body)
    node = leader.driver.node
    assert values[("graft_term", ())] == node.term
    assert values[("graft_commit_index", ())] == node.commit_index
    assert values[("graft_applied_index", ())] == leader.kv.applied_index
    assert ("graft_snapshot_index", ()) in values
    assert ("graft_log_entries", ()) in values
    assert values[("graft_role", (("role", "leader"),))] == 1
    assert values[("graft_role", (("role", "follower"),))] == 0
    assert values[("graft_kv_keys", ())] == 1
    lags = [v for (name, _), v in values.items() if name == "graft_peer_replication_lag_entries"]
    assert len(lags) == 2
    assert values[("graft_raft_events_total", (("event", "became_leader"),))] >= 1


def test_metrics_refuse_other_methods():
    """Only GET and HEAD."""
    cluster = Cluster(1)
    cluster.start()
    node = cluster.elect()

    response = cluster.request(node, "POST", "/metrics")

    assert response.code == 405
