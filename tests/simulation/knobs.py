"""Per-run knobs, drawn from the seed: swarm testing.

One fixed set of fault rates explores one corner of the state space; drawing
the rates themselves from the seed, extremes and "no faults at all"
included, spreads many seeds over many corners (tigerbeetle src/vopr.zig
``options_swarm``; Groce et al., "Swarm Testing", ISSTA 2012).

A *profile* biases the draw towards a scenario the uniform draw rarely
reaches: ``figure8`` (many crashes and elections, one entry per
AppendEntries, so an old term's entry can be replicated without the new
leader's first entry: paper Figure 8) and ``stale_read`` (a leader paused
while the others elect a new one and take writes: thesis §6.4).

This module imports only the standard library and attrs.
"""

from __future__ import annotations

import random

import attrs

PROFILES = ("swarm", "figure8", "stale_read", "calm")


@attrs.frozen(kw_only=True)
class Knobs:
    """Everything about one run that is not the core itself."""

    profile: str
    #: Initial voters (3 or 5) and spare ids that may be added later.
    voters: int
    spares: int
    # --- core settings --------------------------------------------------
    election_timeout_ticks: int
    heartbeat_interval_ticks: int
    append_entries_max: int
    inflight_messages_max: int
    snapshot_chunk_bytes: int
    learner_promotion_lag_max: int
    pre_vote: bool
    check_quorum: bool
    # --- network (see network.py) --------------------------------------
    loss: float
    duplication: float
    delay_min_ticks: int
    delay_max_ticks: int
    #: Chance per tick that a partition starts when none is active.
    partition_rate: float
    partition_min_ticks: int
    partition_max_ticks: int
    # --- disk and processes (see disk.py) -------------------------------
    persist_min_ticks: int
    persist_max_ticks: int
    #: Chance per tick that some node crashes / pauses.
    crash_rate: float
    torn_write: float
    down_min_ticks: int
    down_max_ticks: int
    pause_rate: float
    #: Chance that a new leader crashes within ``short_reign_max_ticks`` of
    #: its election: many short reigns leave entries of many terms on
    #: minorities, the raw material of paper Figure 8.
    short_reign_rate: float
    short_reign_max_ticks: int
    #: At most this many nodes down at once (a minority, except in extremes).
    max_down: int
    # --- clients (see clients.py) ---------------------------------------
    propose_rate: float
    read_rate: float
    membership_rate: float
    transfer_rate: float
    compact_rate: float
    keys: int

    def describe(self) -> str:
        """One line, ``name=value`` pairs in field order."""
        parts = []
        for field in attrs.fields(Knobs):
            value = getattr(self, field.name)
            parts.append(
                f"{field.name}={value!r}" if isinstance(value, float) else f"{field.name}={value}"
            )
        return " ".join(parts)


def parse_knobs(text: str) -> Knobs:
    """The inverse of :meth:`Knobs.describe`, so a regression test can pin
    a failing run's knobs even after ``draw_knobs`` changes. Knobs newer
    than ``text`` take their "off" value."""
    values: dict[str, object] = {"short_reign_rate": 0.0, "short_reign_max_ticks": 1}
    types = {field.name: field.type for field in attrs.fields(Knobs)}
    for part in text.split():
        name, _, raw = part.partition("=")
        kind = types[name]
        if kind in (bool, "bool"):
            values[name] = raw == "True"
        elif kind in (int, "int"):
            values[name] = int(raw)
        elif kind in (float, "float"):
            values[name] = float(raw)
        else:
            values[name] = raw
    return Knobs(**values)  # type: ignore[arg-type]


def _rate(rng: random.Random, high: float) -> float:
    """A rate in [0, high], zero a fifth of the time, ``high`` a tenth."""
    roll = rng.random()
    if roll < 0.2:
        return 0.0
    if roll < 0.3:
        return high
    return rng.uniform(0.0, high)


