"""Who may hand us messages: the membership check every transport makes
after decoding an envelope, so that HTTP, AMP and the in-memory twin refuse
the same callers with the same words.

May import the standard library and graft.raft / graft.transport.codec.
"""

from __future__ import annotations

import hmac
from collections.abc import Container

from graft.transport.codec import Envelope

__all__ = ["refusal", "token_matches"]


def refusal(envelope: Envelope, *, cluster_id: str, peers: Container[int]) -> str | None:
    """Why ``envelope`` must be refused, or ``None`` to admit it.

    A node of another cluster (a different initial membership, or pointed at
    another cluster's data) and a node that is not currently a member are
    both refused (DESIGN.md, "Safety at the edges")."""
    if envelope.cluster_id != cluster_id:
        return (
            f"cluster id mismatch: this node belongs to cluster {cluster_id!r}, "
            f"the sender to {envelope.cluster_id!r}; check both nodes' initial members"
        )
    if envelope.sender not in peers:
        return f"node {envelope.sender} is not a member of this cluster"
    return None


def token_matches(given: bytes | None, expected: bytes) -> bool:
    """Compare a presented cluster token in constant time."""
    if given is None:
        return False
    return hmac.compare_digest(given, expected)
