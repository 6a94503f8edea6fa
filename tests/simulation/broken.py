"""Deliberately broken cores, to prove the simulator catches each bug.

Each overrides one hook of ``RaftNode`` (docs/core-api.md):

- ``commit_old_terms``: commits by counting replicas of any term's entry,
  the bug of paper Figure 8 (§5.4.2 forbids it).
- ``vote_for_stale_logs``: grants votes without the up-to-date check
  (§5.4.1), so a leader may lack committed entries.
- ``read_without_quorum``: serves ReadIndex reads without the heartbeat
  round (thesis §6.4), so a deposed leader answers stale reads.

This module imports only graft.raft.
"""

from __future__ import annotations

from graft.raft import RaftNode


class CommitOldTerms(RaftNode):
    """Commits an entry of an earlier term once a majority holds it."""

    def _may_commit(self, index: int) -> bool:
        return True


class VoteForStaleLogs(RaftNode):
    """Treats every candidate's log as up to date."""

    def _log_is_up_to_date(self, last_log_index: int, last_log_term: int) -> bool:
        return True


class ReadWithoutQuorum(RaftNode):
    """Confirms reads without asking a quorum whether it still leads."""

    def _read_needs_quorum_round(self) -> bool:
        return False


VARIANTS: dict[str, type[RaftNode]] = {
    "commit_old_terms": CommitOldTerms,
    "vote_for_stale_logs": VoteForStaleLogs,
    "read_without_quorum": ReadWithoutQuorum,
}
