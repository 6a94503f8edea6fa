"""The simulated network between the nodes.

Fault model, within what Raft claims to survive (paper §5.1: "messages may
be lost, delayed, duplicated or reordered"; the thesis §3.1 adds that
servers may be partitioned):

- Every message is delivered after a delay drawn uniformly from
  ``[delay_min_ticks, delay_max_ticks]``, independently of every other, so
  messages between one pair of nodes are reordered whenever the range is
  wider than a tick. During the fault phase the delay may even exceed the
  election timeout (safety must hold regardless of timing, §5.6); once
  faults stop it is clamped well below it, since liveness needs that.
- A message is lost with probability ``loss`` and, when not lost, delivered
  a second time (after its own delay) with probability ``duplication``.
- Partitions cut directed links: a random *split* of the nodes into two
  sides, an *isolated* node (usually the leader), or *one-way* links (a
  node that can send but not hear, or hear but not send). A partition lasts
  at least ``partition_min_ticks`` and then heals; at most one is active.
  A message is dropped if its link is cut when it is sent *or* when it
  would be delivered (a cut link loses what is in flight, as a dropped TCP
  connection does).
- Messages are never corrupted, forged or misaddressed: the core trusts
  types, not peers, but Raft does not claim to survive Byzantine faults.

The network does not know about the event heap: ``send`` returns the
delivery ticks and the world schedules them.

This module imports only the standard library.
"""

from __future__ import annotations

import random

from tests.simulation.knobs import Knobs


class Network:
    """Links between ``node_ids``: which are cut, and how long messages take."""

    def __init__(self, knobs: Knobs, rng: random.Random, node_ids: tuple[int, ...]) -> None:
        self._knobs = knobs
        self._rng = rng
        self._node_ids = node_ids
        #: Directed links (source, target) that drop everything.
        self._cut: frozenset[tuple[int, int]] = frozenset()
        #: When the active partition heals; None when the network is whole.
        self.heals_at: int | None = None
        self.faulty = True
        self._delay_min = knobs.delay_min_ticks
        self._delay_max = knobs.delay_max_ticks
        self.sent = 0
        self.lost = 0
        self.duplicated = 0

    def connected(self, source: int, target: int) -> bool:
        """Whether the link from ``source`` to ``target`` is up now."""
        return (source, target) not in self._cut

    def delivery_ticks(self, source: int, target: int, now: int) -> tuple[int, ...]:
        """When a message sent now from ``source`` to ``target`` arrives:
        no tick if lost, two if duplicated."""
        self.sent += 1
        if (source, target) in self._cut:
            self.lost += 1
            return ()
        knobs = self._knobs
        rng = self._rng
        if self.faulty and knobs.loss and rng.random() < knobs.loss:
            self.lost += 1
            return ()
        low, high = self._delay_min, self._delay_max
        first = now + (low if low == high else rng.randint(low, high))
        if self.faulty and knobs.duplication and rng.random() < knobs.duplication:
            self.duplicated += 1
            return (first, now + rng.randint(low, high))
        return (first,)

    def maybe_partition(self, now: int, leader_id: int | None) -> str | None:
        """Start a partition with chance ``partition_rate`` if none is active;
        returns a description of it, or None."""
        knobs = self._knobs
        rng = self._rng
        if not self.faulty or self.heals_at is not None or not knobs.partition_rate:
            return None
        if rng.random() >= knobs.partition_rate:
            return None
        ids = self._node_ids
        kind = rng.choice(("split", "isolate", "isolate", "one_way"))
        cut: set[tuple[int, int]] = set()
        if kind == "split":
            shuffled = list(ids)
            rng.shuffle(shuffled)
            size = rng.randint(1, len(ids) // 2)
            side = set(shuffled[:size])
            for a in ids:
                for b in ids:
                    if (a in side) != (b in side):
                        cut.add((a, b))
            text = f"split {sorted(side)} | {sorted(set(ids) - side)}"
        elif kind == "isolate":
            victim = leader_id if leader_id is not None and rng.random() < 0.7 else rng.choice(ids)
            for other in ids:
                if other != victim:
                    cut.add((victim, other))
                    cut.add((other, victim))
            text = f"isolate {victim}"
        else:
            victim = rng.choice(ids)
            outbound = rng.random() < 0.5
            others = [o for o in ids if o != victim]
            chosen = [o for o in others if rng.random() < 0.7] or others[:1]
            for other in chosen:
                cut.add((victim, other) if outbound else (other, victim))
            arrow = "->" if outbound else "<-"
            text = f"one-way {victim} {arrow}x {chosen}"
        self._cut = frozenset(cut)
        self.heals_at = now + rng.randint(knobs.partition_min_ticks, knobs.partition_max_ticks)
        return text

    def heal(self) -> None:
        """Reconnect every link."""
        self._cut = frozenset()
        self.heals_at = None

    def stop_faults(self) -> None:
        """Heal, and from now on neither lose, duplicate nor partition, and
        keep delays well inside the election timeout (§5.6: broadcast time
        << election timeout, or no leader can be expected)."""
        self.heal()
        self.faulty = False
        knobs = self._knobs
        self._delay_max = min(knobs.delay_max_ticks, max(1, knobs.election_timeout_ticks // 5))
        self._delay_min = min(knobs.delay_min_ticks, self._delay_max)
