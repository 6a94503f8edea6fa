"""GroupCommitLog: appends are acknowledged only after an fsync covering
them returned, and appends made during one fsync share the next."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred, gatherResults

from graft.raft.messages import HardState
from graft.storage import FileLogStorage, GroupCommitLog, StorageFailed
from graft.storage.hard_state import load_hard_state
from tests.storage.helpers import FaultyFileOps, ImmediateReactor, ManualThreadPool, make_entries


def fired(d: Deferred[None]) -> list[object]:
    """Results of ``d`` collected as they arrive (successes and failures)."""
    results: list[object] = []
    d.addBoth(results.append)
    return results


def make_log(
    tmp_path: Path, ops: FaultyFileOps | None = None, segment_bytes_max: int = 1 << 20
) -> tuple[GroupCommitLog, ManualThreadPool]:
    pool = ManualThreadPool()
    storage = FileLogStorage(str(tmp_path), segment_bytes_max=segment_bytes_max, ops=ops)
    return GroupCommitLog(ImmediateReactor(), storage, threadpool=pool), pool


def test_append_is_acknowledged_only_after_the_fsync_returns(tmp_path: Path) -> None:
    """The Deferred fires once the fsync job ran, not when the write was made."""
    log, pool = make_log(tmp_path)
    result = fired(log.append(make_entries(1, 3)))
    assert log.last_index == 3
    assert result == []
    assert len(pool.jobs) == 1
    pool.run_one()
    assert result == [None]


def test_appends_during_an_fsync_share_the_next_fsync(tmp_path: Path) -> None:
    """Appends made while an fsync is in flight are all covered by one next fsync."""
    log, pool = make_log(tmp_path)
    first = fired(log.append(make_entries(1, 1)))
    later = [fired(log.append(make_entries(i, 1))) for i in range(2, 12)]
    assert len(pool.jobs) == 1
    pool.run_one()
    assert first == [None]
    assert all(r == [] for r in later)
    assert len(pool.jobs) == 1
    pool.run_one()
    assert all(r == [None] for r in later)
    assert pool.jobs == []


def test_term_or_vote_change_is_durable_before_the_ack(tmp_path: Path) -> None:
    """A hard state with a new vote is on disk when the append's Deferred fires (§5.2)."""
    log, pool = make_log(tmp_path)
    hard_state = HardState(term=2, vote=3, commit=0)
    result = fired(log.append([], hard_state=hard_state))
    assert load_hard_state(str(tmp_path / "hard_state")) == HardState()
    pool.run_all()
    assert result == [None]
    assert load_hard_state(str(tmp_path / "hard_state")) == hard_state


def test_commit_only_change_is_written_on_close(tmp_path: Path) -> None:
    """A hard state differing only in commit is kept in memory and written by close()."""
    log, pool = make_log(tmp_path)
    fired(log.append(make_entries(1, 2), hard_state=HardState(term=1, vote=1, commit=0)))
    pool.run_all()
    result = fired(log.append(make_entries(3, 1), hard_state=HardState(term=1, vote=1, commit=2)))
    pool.run_all()
    assert result == [None]
    assert load_hard_state(str(tmp_path / "hard_state")).commit == 0
    assert log.load_hard_state().commit == 2
    closed = fired(log.close())
    pool.run_all()
    assert closed == [None]
    assert load_hard_state(str(tmp_path / "hard_state")) == HardState(term=1, vote=1, commit=2)


def test_bad_batch_errbacks_only_its_own_deferred(tmp_path: Path) -> None:
    """An append that does not fit the log fails with ValueError; the log stays healthy."""
    log, pool = make_log(tmp_path)
    bad = fired(log.append(make_entries(5, 1)))
    good = fired(log.append(make_entries(1, 1)))
    pool.run_all()
    assert bad[0].check(ValueError)  # type: ignore[attr-defined]
    assert good == [None]
    assert log.failed_reason is None


