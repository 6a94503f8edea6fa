"""Where a node starts from, decided before its service is built: which
cluster it belongs to, and with which initial configuration.

- A node of the initial cluster derives the cluster id from its members
  (graft.server.service ``cluster_id_for``).
- A node started with ``--join URL`` and no data asks the cluster at URL to
  add it (``POST /v1/members``, following redirects to the leader), adopts
  the cluster id the answer carries and starts with an empty configuration:
  it never campaigns, and learns the members from the leader's log or
  snapshot. The identity file records that it joined (``"origin":
  "join"``) and the members it was told, so a restart needs neither the
  cluster nor the flag: its membership lives in its log from then on.
- ``--force-new-cluster`` (disaster recovery, :func:`force_new_cluster`)
  rewrites a surviving node's data so that it restarts as the only member
  of a new cluster, keeping every entry of its log.

Blocking: these run before the reactor does (``graft node run``,
``twist graft``).

May import the standard library, attrs, Twisted's logger, graft.raft,
graft.storage and graft.server.
"""

from __future__ import annotations

import http.client
import json
import os
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urljoin, urlsplit

import attrs
from twisted.logger import Logger

from graft.raft import NO_VOTE, Configuration, Entry, EntryKind, HardState, Member, SnapshotMeta
from graft.server.settings import NodeSettings
from graft.server.snapshots import load_newest_snapshot
from graft.storage.datadir import IDENTITY_NAME, open_data_dir
from graft.storage.fileops import FileOps, read_file, write_atomically

__all__ = [
    "ForceRefused",
    "JoinRefused",
    "StartPoint",
    "force_new_cluster",
    "join_cluster",
    "read_identity",
    "start_point",
]

log = Logger()

#: How long a joining node keeps asking while the cluster is busy with
#: another change, has no leader, or cannot be reached.
JOIN_SECONDS_MAX = 60.0
ORIGIN_JOIN = "join"
ORIGIN_FORCED = "force-new-cluster"


class JoinRefused(Exception):
    """The cluster refused to add this node, or could not be asked."""


class ForceRefused(Exception):
    """``--force-new-cluster`` cannot be applied to this data directory."""


@attrs.frozen(kw_only=True)
class Identity:
    cluster_id: str
    node_id: int
    #: None for a member of the initial cluster; else ORIGIN_JOIN or ORIGIN_FORCED.
    origin: str | None = None
    #: For a node that joined: the members it was told (its first peers).
    members: tuple[Member, ...] = ()


@attrs.frozen(kw_only=True)
class StartPoint:
    cluster_id: str
    #: The configuration before the log's first entry (empty when the
    #: membership is learnt from the cluster or lives in the log).
    configuration: Configuration
    #: Peers to admit and answer while the configuration is empty.
    bootstrap_peers: dict[int, str] = attrs.field(factory=dict)


