"""Snapshot costs of graft.kv at a million keys: the frozen view taken on
the reactor thread, serializing it, restoring it, and memory.

Builds N keys (default 1,000,000) of ~100-byte JSON values by applying
encoded put commands in scrambled key order, as a log would. Then prints:
the apply rate; snapshot() time (the only step that must run on the reactor
thread, budget 100 ms); writes while the view is alive (blocks are
immutable: each write builds a new block, the view keeps the old);
serialize time, the longest gap between two chunks, and bytes; restore
time; peak RSS (resource.getrusage) against the raw key+value bytes; and
the time of a full garbage collection.

Run: python -m bench.kv_snapshot [--keys N]
"""

from __future__ import annotations

import argparse
import gc
import resource
import time

from graft.kv import KVStore, Put, encode_command


def rss_mib() -> float:
    # Linux reports ru_maxrss in KiB: the peak so far.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    arguments = parser.parse_args()
    count = arguments.keys

    baseline = rss_mib()
    store = KVStore()
    raw_bytes = 0
    started = time.perf_counter()
    for i in range(count):
        # Multiplying by an odd constant modulo 2**32 is a bijection: unique
        # keys, inserted in scrambled order.
        key = f"user/{(i * 2654435761) % 2**32:010d}"
        value = b'"' + (b"%08d" % i) * 12 + b'xx"'  # 100 bytes of JSON
        raw_bytes += len(key) + len(value)
        store.apply(i + 1, encode_command(Put(key=key, value_json=value)))
    build_s = time.perf_counter() - started
    built_rss = rss_mib()
    print(f"keys                 {count:,}")
    print(f"build (apply)        {build_s:.1f} s  ({count / build_s:,.0f} puts/s)")
    print(f"raw key+value bytes  {raw_bytes / 2**20:.1f} MiB")
    print(
        f"RSS after build      {built_rss:.1f} MiB peak "
        f"({built_rss - baseline:.1f} MiB over start, "
        f"{(built_rss - baseline) * 2**20 / raw_bytes:.2f}x raw)"
    )

    started = time.perf_counter()
    view = store.snapshot_view()
    view_ms = (time.perf_counter() - started) * 1000
    print(f"snapshot_view()      {view_ms:.2f} ms  ({len(view.blocks):,} blocks)")

    # Overwrite keys spread over the whole range, so that nearly every put
    # replaces a block still shared with the view.
    writes = [
        encode_command(Put(key=f"user/{(i * 2654435761) % 2**32:010d}", value_json=b"1"))
        for i in range(0, count, max(count // 1000, 1))
    ]
    blocks_before = len(view.blocks)
    slowest = 0.0
    started = time.perf_counter()
    for j, data in enumerate(writes):
        put_started = time.perf_counter()
        store.apply(count + 1 + j, data)
        slowest = max(slowest, time.perf_counter() - put_started)
    elapsed_ms = (time.perf_counter() - started) * 1000
    print(
        f"{len(writes)} puts after it    {elapsed_ms:.1f} ms, slowest {slowest * 1000:.2f} ms "
        f"(view holds {blocks_before} blocks)"
    )

    chunks: list[bytes] = []
    longest_gap = 0.0
    started = last = time.perf_counter()
    for chunk in view.chunks():
        now = time.perf_counter()
        longest_gap = max(longest_gap, now - last)
        chunks.append(chunk)
        last = now
    serialize_s = time.perf_counter() - started
    size = sum(map(len, chunks))
    print(
        f"serialize            {serialize_s:.2f} s  ({len(chunks):,} chunks, "
        f"longest gap {longest_gap * 1000:.2f} ms)"
    )
    print(f"snapshot bytes       {size / 2**20:.1f} MiB ({size / raw_bytes:.2f}x raw)")

    started = time.perf_counter()
    restored = KVStore.from_snapshot(chunks)
    restore_s = time.perf_counter() - started
    print(f"restore              {restore_s:.2f} s")
    assert (len(restored), restored.applied_index, restored.revision) == (count, count, count)
    print(f"peak RSS             {rss_mib():.1f} MiB (two stores and the snapshot bytes)")

    # A full collection visits every object the collector tracks: the store
    # must not make that O(keys) (see graft/kv/_records.py).
    started = time.perf_counter()
    gc.collect()
    print(
        f"full gc.collect()    {(time.perf_counter() - started) * 1000:.1f} ms (two stores alive)"
    )


if __name__ == "__main__":
    main()
