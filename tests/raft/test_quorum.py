"""Majority arithmetic (graft/raft/quorum.py) against simple twins, after
etcd-io/raft quorum/quick_test.go."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from graft.raft.quorum import VoteResult, committed_index, has_quorum, majority, vote_result


def committed_index_twin(matches: list[int]) -> int:
    """The largest index that more than half of the voters hold, by brute force."""
    return max(
        (i for i in [0, *matches] if sum(m >= i for m in matches) * 2 > len(matches)),
        default=0,
    )


@given(st.lists(st.integers(min_value=0, max_value=1000), max_size=9))
def test_committed_index_is_what_a_majority_holds(matches):
    """§5.3: the commit index is the highest index stored on a majority."""
    assert committed_index(matches) == committed_index_twin(matches)


@given(st.lists(st.integers(min_value=0, max_value=1000), min_size=1, max_size=9))
def test_committed_index_ignores_the_order_of_voters(matches):
    """§5.3: who holds what does not matter, only how many."""
    assert committed_index(matches) == committed_index(sorted(matches))


@pytest.mark.parametrize(("voters", "needed"), [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3)])
def test_majority_is_more_than_half(voters, needed):
    """§5.2: a majority of the full cluster is more than half of the voters."""
    assert majority(voters) == needed


@given(
    st.integers(min_value=1, max_value=7).flatmap(
        lambda n: st.tuples(
            st.just(frozenset(range(1, n + 1))),
            st.dictionaries(st.integers(min_value=1, max_value=9), st.booleans()),
        )
    )
)
def test_vote_result_matches_counting(case):
    """§5.2: won with a majority of grants, lost once a majority is out of
    reach, pending otherwise; votes of non-voters never count."""
    voters, votes = case
    granted = sum(1 for v, ok in votes.items() if ok and v in voters)
    refused = sum(1 for v, ok in votes.items() if not ok and v in voters)
    if granted * 2 > len(voters):
        expected = VoteResult.WON
    elif (len(voters) - refused) * 2 <= len(voters):
        expected = VoteResult.LOST
    else:
        expected = VoteResult.PENDING

    assert vote_result(voters, votes) is expected


@pytest.mark.parametrize(
    ("votes", "expected"),
    [
        ({1: True}, VoteResult.PENDING),
        ({1: True, 2: True}, VoteResult.WON),
        ({1: True, 2: False, 3: False}, VoteResult.LOST),
        ({1: True, 4: True, 5: True}, VoteResult.PENDING),  # 4, 5 are learners
    ],
)
def test_vote_result_examples(votes, expected):
    """§5.2 and thesis §4.2.1: examples in a three-voter cluster."""
    assert vote_result({1, 2, 3}, votes) is expected


@pytest.mark.parametrize(
    ("active", "expected"),
    [({1}, False), ({1, 2}, True), ({1, 4, 5}, False), ({1, 2, 3}, True), (set(), False)],
)
def test_has_quorum(active, expected):
    """Thesis §6.2: check-quorum needs a majority of voters; learners and
    strangers do not count."""
    assert has_quorum({1, 2, 3}, active) is expected
