"""Nodes started with different initial members say how the lists differ
(API.md section 1: node 3 says which member its list lacks)."""

from __future__ import annotations

from graft.transport.http import describe_membership_mismatch

A1 = "http://127.0.0.1:9001"
A2 = "http://127.0.0.1:9002"
A3 = "http://127.0.0.1:9003"


def test_a_node_missing_a_member_is_told_which_one_its_list_lacks():
    """The seed README's mistake: node 3 lists itself and node 2 only."""
    line = describe_membership_mismatch(3, {2: A2, 3: A3}, 2, {1: A1, 2: A2, 3: A3})

    assert "our list lacks node 1 (http://127.0.0.1:9001)" in line
    assert "their list lacks" not in line
    assert "\n" not in line


def test_the_peer_of_a_node_missing_a_member_says_what_the_other_list_lacks():
    """The correct node names the member the wrong list left out."""
    line = describe_membership_mismatch(1, {1: A1, 2: A2, 3: A3}, 3, {2: A2, 3: A3})

    assert "their list lacks node 1 (http://127.0.0.1:9001)" in line
    assert "our list lacks" not in line


def test_a_member_with_two_addresses_is_named():
    """Same ids but a different address also changes the cluster id."""
    line = describe_membership_mismatch(1, {1: A1, 2: A2}, 2, {1: A1, 2: "http://127.0.0.1:9999"})

    assert "addresses differ for node 2 (ours http://127.0.0.1:9002" in line
