"""HTTP load on a real 3-node cluster: acknowledged writes and linearizable
reads per second, and their latency, measured with wrk against the leader.

Starts three `graft node run` processes on loopback (free ports, a temporary
data directory each; the node always fsyncs, as in production), waits for a
leader, writes the keys the read runs will read, then drives the LEADER with
wrk (bench/wrk/*.lua) at each connection count:

- writes: PUT /v1/kv/<prefix>/<thread>/<n>, a distinct key per request and a
  ~100-byte JSON value; a 200 means committed on a majority and fsynced;
- reads: GET /v1/kv/<key> of the pre-written keys at the default
  (linearizable) consistency; sent to the leader, so never redirected.

Every answer must be a 2xx: the Lua scripts count the others, wrk counts
socket errors and timeouts, and any of them fails the run loudly (exit 1).
The goals are printed beside the figures; missing them is reported, not an
error. The nodes are stopped by pid (SIGTERM, then SIGKILL) and the
temporary directories deleted, whatever happens.

wrk comes from the Debian package `wrk`; when it is missing this installs
it with apt-get (as root, or through `sudo -n`), and exits 2 with a clear
message when it cannot.

Run: python -m bench.http_load [--duration S] [--connections 1,16,64]
     (GRAFT_BENCH_DURATION also sets the duration; --py-spy DIR records a
     py-spy profile of the leader during each run, if py-spy is installed)
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WRK_DIR = Path(__file__).resolve().parent / "wrk"
HOST = "127.0.0.1"
NODE_IDS = (1, 2, 3)
READ_PREFIX = "bench-read"
LEADER_WAIT_SECONDS = 30.0
STOP_WAIT_SECONDS = 10.0
WRK_TIMEOUT = "5s"
#: Attempts at starting the cluster (each on newly chosen free ports).
STARTS = 3

#: At 64 connections (mode -> minimum requests/s, maximum p99 in ms or None).
GOAL_CONNECTIONS = 64
GOALS: dict[str, tuple[float, float | None]] = {
    "write": (3000.0, 50.0),
    "read": (6000.0, None),
}


class BenchError(Exception):
    """The benchmark could not run; str() says why."""


class NodeExited(BenchError):
    """A node process ended on its own (e.g. its port was taken meanwhile)."""


# -- wrk ---------------------------------------------------------------------------


def ensure_wrk() -> str:
    """The path of wrk, installing the Debian package if it is missing."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0:
        prefix: list[str] = []
    elif shutil.which("sudo"):
        prefix = ["sudo", "-n"]
    else:
        raise BenchError("wrk is not installed and this is not root: run `apt-get install wrk`")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = [*prefix, "apt-get", "install", "-y", "-q", "wrk"]
    print("wrk not found; installing it:", " ".join(install), flush=True)
    try:
        if subprocess.run(install, env=env, check=False).returncode != 0:
            print("install failed; running apt-get update first", flush=True)
            subprocess.run([*prefix, "apt-get", "update", "-q"], env=env, check=False)
            subprocess.run(install, env=env, check=False)
    except OSError as e:  # no apt-get (not Debian), no sudo
        print(f"cannot run apt-get: {e}", flush=True)
    found = shutil.which("wrk")
    if not found:
        raise BenchError(
            "wrk is not installed and could not be installed with apt-get"
            " (install the Debian package `wrk` by hand)"
        )
    return found


@dataclass
class Result:
    mode: str
    connections: int
    threads: int
    requests: int = 0
    seconds: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    non2xx: int = 0
    socket_errors: int = 0
    timeouts: int = 0
    first_bad: str = ""
    #: CPU seconds the leader, and all three nodes, used during the run.
    leader_cpu: float | None = None
    nodes_cpu: float | None = None
    load_average: float | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


_RESULT_LINE = re.compile(r"^GRAFT_WRK_RESULT (\{.*\})$", re.MULTILINE)
_NON2XX_LINE = re.compile(r"Non-2xx or 3xx responses:\s*(\d+)")


