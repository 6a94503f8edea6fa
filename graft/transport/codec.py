"""The wire form of graft.raft's messages: one compact msgpack encoding,
shared by every transport (HTTP today, AMP later).

A body is an *envelope* carrying a batch of messages from one sender::

    [FORMAT_VERSION, cluster_id: str, sender: int, [message, ...]]

and each message is a positional array whose first element is its type's
tag and whose other elements follow the field table ``_SPECS`` below::

    [tag, source, target, term, ...fields]

Entries are ``[index, term, kind, data]``; a snapshot's metadata is
``[index, term, [[id, address, voter], ...]]``.

:func:`decode` trusts nothing: it checks every type, range and cross-field
rule that the core relies on (the core trusts types, not peers) and raises
:class:`CodecError` naming the first problem. It never raises anything
else, whatever bytes it is given.

:func:`encode` trusts its input (it comes from our own core) and only
asserts the envelope's invariants.

This module may import the standard library, attrs, msgpack and
graft.raft.messages; nothing from Twisted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

import attrs
import msgpack

from graft.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Configuration,
    Entry,
    EntryKind,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    Member,
    Message,
    NodeId,
    RequestVote,
    RequestVoteResponse,
    SnapshotMeta,
    TimeoutNow,
)

__all__ = [
    "DEFAULT_LIMITS",
    "FORMAT_VERSION",
    "INT_MAX",
    "CodecError",
    "CodecLimits",
    "Envelope",
    "decode",
    "encode",
    "encode_batch",
    "encode_message",
]

#: Bumped on any incompatible change of the wire form; a peer speaking
#: another version is refused with a message naming both.
FORMAT_VERSION: Final = 1

#: Integers on the wire fit a signed 64-bit field (what storage keeps).
INT_MAX: Final = 2**63 - 1


class CodecError(ValueError):
    """A body that is not a valid envelope of this format; the message
    names the problem and where it is (``messages[3].entries[0].term``)."""


@attrs.frozen(kw_only=True)
class CodecLimits:
    """Bounds on what :func:`decode` accepts, so a peer cannot make us
    allocate without limit. Every bound is inclusive."""

    #: The whole encoded body.
    body_bytes_max: int = 16 * 1024 * 1024
    #: Messages in one envelope.
    messages_max: int = 10_000
    #: Entries in one AppendEntries.
    entries_max: int = 100_000
    #: The cluster id's UTF-8 length.
    cluster_id_bytes_max: int = 256
    #: Members in a snapshot's configuration.
    members_max: int = 1_000
    #: One member's address, UTF-8 bytes.
    address_bytes_max: int = 1024


DEFAULT_LIMITS: Final = CodecLimits()


@attrs.frozen(kw_only=True)
class Envelope:
    """One decoded body: who sent it, for which cluster, and what.

    Invariants after :func:`decode`: ``sender >= 1``; every message's
    ``source`` equals ``sender``; ``messages`` is not empty."""

    cluster_id: str
    sender: NodeId
    messages: tuple[Message, ...]


# --- Field table ---------------------------------------------------------
# Each message type: its tag (never reused, never renumbered) and its fields
# after source, target and term, in wire order, with the kind of each.

_UINT = "uint"
_BOOL = "bool"
_BYTES = "bytes"
_ENTRIES = "entries"
_META = "meta"

_COMMON: Final = ("source", "target", "term")

_SPECS: Final[dict[type, tuple[int, tuple[tuple[str, str], ...]]]] = {
    RequestVote: (
        1,
        (
            ("last_log_index", _UINT),
            ("last_log_term", _UINT),
            ("pre_vote", _BOOL),
            ("leadership_transfer", _BOOL),
        ),
    ),
    RequestVoteResponse: (2, (("vote_granted", _BOOL), ("pre_vote", _BOOL))),
    AppendEntries: (
        3,
        (
            ("prev_log_index", _UINT),
            ("prev_log_term", _UINT),
            ("entries", _ENTRIES),
            ("leader_commit", _UINT),
        ),
    ),
    AppendEntriesResponse: (
        4,
        (
            ("success", _BOOL),
            ("match_index", _UINT),
            ("prev_log_index", _UINT),
            ("conflict_term", _UINT),
            ("conflict_index", _UINT),
        ),
    ),
    Heartbeat: (5, (("commit_index", _UINT), ("read_round", _UINT))),
    HeartbeatResponse: (6, (("read_round", _UINT),)),
    InstallSnapshot: (
        7,
        (("meta", _META), ("offset", _UINT), ("data", _BYTES), ("done", _BOOL)),
    ),
    InstallSnapshotResponse: (
        8,
        (
            ("snapshot_index", _UINT),
            ("next_offset", _UINT),
            ("done", _BOOL),
            ("match_index", _UINT),
        ),
    ),
    TimeoutNow: (9, ()),
}

_BY_TAG: Final = {tag: (cls, fields) for cls, (tag, fields) in _SPECS.items()}


# --- Encoding ------------------------------------------------------------


def _wire_entry(entry: Entry) -> list[Any]:
    return [entry.index, entry.term, int(entry.kind), bytes(entry.data)]


def _wire_meta(meta: SnapshotMeta) -> list[Any]:
    members = [[m.id, m.address, m.voter] for m in meta.configuration.members]
    return [meta.index, meta.term, members]


def _wire_field(kind: str, value: Any) -> Any:
    if kind == _ENTRIES:
        return [_wire_entry(e) for e in value]
    if kind == _META:
        return _wire_meta(value)
    if kind == _BYTES:
        return bytes(value)
    return value


def encode_message(message: Message) -> bytes:
    """One message in its wire form, ready for :func:`encode_batch`.

    Transports encode each message once when it is sent, so they know its
    size for their byte budgets before they pick a batch."""
    tag, fields = _SPECS[type(message)]
    wire: list[Any] = [tag, message.source, message.target, message.term]
    wire.extend(_wire_field(kind, getattr(message, name)) for name, kind in fields)
    packed: bytes = msgpack.packb(wire, use_bin_type=True)
    return packed


def encode_batch(packed_messages: Sequence[bytes], *, cluster_id: str, sender: NodeId) -> bytes:
    """An envelope around messages already encoded by :func:`encode_message`
    (every one with ``source == sender``)."""
    assert packed_messages, "an envelope carries at least one message"
    assert sender >= 1, f"sender must be a node id, got {sender}"
    packer = msgpack.Packer(use_bin_type=True)
    head: bytes = (
        packer.pack_array_header(4)
        + packer.pack(FORMAT_VERSION)
        + packer.pack(cluster_id)
        + packer.pack(sender)
        + packer.pack_array_header(len(packed_messages))
    )
    return head + b"".join(packed_messages)


def encode(messages: Sequence[Message], *, cluster_id: str, sender: NodeId) -> bytes:
    """An envelope carrying ``messages``, all sent by ``sender``."""
    for m in messages:
        assert m.source == sender, f"message from {m.source} in an envelope from {sender}"
    return encode_batch([encode_message(m) for m in messages], cluster_id=cluster_id, sender=sender)


# --- Decoding ------------------------------------------------------------


def _fail(where: str, problem: str) -> CodecError:
    return CodecError(f"{where}: {problem}" if where else problem)


def _type_name(value: object) -> str:
    return {
        bool: "boolean",
        int: "integer",
        str: "string",
        bytes: "bytes",
        list: "array",
        dict: "map",
        float: "float",
        type(None): "nil",
    }.get(type(value), type(value).__name__)


def _uint(value: object, where: str) -> int:
    # bool is an int subclass in Python but a distinct type on the wire.
    if type(value) is not int:
        raise _fail(where, f"expected a non-negative integer, got {_type_name(value)}")
    if not 0 <= value <= INT_MAX:
        raise _fail(where, f"integer {value} out of range 0..{INT_MAX}")
    return value


def _node_id(value: object, where: str) -> NodeId:
    node_id = _uint(value, where)
    if node_id < 1:
        raise _fail(where, f"node id must be at least 1, got {node_id}")
    return node_id


def _bool(value: object, where: str) -> bool:
    if type(value) is not bool:
        raise _fail(where, f"expected a boolean, got {_type_name(value)}")
    return value


def _bytes(value: object, where: str) -> bytes:
    if type(value) is not bytes:
        raise _fail(where, f"expected bytes, got {_type_name(value)}")
    return value


def _text(value: object, where: str, bytes_max: int) -> str:
    if type(value) is not str:
        raise _fail(where, f"expected a string, got {_type_name(value)}")
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > bytes_max:
        raise _fail(where, f"string of {size} bytes exceeds {bytes_max}")
    return value


def _array(value: object, where: str, length: int | None = None, length_max: int = 0) -> list[Any]:
    if type(value) is not list:
        raise _fail(where, f"expected an array, got {_type_name(value)}")
    if length is not None and len(value) != length:
        raise _fail(where, f"expected {length} elements, got {len(value)}")
    if length is None and len(value) > length_max:
        raise _fail(where, f"{len(value)} elements exceed the limit of {length_max}")
    return value


def _entry(value: object, where: str) -> Entry:
    index, term, kind, data = _array(value, where, 4)
    index = _uint(index, f"{where}.index")
    if index < 1:
        raise _fail(f"{where}.index", "log indexes start at 1")
    term = _uint(term, f"{where}.term")
    kind_value = _uint(kind, f"{where}.kind")
    try:
        entry_kind = EntryKind(kind_value)
    except ValueError:
        valid = ", ".join(f"{k.value} ({k.name})" for k in EntryKind)
        raise _fail(f"{where}.kind", f"unknown entry kind {kind_value}; valid: {valid}") from None
    data = _bytes(data, f"{where}.data")
    if entry_kind is EntryKind.CONFIG:
        _check_config_data(data, f"{where}.data")
    return Entry(index=index, term=term, kind=entry_kind, data=data)


def _check_config_data(data: bytes, where: str) -> None:
    """A CONFIG entry's data must decode to a configuration of valid ids:
    the core decodes it when the entry is appended (thesis §4.1)."""
    try:
        configuration = Configuration.decode(data)
    except (ValueError, AssertionError) as e:
        raise _fail(where, f"not a valid configuration ({e})") from None
    if any(m.id < 1 or m.id > INT_MAX for m in configuration.members):
        raise _fail(where, "configuration has a node id out of range")


def _entries(value: object, where: str, limits: CodecLimits) -> tuple[Entry, ...]:
    items = _array(value, where, length_max=limits.entries_max)
    return tuple(_entry(item, f"{where}[{i}]") for i, item in enumerate(items))


def _meta(value: object, where: str, limits: CodecLimits) -> SnapshotMeta:
    index, term, members = _array(value, where, 3)
    index = _uint(index, f"{where}.index")
    term = _uint(term, f"{where}.term")
    items = _array(members, f"{where}.members", length_max=limits.members_max)
    decoded: list[Member] = []
    for i, item in enumerate(items):
        at = f"{where}.members[{i}]"
        node_id, address, voter = _array(item, at, 3)
        member = Member(
            id=_node_id(node_id, f"{at}.id"),
            address=_text(address, f"{at}.address", limits.address_bytes_max),
            voter=_bool(voter, f"{at}.voter"),
        )
        if decoded and member.id <= decoded[-1].id:
            raise _fail(f"{at}.id", "members must be sorted by id with no duplicates")
        decoded.append(member)
    return SnapshotMeta(index=index, term=term, configuration=Configuration(members=tuple(decoded)))


def _check_append_entries(m: AppendEntries, where: str) -> None:
    """What any correct leader's AppendEntries satisfies (§5.3): entries
    follow ``prev_log_index`` with no gap, and terms never decrease along a
    log nor exceed the leader's term."""
    if m.prev_log_index == 0 and m.prev_log_term != 0:
        raise _fail(f"{where}.prev_log_term", "must be 0 when prev_log_index is 0")
    if m.prev_log_term > m.term:
        raise _fail(f"{where}.prev_log_term", f"{m.prev_log_term} exceeds the term {m.term}")
    expected_index = m.prev_log_index + 1
    previous_term = m.prev_log_term
    for i, entry in enumerate(m.entries):
        at = f"{where}.entries[{i}]"
        if entry.index != expected_index:
            raise _fail(f"{at}.index", f"expected {expected_index} (contiguous), got {entry.index}")
        if entry.term < previous_term:
            raise _fail(f"{at}.term", f"term {entry.term} decreases from {previous_term}")
        if entry.term > m.term:
            raise _fail(f"{at}.term", f"entry term {entry.term} exceeds the term {m.term}")
        expected_index += 1
        previous_term = entry.term


