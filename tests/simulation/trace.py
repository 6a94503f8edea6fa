"""The simulator's trace: one line per thing that happened, a running digest.

Every line goes into a BLAKE2 digest, so two runs of one seed can be compared
with a single string, and the last ``keep`` lines are kept for the failure
report (the whole trace of a long run would not fit in memory or on a
screen). Message formatting lives here too, so lines stay short and
greppable: ``AE 1>2 t3 p5/2 n1 c4`` is an AppendEntries from 1 to 2 in term
3 after index 5 of term 2 carrying one entry, commit 4.

This module imports only the standard library and graft.raft's messages.
"""

from __future__ import annotations

import collections
import hashlib

from graft.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    Message,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
)


class Trace:
    """An append-only record of a run: a digest of every line and a tail.

    ``echo`` prints each line as it is recorded (for ``--verbose`` replays).
    """

    def __init__(self, keep: int = 200, echo: bool = False) -> None:
        self._digest = hashlib.blake2b(digest_size=16)
        self._tail: collections.deque[str] = collections.deque(maxlen=keep)
        self._echo = echo
        self.lines = 0

    def line(self, tick: int, text: str) -> None:
        """Record ``text`` as happening at ``tick``."""
        record = f"{tick:6d} {text}"
        self._digest.update(record.encode())
        self._digest.update(b"\n")
        self._tail.append(record)
        self.lines += 1
        if self._echo:
            print(record)

    def digest(self) -> str:
        """Hex digest of every line so far: equal digests, equal runs."""
        return self._digest.hexdigest()

    def tail(self, count: int = 50) -> list[str]:
        """The last ``count`` lines, oldest first."""
        lines = list(self._tail)
        return lines[-count:]


def format_message(m: Message) -> str:
    """A short, stable, one-line rendering of a peer message."""
    head = f"{m.source}>{m.target} t{m.term}"
    if isinstance(m, AppendEntries):
        last = m.entries[-1].index if m.entries else m.prev_log_index
        return (
            f"AE {head} p{m.prev_log_index}/{m.prev_log_term} n{len(m.entries)}"
            f" ..{last} c{m.leader_commit}"
        )
    if isinstance(m, AppendEntriesResponse):
        if m.success:
            return f"AER {head} ok m{m.match_index}"
        return f"AER {head} rej p{m.prev_log_index} ct{m.conflict_term} ci{m.conflict_index}"
    if isinstance(m, Heartbeat):
        return f"HB {head} c{m.commit_index} r{m.read_round}"
    if isinstance(m, HeartbeatResponse):
        return f"HBR {head} r{m.read_round}"
    if isinstance(m, RequestVote):
        kind = "PV" if m.pre_vote else "RV"
        transfer = " xfer" if m.leadership_transfer else ""
        return f"{kind} {head} l{m.last_log_index}/{m.last_log_term}{transfer}"
    if isinstance(m, RequestVoteResponse):
        kind = "PVR" if m.pre_vote else "RVR"
        return f"{kind} {head} {'yes' if m.vote_granted else 'no'}"
    if isinstance(m, InstallSnapshot):
        return (
            f"IS {head} s{m.meta.index}/{m.meta.term} o{m.offset} n{len(m.data)}"
            f"{' done' if m.done else ''}"
        )
    if isinstance(m, InstallSnapshotResponse):
        return (
            f"ISR {head} s{m.snapshot_index} o{m.next_offset}"
            f"{' done m' + str(m.match_index) if m.done else ''}"
        )
    if isinstance(m, TimeoutNow):
        return f"TN {head}"
    return f"?? {m!r}"  # pragma: no cover - every message type is listed above
