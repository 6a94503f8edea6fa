"""Snapshots of a single node at a million keys, on the real reactor.

How the state gets there: the key/value store is built directly (N puts
of ~100-byte JSON values applied in scrambled key order, as in
bench/kv_snapshot.py) and written as the node's snapshot, exactly as
`graft node run --restore` seeds a data directory; pushing a million
writes through HTTP would take minutes and measure the client API, not
snapshots. Then, in order:

1. restart-to-ready: a RaftDriver over that data directory (file log with
   group commit, file snapshot store, the reactor's thread pool) is built
   and started; the time until it is leader and has applied its commit;
2. a tail of writes proposed through the driver (so the log is not empty);
3. a snapshot through the driver (``take_snapshot``, as POST /v1/snapshot
   does): its time, file size, and the longest reactor stall meanwhile,
   measured as the largest gap between ticks of a 10 ms LoopingCall, while
   proposals keep arriving; then the log's length after compaction;
4. restart-to-ready again, in a fresh process (``--phase restart``), from
   the snapshot just taken plus the log tail, with that process's peak RSS
   against the raw key+value bytes.

Goals: no stall over 100 ms, restart-to-ready under 10 s, memory under 3x
raw. Run: python -m bench.snapshot_node [--keys N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from typing import Any

from twisted.internet import reactor as global_reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import LoopingCall, deferLater

from graft.kv import KVStore, Put, encode_command
from graft.raft import Configuration, HardState, Member, RaftConfig, Role, SnapshotMeta
from graft.server import RaftDriver
from graft.server.snapshots import write_snapshot
from graft.storage import GroupCommitLog, open_data_dir
from graft.transport import MemoryNetwork, MemoryTransport

reactor: Any = global_reactor
MEMBERS = Configuration(members=(Member(id=1, address="http://bench1"),))
CLUSTER_ID = "bench"


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_store(count: int) -> tuple[KVStore, int]:
    store = KVStore()
    raw = 0
    for i in range(count):
        key = f"user/{(i * 2654435761) % 2**32:010d}"
        value = b'"' + (b"%08d" % i) * 12 + b'xx"'
        raw += len(key) + len(value)
        store.apply(i + 1, encode_command(Put(key=key, value_json=value)))
    return store, raw


def open_dir(path: str) -> Any:
    return open_data_dir(path, CLUSTER_ID, 1)


def seed(store: KVStore, path: str) -> None:
    """The store as the node's snapshot, as `--restore` would leave it."""
    index = store.applied_index
    data_dir = open_dir(path)
    meta = SnapshotMeta(index=index, term=1, configuration=MEMBERS)
    write_snapshot(data_dir.snapshots, meta, store.snapshot().chunks())
    data_dir.log.reset(index)
    data_dir.log.sync()
    data_dir.log.save_hard_state(HardState(term=1, commit=index))
    data_dir.close()


def make_driver(path: str) -> RaftDriver:
    data_dir = open_dir(path)
    network = MemoryNetwork(clock=reactor)
    return RaftDriver(
        config=RaftConfig(node_id=1),
        clock=reactor,
        log_storage=GroupCommitLog(reactor, data_dir.log),
        snapshots=data_dir.snapshots,
        transport=lambda receive: MemoryTransport(
            network=network, node_id=1, cluster_id=CLUSTER_ID, receive=receive, address="http://b1"
        ),
        state_machine=KVStore(),
        rng=random.Random(1),
        initial_configuration=MEMBERS,
        snapshot_threshold=10**9,  # only the snapshot we ask for
    )


async def until_ready(driver: RaftDriver) -> None:
    while not (
        driver.node.role is Role.LEADER and driver.kv.applied_index >= driver.node.commit_index
    ):
        await deferLater(reactor, 0.005, lambda: None)


async def restart_phase(path: str) -> dict[str, Any]:
    started = time.perf_counter()
    driver = make_driver(path)
    loaded = time.perf_counter() - started
    driver.start()
    await until_ready(driver)
    ready = time.perf_counter() - started
    keys = len(driver.kv)
    await driver.stop()
    return {
        "load_s": loaded,
        "ready_s": ready,
        "keys": keys,
        "replayed": driver.replayed_entries,
        "rss_mib": rss_mib(),
    }


