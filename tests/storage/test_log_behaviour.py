"""One behavioural suite for ILogStorage, run against the memory and the
file store (STYLE.md §4: one suite, every implementation)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from graft.raft.messages import HardState
from graft.storage import FileLogStorage, MemoryLogStorage
from graft.storage.interfaces import ILogStorage
from tests.storage.helpers import make_entries

Reopen = Callable[[], ILogStorage]


@pytest.fixture(params=["memory", "file"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[ILogStorage, Reopen]]:
    """A fresh log and a function that closes and reopens it (the memory
    store 'reopens' as itself: it has nothing to lose)."""
    if request.param == "memory":
        mem = MemoryLogStorage()
        yield mem, lambda: mem
        return
    holder = [FileLogStorage(str(tmp_path), segment_bytes_max=300)]

    def reopen() -> ILogStorage:
        holder[0].sync()
        holder[0].close()
        holder[0] = FileLogStorage(str(tmp_path), segment_bytes_max=300)
        return holder[0]

    yield holder[0], reopen
    holder[0].close()


def test_new_log_is_empty_from_index_one(store: tuple[ILogStorage, Reopen]) -> None:
    """A new log holds nothing: first_index 1, last_index 0."""
    log, _ = store
    assert (log.first_index, log.last_index) == (1, 0)
    assert log.entries(1, 1) == []
    assert log.term_at(0) is None
    assert log.term_at(1) is None


def test_appended_entries_read_back_after_reopen(store: tuple[ILogStorage, Reopen]) -> None:
    """Entries appended (and synced) read back whole, terms included, after a reopen."""
    log, reopen = store
    entries = make_entries(1, 40, term=2)
    log.append(entries[:25])
    log.sync()
    log.append(entries[25:])
    log = reopen()
    assert log.entries(1, 41) == entries
    assert log.entries(10, 13) == entries[9:12]
    assert log.term_at(40) == 2
    assert (log.first_index, log.last_index) == (1, 40)


def test_append_cuts_the_log_at_the_first_new_index(store: tuple[ILogStorage, Reopen]) -> None:
    """append(entries) first drops entries[0].index and everything after (§5.3)."""
    log, reopen = store
    log.append(make_entries(1, 30, term=1))
    log.append(make_entries(12, 3, term=2))
    expected = make_entries(1, 11, term=1) + make_entries(12, 3, term=2)
    assert log.entries(1, 15) == expected
    assert log.last_index == 14
    log = reopen()
    assert log.entries(1, 15) == expected
    assert log.last_index == 14
    assert log.term_at(15) is None


def test_append_refuses_a_gap_or_noncontiguous_batch(store: tuple[ILogStorage, Reopen]) -> None:
    """A batch starting past last_index + 1, or not contiguous, is a ValueError."""
    log, _ = store
    log.append(make_entries(1, 3))
    with pytest.raises(ValueError):
        log.append(make_entries(5, 1))
    with pytest.raises(ValueError):
        log.append([*make_entries(4, 1), *make_entries(6, 1)])
    assert log.last_index == 3


def test_reading_outside_the_log_raises_index_error(store: tuple[ILogStorage, Reopen]) -> None:
    """entries(lo, hi) outside first_index..last_index raises IndexError."""
    log, _ = store
    log.append(make_entries(1, 3))
    with pytest.raises(IndexError):
        log.entries(2, 5)
    with pytest.raises(IndexError):
        log.entries(0, 2)


def test_drop_prefix_forgets_entries_and_survives_reopen(store: tuple[ILogStorage, Reopen]) -> None:
    """drop_prefix(i) makes first_index i + 1, for good."""
    log, reopen = store
    entries = make_entries(1, 50)
    for k in range(0, 50, 5):
        log.append(entries[k : k + 5])
        log.sync()
    log.drop_prefix(30)
    assert (log.first_index, log.last_index) == (31, 50)
    assert log.term_at(30) is None
    log = reopen()
    assert (log.first_index, log.last_index) == (31, 50)
    assert log.entries(31, 51) == entries[30:]
    with pytest.raises(ValueError):
        log.append(make_entries(20, 1))


def test_drop_prefix_past_the_end_empties_the_log(store: tuple[ILogStorage, Reopen]) -> None:
    """drop_prefix beyond last_index leaves an empty log continuing after it."""
    log, reopen = store
    log.append(make_entries(1, 5))
    log.drop_prefix(100)
    log = reopen()
    assert (log.first_index, log.last_index) == (101, 100)
    log.append(make_entries(101, 2, term=4))
    assert log.entries(101, 103) == make_entries(101, 2, term=4)


def test_reset_discards_every_entry(store: tuple[ILogStorage, Reopen]) -> None:
    """reset(i) empties the log, which continues after i (§7, conflicting snapshot)."""
    log, reopen = store
    log.append(make_entries(1, 20))
    log.reset(10)
    assert (log.first_index, log.last_index) == (11, 10)
    log.append(make_entries(11, 3, term=5))
    log = reopen()
    assert log.entries(11, 14) == make_entries(11, 3, term=5)
    assert log.term_at(5) is None


def test_hard_state_saved_is_loaded_after_reopen(store: tuple[ILogStorage, Reopen]) -> None:
    """save_hard_state replaces the hard state; load_hard_state reads it back after a reopen."""
    log, reopen = store
    assert log.load_hard_state() == HardState()
    log.save_hard_state(HardState(term=3, vote=2, commit=7))
    log.save_hard_state(HardState(term=4, vote=1, commit=9))
    log = reopen()
    assert log.load_hard_state() == HardState(term=4, vote=1, commit=9)
