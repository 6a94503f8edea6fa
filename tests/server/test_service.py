"""make_node_service: identity of the data directory, the cluster id, and
a start and clean stop on a fake reactor (no real ports)."""

from __future__ import annotations

import pytest
from twisted.internet.testing import MemoryReactorClock

from graft.kv import Put, encode_command
from graft.raft import HardState, Member
from graft.server import NodeSettings, PeerSetting, cluster_id_for, make_node_service
from graft.storage import IdentityMismatch


class _Threads:
    def callInThreadWithCallback(self, onResult, f, *args, **kw):
        try:
            result = f(*args, **kw)
        except Exception as e:
            onResult(False, e)
        else:
            onResult(True, result)


class _Reactor(MemoryReactorClock):
    def getThreadPool(self):
        return _Threads()

    def callFromThread(self, f, *args, **kw):
        f(*args, **kw)


def settings(tmp_path, node_id=1, peers=((2, "http://127.0.0.1:9002"),)):
    return NodeSettings(
        id=node_id,
        listen="tcp:0:interface=127.0.0.1",
        advertise=f"http://127.0.0.1:900{node_id}",
        data_dir=str(tmp_path / f"n{node_id}"),
        peers=tuple(PeerSetting(id=i, address=a) for i, a in peers),
    )


def test_cluster_id_depends_on_members_not_their_order():
    a = [Member(id=1, address="http://a"), Member(id=2, address="http://b")]
    assert cluster_id_for(a) == cluster_id_for(list(reversed(a)))
    assert cluster_id_for(a) != cluster_id_for(a[:1])


def test_data_dir_of_another_cluster_is_refused(tmp_path):
    """Once it holds Raft state (here a term), a directory is its cluster's."""
    service = make_node_service(settings(tmp_path), _Reactor())
    service.driver.log_storage.append([], HardState(term=1))
    with pytest.raises(IdentityMismatch, match="another cluster"):
        make_node_service(settings(tmp_path, peers=((3, "http://127.0.0.1:9003"),)), _Reactor())


def test_peer_list_naming_the_node_itself_is_tolerated(tmp_path):
    make_node_service(settings(tmp_path), _Reactor())
    with_self = ((1, "http://ignored"), (2, "http://127.0.0.1:9002"))
    make_node_service(settings(tmp_path, peers=with_self), _Reactor())


def test_node_starts_listens_and_stops_cleanly(tmp_path):
    reactor = _Reactor()
    service = make_node_service(settings(tmp_path, peers=()), reactor)
    service.startService()
    assert len(reactor.tcpServers) == 1
    for _ in range(60):
        reactor.advance(0.05)
    assert service.driver.node.role.value == "leader"
    done = []
    service.driver.propose(encode_command(Put(key="k", value_json=b"1"))).addCallback(done.append)
    reactor.advance(0.05)
    assert done and done[0].ok
    stopped = service.stopService()
    reactor.advance(1.0)
    assert stopped.called
    assert service.driver.failed_reason is None
    # Restarted on the same directory, the node has its data back.
    again = make_node_service(settings(tmp_path, peers=()), _Reactor())
    assert again.driver.node.last_index >= 2


@pytest.mark.parametrize("own_process", [True, False])
def test_a_node_in_its_own_process_settles_the_heap_once_started(
    tmp_path, monkeypatch, own_process
):
    """graft.server.heap: the entry points' node freezes start-up's objects
    out of garbage collection after its first turn; a node built by
    anyone else (a test starting many) leaves the collector alone."""
    settled: list[bool] = []
    monkeypatch.setattr("graft.server.heap.settle", lambda: settled.append(True) or 0)
    reactor = _Reactor()
    service = make_node_service(settings(tmp_path, peers=()), reactor, own_process=own_process)
    service.startService()
    assert settled == []

    reactor.advance(0)

    assert settled == ([True] if own_process else [])
    service.stopService()
    reactor.advance(1.0)


def test_settle_freezes_what_survives_a_collection():
    import gc

    from graft.server import heap

    class Survivor:
        pass

    kept = Survivor()
    try:
        frozen = heap.settle()
        assert frozen == gc.get_freeze_count() > 0
        assert not any(o is kept for o in gc.get_objects(generation=2))
    finally:
        gc.unfreeze()
    assert any(o is kept for o in gc.get_objects())
