"""graft.transport: how nodes send graft.raft messages to each other.

- :mod:`~graft.transport.codec`: the one wire encoding (msgpack), validated
  on decode.
- :class:`ITransport`: fire-and-forget ``send``, inbound messages to a
  callback, ``start``/``stop``, ``set_peers``.
- :class:`MemoryTransport` on a :class:`MemoryNetwork`: the in-memory twin.
- :class:`HTTPTransport`: Klein routes under ``/raft`` plus a treq client.
- :class:`AMPTransport`: the same envelopes as AMP commands over one
  long-lived TCP connection per peer, on its own port
  (:func:`amp_endpoint_for`: the HTTP port plus :data:`AMP_PORT_OFFSET`).

This package may import the standard library, attrs, msgpack,
zope.interface, Twisted, Klein, treq and graft.raft; never graft.server,
graft.storage or graft.kv.
"""

from graft.transport._outbox import OutboxLimits
from graft.transport.amp import (
    AMP_PORT_OFFSET,
    AMPTransport,
    AMPTransportSettings,
    amp_endpoint_for,
)
from graft.transport.codec import (
    FORMAT_VERSION,
    CodecError,
    CodecLimits,
    Envelope,
    decode,
    encode,
    encode_batch,
    encode_message,
)
from graft.transport.http import (
    CLUSTER_TOKEN_HEADER,
    MESSAGES_PATH,
    MOUNT_PATH,
    HTTPTransport,
    HTTPTransportSettings,
    PeerStats,
)
from graft.transport.interfaces import ITransport, Receive
from graft.transport.memory import MemoryNetwork, MemoryTransport, memory_address

__all__ = [
    "AMP_PORT_OFFSET",
    "CLUSTER_TOKEN_HEADER",
    "FORMAT_VERSION",
    "MESSAGES_PATH",
    "MOUNT_PATH",
    "AMPTransport",
    "AMPTransportSettings",
    "CodecError",
    "CodecLimits",
    "Envelope",
    "HTTPTransport",
    "HTTPTransportSettings",
    "ITransport",
    "MemoryNetwork",
    "MemoryTransport",
    "OutboxLimits",
    "PeerStats",
    "Receive",
    "amp_endpoint_for",
    "decode",
    "encode",
    "encode_batch",
    "encode_message",
    "memory_address",
]
