"""Where a node starts from: joining a running cluster (--join) adopts its
cluster id, a restart needs no cluster, a node of another cluster is
refused, and --force-new-cluster makes a survivor a one-node cluster."""

from __future__ import annotations

import json
from typing import Any

import pytest

from graft.raft import Configuration, Entry, EntryKind, HardState, Member
from graft.server import NodeSettings, PeerSetting, cluster_id_for, initial_configuration
from graft.server.bootstrap import (
    ForceRefused,
    JoinRefused,
    force_new_cluster,
    read_identity,
    start_point,
)
from graft.storage import IdentityMismatch, open_data_dir

THEIRS = "c0ffee"
MEMBERS = [
    {"id": 1, "address": "http://n1:1", "voter": True},
    {"id": 2, "address": "http://n2:2", "voter": True},
]


def settings(tmp_path: Any, **kw: Any) -> NodeSettings:
    values: dict[str, Any] = {
        "id": 4,
        "listen": "tcp:9004",
        "advertise": "http://n4:4",
        "data_dir": str(tmp_path / "d4"),
    }
    values.update(kw)
    return NodeSettings(**values)


class FakeJoin:
    def __init__(self, cluster_id: str = THEIRS) -> None:
        self.calls: list[dict[str, Any]] = []
        self.cluster_id = cluster_id

    def __call__(self, url: str, **kw: Any) -> dict[str, Any]:
        self.calls.append({"url": url, **kw})
        members = [*MEMBERS, {"id": kw["node_id"], "address": kw["address"], "voter": False}]
        return {"cluster_id": self.cluster_id, "members": members}


def start(s: NodeSettings, join: FakeJoin) -> Any:
    return start_point(
        s, initial=initial_configuration(s), cluster_id_for=cluster_id_for, join=join
    )


def test_joining_node_adopts_the_cluster_id_and_starts_empty(tmp_path):
    join = FakeJoin()
    s = settings(tmp_path, join="http://n1:1")
    point = start(s, join)
    assert join.calls == [
        {
            "url": "http://n1:1",
            "node_id": 4,
            "address": "http://n4:4",
            "voter": True,
            "cluster_id": None,
        }
    ]
    assert point.cluster_id == THEIRS
    assert point.configuration == Configuration()
    assert point.bootstrap_peers == {1: "http://n1:1", 2: "http://n2:2"}
    identity = read_identity(s.data_dir)
    assert identity is not None and identity.origin == "join"
    open_data_dir(s.data_dir, THEIRS, 4).close()  # the identity file agrees


def test_learner_flag_joins_as_a_learner(tmp_path):
    join = FakeJoin()
    start(settings(tmp_path, join="http://n1:1", learner=True), join)
    assert join.calls[0]["voter"] is False


def test_joined_node_restarts_without_asking_the_cluster(tmp_path):
    start(settings(tmp_path, join="http://n1:1"), FakeJoin())
    again = FakeJoin()
    for s in (
        settings(tmp_path, join="http://n1:1"),
        settings(tmp_path),
        settings(tmp_path, peers=(PeerSetting(id=1, address="http://n1:1"),)),
    ):
        point = start(s, again)
        assert point.cluster_id == THEIRS
        assert point.configuration == Configuration()
        assert point.bootstrap_peers == {1: "http://n1:1", 2: "http://n2:2"}
    assert again.calls == []


def test_node_with_another_clusters_data_is_refused(tmp_path):
    s = settings(tmp_path, join="http://n1:1")
    open_data_dir(s.data_dir, "other-cluster", 4).close()
    join = FakeJoin()
    with pytest.raises(JoinRefused, match="belongs to cluster 'other-cluster'"):
        start(s, join)
    # It told the cluster whose data it holds, so the cluster can refuse too.
    assert join.calls[0]["cluster_id"] == "other-cluster"


def test_node_with_another_nodes_data_is_refused_by_the_data_dir(tmp_path):
    s = settings(tmp_path, join="http://n1:1")
    open_data_dir(s.data_dir, THEIRS, 7).close()
    point = start(s, FakeJoin())
    with pytest.raises(IdentityMismatch, match="belongs to node 7"):
        open_data_dir(s.data_dir, point.cluster_id, 4)


