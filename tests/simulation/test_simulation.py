"""The simulator's main suite: many seeds of the real core through seeded
faults, every safety check after every step, liveness after healing.

Seeds are split into many small cases so pytest-xdist spreads them over the
cores. A failure message is the simulator's own report: seed, knobs, trace
tail and the one command that replays it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.simulation.run import report_failure, run_seed

STEPS = 5000
SEEDS_PER_CASE = 10
SWARM_CASES = 40
#: Seeds of the targeted profiles run against the correct core too: they
#: must pass there, or the broken-variant tests prove nothing.
PROFILE_CASES = [("figure8", 3), ("stale_read", 3), ("calm", 1)]

ROOT = Path(__file__).resolve().parents[2]


def _check_seeds(first: int, profile: str) -> None:
    failures = []
    for seed in range(first, first + SEEDS_PER_CASE):
        result = run_seed(seed, STEPS, profile=profile)
        if not result.ok:
            failures.append(report_failure(result, STEPS))
    assert not failures, "\n\n".join(failures)


@pytest.mark.parametrize("case", range(SWARM_CASES))
def test_swarm_seeds_keep_raft_safe_and_live(case: int) -> None:
    """Seeds with knobs drawn per run keep every safety property after every
    step and settle after healing (§5.2, §5.3, §5.4, §5.4.3, thesis §6.4)."""
    _check_seeds(case * SEEDS_PER_CASE, "swarm")


@pytest.mark.parametrize(
    ("profile", "case"),
    [(profile, case) for profile, cases in PROFILE_CASES for case in range(cases)],
)
def test_targeted_profiles_pass_on_the_correct_core(profile: str, case: int) -> None:
    """The scenarios that catch the broken variants find nothing wrong with
    the real core."""
    _check_seeds(100_000 + case * SEEDS_PER_CASE, profile)


def test_a_seed_run_twice_gives_the_same_trace() -> None:
    """One seed decides everything: two runs have equal trace digests, and
    a different seed differs."""
    first = run_seed(42, 2000)
    second = run_seed(42, 2000)
    other = run_seed(43, 2000)
    assert first.digest == second.digest
    assert first.trace_tail == second.trace_tail
    assert first.digest != other.digest


def test_a_seed_gives_the_same_trace_whatever_the_hash_seed() -> None:
    """No iteration order depends on PYTHONHASHSEED: two processes with
    different hash seeds print the same digest."""
    digests = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "tests.simulation.run",
                "--seed",
                "7",
                "--steps",
                "1500",
                "--digest",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        digests.append([line for line in out.stdout.splitlines() if "digest" in line])
    assert digests[0] == digests[1]
    assert digests[0]