def run_wrk(
    wrk: str,
    mode: str,
    url: str,
    connections: int,
    duration: float,
    script_args: Sequence[str],
) -> Result:
    threads = min(connections, 2)
    script = WRK_DIR / f"{mode}.lua"
    command = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration:g}s",
        f"--timeout={WRK_TIMEOUT}",
        "--latency",
        "-s",
        str(script),
        url,
        "--",
        *script_args,
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    output = done.stdout + done.stderr
    result = Result(mode=mode, connections=connections, threads=threads)
    match = _RESULT_LINE.search(done.stdout)
    if done.returncode != 0 or match is None:
        raise BenchError(
            f"wrk failed (exit {done.returncode}): {' '.join(command)}\n{output.strip()}"
        )
    figures: dict[str, Any] = json.loads(match.group(1))
    result.requests = figures["requests"]
    result.seconds = figures["duration_us"] / 1e6
    result.p50_ms = figures["p50_us"] / 1000
    result.p99_ms = figures["p99_us"] / 1000
    result.max_ms = figures["max_us"] / 1000
    result.non2xx = figures["non2xx"]
    result.timeouts = figures["timeouts"]
    result.socket_errors = (
        figures["connect_errors"] + figures["read_errors"] + figures["write_errors"]
    ) + figures["timeouts"]
    result.first_bad = figures["first_bad"]
    # wrk's own count of non-2xx/3xx answers, as a cross-check of the script's.
    wrk_non2xx = _NON2XX_LINE.search(done.stdout)
    if wrk_non2xx and int(wrk_non2xx.group(1)) > result.non2xx:
        result.non2xx = int(wrk_non2xx.group(1))
    if result.requests == 0:
        result.problems.append("no request completed")
    if result.non2xx:
        result.problems.append(
            f"{result.non2xx} non-2xx answers (first: {result.first_bad or '?'})"
        )
    if result.socket_errors:
        result.problems.append(
            f"{result.socket_errors} socket errors (connect {figures['connect_errors']},"
            f" read {figures['read_errors']}, write {figures['write_errors']},"
            f" timeout {figures['timeouts']})"
        )
    return result


# -- the cluster -------------------------------------------------------------------


def free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def http_json(
    port: int, method: str, path: str, body: bytes | None = None, timeout: float = 5.0
) -> tuple[int, Any]:
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        data = response.read()
        try:
            return response.status, json.loads(data) if data else None
        except ValueError:
            return response.status, data
    finally:
        connection.close()