def draw_knobs(rng: random.Random, profile: str = "swarm") -> Knobs:
    """Draw one run's knobs; the same ``rng`` state gives the same knobs."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {PROFILES}")
    voters = rng.choice((3, 5))
    election = rng.choice((6, 10, 10, 16))
    heartbeat = rng.choice(tuple(h for h in (1, 2, 3) if h * 3 <= election))
    delay_min = rng.choice((0, 1, 1, 2))
    delay_max = delay_min + rng.choice((0, 1, 1, 2, 2, 4, election))
    faults = rng.random() >= 0.1  # a tenth of the runs: no faults at all
    knobs = Knobs(
        profile=profile,
        voters=voters,
        spares=rng.choice((0, 1, 2)),
        election_timeout_ticks=election,
        heartbeat_interval_ticks=heartbeat,
        append_entries_max=rng.choice((1, 2, 8, 256)),
        inflight_messages_max=rng.choice((1, 4, 64)),
        snapshot_chunk_bytes=rng.choice((16, 64, 1 << 20)),
        learner_promotion_lag_max=rng.choice((2, 16, 64)),
        pre_vote=rng.random() < 0.8,
        check_quorum=rng.random() < 0.8,
        loss=_rate(rng, 0.3) if faults else 0.0,
        duplication=_rate(rng, 0.2) if faults else 0.0,
        delay_min_ticks=delay_min,
        delay_max_ticks=delay_max,
        partition_rate=_rate(rng, 0.05) if faults else 0.0,
        partition_min_ticks=election,
        partition_max_ticks=election * rng.choice((2, 4, 8)),
        persist_min_ticks=rng.choice((0, 0, 1)),
        persist_max_ticks=rng.choice((0, 1, 2, 4)),
        crash_rate=_rate(rng, 0.03) if faults else 0.0,
        torn_write=rng.choice((0.0, 0.5)),
        down_min_ticks=election,
        down_max_ticks=election * rng.choice((1, 3, 6)),
        pause_rate=_rate(rng, 0.02) if faults else 0.0,
        short_reign_rate=_rate(rng, 0.3) if faults and rng.random() < 0.3 else 0.0,
        short_reign_max_ticks=rng.choice((2, 5, 3 * election)),
        max_down=(voters - 1) // 2 if rng.random() < 0.9 else voters,
        propose_rate=rng.choice((0.1, 0.5, 1.0, 2.0)),
        read_rate=rng.choice((0.0, 0.2, 0.5)),
        membership_rate=_rate(rng, 0.05),
        transfer_rate=_rate(rng, 0.02),
        compact_rate=_rate(rng, 0.05),
        keys=rng.choice((1, 3, 8)),
    )
    knobs = attrs.evolve(
        knobs, persist_max_ticks=max(knobs.persist_min_ticks, knobs.persist_max_ticks)
    )
    if profile == "figure8":
        # Short reigns leave entries of many terms on minorities; one entry
        # per AppendEntries and one in flight let a new leader replicate an
        # old term's entry without its own no-op; a crash in that window
        # and a quick election by a node holding a newer term at that index
        # finish the scenario. Three voters, no pre-vote and no spares or
        # transfers make each step likelier (tuned on the commit_old_terms
        # variant: about one seed in five catches it).
        knobs = attrs.evolve(
            knobs,
            voters=3,
            spares=0,
            max_down=1,
            append_entries_max=1,
            inflight_messages_max=1,
            pre_vote=False,
            check_quorum=False,
            short_reign_rate=rng.uniform(0.6, 0.9),
            short_reign_max_ticks=rng.choice((4, 6, 8)),
            loss=rng.uniform(0.0, 0.2),
            crash_rate=rng.uniform(0.03, 0.1),
            down_min_ticks=20,
            down_max_ticks=40,
            partition_rate=rng.uniform(0.0, 0.05),
            transfer_rate=0.0,
            propose_rate=rng.choice((0.5, 1.0)),
            membership_rate=0.0,
            persist_max_ticks=rng.choice((1, 2, 4)),
        )
    elif profile == "stale_read":
        knobs = attrs.evolve(
            knobs,
            loss=0.0,
            duplication=0.0,
            crash_rate=0.0,
            short_reign_rate=0.0,
            partition_rate=rng.uniform(0.0, 0.02),
            pause_rate=rng.uniform(0.02, 0.06),
            propose_rate=rng.choice((1.0, 2.0)),
            read_rate=rng.choice((0.5, 1.0)),
            keys=1,
            membership_rate=0.0,
            compact_rate=0.0,
        )
    elif profile == "calm":
        knobs = attrs.evolve(
            knobs,
            loss=0.0,
            duplication=0.0,
            partition_rate=0.0,
            crash_rate=0.0,
            pause_rate=0.0,
            short_reign_rate=0.0,
        )
    return knobs
