"""Entries committed per second through a 3-node in-memory cluster.

No I/O: each node's Ready is "persisted" into a list and its messages are
handed straight to their targets, so the figure is the consensus core's own
cost. Clients propose in batches (as the node's group commit delivers them);
an entry counts once the leader has committed it and every node applied it.

Run: python -m bench.core_throughput [--entries N] [--batch B]
"""

from __future__ import annotations

import argparse
import random
import time

from graft.raft import (
    Configuration,
    Member,
    PersistentState,
    RaftConfig,
    RaftNode,
    Role,
    SnapshotMeta,
)


def run(entries: int, batch: int, payload: int) -> tuple[float, int]:
    config = Configuration(members=tuple(Member(id=i, address="") for i in (1, 2, 3)))
    nodes = {
        i: RaftNode(
            RaftConfig(node_id=i),
            PersistentState(snapshot=SnapshotMeta(configuration=config)),
            random.Random(i),
        )
        for i in (1, 2, 3)
    }
    applied = dict.fromkeys(nodes, 0)
    inbox: list = []

    def pump() -> None:
        while True:
            busy = False
            for node_id, node in nodes.items():
                if node.has_ready():
                    busy = True
                    ready = node.ready()
                    inbox.extend(ready.messages)
                    inbox.extend(ready.messages_after_persist)
                    applied[node_id] += len(ready.committed_entries)
                    node.advance(ready)
            if inbox:
                busy = True
                batch_ = inbox[:]
                inbox.clear()
                for m in batch_:
                    nodes[m.target].step(m)
            if not busy:
                return

    leader = nodes[1]
    while leader.role is not Role.LEADER:
        leader.tick()
        pump()
    start_applied = min(applied.values())
    data = b"x" * payload
    started = time.perf_counter()
    proposed = 0
    ticks = 0
    while proposed < entries:
        for _ in range(min(batch, entries - proposed)):
            leader.propose(data)
            proposed += 1
        pump()
        ticks += 1
        if ticks % 8 == 0:
            for node in nodes.values():
                node.tick()
    for node in nodes.values():
        node.tick()
    pump()
    for _ in range(5):  # let heartbeats carry the final commit to followers
        for node in nodes.values():
            node.tick()
        pump()
    elapsed = time.perf_counter() - started
    done = min(applied.values()) - start_applied
    assert done >= entries, (done, entries)
    return elapsed, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=200_000)
    parser.add_argument("--payload", type=int, default=100)
    parser.add_argument("--batch", type=int, action="append")
    args = parser.parse_args()
    print("core throughput: 3 voters in memory, one process, one core")
    print(f"{'batch':>6} {'entries':>9} {'seconds':>8} {'entries/s':>11}")
    for batch in args.batch or [1, 16, 256]:
        count = args.entries if batch > 1 else args.entries // 10
        elapsed, done = run(count, batch, args.payload)
        print(f"{batch:>6} {done:>9} {elapsed:>8.2f} {done / elapsed:>11,.0f}")


if __name__ == "__main__":
    main()
