"""What the HTTP and AMP transports share: the address book, a bounded
queue per peer, batching within a reactor turn, the bookkeeping of batches
in flight (counters, timeouts, reachable/unreachable logging, the
membership-mismatch note), ``flushed``, and the parts of the server side
that must read the same in both (handing messages over, logging refusals).

A transport subclasses :class:`PeerTransport` and says only how a batch
reaches a peer: :meth:`~PeerTransport._link` (what to send over, e.g. a URL
or an open connection; ``None`` while there is none, and the queue waits),
:meth:`~PeerTransport._post` (send one encoded batch, a ``Deferred`` that
fires once the peer took it) and :meth:`~PeerTransport._refusal` (which
failures are the peer answering "no"), plus optional hooks for a peer that
moved or was removed and for a link that timed out.

May import the standard library, attrs, Twisted and graft.raft /
graft.transport; never graft.server, storage or kv.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Generic, Protocol, TypeVar

import attrs
from twisted.internet.defer import CancelledError, Deferred, DeferredList, TimeoutError, succeed
from twisted.logger import Logger

from graft.raft.messages import Heartbeat, HeartbeatResponse, Message, NodeId
from graft.transport._outbox import Outbox, OutboxLimits
from graft.transport.codec import Envelope, encode_batch, encode_message
from graft.transport.interfaces import ReactorTime, Receive

__all__ = ["Peer", "PeerStats", "PeerTransport", "describe_membership_mismatch"]


@attrs.define
class PeerStats:
    """Counters for one peer, for logs and metrics."""

    messages_sent: int = 0
    requests_sent: int = 0
    requests_failed: int = 0
    messages_dropped: int = 0
    in_flight_max_seen: int = 0


@attrs.define(eq=False)
class Peer:
    """One entry of the address book, with its queue."""

    node_id: NodeId
    address: str
    outbox: Outbox
    stats: PeerStats = attrs.field(factory=PeerStats)
    #: False after a failure, so the first one warns and the rest (while
    #: the peer stays down) log at debug.
    reachable: bool = True
    #: Likewise for queue overflow.
    overflowing: bool = False


class _Settings(Protocol):
    """What :class:`PeerTransport` reads of a transport's settings."""

    @property
    def request_timeout_seconds(self) -> float: ...

    @property
    def outbox(self) -> OutboxLimits: ...


PeerT = TypeVar("PeerT", bound=Peer)
LinkT = TypeVar("LinkT")