def test_initial_member_derives_the_id_from_its_peers(tmp_path):
    s = settings(tmp_path, peers=(PeerSetting(id=1, address="http://n1:1"),))
    point = start(s, FakeJoin())
    assert point.cluster_id == cluster_id_for(initial_configuration(s).members)
    assert point.configuration == initial_configuration(s)


# --- --force-new-cluster ------------------------------------------------------------


def _old_member(tmp_path: Any) -> tuple[NodeSettings, str]:
    """Node 1 of a three-node cluster, with a few entries on disk."""
    peers = (PeerSetting(id=2, address="http://n2:2"), PeerSetting(id=3, address="http://n3:3"))
    s = NodeSettings(
        id=1,
        listen="tcp:9001",
        advertise="http://n1:1",
        data_dir=str(tmp_path / "d1"),
        peers=peers,
    )
    old_id = cluster_id_for(initial_configuration(s).members)
    data_dir = open_data_dir(s.data_dir, old_id, 1)
    data_dir.log.append(
        [
            Entry(index=1, term=1, kind=EntryKind.NOOP, data=b""),
            Entry(index=2, term=2, kind=EntryKind.NOOP, data=b""),
        ]
    )
    data_dir.log.sync()
    data_dir.log.save_hard_state(HardState(term=3, vote=2, commit=1))
    data_dir.close()
    return NodeSettings(
        id=1, listen="tcp:9001", advertise="http://n1:1", data_dir=s.data_dir
    ), old_id


def test_force_new_cluster_makes_the_node_the_only_member_and_keeps_its_log(tmp_path):
    s, old_id = _old_member(tmp_path)
    summary = force_new_cluster(s, cluster_id_for=cluster_id_for)
    new_id = cluster_id_for((Member(id=1, address="http://n1:1"),))
    assert new_id != old_id and new_id in summary
    identity = read_identity(s.data_dir)
    assert identity is not None and identity.cluster_id == new_id
    data_dir = open_data_dir(s.data_dir, new_id, 1)
    try:
        assert data_dir.log.last_index == 3
        (entry,) = data_dir.log.entries(3, 4)
        assert entry.kind is EntryKind.CONFIG and entry.term == 3
        assert Configuration.decode(entry.data) == Configuration(
            members=(Member(id=1, address="http://n1:1"),)
        )
        assert data_dir.log.load_hard_state() == HardState(term=3, vote=2, commit=1)
    finally:
        data_dir.close()
    # Restarted plainly (no --peers), it is that cluster.
    assert cluster_id_for(initial_configuration(s).members) == new_id


def test_force_new_cluster_refuses_without_data_or_with_peers(tmp_path):
    s = NodeSettings(id=1, listen="tcp:9001", advertise="http://n1:1", data_dir=str(tmp_path))
    with pytest.raises(ForceRefused, match="nothing to recover"):
        force_new_cluster(s, cluster_id_for=cluster_id_for)
    s, _ = _old_member(tmp_path)
    with_peers = NodeSettings(
        id=1,
        listen="tcp:9001",
        advertise="http://n1:1",
        data_dir=s.data_dir,
        peers=(PeerSetting(id=2, address="http://n2:2"),),
    )
    with pytest.raises(ForceRefused, match="neither --peers nor --join"):
        force_new_cluster(with_peers, cluster_id_for=cluster_id_for)
    other_node = NodeSettings(id=2, listen="tcp:9001", advertise="http://n1:1", data_dir=s.data_dir)
    with pytest.raises(ForceRefused, match="belongs to node 1"):
        force_new_cluster(other_node, cluster_id_for=cluster_id_for)


def test_identity_file_stays_readable_json(tmp_path):
    s = settings(tmp_path, join="http://n1:1")
    start(s, FakeJoin())
    stored = json.loads((tmp_path / "d4" / "identity").read_text())
    assert stored["cluster_id"] == THEIRS and stored["node_id"] == 4
