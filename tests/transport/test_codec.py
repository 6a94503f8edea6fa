"""The wire codec: every message survives a round trip; any other input
gives a CodecError that names the problem, and nothing else (STYLE §2:
decoding validates, the core trusts types, not peers)."""

from __future__ import annotations

from typing import Any

import attrs
import msgpack
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from graft.raft.messages import (
    MESSAGE_TYPES,
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
    RequestVote,
    RequestVoteResponse,
    SnapshotMeta,
    TimeoutNow,
)
from graft.transport.codec import (
    FORMAT_VERSION,
    INT_MAX,
    CodecError,
    CodecLimits,
    decode,
    encode,
    encode_batch,
    encode_message,
)
from tests.transport import strategies

CLUSTER = "cluster-abc"


def round_trip(messages: list[Message], sender: int) -> tuple[Message, ...]:
    envelope = decode(encode(messages, cluster_id=CLUSTER, sender=sender))
    assert envelope.cluster_id == CLUSTER
    assert envelope.sender == sender
    return envelope.messages


def test_every_message_type_has_a_strategy() -> None:
    """The round-trip tests below cover every type graft.raft defines."""
    assert set(strategies.BY_TYPE) == set(MESSAGE_TYPES)


def _round_trip_test(cls: type) -> Any:
    @settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
    @given(message=strategies.BY_TYPE[cls])
    def test(message: Message) -> None:
        assert round_trip([message], message.source) == (message,)

    test.__doc__ = f"decode(encode(m)) == m for every valid {cls.__name__}."
    return test


# One test per type (pytest-twisted's hook cannot combine parametrize with
# Hypothesis' given, so the types are spelled out instead).
test_request_vote_round_trips = _round_trip_test(RequestVote)
test_request_vote_response_round_trips = _round_trip_test(RequestVoteResponse)
test_append_entries_round_trips = _round_trip_test(AppendEntries)
test_append_entries_response_round_trips = _round_trip_test(AppendEntriesResponse)
test_heartbeat_round_trips = _round_trip_test(Heartbeat)
test_heartbeat_response_round_trips = _round_trip_test(HeartbeatResponse)
test_install_snapshot_round_trips = _round_trip_test(InstallSnapshot)
test_install_snapshot_response_round_trips = _round_trip_test(InstallSnapshotResponse)
test_timeout_now_round_trips = _round_trip_test(TimeoutNow)


@given(
    sender=strategies.node_ids,
    target=strategies.node_ids,
    batch=st.lists(strategies.messages, min_size=1, max_size=20),
)
def test_a_batch_round_trips_in_order(sender: int, target: int, batch: list[Message]) -> None:
    """Many messages in one envelope come back in the order they went in."""
    batch = [strategies.readdressed(m, sender, target) for m in batch]
    envelope = decode(encode(batch, cluster_id=CLUSTER, sender=sender), receiver=target)
    assert envelope.messages == tuple(batch)


@given(batch=st.lists(strategies.messages, min_size=1, max_size=5))
def test_encode_batch_of_encoded_messages_equals_encode(batch: list[Message]) -> None:
    """Transports pre-encode messages and frame them later; same bytes."""
    batch = [strategies.readdressed(m, 7, 8) for m in batch]
    framed = encode_batch([encode_message(m) for m in batch], cluster_id=CLUSTER, sender=7)
    assert framed == encode(batch, cluster_id=CLUSTER, sender=7)


def test_a_large_batch_uses_a_wide_array_header() -> None:
    """Batches past 15 and 65535 messages still frame correctly."""
    batch = [Heartbeat(source=1, target=2, term=3, commit_index=i) for i in range(70_000)]
    body = encode(batch, cluster_id=CLUSTER, sender=1)
    assert decode(body, limits=CodecLimits(messages_max=70_000)).messages == tuple(batch)


def test_encoding_is_compact() -> None:
    """A heartbeat costs a handful of bytes, not a JSON document."""
    body = encode([Heartbeat(source=1, target=2, term=5, commit_index=9)], cluster_id="c", sender=1)
    assert len(body) < 16


# --- Fuzz: nothing but CodecError ----------------------------------------


def decode_or_codec_error(data: bytes, **kwargs: Any) -> None:
    try:
        decode(data, **kwargs)
    except CodecError as e:
        assert str(e)  # always says something


@settings(max_examples=500)
@given(data=st.binary(max_size=512))
def test_random_bytes_never_raise_anything_but_codec_error(data: bytes) -> None:
    """Arbitrary bytes either decode or raise CodecError."""
    decode_or_codec_error(data)


@settings(max_examples=300)
@given(message=strategies.messages, data=st.data())
def test_truncated_encodings_raise_codec_error(message: Message, data: st.DataObject) -> None:
    """Every strict prefix of a valid body is refused with CodecError."""
    body = encode([message], cluster_id=CLUSTER, sender=message.source)
    cut = data.draw(st.integers(0, len(body) - 1))
    with pytest.raises(CodecError):
        decode(body[:cut])