async def main_phase(count: int, tail: int) -> None:
    path = tempfile.mkdtemp(prefix="graft-bench-snapshot-")
    data_dir_path = os.path.join(path, "1")
    baseline = rss_mib()
    started = time.perf_counter()
    store, raw = build_store(count)
    print(f"keys                  {count:,}  ({raw / 2**20:.1f} MiB raw key+value)")
    print(f"build store           {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    seed(store, data_dir_path)
    print(f"seed data dir         {time.perf_counter() - started:.1f} s")
    del store

    started = time.perf_counter()
    driver = make_driver(data_dir_path)
    driver.start()
    await until_ready(driver)
    print(f"restart-to-ready      {time.perf_counter() - started:.2f} s  (snapshot only)")

    # A tail of writes through the driver, 500 per reactor turn.
    started = time.perf_counter()
    for base in range(0, tail, 500):
        pending = [
            driver.propose(encode_command(Put(key=f"tail/{i:08d}", value_json=b"1")))
            for i in range(base, min(base + 500, tail))
        ]
        for d in pending:
            await d
    print(f"tail writes           {tail:,} in {time.perf_counter() - started:.1f} s")

    gaps: list[float] = []
    last = [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    ticker = LoopingCall(tick)
    ticker.clock = reactor
    ticker.start(0.010)
    writes_during: list[Deferred[Any]] = []

    def write_more() -> None:
        n = len(writes_during)
        writes_during.append(
            driver.propose(encode_command(Put(key=f"during/{n:08d}", value_json=b"2")))
        )

    writer = LoopingCall(write_more)
    writer.clock = reactor
    writer.start(0.002)
    await deferLater(reactor, 0.2, lambda: None)
    gaps.clear()
    started = time.perf_counter()
    stored = await driver.take_snapshot()
    snapshot_s = time.perf_counter() - started
    await deferLater(reactor, 0.1, lambda: None)
    ticker.stop()
    writer.stop()
    for d in writes_during:
        await d
    print(f"snapshot (driver)     {snapshot_s:.2f} s, {stored.file_size / 2**20:.1f} MiB file")
    print(
        f"reactor stall         max gap {max(gaps) * 1000:.1f} ms between 10 ms ticks "
        f"({len(gaps)} ticks, {len(writes_during)} writes applied meanwhile)"
    )
    print(f"log after compaction  {driver.log_length} entries, snapshot at {driver.snapshot_index}")
    over = (rss_mib() - baseline) * 2**20 / raw
    print(f"peak RSS (this proc)  {rss_mib():.0f} MiB ({over:.2f}x raw over start)")
    await driver.stop()
    await driver.log_storage.close()

    result = subprocess.run(
        [sys.executable, "-m", "bench.snapshot_node", "--phase", "restart", "--dir", data_dir_path],
        capture_output=True,
        text=True,
        check=True,
    )
    restart = json.loads(result.stdout.strip().splitlines()[-1])
    print(
        f"restart-to-ready      {restart['ready_s']:.2f} s in a fresh process "
        f"(load {restart['load_s']:.2f} s, {restart['keys']:,} keys, "
        f"{restart['replayed']} log entries replayed)"
    )
    print(
        f"peak RSS (restarted)  {restart['rss_mib']:.0f} MiB "
        f"({restart['rss_mib'] * 2**20 / raw:.2f}x raw, interpreter included)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--tail", type=int, default=5000)
    parser.add_argument("--phase", choices=["main", "restart"], default="main")
    parser.add_argument("--dir")
    arguments = parser.parse_args()
    outcome: list[Any] = []

    async def run() -> None:
        try:
            if arguments.phase == "restart":
                outcome.append(await restart_phase(arguments.dir))
            else:
                await main_phase(arguments.keys, arguments.tail)
        finally:
            reactor.stop()

    reactor.callWhenRunning(lambda: ensureDeferred(run()).addErrback(outcome.append))
    reactor.run()
    if outcome and not isinstance(outcome[0], dict):
        outcome[0].raiseException()
    if arguments.phase == "restart":
        print(json.dumps(outcome[0]))


if __name__ == "__main__":
    main()
