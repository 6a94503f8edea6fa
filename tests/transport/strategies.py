"""Hypothesis strategies for valid graft.raft messages: every value the
core could legitimately send, which the codec must carry unchanged."""

from __future__ import annotations

from hypothesis import strategies as st

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
    RequestVote,
    RequestVoteResponse,
    SnapshotMeta,
    TimeoutNow,
)
from graft.transport.codec import INT_MAX

# Small values most of the time, the extremes sometimes.
uints = st.one_of(st.integers(0, 1000), st.integers(0, INT_MAX))
node_ids = st.one_of(st.integers(1, 9), st.integers(1, INT_MAX))
addresses = st.text(max_size=40)


@st.composite
def configurations(draw: st.DrawFn, address_alphabet: str | None = None) -> Configuration:
    ids = draw(st.lists(node_ids, max_size=6, unique=True))
    text = st.text(alphabet=address_alphabet, max_size=30) if address_alphabet else addresses
    members = [Member(id=i, address=draw(text), voter=draw(st.booleans())) for i in sorted(ids)]
    return Configuration(members=tuple(members))


# Configuration.encode separates fields with "," and members with ";".
_CONFIG_ADDRESS_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789:/.-_[]"


@st.composite
def entry_payloads(draw: st.DrawFn) -> tuple[EntryKind, bytes]:
    kind = draw(st.sampled_from(EntryKind))
    if kind is EntryKind.CONFIG:
        return kind, draw(configurations(_CONFIG_ADDRESS_ALPHABET)).encode()
    if kind is EntryKind.NOOP:
        return kind, b""
    return kind, draw(st.binary(max_size=64))


@st.composite
def request_votes(draw: st.DrawFn) -> RequestVote:
    term = draw(uints)
    last_log_index = draw(st.integers(0, INT_MAX))
    last_log_term = 0 if last_log_index == 0 else draw(st.integers(0, term))
    return RequestVote(
        source=draw(node_ids),
        target=draw(node_ids),
        term=term,
        last_log_index=last_log_index,
        last_log_term=last_log_term,
        pre_vote=draw(st.booleans()),
        leadership_transfer=draw(st.booleans()),
    )


@st.composite
def append_entries(draw: st.DrawFn) -> AppendEntries:
    term = draw(uints)
    prev_log_index = draw(st.one_of(st.integers(0, 100), st.integers(0, INT_MAX - 100)))
    prev_log_term = 0 if prev_log_index == 0 else draw(st.integers(0, term))
    count = draw(st.integers(0, 8))
    terms = sorted(draw(st.lists(st.integers(prev_log_term, term), min_size=count, max_size=count)))
    entries = []
    for offset, entry_term in enumerate(terms, start=1):
        kind, data = draw(entry_payloads())
        entries.append(Entry(index=prev_log_index + offset, term=entry_term, kind=kind, data=data))
    return AppendEntries(
        source=draw(node_ids),
        target=draw(node_ids),
        term=term,
        prev_log_index=prev_log_index,
        prev_log_term=prev_log_term,
        entries=tuple(entries),
        leader_commit=draw(uints),
    )


@st.composite
def install_snapshots(draw: st.DrawFn) -> InstallSnapshot:
    term = draw(uints)
    data = draw(st.binary(max_size=256))
    meta = SnapshotMeta(
        index=draw(uints), term=draw(st.integers(0, term)), configuration=draw(configurations())
    )
    return InstallSnapshot(
        source=draw(node_ids),
        target=draw(node_ids),
        term=term,
        meta=meta,
        offset=draw(st.integers(0, INT_MAX - len(data))),
        data=data,
        done=draw(st.booleans()),
    )


def _builds(cls: type, **fields: st.SearchStrategy[object]) -> st.SearchStrategy[Message]:
    return st.builds(cls, source=node_ids, target=node_ids, term=uints, **fields)


request_vote_responses = _builds(
    RequestVoteResponse, vote_granted=st.booleans(), pre_vote=st.booleans()
)
append_entries_responses = _builds(
    AppendEntriesResponse,
    success=st.booleans(),
    match_index=uints,
    prev_log_index=uints,
    conflict_term=uints,
    conflict_index=uints,
)
heartbeats = _builds(Heartbeat, commit_index=uints, read_round=uints)
heartbeat_responses = _builds(HeartbeatResponse, read_round=uints)
install_snapshot_responses = _builds(
    InstallSnapshotResponse,
    snapshot_index=uints,
    next_offset=uints,
    done=st.booleans(),
    match_index=uints,
)
timeout_nows = _builds(TimeoutNow)

#: One strategy per message type, keyed by the type.
BY_TYPE: dict[type, st.SearchStrategy[Message]] = {
    RequestVote: request_votes(),
    RequestVoteResponse: request_vote_responses,
    AppendEntries: append_entries(),
    AppendEntriesResponse: append_entries_responses,
    Heartbeat: heartbeats,
    HeartbeatResponse: heartbeat_responses,
    InstallSnapshot: install_snapshots(),
    InstallSnapshotResponse: install_snapshot_responses,
    TimeoutNow: timeout_nows,
}

messages: st.SearchStrategy[Message] = st.one_of(*BY_TYPE.values())


def readdressed(message: Message, source: int, target: int) -> Message:
    """``message`` as if sent from ``source`` to ``target``."""
    import attrs

    return attrs.evolve(message, source=source, target=target)
