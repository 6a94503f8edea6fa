"""Named seeds that once failed, replayed with the knobs that found them.

Each entry is a seed, its step count and the knobs its failure report
printed, pinned so that later changes to how knobs are drawn do not move the
seed to another scenario (the other components' sub-seeds do not depend on
the knob draw). Each says once, in ``why``, what failed and what fixed it.
Knobs added since an entry was recorded are off for it.

The first three were the simulator's own, found while it was first pointed
at the real core; the fourth was a bug of the core's streamed snapshots.
"""

from __future__ import annotations

import pytest

from tests.simulation.knobs import parse_knobs
from tests.simulation.run import report_failure, run_seed

#: (name, seed, steps, knobs as the failure report printed them, why)
REGRESSIONS: list[tuple[str, int, int, str, str]] = [
    (
        "leader_completeness_uses_the_commit_term",
        184,
        3000,
        "profile=swarm voters=5 spares=0 election_timeout_ticks=6 heartbeat_interval_ticks=1"
        " append_entries_max=8 inflight_messages_max=1 snapshot_chunk_bytes=16"
        " learner_promotion_lag_max=2 pre_vote=True check_quorum=False loss=0.0134"
        " duplication=0.075 delay_min_ticks=1 delay_max_ticks=2 partition_rate=0.0394"
        " partition_min_ticks=6 partition_max_ticks=48 persist_min_ticks=0 persist_max_ticks=4"
        " crash_rate=0 torn_write=0 down_min_ticks=6 down_max_ticks=18 pause_rate=0 max_down=2"
        " propose_rate=0.1 read_rate=0.2 membership_rate=0.0212 transfer_rate=0.0102"
        " compact_rate=0.0251 keys=8",
        "The check compared a leader's log with entries of earlier *entry* terms, so"
        " a deposed leader of term 7 was blamed for lacking an entry of term 5 that"
        " was only committed in term 8. Leader Completeness (§5.4) is about the term"
        " an entry was committed in; the checker now records it from leaders'"
        " commit indexes.",
    ),
    (
        "delays_stay_inside_the_election_timeout_after_healing",
        780,
        3000,
        "profile=swarm voters=5 spares=2 election_timeout_ticks=6 heartbeat_interval_ticks=2"
        " append_entries_max=2 inflight_messages_max=64 snapshot_chunk_bytes=16"
        " learner_promotion_lag_max=64 pre_vote=False check_quorum=True loss=0.0244"
        " duplication=0.0741 delay_min_ticks=2 delay_max_ticks=10 partition_rate=0"
        " partition_min_ticks=6 partition_max_ticks=12 persist_min_ticks=0 persist_max_ticks=1"
        " crash_rate=0.0209 torn_write=0 down_min_ticks=6 down_max_ticks=36 pause_rate=0.016"
        " max_down=2 propose_rate=1 read_rate=0.5 membership_rate=0.05 transfer_rate=0"
        " compact_rate=0.0316 keys=1",
        "Message delays of 2-10 ticks against a 6-tick election timeout broke §5.6's"
        " timing requirement after healing too, so elections split forever (term 384"
        " and counting). Once faults stop, delays and disk writes now stay well"
        " inside the election timeout.",
    ),
    (
        "clients_back_off_a_leader_far_ahead_of_its_commit",
        719,
        3000,
        "profile=swarm voters=3 spares=0 election_timeout_ticks=16 heartbeat_interval_ticks=2"
        " append_entries_max=1 inflight_messages_max=4 snapshot_chunk_bytes=16"
        " learner_promotion_lag_max=16 pre_vote=False check_quorum=True loss=0 duplication=0"
        " delay_min_ticks=2 delay_max_ticks=10 partition_rate=0 partition_min_ticks=16"
        " partition_max_ticks=32 persist_min_ticks=1 persist_max_ticks=4 crash_rate=0"
        " torn_write=0.5 down_min_ticks=16 down_max_ticks=16 pause_rate=0 max_down=3"
        " propose_rate=2 read_rate=0 membership_rate=0.05 transfer_rate=0.00133"
        " compact_rate=0 keys=1",
        "Clients proposed two entries a tick to a leader sending one entry per round"
        " trip, so healing could never drain the backlog of 632 proposals in time."
        " Clients now hold back from a leader far ahead of its commit index, and"
        " liveness fails on a stall (nothing applied for a while), not on a fixed"
        " deadline.",
    ),
    (
        "snapshot_install_waits_for_the_chunks_of_its_own_batch",
        150712,
        4000,
        "profile=swarm voters=3 spares=0 election_timeout_ticks=16 heartbeat_interval_ticks=2"
        " append_entries_max=1 inflight_messages_max=1 snapshot_chunk_bytes=16"
        " learner_promotion_lag_max=64 pre_vote=True check_quorum=True loss=0.0"
        " duplication=0.05793595372413296 delay_min_ticks=1 delay_max_ticks=3"
        " partition_rate=0.0009768022034080004 partition_min_ticks=16 partition_max_ticks=64"
        " persist_min_ticks=1 persist_max_ticks=2 crash_rate=0.0007548538212679745"
        " torn_write=0.0 down_min_ticks=16 down_max_ticks=96 pause_rate=0.010576990511241986"
        " short_reign_rate=0.20894086780250928 short_reign_max_ticks=48 max_down=1"
        " propose_rate=2.0 read_rate=0.0 membership_rate=0.04350414436432484"
        " transfer_rate=0.013959012127456929 compact_rate=0.04765621775338846 keys=1",
        "A follower finished snapshot 191 and received the first chunk of snapshot"
        " 193 in the same batch; the driver writes a batch's chunks before installing,"
        " so 193's chunk reset the file 191 was about to be installed from. The core"
        " (graft.raft.node) now takes no chunk while a finished snapshot awaits its"
        " Ready; the leader resends it.",
    ),
    (
        "non_voter_lease_runs_out",
        500123,
        5000,
        "profile=swarm voters=3 spares=2 election_timeout_ticks=10"
        " heartbeat_interval_ticks=2 append_entries_max=2 inflight_messages_max=4"
        " snapshot_chunk_bytes=16 learner_promotion_lag_max=64 pre_vote=True"
        " check_quorum=True loss=0.2046943949053096 duplication=0.0 delay_min_ticks=1"
        " delay_max_ticks=3 partition_rate=0.00523541676427004 partition_min_ticks=10"
        " partition_max_ticks=20 persist_min_ticks=1 persist_max_ticks=4 crash_rate=0.0"
        " torn_write=0.5 down_min_ticks=10 down_max_ticks=60"
        " pause_rate=0.005706929023677816 short_reign_rate=0.0 short_reign_max_ticks=30"
        " max_down=1 propose_rate=0.5 read_rate=0.0 membership_rate=0.04091867727756531"
        " transfer_rate=0.007422336992478445 compact_rate=0.0 keys=3",
        "A server that was no voter in its own configuration (removed or a learner by"
        " an entry the others lacked) restarted its election timer without"
        " campaigning, so it stayed in lease and ignored the vote requests of the"
        " servers that still counted it as a voter: no leader after healing. Such a"
        " server's timer now runs on (graft.raft.node tick).",
    ),
    (
        "non_voter_lease_runs_out_too",
        502782,
        5000,
        "profile=swarm voters=3 spares=2 election_timeout_ticks=6"
        " heartbeat_interval_ticks=2 append_entries_max=8 inflight_messages_max=1"
        " snapshot_chunk_bytes=1048576 learner_promotion_lag_max=64 pre_vote=True"
        " check_quorum=True loss=0.04788623367611265 duplication=0.020728160716883593"
        " delay_min_ticks=2 delay_max_ticks=3 partition_rate=0.05 partition_min_ticks=6"
        " partition_max_ticks=12 persist_min_ticks=0 persist_max_ticks=0 crash_rate=0.0"
        " torn_write=0.5 down_min_ticks=6 down_max_ticks=36"
        " pause_rate=0.0021213112796113266 short_reign_rate=0.3 short_reign_max_ticks=2"
        " max_down=1 propose_rate=1.0 read_rate=0.0 membership_rate=0.038370658707761685"
        " transfer_rate=0.0 compact_rate=0.0015069774540614478 keys=8",
        "A server that was no voter in its own configuration (removed or a learner by"
        " an entry the others lacked) restarted its election timer without"
        " campaigning, so it stayed in lease and ignored the vote requests of the"
        " servers that still counted it as a voter: no leader after healing. Such a"
        " server's timer now runs on (graft.raft.node tick).",
    ),
]


@pytest.mark.parametrize(
    ("seed", "steps", "knobs", "why"),
    [entry[1:] for entry in REGRESSIONS],
    ids=[entry[0] for entry in REGRESSIONS],
)
def test_regression_seed_passes(seed: int, steps: int, knobs: str, why: str) -> None:
    """A seed that once failed passes now (see ``why``)."""
    result = run_seed(seed, steps, knobs=parse_knobs(knobs))
    assert result.ok, report_failure(result, steps)


def test_pinned_knobs_round_trip() -> None:
    """A failure report's knobs line parses back into the same knobs."""
    result = run_seed(5, 200)
    assert parse_knobs(result.knobs.describe()) == result.knobs