@settings(max_examples=500)
@given(message=strategies.messages, data=st.data())
def test_bit_flipped_encodings_never_raise_anything_but_codec_error(
    message: Message, data: st.DataObject
) -> None:
    """Flipping bits of a valid body gives a valid message or CodecError."""
    body = bytearray(encode([message], cluster_id=CLUSTER, sender=message.source))
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(body) - 1))
        body[position] ^= 1 << data.draw(st.integers(0, 7))
    decode_or_codec_error(bytes(body), receiver=message.target)


# Arbitrary msgpack values, to put into fields in place of the right ones.
msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=10)
    | st.binary(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=10,
)


def wire_form(message: Message) -> list[Any]:
    return msgpack.unpackb(encode_message(message), raw=False)


def _paths(value: Any, path: tuple[int, ...] = ()) -> list[tuple[int, ...]]:
    found = [path] if path else []
    if isinstance(value, list):
        for i, item in enumerate(value):
            found.extend(_paths(item, (*path, i)))
    return found


def _replace(value: Any, path: tuple[int, ...], new: Any) -> Any:
    if not path:
        return new
    copy = list(value)
    copy[path[0]] = _replace(copy[path[0]], path[1:], new)
    return copy


@settings(max_examples=500)
@given(message=strategies.messages, new=msgpack_values, data=st.data())
def test_wrong_values_in_fields_never_raise_anything_but_codec_error(
    message: Message, new: Any, data: st.DataObject
) -> None:
    """Any field (at any depth) replaced by any msgpack value: a valid
    message or CodecError, nothing else."""
    wire = wire_form(message)
    path = data.draw(st.sampled_from(_paths(wire)))
    mutated = _replace(wire, path, new)
    body = msgpack.packb([FORMAT_VERSION, CLUSTER, message.source, [mutated]], use_bin_type=True)
    decode_or_codec_error(body)


@settings(max_examples=200)
@given(value=msgpack_values)
def test_any_msgpack_value_as_envelope_gives_codec_error(value: Any) -> None:
    """A well-formed msgpack document that is not an envelope: CodecError."""
    decode_or_codec_error(msgpack.packb(value, use_bin_type=True))


# --- Specific refusals, each with a clear message ------------------------

HB = Heartbeat(source=1, target=2, term=3, commit_index=4)


def body_of(
    *messages: Any, version: Any = FORMAT_VERSION, cluster: Any = CLUSTER, sender: Any = 1
) -> bytes:
    return msgpack.packb([version, cluster, sender, list(messages)], use_bin_type=True)


def refusal(body: bytes, **kwargs: Any) -> str:
    with pytest.raises(CodecError) as info:
        decode(body, **kwargs)
    return str(info.value)


def test_unknown_format_version_names_both_versions() -> None:
    """A peer of another format version is told which one we speak."""
    message = refusal(body_of(wire_form(HB), version=FORMAT_VERSION + 1))
    assert f"version {FORMAT_VERSION + 1}" in message
    assert f"speaks {FORMAT_VERSION}" in message


def test_empty_body_is_refused() -> None:
    assert "empty" in refusal(b"")


def test_trailing_bytes_are_refused() -> None:
    assert "trailing" in refusal(encode([HB], cluster_id=CLUSTER, sender=1) + b"\x00")


def test_an_empty_batch_is_refused() -> None:
    assert "at least one message" in refusal(body_of())


def test_unknown_message_tag_is_refused() -> None:
    assert "unknown message type 99" in refusal(body_of([99, 1, 2, 3]))


def test_negative_term_is_refused() -> None:
    wire = wire_form(HB)
    wire[3] = -1
    assert "messages[0] (Heartbeat).term" in refusal(body_of(wire))


def test_integer_past_64_bits_signed_is_refused() -> None:
    wire = wire_form(HB)
    wire[4] = INT_MAX + 1
    assert "out of range" in refusal(body_of(wire))


def test_boolean_where_an_integer_belongs_is_refused() -> None:
    """True is an int in Python but not on the wire."""
    wire = wire_form(HB)
    wire[3] = True
    assert "expected a non-negative integer, got boolean" in refusal(body_of(wire))


def test_node_id_zero_is_refused() -> None:
    wire = wire_form(HB)
    wire[2] = 0
    assert "node id must be at least 1" in refusal(body_of(wire))


def test_sender_id_zero_is_refused() -> None:
    assert "envelope.sender" in refusal(body_of(wire_form(HB), sender=0))


def test_message_source_must_be_the_envelope_sender() -> None:
    """A node cannot forward messages in another node's name."""
    assert "differs from the envelope's sender 5" in refusal(body_of(wire_form(HB), sender=5))


def test_message_target_must_be_the_receiver() -> None:
    body = encode([HB], cluster_id=CLUSTER, sender=1)
    assert "addressed to 2, this is 3" in refusal(body, receiver=3)
    assert decode(body, receiver=2).messages == (HB,)