def _check_request_vote(m: RequestVote, where: str) -> None:
    # A candidate's term is past every term in its log (§5.2, §5.4.1).
    if m.last_log_term > m.term:
        raise _fail(f"{where}.last_log_term", f"{m.last_log_term} exceeds the term {m.term}")
    if m.last_log_index == 0 and m.last_log_term != 0:
        raise _fail(f"{where}.last_log_term", "must be 0 when last_log_index is 0")


def _check_install_snapshot(m: InstallSnapshot, where: str) -> None:
    if m.meta.term > m.term:
        raise _fail(f"{where}.meta.term", f"{m.meta.term} exceeds the term {m.term}")
    if m.offset + len(m.data) > INT_MAX:
        raise _fail(f"{where}.offset", "chunk ends past the largest offset")


_CHECKS: Final[dict[type, Callable[[Any, str], None]]] = {
    AppendEntries: _check_append_entries,
    RequestVote: _check_request_vote,
    InstallSnapshot: _check_install_snapshot,
}


def _message(value: object, where: str, limits: CodecLimits) -> Message:
    if type(value) is not list or not value:
        raise _fail(where, f"expected a non-empty array, got {_type_name(value)}")
    tag = value[0]
    if type(tag) is not int or tag not in _BY_TAG:
        known = ", ".join(f"{t} ({c.__name__})" for t, (c, _) in sorted(_BY_TAG.items()))
        raise _fail(f"{where}.tag", f"unknown message type {tag!r}; valid: {known}")
    cls, fields = _BY_TAG[tag]
    where = f"{where} ({cls.__name__})"
    _array(value, where, 1 + len(_COMMON) + len(fields))
    kwargs: dict[str, Any] = {
        "source": _node_id(value[1], f"{where}.source"),
        "target": _node_id(value[2], f"{where}.target"),
        "term": _uint(value[3], f"{where}.term"),
    }
    for (name, kind), raw in zip(fields, value[4:], strict=True):
        at = f"{where}.{name}"
        if kind == _UINT:
            kwargs[name] = _uint(raw, at)
        elif kind == _BOOL:
            kwargs[name] = _bool(raw, at)
        elif kind == _BYTES:
            kwargs[name] = _bytes(raw, at)
        elif kind == _ENTRIES:
            kwargs[name] = _entries(raw, at, limits)
        else:
            assert kind == _META, kind
            kwargs[name] = _meta(raw, at, limits)
    message: Message = cls(**kwargs)
    check = _CHECKS.get(cls)
    if check is not None:
        check(message, where)
    return message