def test_full_segment_rolls_only_after_it_is_durable(tmp_path: Path) -> None:
    """Writes wait while the full active segment is not yet durable, then go to a new one."""
    log, pool = make_log(tmp_path, segment_bytes_max=200)
    first = fired(log.append(make_entries(1, 10, size=30)))
    assert log.storage.roll_blocked
    second = fired(log.append(make_entries(11, 1)))
    assert log.last_index == 10  # queued, not written: the segment is not durable yet
    pool.run_all()
    assert first == [None]
    assert second == [None]
    assert log.last_index == 11
    assert len(list(tmp_path.glob("*.wal"))) == 2


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO])
def test_write_error_fails_pending_and_later_appends(tmp_path: Path, code: int) -> None:
    """A failed write errbacks every unacknowledged and every later append: StorageFailed."""
    ops = FaultyFileOps()
    log, pool = make_log(tmp_path, ops=ops)
    acked = fired(log.append(make_entries(1, 5)))
    pool.run_all()
    in_flight = fired(log.append(make_entries(6, 1)))
    ops.fail_errno = code
    ops.fail_write_after_bytes = ops.written_bytes + 20  # mid-record
    failing = fired(log.append(make_entries(7, 3)))
    later = fired(log.append(make_entries(7, 1)))
    pool.run_all()
    assert acked == [None]
    for result in (in_flight, failing, later):
        assert result[0].check(StorageFailed)  # type: ignore[attr-defined]
    assert log.failed_reason is not None
    assert "write" in log.failed_reason
    fired(log.close())
    pool.run_all()
    reopened = FileLogStorage(str(tmp_path))
    assert reopened.entries(1, 6) == make_entries(1, 5)
    assert reopened.last_index in (5, 6)  # entry 6 was written, never acknowledged
    assert reopened.torn_tail is not None
    reopened.close()


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO])
def test_fsync_error_fails_the_log_for_good(tmp_path: Path, code: int) -> None:
    """A failed fsync errbacks its appends and every later one; failed_reason says fsync."""
    ops = FaultyFileOps()
    log, pool = make_log(tmp_path, ops=ops)
    acked = fired(log.append(make_entries(1, 2)))
    pool.run_all()
    ops.fail_errno = code
    ops.fail_fsync = True
    lost = fired(log.append(make_entries(3, 2)))
    pool.run_all()
    later = fired(log.append(make_entries(5, 1)))
    assert acked == [None]
    assert lost[0].check(StorageFailed)  # type: ignore[attr-defined]
    assert later[0].check(StorageFailed)  # type: ignore[attr-defined]
    assert log.failed_reason is not None
    assert log.failed_reason.startswith("fsync failed")
    fired(log.close())
    pool.run_all()
    reopened = FileLogStorage(str(tmp_path))
    assert reopened.entries(1, 3) == make_entries(1, 2)
    reopened.close()


def test_segment_deleted_during_an_fsync_is_closed_after_it(tmp_path: Path) -> None:
    """A segment dropped while its fsync is in flight stays open until the fsync returns."""
    log, pool = make_log(tmp_path, segment_bytes_max=100)
    for i in range(1, 6):
        fired(log.append(make_entries(i, 1, size=90)))
        pool.run_all()
    fired(log.append(make_entries(6, 1, size=90)))
    fired(log.drop_prefix(6))
    pool.run_all()
    assert (log.first_index, log.last_index) == (7, 6)
    assert len(list(tmp_path.glob("*.wal"))) == 1


@pytest_twisted.inlineCallbacks
def test_appends_on_the_real_reactor_become_durable(tmp_path: Path):  # type: ignore[no-untyped-def]
    """With the real reactor and its thread pool, concurrent appends all resolve and read back."""
    from twisted.internet import reactor

    storage = FileLogStorage(str(tmp_path))
    log = GroupCommitLog(reactor, storage)
    yield gatherResults([log.append(make_entries(i, 1)) for i in range(1, 51)])
    yield log.close()
    reopened = FileLogStorage(str(tmp_path))
    assert reopened.entries(1, 51) == make_entries(1, 50)
    reopened.close()


def test_old_segments_outlive_the_drop_marker_until_it_is_durable(tmp_path: Path) -> None:
    """A crash before the drop-prefix marker is durable must still find the
    entries the marker would have retired: segments go only after it."""
    log, pool = make_log(tmp_path, segment_bytes_max=100)
    for i in range(1, 6):
        fired(log.append(make_entries(i, 1, size=90)))
        pool.run_all()
    segments_before = set(tmp_path.glob("*.wal"))

    fired(log.drop_prefix(5))

    assert segments_before <= set(tmp_path.glob("*.wal")), "none deleted before the fsync"
    pool.run_all()
    assert not segments_before <= set(tmp_path.glob("*.wal"))
    assert (log.first_index, log.last_index) == (6, 5)