class PeerTransport(Generic[PeerT, LinkT]):
    """The peer machinery of a transport; see the module docstring.

    ``PeerT`` is the transport's :class:`Peer` (a subclass may add fields),
    ``LinkT`` what :meth:`_link` returns.
    """

    #: The transport's own logger (so log lines name the transport).
    log: Logger
    #: Settings with at least a request timeout and outbox limits.
    settings: _Settings
    #: What the transport makes of a new address book entry.
    _peer_type: type[PeerT]
    #: What one batch travels as, in log lines ("request", "call").
    _request_word: str

    def __init__(
        self,
        reactor: ReactorTime,
        node_id: NodeId,
        cluster_id: str,
        cluster_token: bytes | str,
        receive: Receive,
        initial_members: Mapping[NodeId, str] | None,
        /,
    ) -> None:
        # Positional: the transports' own (keyword-only) signatures are
        # the documented ones, and forward these as they are.
        assert node_id >= 1, node_id
        self.node_id = node_id
        self.cluster_id = cluster_id
        #: The membership the cluster id was derived from; told to a peer
        #: of another cluster so it can say what its own list lacks.
        self.initial_members = dict(initial_members or {})
        #: Set once a peer refused us for belonging to another cluster:
        #: what differs, in words an operator can act on.
        self.membership_mismatch: str | None = None
        self.received_messages = 0
        self.refused_requests = 0
        # Twisted's APIs want zope interfaces, which mypy cannot match
        # structurally without mypy-zope: keep an untyped alias for them.
        self._reactor = reactor
        self._twisted_reactor: Any = reactor
        self._token = (
            cluster_token.encode("utf-8") if isinstance(cluster_token, str) else cluster_token
        )
        self._receive = receive
        self._peers: dict[NodeId, PeerT] = {}
        self._running = False
        self._flush_call: Any = None  # an IDelayedCall
        self._dirty: dict[NodeId, None] = {}
        self._requests: set[Deferred[None]] = set()
        self._idle_waiters: list[Deferred[None]] = []
        self._refusals_logged: set[str] = set()

    # --- What a transport supplies ----------------------------------------

    def _link(self, peer: PeerT) -> LinkT | None:
        """What to send ``peer``'s batches over now, or ``None`` (its queue
        waits for the next :meth:`_pump`)."""
        raise NotImplementedError

    def _post(self, peer: PeerT, link: LinkT, body: bytes) -> Deferred[None]:
        """Send one encoded batch; fires once the peer accepted it."""
        raise NotImplementedError

    def _refusal(self, failure: Any) -> tuple[str, object] | None:
        """If ``failure`` is the peer answering and refusing, its error text
        and the body it answered (searched for ``initial_members``)."""
        raise NotImplementedError

    def _failure_reason(self, failure: Any) -> str:
        """Why a peer is unreachable, in a few words."""
        return failure.getErrorMessage() or failure.type.__name__  # type: ignore[no-any-return]

    def _abandoned(self, link: LinkT) -> bool:
        """Whether failures on ``link`` are ours (it was closed on purpose)
        and not the peer's."""
        return False

    def _stuck(self, link: LinkT) -> None:
        """A batch on ``link`` got no answer in time."""

    def _forget(self, peer: PeerT) -> None:
        """``peer`` leaves the address book (or the transport stops)."""
        peer.stats.messages_dropped += peer.outbox.clear()

    def _moved(self, peer: PeerT) -> None:
        """``peer``'s address changed (``peer.address`` is the new one)."""

    # --- ITransport -------------------------------------------------------

    def send(self, message: Message) -> None:
        peer = self._peers.get(message.target)
        if not self._running or peer is None:
            self.log.debug(
                "dropped {kind} to {target}: transport stopped or not a peer",
                kind=type(message).__name__,
                target=message.target,
            )
            return
        assert message.source == self.node_id, f"{message} is not from {self.node_id}"
        try:
            packed = encode_message(message)
        except Exception:  # a bug in the core or codec: say so, don't raise into the core
            self.log.failure("could not encode {kind}", kind=type(message).__name__)
            return
        dropped = peer.outbox.push(
            packed, droppable=isinstance(message, Heartbeat | HeartbeatResponse)
        )
        if dropped:
            peer.stats.messages_dropped += dropped
            if not peer.overflowing:
                peer.overflowing = True
                self.log.warn(
                    f"queue to peer {{peer_id}} is full ({{queued}} messages, {{in_flight}} "
                    f"{self._request_word}s in flight): dropping the oldest messages",
                    peer_id=peer.node_id,
                    queued=len(peer.outbox),
                    in_flight=peer.outbox.in_flight,
                )
        self._dirty[peer.node_id] = None
        if self._flush_call is None:
            self._flush_call = self._reactor.callLater(0, self._flush)

    def set_peers(self, peers: Mapping[NodeId, str]) -> None:
        wanted = {i: a for i, a in peers.items() if i != self.node_id}
        for node_id in list(self._peers):
            if node_id not in wanted:
                self._forget(self._peers.pop(node_id))
        for node_id, address in wanted.items():
            peer = self._peers.get(node_id)
            if peer is None:
                self._peers[node_id] = self._peer_type(
                    node_id=node_id, address=address, outbox=Outbox(self.settings.outbox)
                )
            elif peer.address != address:
                peer.address = address
                self._moved(peer)
        self._maybe_notify_idle()

    async def _stop_sending(self) -> None:
        """The client half of ``stop``: drop what is queued, abandon what is
        in flight and wait for it to settle."""
        self._running = False
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None
        self._dirty.clear()
        for peer in self._peers.values():
            self._forget(peer)
        requests = list(self._requests)
        for d in requests:
            d.cancel()
        if requests:
            await DeferredList(requests, consumeErrors=True)

    # --- Introspection ----------------------------------------------------

    def flushed(self) -> Deferred[None]:
        """Fires once nothing is queued or in flight (at once if so now):
        for graceful shutdown and for tests that must not sleep."""
        if self._idle():
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._idle_waiters.append(d)
        return d

    def _idle(self) -> bool:
        return (
            self._flush_call is None
            and not self._requests
            and not any(len(p.outbox) for p in self._peers.values())
        )

    def _maybe_notify_idle(self) -> None:
        if self._idle_waiters and self._idle():
            waiters, self._idle_waiters = self._idle_waiters, []
            for d in waiters:
                d.callback(None)

    @property
    def peers(self) -> Mapping[NodeId, str]:
        """The current address book (a copy)."""
        return {i: p.address for i, p in self._peers.items()}

    def peer_stats(self, node_id: NodeId) -> PeerStats | None:
        """Counters for a current peer (for metrics), or ``None``."""
        peer = self._peers.get(node_id)
        return None if peer is None else peer.stats

    # --- Client side ------------------------------------------------------

    def _current(self, peer: PeerT) -> bool:
        return self._running and self._peers.get(peer.node_id) is peer

    def _flush(self) -> None:
        self._flush_call = None
        dirty, self._dirty = self._dirty, {}
        for node_id in dirty:
            peer = self._peers.get(node_id)
            if peer is not None:
                self._pump(peer)
        self._maybe_notify_idle()

    def _pump(self, peer: PeerT) -> None:
        """Send batches to ``peer`` while its outbox allows."""
        if not self._current(peer):
            return
        link = self._link(peer)
        if link is None:
            return
        while self._running and (batch := peer.outbox.take_batch()) is not None:
            body = encode_batch(batch, cluster_id=self.cluster_id, sender=self.node_id)
            stats = peer.stats
            stats.requests_sent += 1
            stats.messages_sent += len(batch)
            stats.in_flight_max_seen = max(stats.in_flight_max_seen, peer.outbox.in_flight)
            d = self._post(peer, link, body)
            d.addTimeout(self.settings.request_timeout_seconds, self._twisted_reactor)
            d.addCallbacks(
                self._delivered,
                self._failed,
                callbackArgs=(peer, len(batch)),
                errbackArgs=(peer, link, len(batch)),
            )
            self._requests.add(d)
            d.addBoth(self._finished, peer, d)

    def _delivered(self, _: object, peer: PeerT, count: int) -> None:
        if not peer.reachable:
            peer.reachable = True
            self.log.info(
                "peer {peer_id} at {address} is reachable again",
                peer_id=peer.node_id,
                address=peer.address,
            )
        peer.overflowing = False
        self.log.debug("sent {count} messages to peer {peer_id}", count=count, peer_id=peer.node_id)

    def _failed(self, failure: Any, peer: PeerT, link: LinkT, count: int) -> None:
        peer.stats.requests_failed += 1
        peer.stats.messages_dropped += count
        if (failure.check(CancelledError) and not self._running) or self._abandoned(link):
            return  # abandoned by stop(), or the peer was removed or moved
        refused = self._refusal(failure)
        if refused is not None:
            error, body = refused
            if self._note_membership_mismatch(peer, body):
                return
            # The peer answered and refused: a configuration problem (or a
            # bug) worth an operator's attention every time (rare by nature).
            self.log.warn(
                "peer {peer_id} at {address} refused {count} messages: {error}",
                peer_id=peer.node_id,
                address=peer.address,
                count=count,
                error=error,
            )
            return
        if failure.check(TimeoutError, CancelledError):
            reason = f"no answer within {self.settings.request_timeout_seconds}s"
            self._stuck(link)
        else:
            reason = self._failure_reason(failure)
        self._unreachable(peer, reason, count)

    def _unreachable(self, peer: PeerT, reason: str, count: int) -> None:
        if peer.reachable:
            peer.reachable = False
            self.log.warn(
                "peer {peer_id} at {address} unreachable ({reason}); dropping messages to it",
                peer_id=peer.node_id,
                address=peer.address,
                reason=reason,
            )
        else:
            self.log.debug(
                "dropped {count} messages to unreachable peer {peer_id}: {reason}",
                count=count,
                peer_id=peer.node_id,
                reason=reason,
            )

    def _finished(self, _: object, peer: PeerT, d: Deferred[None]) -> None:
        self._requests.discard(d)
        peer.outbox.finished()
        self._pump(peer)
        self._maybe_notify_idle()

    def _note_membership_mismatch(self, peer: PeerT, body: object) -> bool:
        """If ``peer`` refused us for another cluster and said its initial
        members, log once which members the two lists disagree on."""
        if not isinstance(body, dict) or not isinstance(body.get("initial_members"), list):
            return False
        theirs: dict[int, str] = {}
        for member in body["initial_members"]:
            if isinstance(member, dict) and isinstance(member.get("id"), int):
                theirs[member["id"]] = str(member.get("address", ""))
        mismatch = describe_membership_mismatch(
            self.node_id, self.initial_members, peer.node_id, theirs
        )
        if mismatch != self.membership_mismatch:
            self.membership_mismatch = mismatch
            self.log.error("{mismatch}", mismatch=mismatch)
        return True

    # --- Server side ------------------------------------------------------

    def _hand_over(self, envelope: Envelope) -> None:
        """Give an admitted envelope's messages to the receive callback."""
        for message in envelope.messages:
            self.received_messages += 1
            try:
                self._receive(message)
            except Exception:
                self.log.failure(
                    "receive callback failed on {kind} from {sender}",
                    kind=type(message).__name__,
                    sender=envelope.sender,
                )

    def _log_refusal(self, client: str, reason: str) -> list[dict[str, object]] | None:
        """Count and log a refused peer; returns our initial members when
        the refusal is a cluster id mismatch (for the refused peer to
        compare with its own), else ``None``."""
        self.refused_requests += 1
        # A misconfigured peer retries every heartbeat: warn once per
        # distinct reason, then debug, so the log stays readable.
        level = self.log.debug if reason in self._refusals_logged else self.log.warn
        if len(self._refusals_logged) >= 1000:
            self._refusals_logged.clear()
        self._refusals_logged.add(reason)
        level(
            f"refused a peer {self._request_word} from {{client}}: {{reason}}",
            client=client,
            reason=reason,
        )
        if reason.startswith("cluster id mismatch") and self.initial_members:
            return [
                {"id": node_id, "address": address}
                for node_id, address in sorted(self.initial_members.items())
            ]
        return None


def describe_membership_mismatch(
    node_id: NodeId, ours: Mapping[NodeId, str], peer_id: NodeId, theirs: Mapping[NodeId, str]
) -> str:
    """One line saying how two nodes' initial member lists differ."""

    def listing(ids: Iterable[NodeId], members: Mapping[NodeId, str]) -> str:
        return ", ".join(f"node {i} ({members[i]})" for i in sorted(ids))

    parts = [
        f"node {node_id} and peer {peer_id} were started with different initial members: "
        f"ours are {sorted(ours)}, theirs are {sorted(theirs)}"
    ]
    lacks = set(theirs) - set(ours)
    extra = set(ours) - set(theirs)
    moved = sorted(i for i in set(ours) & set(theirs) if ours[i] != theirs[i])
    if lacks:
        parts.append(f"our list lacks {listing(lacks, theirs)}")
    if extra:
        parts.append(f"their list lacks {listing(extra, ours)}")
    if moved:
        parts.append(
            "addresses differ for "
            + ", ".join(f"node {i} (ours {ours[i]}, theirs {theirs[i]})" for i in moved)
        )
    parts.append(
        "they refuse each other's messages; restart the node whose list is wrong "
        "with the cluster's full member list"
    )
    return "; ".join(parts)
