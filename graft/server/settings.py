"""A node's settings, whatever they came from (flags, YAML, environment).

graft/cli.py and twisted/plugins/graft_plugin.py build one of these; the
server takes it as it is. Validation of user input (names the bad key or
flag) happens where the input is read; the invariants here are checks of
last resort.
"""

from __future__ import annotations

import attrs

LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")
TRANSPORTS = ("http", "amp")


@attrs.frozen(kw_only=True)
class PeerSetting:
    id: int
    address: str


@attrs.frozen(kw_only=True)
class NodeSettings:
    id: int
    #: A Twisted server endpoint description, e.g. "tcp:9001:interface=127.0.0.1".
    listen: str
    #: How peers and clients reach this node, e.g. "http://127.0.0.1:9001".
    advertise: str
    data_dir: str
    #: The initial members other than this node (an entry for itself is dropped).
    peers: tuple[PeerSetting, ...] = ()
    log_level: str = "info"
    transport: str = "http"
    snapshot_threshold: int = 10000
    #: Entries kept in the log before each snapshot's index, so followers
    #: slightly behind catch up from the log instead of a whole snapshot.
    snapshot_retain_entries: int = 1000
    #: Size at which a log segment file is closed and a new one started;
    #: compaction deletes whole segments.
    log_segment_bytes: int = 64 * 1024 * 1024
    max_body_bytes: int = 1 << 20
    #: Start empty and ask the cluster at this URL to add this node.
    join: str | None = None
    #: With ``join``: stay a non-voting learner instead of becoming a voter
    #: once caught up.
    learner: bool = False
    #: Shared secret peers present to each other (DESIGN.md, "Safety at the edges").
    cluster_token: str = ""
    #: Length of one core tick; election timeout is election_timeout_ticks of them.
    tick_seconds: float = 0.05
    election_timeout_ticks: int = 10
    heartbeat_interval_ticks: int = 2
    #: How long a client's write or linearizable read waits for the cluster
    #: before it is answered 503 (its outcome then unknown).
    request_timeout_seconds: float = 10.0

    def __attrs_post_init__(self) -> None:
        assert self.id >= 1
        assert self.log_level in LOG_LEVELS
        assert self.transport in TRANSPORTS