def _unpack(data: bytes, limits: CodecLimits) -> object:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise CodecError(f"expected bytes, got {type(data).__name__}")
    if len(data) > limits.body_bytes_max:
        raise CodecError(f"body of {len(data)} bytes exceeds the limit of {limits.body_bytes_max}")
    if not data:
        raise CodecError("empty body")
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            ext_hook=_refuse_ext,
            timestamp=0,
        )
    except CodecError:
        raise
    except msgpack.ExtraData:
        raise CodecError("trailing bytes after the envelope") from None
    except (ValueError, TypeError, msgpack.UnpackException) as e:
        # FormatError, StackError, OutOfData, UnicodeDecodeError, bad
        # map keys, malformed timestamps: msgpack's many ways of saying no.
        raise CodecError(f"not valid msgpack ({type(e).__name__}: {e})") from None


def _refuse_ext(code: int, data: bytes) -> object:
    raise CodecError(f"msgpack extension type {code} is not part of this format")


def decode(
    data: bytes,
    *,
    receiver: NodeId | None = None,
    limits: CodecLimits = DEFAULT_LIMITS,
) -> Envelope:
    """Parse and validate one envelope.

    With ``receiver``, every message must be addressed to it. The caller
    still decides whether the envelope's ``cluster_id`` and ``sender`` are
    acceptable (membership is not the codec's business).

    Raises :class:`CodecError`, and nothing else, on any invalid input."""
    value = _unpack(data, limits)
    if type(value) is not list:
        raise CodecError(f"envelope: expected an array, got {_type_name(value)}")
    if len(value) < 1 or type(value[0]) is not int:
        raise CodecError("envelope: missing format version")
    if value[0] != FORMAT_VERSION:
        raise CodecError(
            f"envelope: unsupported format version {value[0]} (this node speaks {FORMAT_VERSION})"
        )
    _, cluster_id, sender, messages = _array(value, "envelope", 4)
    cluster_id = _text(cluster_id, "envelope.cluster_id", limits.cluster_id_bytes_max)
    sender = _node_id(sender, "envelope.sender")
    items = _array(messages, "envelope.messages", length_max=limits.messages_max)
    if not items:
        raise CodecError("envelope.messages: an envelope carries at least one message")
    decoded: list[Message] = []
    for i, item in enumerate(items):
        where = f"messages[{i}]"
        message = _message(item, where, limits)
        if message.source != sender:
            raise _fail(
                f"{where}.source", f"{message.source} differs from the envelope's sender {sender}"
            )
        if receiver is not None and message.target != receiver:
            raise _fail(f"{where}.target", f"addressed to {message.target}, this is {receiver}")
        decoded.append(message)
    return Envelope(cluster_id=cluster_id, sender=sender, messages=tuple(decoded))
