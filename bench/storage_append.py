"""Storage benchmark: ``python -m bench.storage_append`` (``make bench``).

Measures, in one run, on a temporary directory on the real disk:

- appends per second of 100-byte entries through GroupCommitLog with 1,
  16 and 256 concurrent appenders on the real reactor (each appender waits
  for its append's Deferred before the next), against one fsync per entry
  (FileLogStorage.append then sync, one entry at a time);
- the time to open a log of 1,000,000 entries (index rebuilt from headers,
  both CRCs checked).

The modes take turns in short slices (a shared disk's fsync rate drifts).
Goals (issue 3): 256 appenders at least 20x one-fsync-per-entry; opening
1,000,000 entries under 3 s. ``--seconds`` sets each phase's length.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from typing import Any

from twisted.internet import defer, task

from graft.raft.messages import Entry
from graft.storage import FileLogStorage, GroupCommitLog

ENTRY_DATA = b"x" * 100
OPEN_ENTRIES = 1_000_000
ROUNDS = 4


def one_fsync_per_entry(path: str, seconds: float) -> float:
    """Entries per second when every append is followed by its own fsync."""
    log = FileLogStorage(path)
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        count += 1
        log.append([Entry(index=count, term=1, data=ENTRY_DATA)])
        log.sync()
    elapsed = time.perf_counter() - start
    log.close()
    return count / elapsed


async def group_commit(reactor: Any, path: str, appenders: int, seconds: float) -> float:
    """Entries per second with ``appenders`` concurrent appenders."""
    log = GroupCommitLog(reactor, FileLogStorage(path))
    next_index = 1
    done = 0
    deadline = time.perf_counter() + seconds

    async def appender() -> None:
        nonlocal next_index, done
        while time.perf_counter() < deadline:
            index = next_index
            next_index += 1
            await log.append([Entry(index=index, term=1, data=ENTRY_DATA)])
            done += 1

    start = time.perf_counter()
    await defer.gatherResults([defer.Deferred.fromCoroutine(appender()) for _ in range(appenders)])
    elapsed = time.perf_counter() - start
    await log.close()
    return done / elapsed


def open_time(path: str, entries: int) -> tuple[float, float]:
    """Seconds to write ``entries`` entries, then seconds to open that log."""
    start = time.perf_counter()
    log = FileLogStorage(path)
    batch = 1000
    for first in range(1, entries + 1, batch):
        last = min(first + batch, entries + 1)
        log.append([Entry(index=i, term=1, data=ENTRY_DATA) for i in range(first, last)])
        log.sync()
    log.close()
    written = time.perf_counter() - start
    start = time.perf_counter()
    log = FileLogStorage(path)
    opened = time.perf_counter() - start
    assert log.last_index == entries
    log.close()
    return written, opened


async def run(reactor: Any, seconds: float, open_entries: int) -> None:
    base = tempfile.mkdtemp(prefix="graft-bench-", dir="/tmp")
    try:
        # A shared disk's fsync rate drifts by 10x within a minute here, so
        # the modes take turns in short slices and each sums its slices.
        modes = [0, 1, 16, 256]  # 0: one fsync per entry
        totals = {mode: [0.0, 0.0] for mode in modes}  # entries, seconds
        for round_number in range(ROUNDS):
            for mode in modes:
                path = f"{base}/{mode}-{round_number}"
                start = time.perf_counter()
                if mode == 0:
                    rate = one_fsync_per_entry(path, seconds / ROUNDS)
                else:
                    rate = await group_commit(reactor, path, mode, seconds / ROUNDS)
                elapsed = time.perf_counter() - start
                totals[mode][0] += rate * elapsed
                totals[mode][1] += elapsed
        rates = {mode: entries / elapsed for mode, (entries, elapsed) in totals.items()}
        baseline = rates[0]
        rows = [("one fsync per entry", baseline)] + [
            (f"group commit, {mode} appenders", rates[mode]) for mode in modes[1:]
        ]
        written, opened = open_time(f"{base}/open", open_entries)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"\nstorage append, 100-byte entries, {seconds:.0f} s per row in {ROUNDS} slices")
    print(f"{'mode':<34} {'appends/s':>12} {'x fsync-each':>13}")
    for name, rate in rows:
        print(f"{name:<34} {rate:>12,.0f} {rate / baseline:>12.1f}x")
    ratio = rates[256] / baseline
    print(f"\ngoal: 256 appenders >= 20x one fsync per entry: {ratio:.1f}x", end=" ")
    print("(met)" if ratio >= 20 else "(NOT met)")
    print(f"\nopen a log of {open_entries:,} entries: {opened:.2f} s", end=" ")
    print(f"(goal < 3 s: {'met' if opened < 3 else 'NOT met'}; writing it took {written:.1f} s)")


def main(reactor: Any, *argv: str) -> defer.Deferred[None]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each phase")
    parser.add_argument("--open-entries", type=int, default=OPEN_ENTRIES)
    args = parser.parse_args(argv)
    return defer.Deferred.fromCoroutine(run(reactor, args.seconds, args.open_entries))


if __name__ == "__main__":
    import sys

    task.react(main, sys.argv[1:])
