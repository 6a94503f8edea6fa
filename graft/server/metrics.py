"""Prometheus metrics of one node, read from the driver when scraped.

Nothing is counted twice: gauges come straight from the core's and the
driver's state at scrape time, and counters from the facts the core
reports (the same ones the driver logs), so the log, the metrics and the
simulator's traces agree (STYLE.md §8). Each node has its own registry, so
several nodes in one process (tests) do not collide.

May import the standard library, prometheus_client, graft.raft and
graft.server.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from graft.raft import Role

if TYPE_CHECKING:
    from graft.server.driver import RaftDriver

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"

_ROLES = ("follower", "candidate", "leader", "learner")


class NodeCollector(Collector):
    """The metrics of the node ``driver`` runs."""

    def __init__(self, driver: RaftDriver) -> None:
        self.driver = driver

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        driver = self.driver
        node = driver.node
        yield _gauge("graft_term", "The node's current Raft term.", node.term)
        yield _gauge(
            "graft_commit_index", "The highest log index known committed.", node.commit_index
        )
        yield _gauge(
            "graft_applied_index",
            "The highest log index applied to the key/value store.",
            driver.kv.applied_index,
        )
        yield _gauge(
            "graft_snapshot_index",
            "The last log index covered by the newest snapshot.",
            driver.snapshot_index,
        )
        yield _gauge("graft_log_entries", "Entries held in the durable log.", driver.log_length)
        yield _gauge(
            "graft_last_log_index", "The index of the last entry in the log.", node.last_index
        )
        yield _gauge("graft_kv_revision", "The store's cluster-wide revision.", driver.kv.revision)
        yield _gauge("graft_kv_keys", "Keys in the store.", len(driver.kv))
        yield _gauge(
            "graft_storage_failed",
            "1 once storage failed and the node stopped acknowledging writes.",
            int(driver.failed_reason is not None),
        )
        role = GaugeMetricFamily("graft_role", "1 for the node's current role.", labels=["role"])
        current = role_name(driver)
        for name in _ROLES:
            role.add_metric([name], int(name == current))
        yield role
        members = GaugeMetricFamily(
            "graft_members", "Members of the current configuration.", labels=["kind"]
        )
        members.add_metric(["voter"], len(node.configuration.voters))
        members.add_metric(["learner"], len(node.configuration.learners))
        yield members
        lag = GaugeMetricFamily(
            "graft_peer_replication_lag_entries",
            "On the leader: entries each follower lacks of the leader's log.",
            labels=["peer"],
        )
        if node.role is Role.LEADER:
            for member in node.configuration.members:
                progress = node.progress(member.id)
                if progress is not None:
                    lag.add_metric([str(member.id)], node.last_index - progress.match)
        yield lag
        facts = CounterMetricFamily(
            "graft_raft_events",
            "Events the consensus core reported (elections, step-downs, drops...).",
            labels=["event"],
        )
        for name, count in sorted(driver.fact_counts.items()):
            facts.add_metric([name], count)
        yield facts


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def role_name(driver: RaftDriver) -> str:
    """The role API.md names: a member that is not a voter is a learner,
    and a pre-candidate shows as a candidate."""
    member = driver.configuration.member(driver.node_id)
    if member is None or not member.voter:
        return "learner"
    role = driver.node.role
    if role is Role.LEADER:
        return "leader"
    if role is Role.FOLLOWER:
        return "follower"
    return "candidate"


class NodeMetrics:
    """A registry holding one node's collector; ``render()`` is the body
    of ``GET /metrics``."""

    def __init__(self, driver: RaftDriver) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(NodeCollector(driver))

    def render(self) -> bytes:
        return generate_latest(self.registry)
