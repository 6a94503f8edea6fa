"""The interface every transport provides, and the callback it delivers to.

A transport carries graft.raft messages between the nodes of one cluster.
Implementations: :mod:`graft.transport.memory` (the in-memory twin, for
tests), :mod:`graft.transport.http` (Klein server routes plus a treq
client) and :mod:`graft.transport.amp` (AMP commands over one long-lived
TCP connection per peer). HTTP and AMP send the same codec envelopes and
share their per-peer queueing and bookkeeping
(:mod:`graft.transport._peers`); the node driver sees only this interface.

This module may import zope.interface, Twisted and graft.raft.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from zope.interface import Interface  # type: ignore[import-untyped]

from graft.raft.messages import Message, NodeId

__all__ = ["ITransport", "ReactorTime", "Receive"]

#: Called once per valid inbound message from a current peer, on the
#: reactor thread. Its return value is ignored; an exception it raises is
#: logged and does not affect other messages or the transport.
Receive = Callable[[Message], object]


class ReactorTime(Protocol):
    """The part of ``IReactorTime`` the transports use, spelled as a Protocol
    so mypy can check calls (zope interfaces are opaque to it without the
    mypy-zope plugin). The reactor and ``task.Clock`` both fit."""

    def callLater(
        self, delay: float, callable: Callable[..., object], *args: object, **kw: object
    ) -> Any: ...

    def seconds(self) -> float: ...


# zope.interface ships no type information (so the ``type: ignore`` on its
# import and on subclassing it), and its methods are declared without
# ``self`` (so the ``type: ignore`` on each), as in graft/kv/interfaces.py.


class ITransport(Interface):  # type: ignore[misc]
    """Carries messages between the members of one cluster.

    Contract (what Raft needs and no more, §5.1 of the paper: "servers
    retry RPCs if they do not receive a response in a timely manner" is the
    core's business, not ours):

    - :meth:`send` is fire-and-forget: no result, no retries, no ordering
      promise, no delivery promise. A message may be lost, delayed or
      reordered; it is never altered.
    - Inbound messages go to the ``receive`` callback given at construction,
      only after validation: well-formed, from this cluster, from a node
      that is currently a peer, addressed to this node.
    - Nothing a peer does raises into the caller.
    """

    def start() -> Deferred[None]:  # type: ignore[misc, empty-body]
        """Begin sending and accepting messages; fires once ready."""

    def stop() -> Deferred[None]:  # type: ignore[misc, empty-body]
        """Stop: drop queued messages, abandon requests in flight, refuse
        inbound messages. Fires once connections are closed."""

    def send(message: Message) -> None:
        """Queue ``message`` for ``message.target``; never raises for
        network reasons. A message to a node not in the address book, or
        sent while stopped, is dropped (and logged at debug)."""

    def set_peers(peers: Mapping[NodeId, str]) -> None:
        """Replace the address book: ``{node_id: address}`` of every other
        member. Membership changes add and remove peers at runtime; an entry
        for this node itself is ignored. Queued messages for removed peers
        are dropped; inbound messages from removed peers are refused."""
