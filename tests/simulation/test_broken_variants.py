"""The simulator catches deliberately broken cores (tests/simulation/broken.py).

Each test searches seeds in order and stops at the first violation; the
search is deterministic, so the seed it finds only moves when the core or
the simulator changes. A search that finds nothing in its bound fails: the
simulator has gone blind to that bug.
"""

from __future__ import annotations

import pytest

from tests.simulation.run import run_seed

STEPS = 3000
SEEDS_MAX = 200


def _first_violation(variant: str, profile: str) -> tuple[int, str]:
    for seed in range(SEEDS_MAX):
        result = run_seed(seed, STEPS, profile=profile, variant=variant)
        if not result.ok:
            return seed, str(result.violation)
    pytest.fail(f"{variant} not caught in seeds 0..{SEEDS_MAX - 1} of profile {profile}")


def test_committing_an_old_terms_entry_by_counting_is_caught() -> None:
    """Committing an earlier term's entry once a majority holds it (paper
    Figure 8, forbidden by §5.4.2) lets a later leader overwrite it."""
    _, violation = _first_violation("commit_old_terms", "figure8")
    assert violation.startswith(("§5.4 Leader Completeness", "§5.4.3 State Machine Safety"))


def test_voting_without_the_up_to_date_check_is_caught() -> None:
    """Granting votes to candidates with stale logs (§5.4.1) elects leaders
    that lack committed entries."""
    _, violation = _first_violation("vote_for_stale_logs", "swarm")
    assert violation.startswith(
        ("§5.4 Leader Completeness", "§5.4.3 State Machine Safety", "§5.3 Log Matching")
    )


def test_reading_without_the_heartbeat_round_is_caught() -> None:
    """A deposed leader that serves ReadIndex reads without confirming its
    leadership (thesis §6.4) returns values older than acknowledged writes."""
    _, violation = _first_violation("read_without_quorum", "stale_read")
    assert violation.startswith("thesis §6.4 Linearizable reads")
