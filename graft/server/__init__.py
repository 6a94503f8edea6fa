"""graft.server: the Twisted node that drives the Raft core, and the
client HTTP API.

- :func:`make_node_service` (settings, reactor) -> :class:`NodeService`:
  what the command line and the ``twist graft`` plugin call.
- :class:`RaftDriver`: the Ready loop over injected clock, log, snapshot
  store, transport, state machine and randomness.
- :class:`ClientAPI`: the Klein app of API.md sections 2 and 3.
- :class:`MemoryDurableLog`: the in-memory twin of GroupCommitLog.

May import everything in graft; nothing in graft imports it but the entry
points.
"""

from graft.server.api import ClientAPI
from graft.server.driver import DurableLog, RaftDriver, SnapshotStore
from graft.server.errors import LeadershipChanged, NodeFailed, NodeStopping, Unavailable
from graft.server.memory import MemoryDurableLog
from graft.server.service import (
    NodeService,
    cluster_id_for,
    initial_configuration,
    make_node_service,
    make_site,
)
from graft.server.settings import NodeSettings, PeerSetting

__all__ = [
    "ClientAPI",
    "DurableLog",
    "LeadershipChanged",
    "MemoryDurableLog",
    "NodeFailed",
    "NodeService",
    "NodeSettings",
    "NodeStopping",
    "PeerSetting",
    "RaftDriver",
    "SnapshotStore",
    "Unavailable",
    "cluster_id_for",
    "initial_configuration",
    "make_node_service",
    "make_site",
]
