"""graft.transport re-exports exactly its public names (STYLE §7), and
imports nothing of graft's but graft.raft (DESIGN.md, "Layers")."""

from __future__ import annotations

import ast
from pathlib import Path

import graft.transport
from graft.transport import _outbox, amp, codec, http, interfaces, memory

INTENDED = {
    "AMP_PORT_OFFSET": amp.AMP_PORT_OFFSET,
    "AMPTransport": amp.AMPTransport,
    "AMPTransportSettings": amp.AMPTransportSettings,
    "amp_endpoint_for": amp.amp_endpoint_for,
    "CLUSTER_TOKEN_HEADER": http.CLUSTER_TOKEN_HEADER,
    "MESSAGES_PATH": http.MESSAGES_PATH,
    "MOUNT_PATH": http.MOUNT_PATH,
    "HTTPTransport": http.HTTPTransport,
    "HTTPTransportSettings": http.HTTPTransportSettings,
    "PeerStats": http.PeerStats,
    "FORMAT_VERSION": codec.FORMAT_VERSION,
    "CodecError": codec.CodecError,
    "CodecLimits": codec.CodecLimits,
    "Envelope": codec.Envelope,
    "decode": codec.decode,
    "encode": codec.encode,
    "encode_batch": codec.encode_batch,
    "encode_message": codec.encode_message,
    "OutboxLimits": _outbox.OutboxLimits,
    "ITransport": interfaces.ITransport,
    "Receive": interfaces.Receive,
    "MemoryNetwork": memory.MemoryNetwork,
    "MemoryTransport": memory.MemoryTransport,
    "memory_address": memory.memory_address,
}


def test_all_lists_exactly_the_intended_names() -> None:
    assert sorted(graft.transport.__all__) == sorted(INTENDED)


def test_each_export_is_the_intended_object() -> None:
    for name, obj in INTENDED.items():
        assert getattr(graft.transport, name) is obj, name


def test_transport_imports_no_graft_package_but_raft() -> None:
    """server -> transport -> raft; never transport -> server, storage, kv."""
    package = Path(graft.transport.__file__).parent
    for path in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                if name.startswith("graft."):
                    assert name.startswith(("graft.raft", "graft.transport")), (path, name)
