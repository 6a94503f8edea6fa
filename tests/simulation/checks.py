"""Safety properties checked after every step, each with its Raft section.

The checker sees every node's role, every entry any node is told to store
and every entry any node applies, and keeps small global maps so each check
is incremental (a dictionary look-up per entry, not a comparison of whole
logs):

- Election Safety (§5.2): at most one leader per term.
- Log Matching (§5.3): one (index, term) never carries two different
  entries, and never follows two different predecessors; by induction two
  logs that share an (index, term) agree on everything before it.
- Leader Completeness (§5.4): an entry committed in a term is in the log of
  every leader of every later term (or below that leader's snapshot). An
  entry counts as committed in term T once the leader of T has counted it
  (its commit index passed it); the earliest such T is kept.
- State Machine Safety (§5.4.3): no two nodes apply different entries at
  one index.
- Linearizable reads (thesis §6.4) are checked by the clients, which know
  what was acknowledged when (see clients.py).

This module imports only the standard library and graft.raft.
"""

from __future__ import annotations

from collections.abc import Callable

from graft.raft.messages import Entry


class Violation(Exception):
    """A safety or liveness property failed. ``rule`` cites the paper."""

    def __init__(self, rule: str, detail: str) -> None:
        super().__init__(rule, detail)  # both in args, so it pickles
        self.rule = rule
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.rule}: {self.detail}"


class SafetyChecker:
    """Global knowledge of a run, to check each new fact against."""

    def __init__(self) -> None:
        #: term -> the one node that led it.
        self.leader_of_term: dict[int, int] = {}
        #: (index, term) -> (kind, data) of the entry every log holds there.
        self.entry_at: dict[tuple[int, int], tuple[int, bytes]] = {}
        #: (index, term) -> term of the entry just before it.
        self.prev_term_of: dict[tuple[int, int], int] = {}
        #: index -> the entry applied there by whoever applied it first.
        self.applied: dict[int, Entry] = {}
        #: index -> (entry's term, earliest term a leader counted it committed).
        self.committed: dict[int, tuple[int, int]] = {}
        self.committed_max = 0

    def observe_leader(self, node_id: int, term: int) -> None:
        """``node_id`` is leader in ``term`` (§5.2 Election Safety)."""
        leader = self.leader_of_term.setdefault(term, node_id)
        if leader != node_id:
            raise Violation(
                "§5.2 Election Safety",
                f"nodes {leader} and {node_id} are both leaders of term {term}",
            )

    def observe_entries(
        self, node_id: int, entries: tuple[Entry, ...], prev_term: int | None
    ) -> None:
        """``node_id`` stores ``entries`` after an entry of ``prev_term``
        (None when that entry is compacted away) (§5.3 Log Matching)."""
        entry_at = self.entry_at
        prev_term_of = self.prev_term_of
        for entry in entries:
            key = (entry.index, entry.term)
            content = (int(entry.kind), entry.data)
            known = entry_at.setdefault(key, content)
            if known != content:
                raise Violation(
                    "§5.3 Log Matching",
                    f"node {node_id} stores {content!r} at index {entry.index} term"
                    f" {entry.term}, another log holds {known!r} there",
                )
            if prev_term is not None and entry.index > 1:
                known_prev = prev_term_of.setdefault(key, prev_term)
                if known_prev != prev_term:
                    raise Violation(
                        "§5.3 Log Matching",
                        f"node {node_id} stores index {entry.index} term {entry.term} after"
                        f" an entry of term {prev_term}; another log has it after term"
                        f" {known_prev}",
                    )
            prev_term = entry.term

    def observe_apply(self, node_id: int, entry: Entry) -> bool:
        """``node_id`` applies ``entry`` (§5.4.3 State Machine Safety);
        returns whether it is the first node to apply that index."""
        known = self.applied.setdefault(entry.index, entry)
        if known is entry:
            return True
        if known != entry:
            raise Violation(
                "§5.4.3 State Machine Safety",
                f"node {node_id} applies {_show(entry)} at index {entry.index};"
                f" {_show(known)} was applied there before",
            )
        return False

    def observe_commit(
        self,
        node_id: int,
        term: int,
        indexes: range,
        term_at: Callable[[int], int | None],
    ) -> None:
        """The leader of ``term`` counts ``indexes`` as committed: each is
        committed in ``term`` at the latest (§5.3-5.4). One index is never
        committed with two different entries."""
        committed = self.committed
        for index in indexes:
            entry_term = term_at(index)
            if entry_term is None:
                continue  # compacted: it was committed before
            known = committed.get(index)
            if known is None:
                committed[index] = (entry_term, term)
                if index > self.committed_max:
                    self.committed_max = index
            elif known[0] != entry_term:
                raise Violation(
                    "§5.4 Leader Completeness",
                    f"leader {node_id} of term {term} commits index {index} of term"
                    f" {entry_term}; the leader of term {known[1]} committed term"
                    f" {known[0]} there",
                )
            elif term < known[1]:
                committed[index] = (entry_term, term)

    def check_leader_has(
        self,
        node_id: int,
        term: int,
        indexes: range | list[int],
        term_at: Callable[[int], int | None],
        snapshot_index: int,
    ) -> None:
        """The leader of ``term`` holds every entry of ``indexes`` committed
        in an earlier term (§5.4 Leader Completeness)."""
        committed = self.committed
        for index in indexes:
            known = committed.get(index)
            if known is None or known[1] >= term or index <= snapshot_index:
                continue
            held = term_at(index)
            if held != known[0]:
                raise Violation(
                    "§5.4 Leader Completeness",
                    f"leader {node_id} of term {term} holds term {held} at index {index},"
                    f" where an entry of term {known[0]} was committed in term {known[1]}",
                )


def _show(entry: Entry) -> str:
    return f"(index {entry.index}, term {entry.term}, {entry.kind.name} {entry.data!r})"