def test_cluster_id_must_be_a_string() -> None:
    assert "envelope.cluster_id" in refusal(body_of(wire_form(HB), cluster=7))


def test_wrong_field_count_is_refused() -> None:
    assert "expected 6 elements" in refusal(body_of([*wire_form(HB), 0]))


def append(
    entries: tuple[Entry, ...], prev_index: int = 0, prev_term: int = 0, term: int = 5
) -> AppendEntries:
    return AppendEntries(
        source=1,
        target=2,
        term=term,
        prev_log_index=prev_index,
        prev_log_term=prev_term,
        entries=entries,
        leader_commit=0,
    )


def test_entries_must_follow_prev_log_index() -> None:
    """§5.3: entries start right after prev_log_index."""
    m = append((Entry(index=3, term=1),), prev_index=1, prev_term=1)
    assert "entries[0].index: expected 2 (contiguous), got 3" in refusal(
        encode([m], cluster_id=CLUSTER, sender=1)
    )


def test_entries_must_be_contiguous() -> None:
    m = append((Entry(index=1, term=1), Entry(index=3, term=1)))
    assert "entries[1].index: expected 2" in refusal(encode([m], cluster_id=CLUSTER, sender=1))


def test_entry_terms_must_not_decrease() -> None:
    """Terms never decrease along a log (§5.3, Log Matching)."""
    m = append((Entry(index=1, term=2), Entry(index=2, term=1)))
    assert "decreases" in refusal(encode([m], cluster_id=CLUSTER, sender=1))


def test_entry_terms_must_not_exceed_the_leaders_term() -> None:
    m = append((Entry(index=1, term=6),), term=5)
    assert "exceeds the term 5" in refusal(encode([m], cluster_id=CLUSTER, sender=1))


def test_entry_kind_must_be_known() -> None:
    m = append((Entry(index=1, term=1),))
    wire = wire_form(m)
    wire[6][0][2] = 9
    assert "unknown entry kind 9" in refusal(body_of(wire))


def test_config_entry_data_must_be_a_configuration() -> None:
    m = append((Entry(index=1, term=1, kind=EntryKind.CONFIG, data=b"garbage"),))
    assert "not a valid configuration" in refusal(encode([m], cluster_id=CLUSTER, sender=1))


def test_snapshot_members_must_be_sorted_and_unique() -> None:
    meta = SnapshotMeta(
        index=1,
        term=1,
        configuration=Configuration(members=(Member(id=1), Member(id=2))),
    )
    m = InstallSnapshot(source=1, target=2, term=1, meta=meta, offset=0, data=b"x", done=True)
    wire = wire_form(m)
    wire[4][2].reverse()
    assert "sorted by id" in refusal(body_of(wire))


def test_candidate_last_log_term_cannot_exceed_its_term() -> None:
    m = RequestVote(source=1, target=2, term=2, last_log_index=4, last_log_term=3)
    assert "last_log_term" in refusal(encode([m], cluster_id=CLUSTER, sender=1))


def test_msgpack_extension_types_are_refused() -> None:
    body = msgpack.packb([FORMAT_VERSION, CLUSTER, 1, [msgpack.ExtType(5, b"x")]])
    assert "extension type 5" in refusal(body)


def test_body_over_the_limit_is_refused_before_parsing() -> None:
    body = encode([TimeoutNow(source=1, target=2, term=1)], cluster_id=CLUSTER, sender=1)
    assert "exceeds the limit" in refusal(body, limits=CodecLimits(body_bytes_max=len(body) - 1))


def test_too_many_messages_are_refused() -> None:
    body = encode([HB, HB, HB], cluster_id=CLUSTER, sender=1)
    assert "exceed the limit of 2" in refusal(body, limits=CodecLimits(messages_max=2))


def test_too_many_entries_are_refused() -> None:
    m = append((Entry(index=1, term=1), Entry(index=2, term=1)))
    body = encode([m], cluster_id=CLUSTER, sender=1)
    assert "exceed the limit of 1" in refusal(body, limits=CodecLimits(entries_max=1))


def test_overlong_cluster_id_is_refused() -> None:
    body = encode([HB], cluster_id="x" * 300, sender=1)
    assert "exceeds 256" in refusal(body)


@example(b"\xc1")  # a msgpack byte that is never valid
@example(b"\x91" * 5000)  # deep nesting
@given(st.binary(max_size=8))
def test_short_garbage_is_refused_with_codec_error(data: bytes) -> None:
    decode_or_codec_error(data)


def test_decoded_values_are_the_core_types() -> None:
    """Entries come back as a tuple of Entry with EntryKind kinds."""
    m = append((Entry(index=1, term=1, kind=EntryKind.NOOP),))
    (decoded,) = round_trip([m], 1)
    assert isinstance(decoded, AppendEntries)
    assert type(decoded.entries) is tuple
    assert decoded.entries[0].kind is EntryKind.NOOP
    assert attrs.asdict(decoded) == attrs.asdict(m)