class Cluster:
    """Three `graft node run` processes on loopback, each with its own data dir."""

    def __init__(self, root: Path, log_level: str, transport: str = "http") -> None:
        self.root = root
        self.log_level = log_level
        self.transport = transport
        self.ports = dict(zip(NODE_IDS, free_ports(len(NODE_IDS)), strict=True))
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        self.logs: dict[int, Path] = {}

    def url(self, node_id: int) -> str:
        return f"http://{HOST}:{self.ports[node_id]}"

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        for node_id in NODE_IDS:
            peers = [
                {"id": other, "address": self.url(other)} for other in NODE_IDS if other != node_id
            ]
            log_path = self.root / f"node-{node_id}.log"
            self.logs[node_id] = log_path
            command = [
                sys.executable,
                "-m",
                "graft.cli",
                "node",
                "run",
                "--id",
                str(node_id),
                "--port",
                str(self.ports[node_id]),
                "--data-dir",
                str(self.root / f"data-{node_id}"),
                "--peers",
                json.dumps(peers),
                "--log-level",
                self.log_level,
                "--transport",
                self.transport,
            ]
            with open(log_path, "wb") as log:
                self.processes[node_id] = subprocess.Popen(
                    command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
                )

    def check_alive(self) -> None:
        for node_id, process in self.processes.items():
            code = process.poll()
            if code is not None:
                raise NodeExited(
                    f"node {node_id} exited with status {code}; its log:\n{self.log_tail(node_id)}"
                )

    def log_tail(self, node_id: int, lines: int = 20) -> str:
        try:
            text = self.logs[node_id].read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def status(self, node_id: int) -> dict[str, Any] | None:
        try:
            code, body = http_json(self.ports[node_id], "GET", "/v1/status", timeout=2.0)
        except OSError:
            return None
        return body if code == 200 and isinstance(body, dict) else None

    def wait_for_leader(self, timeout: float = LEADER_WAIT_SECONDS) -> int:
        """The id of the leader, once one node says it leads and all agree."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            statuses = {i: self.status(i) for i in NODE_IDS}
            leaders = [i for i, s in statuses.items() if s is not None and s["role"] == "leader"]
            if len(leaders) == 1:
                leader = leaders[0]
                agreed = all(
                    s is not None and s.get("leader") and s["leader"]["id"] == leader
                    for s in statuses.values()
                )
                if agreed:
                    return leader
            time.sleep(0.1)
        tails = "\n".join(f"-- node {i}:\n{self.log_tail(i)}" for i in NODE_IDS)
        raise BenchError(f"no leader elected within {timeout:g}s\n{tails}")

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_WAIT_SECONDS
        for node_id, process in self.processes.items():
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"node {node_id} (pid {process.pid}) ignored SIGTERM; killing it")
                process.kill()
                process.wait()


def populate(port: int, prefix: str, count: int, concurrency: int = 16) -> None:
    """PUT keys <prefix>/0 .. <prefix>/<count-1> on the leader, checking each 200."""
    value = json.dumps({"pad": "x" * 64, "ok": True, "n": 0}).encode()

    def write_range(start: int) -> None:
        connection = http.client.HTTPConnection(HOST, port, timeout=15)
        try:
            for i in range(start, count, concurrency):
                connection.request(
                    "PUT",
                    f"/v1/kv/{prefix}/{i}",
                    body=value,
                    headers={"Content-Type": "application/json"},
                )
                response = connection.getresponse()
                data = response.read()
                if response.status != 200:
                    raise BenchError(
                        f"writing the read keys: PUT {prefix}/{i} answered"
                        f" {response.status} {data[:200]!r}"
                    )
        finally:
            connection.close()

    with ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(write_range, s) for s in range(concurrency)]:
            future.result()


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process, all threads (Linux /proc), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return None
    # After "pid (comm)": state is fields[0], so utime and stime (fields 14
    # and 15 of proc(5)) are fields[11] and fields[12].
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


# -- profiling (optional) ----------------------------------------------------------


def start_py_spy(out_dir: Path | None, pid: int, label: str, duration: float) -> Any:
    if out_dir is None:
        return None
    py_spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if py_spy is None:
        print("--py-spy: py-spy is not installed; not profiling", flush=True)
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [
            py_spy,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(duration)),
            "--rate",
            "200",
            "--format",
            "raw",
            "--output",
            str(out_dir / f"{label}.txt"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


# -- the report --------------------------------------------------------------------


def goal_text(result: Result) -> tuple[str, bool | None]:
    if result.connections != GOAL_CONNECTIONS or result.mode not in GOALS:
        return "", None
    minimum_rate, maximum_p99 = GOALS[result.mode]
    met = result.rate >= minimum_rate
    text = f">= {minimum_rate:,.0f}/s"
    if maximum_p99 is not None:
        met = met and result.p99_ms < maximum_p99
        text += f", p99 < {maximum_p99:g} ms"
    return f"{text}: {'met' if met else 'MISSED'}", met


def print_table(results: Sequence[Result]) -> None:
    header = (
        f"{'mode':<6} {'conns':>5} {'thr':>3} {'requests/s':>11} {'p50 ms':>8} "
        f"{'p99 ms':>8} {'max ms':>8} {'non-2xx':>8} {'sock err':>8} {'leader CPU':>10} "
        f"{'CPU us/req':>10} {'load':>5}  goal (at {GOAL_CONNECTIONS})"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        goal, _ = goal_text(r)
        flag = "  <-- FAILED ANSWERS" if r.problems else ""
        leader_cpu = (
            f"{100 * r.leader_cpu / r.seconds:.0f}%"
            if r.leader_cpu is not None and r.seconds
            else "?"
        )
        per_request = (
            f"{1e6 * r.nodes_cpu / r.requests:,.0f}"
            if r.nodes_cpu is not None and r.requests
            else "?"
        )
        load = f"{r.load_average:.1f}" if r.load_average is not None else "?"
        print(
            f"{r.mode:<6} {r.connections:>5} {r.threads:>3} {r.rate:>11,.0f} {r.p50_ms:>8.2f} "
            f"{r.p99_ms:>8.2f} {r.max_ms:>8.1f} {r.non2xx:>8} {r.socket_errors:>8} "
            f"{leader_cpu:>10} {per_request:>10} {load:>5}  {goal}{flag}"
        )
    print(
        "leader CPU: the leader's CPU time over the run (100% = one core, its reactor thread"
        " is the limit); CPU us/req: all three nodes' CPU time per request; load: the"
        " 1-minute load average at the end of the run (others' work included)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.http_load", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=float(os.environ.get("GRAFT_BENCH_DURATION", "10")),
        help="seconds per run (default 10, or GRAFT_BENCH_DURATION)",
    )
    parser.add_argument(
        "--connections",
        default=os.environ.get("GRAFT_BENCH_CONNECTIONS", "1,16,64"),
        help="comma-separated connection counts (default 1,16,64)",
    )
    parser.add_argument(
        "--modes", default="write,read", help="which runs, in order (default write,read)"
    )
    parser.add_argument("--read-keys", type=int, default=1000, help="keys the reads cycle over")
    parser.add_argument("--log-level", default="info", help="the nodes' log level (default info)")
    parser.add_argument(
        "--transport",
        default="http",
        choices=("http", "amp"),
        help="the peer transport the nodes use (default http)",
    )
    parser.add_argument(
        "--py-spy", type=Path, metavar="DIR", help="record the leader with py-spy into DIR"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    connections = [int(c) for c in args.connections.split(",") if c.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if any(m not in ("write", "read") for m in modes) or not connections or args.duration <= 0:
        parser.error("bad --modes, --connections or --duration")

    try:
        wrk = ensure_wrk()
    except BenchError as e:
        print(f"http_load: {e}", file=sys.stderr)
        return 2

    root = Path(tempfile.mkdtemp(prefix="graft-http-load-"))
    results: list[Result] = []
    cluster = Cluster(root / "attempt-1", args.log_level, args.transport)
    try:
        started = time.monotonic()
        for attempt in range(1, STARTS + 1):
            # A port found free may be taken before the node binds it: then
            # that node exits, and the cluster starts again on other ports.
            try:
                cluster.start()
                leader = cluster.wait_for_leader()
                break
            except NodeExited as e:
                cluster.stop()
                if attempt == STARTS:
                    raise
                lines = str(e).splitlines()
                print(
                    f"{lines[0]} ({lines[-1].strip()}); starting again on other ports", flush=True
                )
                cluster = Cluster(root / f"attempt-{attempt + 1}", args.log_level, args.transport)
        print(
            f"3-node cluster on {HOST} ports {sorted(cluster.ports.values())}, data in {root}; "
            f"leader: node {leader} ({cluster.url(leader)}) after "
            f"{time.monotonic() - started:.1f}s",
            flush=True,
        )
        if "read" in modes:
            populate(cluster.ports[leader], READ_PREFIX, args.read_keys)
            print(f"wrote {args.read_keys} keys for the read runs", flush=True)
        print(
            f"wrk {args.duration:g}s per run, threads = min(connections, 2), "
            f"{os.cpu_count()} CPUs shared by 3 nodes and wrk; each run once, as measured",
            flush=True,
        )
        for mode in modes:
            for count in connections:
                cluster.check_alive()
                if mode == "write":
                    script_args = [f"bench-write-c{count}"]
                else:
                    script_args = [READ_PREFIX, str(args.read_keys)]
                before = cluster.status(leader)
                cpu_before = {i: cpu_seconds(p.pid) for i, p in cluster.processes.items()}
                profiler = start_py_spy(
                    args.py_spy,
                    cluster.processes[leader].pid,
                    f"{mode}-c{count}",
                    args.duration,
                )
                result = run_wrk(wrk, mode, cluster.url(leader), count, args.duration, script_args)
                cpu_after = {i: cpu_seconds(p.pid) for i, p in cluster.processes.items()}
                result.load_average = load_average()
                used = {
                    i: (cpu_after[i] or 0.0) - (cpu_before[i] or 0.0)
                    for i in NODE_IDS
                    if cpu_before[i] is not None and cpu_after[i] is not None
                }
                if len(used) == len(NODE_IDS):
                    result.leader_cpu = used[leader]
                    result.nodes_cpu = sum(used.values())
                if profiler is not None:
                    profiler.wait()
                after = cluster.status(leader)
                if after is None or after["role"] != "leader":
                    result.problems.append(f"node {leader} is no longer the leader")
                    leader = cluster.wait_for_leader()
                elif mode == "write" and before is not None:
                    committed = after["commit_index"] - before["commit_index"]
                    acknowledged = result.requests - result.non2xx
                    if acknowledged > committed:
                        result.problems.append(
                            f"{acknowledged} writes acknowledged but the commit index"
                            f" moved by only {committed}"
                        )
                results.append(result)
                print(
                    f"  {mode:<5} c={count:<3} {result.rate:>9,.0f} req/s  "
                    f"p50 {result.p50_ms:.2f} ms  p99 {result.p99_ms:.2f} ms"
                    + (f"  PROBLEMS: {'; '.join(result.problems)}" if result.problems else ""),
                    flush=True,
                )
        cluster.check_alive()
    except (BenchError, OSError, http.client.HTTPException) as e:
        print(f"http_load: {e}", file=sys.stderr)
        return 1
    finally:
        cluster.stop()
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)

    print()
    print_table(results)
    print()
    failed = [r for r in results if r.problems]
    goals = [goal_text(r) for r in results]
    missed = [text for text, met in goals if met is False]
    if any(met is not None for _, met in goals):
        print("goals:", "all met" if not missed else f"{len(missed)} MISSED (see table)")
    if failed:
        print("!" * 72)
        print("!! BENCHMARK INVALID: some answers were not successes:")
        for r in failed:
            print(f"!!   {r.mode} c={r.connections}: {'; '.join(r.problems)}")
        print("!" * 72)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