def read_identity(data_dir: str) -> Identity | None:
    """The identity file of ``data_dir``, or None if it has none (or it is
    unreadable: open_data_dir then says why)."""
    data = read_file(os.path.join(data_dir, IDENTITY_NAME))
    if data is None:
        return None
    try:
        stored = json.loads(data)
        members = tuple(
            Member(id=int(m["id"]), address=str(m["address"])) for m in stored.get("members", [])
        )
        origin = stored.get("origin")
        return Identity(
            cluster_id=str(stored["cluster_id"]),
            node_id=int(stored["node_id"]),
            origin=str(origin) if origin is not None else None,
            members=members,
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def write_identity(data_dir: str, identity: Identity, ops: FileOps | None = None) -> None:
    ops = ops if ops is not None else FileOps()
    ops.makedirs(data_dir)
    body: dict[str, Any] = {"cluster_id": identity.cluster_id, "node_id": identity.node_id}
    if identity.origin is not None:
        body["origin"] = identity.origin
    if identity.members:
        body["members"] = [{"id": m.id, "address": m.address} for m in identity.members]
    path = os.path.join(data_dir, IDENTITY_NAME)
    write_atomically(ops, path, json.dumps(body, sort_keys=True).encode())


def start_point(
    settings: NodeSettings,
    *,
    initial: Configuration,
    cluster_id_for: Callable[[tuple[Member, ...]], str],
    join: Callable[..., dict[str, Any]] | None = None,
) -> StartPoint:
    """Decide the cluster id and initial configuration of the node that
    ``settings`` describe (see the module docstring). ``initial`` is the
    configuration its flags give; ``join`` is :func:`join_cluster` (a
    parameter for tests)."""
    join = join if join is not None else join_cluster
    stored = read_identity(settings.data_dir)
    if stored is not None and stored.node_id == settings.id and stored.origin is not None:
        if settings.peers:
            log.warn(
                "node {node_id}: ignoring --peers: this node's membership lives in its log "
                "since it {how}",
                node_id=settings.id,
                how="joined the cluster" if stored.origin == ORIGIN_JOIN else "was forced alone",
            )
        return StartPoint(
            cluster_id=stored.cluster_id,
            configuration=Configuration(),
            bootstrap_peers={m.id: m.address for m in stored.members if m.id != settings.id},
        )
    if settings.join is None:
        return StartPoint(cluster_id=cluster_id_for(initial.members), configuration=initial)
    if stored is not None and stored.node_id != settings.id:
        # open_data_dir refuses it with its own words.
        return StartPoint(cluster_id=stored.cluster_id, configuration=Configuration())
    ours = stored.cluster_id if stored is not None else None
    answer = join(
        settings.join,
        node_id=settings.id,
        address=settings.advertise,
        voter=not settings.learner,
        cluster_id=ours,
    )
    cluster_id = answer["cluster_id"]
    if ours is not None and cluster_id != ours:
        raise JoinRefused(
            f"the cluster at {settings.join} is {cluster_id!r} but data directory "
            f"{settings.data_dir} belongs to cluster {ours!r}: refusing to mix two clusters' data"
        )
    members = tuple(Member(id=m["id"], address=m["address"]) for m in answer["members"])
    write_identity(
        settings.data_dir,
        Identity(cluster_id=cluster_id, node_id=settings.id, origin=ORIGIN_JOIN, members=members),
    )
    log.info(
        "node {node_id} joined cluster {cluster_id} as {kind}; members {members}",
        node_id=settings.id,
        cluster_id=cluster_id,
        kind="a learner" if settings.learner else "a learner until caught up, then a voter",
        members=", ".join(f"{m.id}={m.address}" for m in members),
    )
    return StartPoint(
        cluster_id=cluster_id,
        configuration=Configuration(),
        bootstrap_peers={m.id: m.address for m in members if m.id != settings.id},
    )


def join_cluster(
    url: str,
    *,
    node_id: int,
    address: str,
    voter: bool,
    cluster_id: str | None = None,
    seconds_max: float = JOIN_SECONDS_MAX,
    timeout: float = 15.0,
) -> dict[str, Any]:
    """Ask the cluster at ``url`` to add this node; return its answer,
    ``{"members": [...], "cluster_id": ...}``. Follows redirects to the
    leader and retries, for up to ``seconds_max``, while the cluster is
    unreachable, has no leader or is busy with another change. Raises
    :class:`JoinRefused` with the cluster's reason otherwise."""
    document: dict[str, Any] = {"id": node_id, "address": address, "voter": voter}
    if cluster_id is not None:
        document["cluster_id"] = cluster_id
    body = json.dumps(document).encode()
    target = url.rstrip("/") + "/v1/members"
    deadline = time.monotonic() + seconds_max
    problem = ""
    while True:
        try:
            status, headers, answer = _post_following(target, body, timeout)
        except (OSError, http.client.HTTPException) as e:
            status, headers, answer = 0, {}, b""
            problem = f"cannot reach {url}: {e}"
        if status == 200:
            try:
                result: dict[str, Any] = json.loads(answer)
                assert isinstance(result["cluster_id"], str)
                assert all(isinstance(m["id"], int) for m in result["members"])
            except (ValueError, KeyError, TypeError, AssertionError):
                raise JoinRefused(f"the cluster at {url} gave an unreadable answer") from None
            return result
        if status:
            problem = f"the cluster at {url} answered {status}: {_error_text(answer)}"
            retry = status == 503 or (status == 409 and "retry-after" in headers)
            if not retry:
                raise JoinRefused(f"could not join: {problem}")
        if time.monotonic() >= deadline:
            raise JoinRefused(f"could not join within {seconds_max:g}s: {problem}")
        log.info("node {node_id}: waiting to join: {problem}", node_id=node_id, problem=problem)
        time.sleep(0.5)


def _post_following(
    url: str, body: bytes, timeout: float, redirects_max: int = 5
) -> tuple[int, dict[str, str], bytes]:
    for _ in range(redirects_max + 1):
        parts = urlsplit(url)
        connection_class = (
            http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        )
        connection = connection_class(parts.hostname or "", parts.port, timeout=timeout)
        try:
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            connection.request(
                "POST", path, body=body, headers={"Content-Type": "application/json"}
            )
            response = connection.getresponse()
            data = response.read()
            headers = {k.lower(): v for k, v in response.getheaders()}
        finally:
            connection.close()
        location = headers.get("location")
        if response.status in (307, 308) and location:
            url = urljoin(url, location)
            continue
        return response.status, headers, data
    return 503, {}, b'{"error": "too many redirects (no stable leader?)"}'


def _error_text(body: bytes) -> str:
    try:
        document = json.loads(body)
        if isinstance(document, dict) and isinstance(document.get("error"), str):
            return str(document["error"])
    except ValueError:
        pass
    return body[:200].decode("utf-8", "replace")


# --- disaster recovery --------------------------------------------------------


def force_new_cluster(
    settings: NodeSettings, *, cluster_id_for: Callable[[tuple[Member, ...]], str]
) -> str:
    """Rewrite the data of node ``settings.id`` so that it starts as the
    only voter of a new cluster (like etcd's --force-new-cluster): append a
    configuration entry naming it alone after its whole log (entries it
    never saw committed included: the lost majority may have acknowledged
    them) and re-stamp its identity with the new cluster's id, so that the
    old cluster's nodes and this one refuse each other. Returns a summary.

    Only for when a quorum is lost for good: the other members' data is
    abandoned. Refuses (:class:`ForceRefused`) a directory with no data."""
    path = settings.data_dir
    if settings.peers or settings.join:
        raise ForceRefused("it starts a one-node cluster: give neither --peers nor --join")
    stored = read_identity(path)
    if stored is None:
        raise ForceRefused(f"data directory {path} holds no node's data: nothing to recover")
    if stored.node_id != settings.id:
        raise ForceRefused(
            f"data directory {path} belongs to node {stored.node_id}, not {settings.id}"
        )
    data_dir = open_data_dir(
        path, stored.cluster_id, settings.id, segment_bytes_max=settings.log_segment_bytes
    )
    me = Member(id=settings.id, address=settings.advertise)
    alone = Configuration(members=(me,))
    try:
        wal = data_dir.log
        latest = load_newest_snapshot(data_dir.snapshots, wal, lambda problem: None)
        snapshot = latest[0] if latest is not None else SnapshotMeta()
        if wal.last_index < snapshot.index:
            wal.reset(snapshot.index)
        last_index = wal.last_index
        last_term = wal.term_at(last_index) if last_index > snapshot.index else snapshot.term
        hard_state = wal.load_hard_state()
        term = max(hard_state.term, last_term or 0, 1)
        entry = Entry(index=last_index + 1, term=term, kind=EntryKind.CONFIG, data=alone.encode())
        wal.append([entry])
        wal.sync()
        vote = hard_state.vote if hard_state.term == term else NO_VOTE
        wal.save_hard_state(HardState(term=term, vote=vote, commit=hard_state.commit))
    finally:
        data_dir.close()
    cluster_id = cluster_id_for(alone.members)
    write_identity(path, Identity(cluster_id=cluster_id, node_id=settings.id, origin=ORIGIN_FORCED))
    return (
        f"node {settings.id} is now the only member of a new cluster {cluster_id!r} "
        f"(was {stored.cluster_id!r}); its log up to index {last_index} is kept and "
        f"commits once it leads. Add members with --join; never restart the old "
        f"members with their old data"
    )
