"""Membership changes and leadership transfer over HTTP (API.md section 3),
and each node's watch over its own membership.

- :class:`MembershipRoutes` serves ``POST /v1/members`` (through the
  client API's ``/v1/members`` route), ``DELETE /v1/members/{id}`` and
  ``POST /v1/leader`` on the leader; other nodes redirect (307) like the
  key routes. A change is answered once its configuration entry is applied
  here, which implies it is committed (thesis §4.1: one at a time; a second
  one meanwhile gets 409).
- :class:`MembershipWatch` runs every tick: on the leader it remembers when
  each peer was last heard from (to refuse a removal that would leave the
  reachable voters short of a quorum), and on every node it notices when
  the node's own id has left the configuration: it then logs one line and
  its client routes answer 503.

A voter is added as a learner that the leader promotes once it has caught
up (thesis §4.2.1; graft.raft.leader ``_maybe_promote_learners``), so a new,
empty node never holds up commits while it fetches the log or a snapshot.

May import the standard library, Twisted, Klein, graft.raft and
graft.server.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger
from twisted.web.server import Request

from graft.raft import (
    ChangeKind,
    Configuration,
    InvalidMembershipChange,
    LearnerNotCaughtUp,
    MembershipChange,
    MembershipChangeInProgress,
    NotLeader,
    ProposalDropped,
    Role,
    TransferRefused,
    apply_change,
)
from graft.raft.messages import NodeId
from graft.server.api import ClientAPI, _json, _Refused
from graft.server.driver import RaftDriver
from graft.server.errors import Unavailable

__all__ = ["MembershipRoutes", "MembershipWatch", "quorum_shortfall"]

_RETRY = {b"Retry-After": b"1"}


def quorum_shortfall(
    configuration: Configuration, node_id: NodeId, reachable: set[NodeId]
) -> str | None:
    """Why removing ``node_id`` from ``configuration`` would leave the
    voters of the new configuration that are ``reachable`` short of a
    quorum of it, or None if enough of them are."""
    after = apply_change(configuration, MembershipChange(kind=ChangeKind.REMOVE, node_id=node_id))
    voters = after.voters
    live = sorted(voters & reachable)
    needed = len(voters) // 2 + 1
    if len(live) >= needed:
        return None
    return (
        f"removing node {node_id} would leave {len(voters)} voters {sorted(voters)} of which "
        f"only {len(live)} {live} are reachable now, short of the {needed} a quorum needs; "
        "bring the others back first, or pass ?force=true to remove it anyway"
    )


class MembershipWatch(Service):
    """Samples the core once per tick: when each peer was last active (as
    the leader sees it), and whether this node is still a member.

    A node is taken to be removed once its id is absent from a non-empty
    configuration that is committed, or absent for two election timeouts
    (the leader stops replicating to a removed node as soon as its removal
    commits, so it may never learn the commit itself)."""

    log = Logger()

    def __init__(self, driver: RaftDriver, *, election_timeout_seconds: float) -> None:
        self.driver = driver
        self.election_timeout_seconds = election_timeout_seconds
        #: Peer id -> clock time it was last seen active by this node as leader.
        self.last_active: dict[NodeId, float] = {}
        self._absent_since: float | None = None
        self._leading_since: float | None = None
        # A node that starts empty (joining) is not "removed" while the
        # snapshot it catches up from predates its addition; only one that
        # started in, or has since been seen in, a configuration can be.
        self._was_member = bool(driver.node.configuration.members)
        self._loop = LoopingCall(self.sample)
        self._loop.clock = driver.clock

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self._loop.start(self.driver.tick_seconds, now=True)

    def stopService(self) -> None:
        super().stopService()  # type: ignore[no-untyped-call]
        if self._loop.running:
            self._loop.stop()

    def sample(self) -> None:
        driver = self.driver
        node = driver.node
        now = driver.clock.seconds()
        if node.role is Role.LEADER:
            if self._leading_since is None:
                self._leading_since = now
            for member in node.configuration.members:
                progress = node.progress(member.id)
                if progress is not None and progress.recent_active:
                    self.last_active[member.id] = now
        else:
            self._leading_since = None
            self.last_active.clear()
        self._check_membership(now)

    @property
    def horizon_seconds(self) -> float:
        """How long a live peer may go unseen: check-quorum clears
        ``recent_active`` every election timeout and a heartbeat reply
        sets it again well within the next."""
        return 2 * self.election_timeout_seconds

    def reachable(self) -> set[NodeId]:
        """This node and the peers it heard from lately, as leader."""
        node = self.driver.node
        horizon = self.driver.clock.seconds() - self.horizon_seconds
        seen = {i for i, t in self.last_active.items() if t >= horizon}
        for member in node.configuration.members:
            progress = node.progress(member.id)
            if progress is not None and progress.recent_active:
                seen.add(member.id)
        return seen | {self.driver.node_id}

    def knows_reachability(self) -> bool:
        """Whether this node has led long enough for :meth:`reachable`
        to have seen every live peer."""
        since = self._leading_since
        return since is not None and self.driver.clock.seconds() - since >= self.horizon_seconds

    def _check_membership(self, now: float) -> None:
        driver = self.driver
        node = driver.node
        configuration = node.configuration
        is_member = configuration.member(driver.node_id) is not None
        self._was_member = self._was_member or is_member
        if not configuration.members or is_member or not self._was_member:
            self._absent_since = None
            if driver.removed_reason is not None:
                driver.removed_reason = None
                self.log.info(
                    "node {node_id} is a member of the cluster again", node_id=driver.node_id
                )
            return
        if self._absent_since is None:
            self._absent_since = now
        committed = node.commit_index >= node.log.configuration_index
        lasted = now - self._absent_since >= 2 * self.election_timeout_seconds
        if driver.removed_reason is None and (committed or lasted):
            driver.removed_reason = (
                f"node {driver.node_id} was removed from the cluster; ask one of its members "
                f"({', '.join(str(i) for i in configuration.ids)})"
            )
            self.log.warn(
                "node {node_id} was removed from the cluster; stopping participation",
                node_id=driver.node_id,
            )


class MembershipRoutes:
    """``POST /v1/members``, ``DELETE /v1/members/{id}`` and ``POST
    /v1/leader`` of one node, built on its :class:`ClientAPI`."""

    log = Logger()

    def __init__(
        self,
        api: ClientAPI,
        watch: MembershipWatch,
        *,
        cluster_id: str,
        election_timeout_seconds: float,
    ) -> None:
        self.api = api
        self.driver: RaftDriver = api.driver
        self.watch = watch
        self.cluster_id = cluster_id
        self.election_timeout_seconds = election_timeout_seconds

    def mount(self) -> None:
        """Add the routes to the client API's Klein app."""
        api = self.api
        api.membership = self
        api.app.route("/v1/members/<int:node_id>")(self._member_route)
        api.app.route("/v1/leader")(self._leader_route)

    # --- plumbing ---------------------------------------------------------------

    def _member_route(self, request: Request, node_id: int) -> Any:
        return Deferred.fromCoroutine(self.api._answer(request, lambda r: self.remove(r, node_id)))

    def _leader_route(self, request: Request) -> Any:
        return Deferred.fromCoroutine(self.api._answer(request, self.transfer))

    def _on_leader(self, request: Request) -> None:
        """Refuse unless this node leads: redirect (307) or 503."""
        self.api._check_failed()
        if self.driver.node.role is not Role.LEADER:
            raise self.api._redirect_or_unavailable(request)

    def _document(self, request: Request, keys: tuple[str, ...]) -> dict[str, Any]:
        body = self.api._body(request)
        try:
            document = json.loads(body)
        except ValueError as e:
            raise _Refused(400, f"bad JSON: {e}") from None
        if not isinstance(document, dict):
            raise _Refused(400, "expected a JSON object")
        unknown = sorted(str(k) for k in document if k not in keys)
        if unknown:
            raise _Refused(400, f'unknown key "{unknown[0]}" (expected {", ".join(keys)})')
        return document

    def _refusal(self, request: Request, error: Exception) -> _Refused:
        if isinstance(error, NotLeader):
            return self.api._redirect_or_unavailable(request)
        if isinstance(error, MembershipChangeInProgress):
            return _Refused(
                409, f"another membership change is in progress ({error}); retry shortly", _RETRY
            )
        if isinstance(error, LearnerNotCaughtUp):
            return _Refused(409, str(error), _RETRY)
        if isinstance(error, InvalidMembershipChange):
            return _Refused(400, str(error))
        if isinstance(error, ProposalDropped | Unavailable):
            return _Refused(503, f"the leader cannot change membership now: {error}", _RETRY)
        raise error

    async def _wait_applied(self, index: int, term: int, what: str) -> None:
        """Return once the entry at ``index`` of ``term`` is applied here;
        refuse if another leader's entry took its place or on timeout."""
        driver = self.driver
        clock = driver.clock
        deadline = clock.seconds() + self.api.request_timeout_seconds
        while True:
            node = driver.node
            if driver.kv.applied_index >= index:
                held = node.term_at(index)
                if held == term or (held is None and index <= node.snapshot_meta.index):
                    return
                raise _Refused(
                    503, f"leadership changed before the {what} committed; it did not happen, retry"
                )
            if driver.failed_reason is not None:
                self.api._check_failed()
            if clock.seconds() >= deadline:
                raise _Refused(
                    503,
                    f"timed out after {self.api.request_timeout_seconds:g}s waiting for the "
                    f"{what} to commit; its outcome is unknown (see GET /v1/members)",
                    _RETRY,
                )
            await deferLater(clock, driver.tick_seconds, lambda: None)

    def _members_answer(self, request: Request, index: int | None = None) -> bytes:
        members = [
            {"id": m.id, "address": m.address, "voter": m.voter}
            for m in self.driver.configuration.members
        ]
        body: dict[str, Any] = {"members": members, "cluster_id": self.cluster_id}
        if index is not None:
            body["index"] = index
        return _json(request, 200, body)

    # --- POST /v1/members -----------------------------------------------------

    async def add(self, request: Request) -> bytes:
        """Add ``{"id","address","voter"}``: a voter joins as a learner that
        is promoted once caught up; ``"voter": false`` stays a learner.
        Adding a member again with the same address changes nothing (a
        node started with --join after ``graft cluster add``)."""
        document = self._document(request, ("id", "address", "voter", "cluster_id"))
        node_id = document.get("id")
        if isinstance(node_id, bool) or not isinstance(node_id, int) or node_id < 1:
            raise _Refused(400, '"id" must be a positive integer')
        address = _address(document.get("address"))
        voter = document.get("voter", True)
        if not isinstance(voter, bool):
            raise _Refused(400, '"voter" must be true or false')
        theirs = document.get("cluster_id")
        if theirs is not None and theirs != self.cluster_id:
            raise _Refused(
                409,
                f"node {node_id} belongs to cluster {theirs!r}, not this cluster "
                f"{self.cluster_id!r}: refusing to add a node holding another cluster's data",
            )
        self._on_leader(request)
        existing = self.driver.configuration.member(node_id)
        if existing is not None:
            if existing.address.rstrip("/") == address:
                return self._members_answer(request)
            raise _Refused(
                409,
                f"node {node_id} is already a member, at {existing.address}; "
                "remove it first to move it",
            )
        change = MembershipChange(
            kind=ChangeKind.ADD_LEARNER, node_id=node_id, address=address, auto_promote=voter
        )
        try:
            index = self.driver.change_membership(change)
        except Exception as e:
            raise self._refusal(request, e) from None
        term = self.driver.node.term
        self.log.info(
            "node {node_id}: adding node {added} at {address} as {kind} (index {index})",
            node_id=self.driver.node_id,
            added=node_id,
            address=address,
            kind="a voter, once caught up" if voter else "a learner",
            index=index,
        )
        await self._wait_applied(index, term, "addition")
        return self._members_answer(request, index)

    # --- DELETE /v1/members/{id} ---------------------------------------------

    async def remove(self, request: Request, node_id: int) -> bytes:
        """Remove a member, the leader included (it steps down once the
        removal commits). Refused with 409 if the voters left that are
        reachable now would fall short of a quorum, unless ``?force=true``."""
        if request.method != b"DELETE":
            raise _Refused(405, "use DELETE", {b"Allow": b"DELETE"})
        force = _query_flag(request, b"force")
        self._on_leader(request)
        configuration = self.driver.configuration
        if configuration.member(node_id) is None:
            raise _Refused(404, f"node {node_id} is not a member")
        while True:
            try:
                shortfall = quorum_shortfall(configuration, node_id, self.watch.reachable())
            except InvalidMembershipChange as e:
                raise _Refused(409, str(e)) from None
            if shortfall is None or force or self.watch.knows_reachability():
                break
            # A new leader has not heard from every live peer yet.
            await deferLater(self.driver.clock, self.driver.tick_seconds, lambda: None)
            self._on_leader(request)
            configuration = self.driver.configuration
            if configuration.member(node_id) is None:
                raise _Refused(404, f"node {node_id} is not a member")
        if shortfall is not None and not force:
            raise _Refused(409, shortfall)
        try:
            index = self.driver.change_membership(
                MembershipChange(kind=ChangeKind.REMOVE, node_id=node_id)
            )
        except Exception as e:
            raise self._refusal(request, e) from None
        term = self.driver.node.term
        self.log.info(
            "node {node_id}: removing node {removed} (index {index}{forced})",
            node_id=self.driver.node_id,
            removed=node_id,
            index=index,
            forced=", forced" if shortfall is not None else "",
        )
        await self._wait_applied(index, term, "removal")
        return self._members_answer(request, index)

    # --- POST /v1/leader ------------------------------------------------------

    async def transfer(self, request: Request) -> bytes:
        """Hand leadership to voter ``{"id"}`` and answer once it leads;
        503 if it does not within two election timeouts."""
        if request.method != b"POST":
            raise _Refused(405, "use POST", {b"Allow": b"POST"})
        document = self._document(request, ("id",))
        target = document.get("id")
        if isinstance(target, bool) or not isinstance(target, int) or target < 1:
            raise _Refused(400, '"id" must be a positive integer')
        self._on_leader(request)
        driver = self.driver
        if target == driver.node_id:
            return self._leader_answer(request)
        try:
            driver.transfer_leadership(target)
        except TransferRefused as e:
            raise _Refused(409, f"cannot transfer leadership: {e}") from None
        except Exception as e:
            raise self._refusal(request, e) from None
        self.log.info(
            "node {node_id}: handing leadership to node {target}",
            node_id=driver.node_id,
            target=target,
        )
        clock = driver.clock
        waited = 2 * self.election_timeout_seconds
        deadline = clock.seconds() + waited
        while driver.node.leader_id != target:
            if clock.seconds() >= deadline:
                leader = driver.node.leader_id
                now = "no leader is known" if leader is None else f"node {leader} leads"
                raise _Refused(
                    503,
                    f"leadership did not move to node {target} within {waited:g}s; {now}. "
                    "Is it reachable and caught up?",
                    _RETRY,
                )
            await deferLater(clock, driver.tick_seconds, lambda: None)
        return self._leader_answer(request)

    def _leader_answer(self, request: Request) -> bytes:
        leader = self.driver.leader()
        assert leader is not None
        return _json(
            request,
            200,
            {
                "leader": {"id": leader.id, "address": leader.address},
                "term": self.driver.node.term,
            },
        )


def _address(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _Refused(400, '"address" must be a URL such as "http://10.0.0.4:9001"')
    url = value.strip().rstrip("/")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError:
        raise _Refused(400, f"bad address {value!r}: bad port") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or "," in url or ";" in url:
        raise _Refused(400, f"bad address {value!r}: expected http://HOST:PORT")
    return url


def _query_flag(request: Request, name: bytes) -> bool:
    values = (request.args or {}).get(name)
    if not values:
        return False
    text = values[-1].decode("utf-8", "replace").lower()
    if text in ("1", "true", "yes", ""):
        return True
    if text in ("0", "false", "no"):
        return False
    raise _Refused(400, f"{name.decode()} must be true or false, not {text!r}")
