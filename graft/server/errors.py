"""Why the node could not serve a client request; the client API maps each
to its HTTP answer.

May import the standard library only.
"""

from __future__ import annotations

__all__ = ["LeadershipChanged", "NodeFailed", "NodeStopping", "Unavailable"]


class Unavailable(Exception):
    """The request cannot be served now; retrying later may work (503)."""

    def __init__(self, reason: str, retry_after_seconds: int = 1) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after_seconds = retry_after_seconds


class LeadershipChanged(Unavailable):
    """The write's entry was replaced by another leader's: it did not
    happen; the client should retry it (on the new leader)."""


class NodeFailed(Unavailable):
    """The node's durable storage failed: it acknowledges nothing more and
    needs an operator (restart on a healthy disk)."""


class NodeStopping(Unavailable):
    """The node is shutting down."""
