"""Snapshots with real processes: the log stays bounded under a write load,
a restart replays only a short tail, and a backup taken during writes
restores into a new cluster with exactly the state at its index."""

from __future__ import annotations

import http.client
import json
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.integration.harness import (
    HOST,
    Node,
    free_port,
    graft,
    run_threads,
    wait_until,
)

#: Entries between snapshots, and entries kept behind each one.
THRESHOLD = 500
RETAIN = 100
#: Small segments, so that compaction can delete whole files often.
SEGMENT_BYTES = 64 * 1024
SNAPSHOT_ARGS = (
    "--snapshot-threshold",
    str(THRESHOLD),
    "--snapshot-retain-entries",
    str(RETAIN),
    "--log-segment-bytes",
    str(SEGMENT_BYTES),
)


def put_many(
    url: str, count: int, key: Callable[[int], str], threads: int = 16
) -> list[tuple[str, Any, int]]:
    """PUT ``count`` writes over ``threads`` keep-alive connections; return
    (key, value, revision) of each acknowledged write."""
    port = int(url.rsplit(":", 1)[1])
    acked: list[tuple[str, Any, int]] = []
    lock = threading.Lock()

    def worker(w: int) -> None:
        connection = http.client.HTTPConnection(HOST, port, timeout=15)
        try:
            for n in range(w, count, threads):
                k = key(n)
                value = {"n": n, "pad": "x" * 40}
                connection.request("PUT", f"/v1/kv/{k}", body=json.dumps(value))
                answer = connection.getresponse()
                body = answer.read()
                assert answer.status == 200, (answer.status, body)
                with lock:
                    acked.append((k, value, json.loads(body)["revision"]))
        finally:
            connection.close()

    run_threads(threads, worker, timeout=120)
    return acked


def log_bytes(data_dir: Path) -> int:
    return sum(p.stat().st_size for p in (data_dir / "log").iterdir() if p.is_file())


def test_log_stays_bounded_and_restart_replays_a_short_tail(make_cluster):
    cluster = make_cluster(1, extra_args=SNAPSHOT_ARGS)
    (node,) = cluster.nodes.values()
    cluster.leader()
    sizes: list[int] = []
    for round_ in range(4):
        put_many(node.url, 5000, lambda n, r=round_: f"r{r}/{n}")
        sizes.append(log_bytes(node.data_dir))
    status = node.status()
    assert status["applied_index"] > 20_000
    assert status["snapshot_index"] > 20_000 - THRESHOLD - 50
    assert status["log_length"] <= THRESHOLD + RETAIN + 50
    # Each entry takes ~100 bytes: uncompacted the log would be ~2 MB. It
    # keeps at most threshold + retain entries plus the segments they
    # straddle.
    assert max(sizes) <= (THRESHOLD + RETAIN) * 150 + 3 * SEGMENT_BYTES, sizes
    snapshots = list((node.data_dir / "snapshots").iterdir())
    assert 1 <= len(snapshots) <= 2
    applied = status["applied_index"]
    assert node.terminate() == 0
    node.start()
    cluster.leader()
    match = wait_until(
        lambda: re.search(r"snapshot at (\d+), (\d+) entries after it", node.stderr()),
        timeout=10,
        what="the start-up log line",
    )
    snapshot_index, replayed = int(match.group(1)), int(match.group(2))
    assert replayed <= THRESHOLD + 5
    assert snapshot_index + replayed >= applied
    wait_until(lambda: node.status()["applied_index"] >= applied, timeout=10, what="replay")
    assert len(node.listing()) == 20_000


def test_backup_during_writes_restores_the_state_at_its_index_exactly(make_cluster, tmp_path):
    cluster = make_cluster(3, extra_args=SNAPSHOT_ARGS)
    leader = cluster.leader()
    put_many(leader.url, 1000, lambda n: f"before/{n % 300}")
    acked: list[tuple[str, Any, int]] = []
    writing = threading.Thread(
        target=lambda: acked.extend(put_many(leader.url, 3000, lambda n: f"during/{n % 700}")),
        daemon=True,
    )
    writing.start()
    wait_until(lambda: leader.status()["applied_index"] > 1500, timeout=30, what="writes")
    backup = tmp_path / "backup.snap"
    saved = graft("snapshot", "save", leader.url, str(backup))
    assert saved.returncode == 0, saved.stderr
    assert f"saved {backup.stat().st_size} bytes" in saved.stdout
    writing.join(120)
    assert not writing.is_alive()
    history = [*acked]

    restored = Node(
        id=1,
        port=free_port(),
        data_dir=tmp_path / "restored",
        log_dir=tmp_path / "restored-logs",
        extra_args=("--restore", str(backup)),
    )
    try:
        restored.start()
        wait_until(lambda: restored.status()["role"] == "leader", timeout=20, what="leader")
        listing = restored.get("/v1/kv?consistency=stale").json()
        revision = listing["revision"]
        got = {i["key"]: (i["value"], i["revision"]) for i in listing["items"]}
        # The state at the backup: every write up to its revision, the last
        # one per key winning. (The "before" writes are all below it.)
        before = {k: v for k, v in got.items() if k.startswith("before/")}
        assert len(before) == 300
        expected: dict[str, tuple[Any, int]] = {}
        for key, value, rev in sorted(history, key=lambda a: a[2]):
            if rev <= revision:
                expected[key] = (value, rev)
        during = {k: v for k, v in got.items() if k.startswith("during/")}
        assert during == expected
        assert len(during) > 0 and revision < max(a[2] for a in history)  # taken mid-load
        # The new cluster takes writes after the backup's history.
        answer = restored.put("after", 1)
        assert answer.status == 200 and answer.json()["revision"] == revision + 1
    finally:
        restored.kill()
