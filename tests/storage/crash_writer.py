"""A writer process for the crash tests: ``python -m tests.storage.crash_writer
DIR SEED``. It reopens the log in DIR (recovering from the last kill),
appends through GroupCommitLog on the real reactor with several concurrent
appenders, now and then drops a prefix, and prints ``acked <index>`` on
stdout each time an append's Deferred fired. It runs until killed."""

from __future__ import annotations

import hashlib
import random
import sys

from twisted.internet import defer, task

from graft.raft.messages import Entry, EntryKind
from graft.storage import FileLogStorage, GroupCommitLog

SEGMENT_BYTES_MAX = 32 * 1024
APPENDERS = 4
KEEP_ENTRIES = 400


def expected_entry(index: int) -> Entry:
    """The entry the writer stores at ``index``: its content is a function
    of the index, so a reader can check every byte."""
    digest = hashlib.blake2b(index.to_bytes(8, "little"), digest_size=16).digest()
    size = (index * 7919) % 300
    return Entry(
        index=index, term=1 + index // 1000, kind=EntryKind.COMMAND, data=(digest * 19)[:size]
    )


async def run(reactor: object, path: str, seed: int) -> None:
    rng = random.Random(seed)
    storage = FileLogStorage(path, segment_bytes_max=SEGMENT_BYTES_MAX)
    log = GroupCommitLog(reactor, storage)
    print(f"opened {storage.first_index} {storage.last_index}", flush=True)
    next_index = storage.last_index + 1

    async def appender() -> None:
        nonlocal next_index
        while True:
            count = rng.randint(1, 20)
            batch = [expected_entry(i) for i in range(next_index, next_index + count)]
            next_index += count
            if rng.random() < 0.02 and storage.last_index > KEEP_ENTRIES:
                log.drop_prefix(storage.last_index - KEEP_ENTRIES)
            await log.append(batch)
            print(f"acked {batch[-1].index}", flush=True)

    await defer.gatherResults([defer.Deferred.fromCoroutine(appender()) for _ in range(APPENDERS)])


def main(reactor: object, path: str, seed: str) -> defer.Deferred[None]:
    return defer.Deferred.fromCoroutine(run(reactor, path, int(seed)))


if __name__ == "__main__":
    task.react(main, sys.argv[1:])
