"""Real graft nodes as child processes on 127.0.0.1, and a small HTTP client.

Every node is ``python -m graft.cli node run ...`` started by
:class:`Node`; its stdout and stderr go to files in the test's tmp_path
(read them after a failure). Only processes started here are ever
signalled, by pid. Every wait is a bounded poll on something observable
(:func:`wait_until`); nothing sleeps to synchronise.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urljoin, urlsplit

import attrs

HOST = "127.0.0.1"
#: The defaults of NodeSettings: one tick is 50 ms, an election timeout 10 ticks.
ELECTION_TIMEOUT_SECONDS = 0.5
#: Upper bound for a node to bind its port, or a cluster to elect a leader.
START_SECONDS = 20.0
#: Upper bound for a stopped node to exit.
STOP_SECONDS = 15.0
HTTP_TIMEOUT_SECONDS = 15.0
#: Pause between two checks of a polled condition.
POLL_SECONDS = 0.05

T = TypeVar("T")


class StartFailed(Exception):
    """A node exited while starting; ``port_in_use`` says whether that was why."""

    def __init__(self, message: str, *, port_in_use: bool) -> None:
        super().__init__(message)
        self.port_in_use = port_in_use


def wait_until(
    condition: Callable[[], T], *, timeout: float, what: str, interval: float = POLL_SECONDS
) -> T:
    """Poll ``condition`` until it returns something truthy, and return that;
    fail naming ``what`` after ``timeout`` seconds. An exception raised by
    the condition counts as "not yet" (the last one is shown on failure)."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = condition()
        except (OSError, http.client.HTTPException, ValueError, KeyError) as e:
            last_error = e
            result = None  # type: ignore[assignment]
        if result:
            return result
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}{detail}")
        time.sleep(interval)


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports on 127.0.0.1 that were free a moment ago
    (the caller retries if another process takes one before the node binds it)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(s)
            s.bind((HOST, 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def free_port() -> int:
    """One port as :func:`free_ports` finds them."""
    return free_ports(1)[0]


# -- HTTP --------------------------------------------------------------------------


@attrs.frozen
class Response:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes
    url: str

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


def request(
    method: str,
    url: str,
    body: bytes | str | None = None,
    headers: dict[str, str] | None = None,
    *,
    timeout: float = HTTP_TIMEOUT_SECONDS,
    raw: bool = False,
) -> Response:
    """One request on a fresh connection; redirects are NOT followed.

    With ``raw``, exactly ``headers`` are sent and ``body`` as given: no
    Content-Length is added (to send none, or chunks of one's own)."""
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if isinstance(body, str):
        body = body.encode("utf-8")
    connection = http.client.HTTPConnection(parts.hostname or HOST, parts.port, timeout=timeout)
    try:
        if raw:
            connection.putrequest(method, target, skip_accept_encoding=True)
            for name, value in (headers or {}).items():
                connection.putheader(name, value)
            connection.endheaders(body)
        else:
            connection.request(method, target, body=body, headers=headers or {})
        answer = connection.getresponse()
        data = answer.read()
        return Response(
            status=answer.status,
            headers={k.lower(): v for k, v in answer.getheaders()},
            body=data,
            url=url,
        )
    finally:
        connection.close()


def request_following(
    method: str,
    url: str,
    body: bytes | str | None = None,
    headers: dict[str, str] | None = None,
    *,
    max_redirects: int = 5,
    timeout: float = HTTP_TIMEOUT_SECONDS,
) -> Response:
    """Like :func:`request`, following 307/308 with the same method and body."""
    for _ in range(max_redirects + 1):
        answer = request(method, url, body, headers, timeout=timeout)
        location = answer.header("Location")
        if answer.status not in (307, 308) or not location:
            return answer
        url = urljoin(url, location)
    raise AssertionError(f"{method} {url}: more than {max_redirects} redirects")


def key_path(key: str) -> str:
    return "/v1/kv/" + quote(key, safe="/")


# -- nodes -------------------------------------------------------------------------


def node_command(*args: str) -> list[str]:
    """The command line of ``graft ARGS...`` run by this interpreter."""
    return [sys.executable, "-m", "graft.cli", *args]


def graft(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run ``graft ARGS...`` to completion and return what it printed."""
    return subprocess.run(
        node_command(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=_child_environment(),
    )


def _child_environment() -> dict[str, str]:
    env = dict(os.environ)
    for name in ("GRAFT_LOG_LEVEL", "GOAMT_LOG_LEVEL", "GRAFT_TIMEOUT"):
        env.pop(name, None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@attrs.define(eq=False)
class Node:
    """One ``graft node run`` process (restartable with the same data dir)."""

    id: int
    port: int
    data_dir: Path
    log_dir: Path
    #: The --peers list, as the JSON text the node is given (None: no flag).
    peers_json: str | None = None
    extra_args: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    _termed: set[int] = attrs.Factory(set)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def stderr_path(self) -> Path:
        return self.log_dir / f"node{self.id}.{self.starts}.stderr"

    def command(self) -> list[str]:
        args = ["node", "run", "--id", str(self.id), "--port", str(self.port)]
        if self.peers_json is not None:
            args += ["--peers", self.peers_json]
        args += ["--data-dir", str(self.data_dir), *self.extra_args]
        return node_command(*args)

    # -- life cycle

    def spawn(self) -> None:
        """Start the process; :meth:`wait_listening` says whether it bound its port."""
        assert not self.alive(), f"node {self.id} is already running"
        self.starts += 1
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with (
            open(self.log_dir / f"node{self.id}.{self.starts}.stdout", "wb") as out,
            open(self.stderr_path, "wb") as err,
        ):
            self.process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=_child_environment(),
                cwd=self.log_dir,
            )

    def wait_listening(self, timeout: float = START_SECONDS) -> None:
        """Wait until this process (not another one on the port) serves HTTP:
        its log says the site started (Twisted's info line; checked only at
        the default log level), and /v1/status answers with its id. Raise
        StartFailed if it exits first."""
        check_log = not {"--log-level", "--config"} & set(self.extra_args)

        def listening() -> bool:
            if self.process is not None and self.process.poll() is not None:
                text = self.stderr()
                raise StartFailed(
                    f"node {self.id} exited with {self.process.returncode} while starting:"
                    f" {text.strip().splitlines()[-1:] or ['(no output)']}",
                    port_in_use="port in use" in text,
                )
            if check_log and f"Site starting on {self.port}" not in self.stderr():
                return False
            answer = request("GET", self.url + "/v1/status", timeout=2.0)
            return answer.status == 200 and answer.json().get("id") == self.id

        wait_until(listening, timeout=timeout, what=f"node {self.id} to listen on {self.port}")

    def start(self, *, attempts: int = 20, timeout: float = START_SECONDS) -> None:
        """(Re)start on the same port and data dir, retrying while the port
        is briefly held by some other socket."""
        deadline = time.monotonic() + timeout
        for attempt in range(1, attempts + 1):
            self.spawn()
            try:
                self.wait_listening(max(1.0, deadline - time.monotonic()))
                return
            except StartFailed as e:
                if not e.port_in_use or attempt == attempts or time.monotonic() > deadline:
                    raise
                time.sleep(POLL_SECONDS * attempt)  # back off, then try the same port again

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL (a crash), and reap the process."""
        if self.alive():
            assert self.process is not None
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=STOP_SECONDS)

    def send_term(self) -> None:
        """SIGTERM (a clean stop), once per process, without waiting."""
        assert self.process is not None
        if self.alive() and self.process.pid not in self._termed:
            self._termed.add(self.process.pid)
            os.kill(self.process.pid, signal.SIGTERM)

    def terminate(self, timeout: float = STOP_SECONDS) -> int:
        """SIGTERM if still running; wait for the exit and return its status."""
        assert self.process is not None
        self.send_term()
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"node {self.id} did not stop within {timeout:g}s of SIGTERM"
            ) from None

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # -- HTTP

    def get(self, path: str, **kw: Any) -> Response:
        return request("GET", self.url + path, **kw)

    def status(self) -> dict[str, Any]:
        answer = self.get("/v1/status", timeout=5.0)
        assert answer.status == 200, answer
        document: dict[str, Any] = answer.json()
        return document

    def put(self, key: str, value: Any, headers: dict[str, str] | None = None) -> Response:
        return request("PUT", self.url + key_path(key), json.dumps(value), headers)

    def listing(self, *, stale: bool = True) -> list[Any]:
        """Every item of this node's store, [(key, value, revision)], in key order."""
        query = "?consistency=stale" if stale else ""
        answer = request_following("GET", self.url + "/v1/kv" + query)
        assert answer.status == 200, answer
        return [(i["key"], i["value"], i["revision"]) for i in answer.json()["items"]]


class Cluster:
    """Nodes 1..n on loopback, each started with the others as --peers
    (or, for the ids in ``members``, with the ids listed there: a node's
    own id among them is written into its --peers as the seed's README did)."""

    def __init__(
        self,
        root: Path,
        size: int,
        extra_args: Sequence[str] = (),
        members: dict[int, Sequence[int]] | None = None,
    ) -> None:
        self.root = root
        self.size = size
        self.extra_args = tuple(extra_args)
        self.members = dict(members or {})
        self.nodes: dict[int, Node] = {}
        self._generation = 0

    def peers_json(self, node_id: int) -> str:
        """The seed's --peers shape, [{"id":N,"address":URL}]: the others, or
        exactly ``members[node_id]`` if given."""
        if node_id in self.members:
            ids = list(self.members[node_id])
        else:
            ids = [i for i in sorted(self.nodes) if i != node_id]
        return json.dumps(
            [{"id": i, "address": self.nodes[i].url} for i in ids], separators=(",", ":")
        )

    def _layout(self) -> None:
        """Fresh ports and data dirs for every node."""
        self._generation += 1
        base = self.root / f"cluster{self._generation}"
        ports = free_ports(self.size)
        self.nodes = {
            i: Node(
                id=i,
                port=ports[i - 1],
                data_dir=base / f"data{i}",
                log_dir=base / "logs",
                extra_args=self.extra_args,
            )
            for i in range(1, self.size + 1)
        }
        if self.size > 1:
            for node in self.nodes.values():
                node.peers_json = self.peers_json(node.id)

    def start(self, attempts: int = 3) -> Cluster:
        """Start every node; if one finds its port taken, start over on new ports."""
        for attempt in range(1, attempts + 1):
            self._layout()
            for node in self.nodes.values():
                node.spawn()
            try:
                for node in self.nodes.values():
                    node.wait_listening()
                return self
            except StartFailed as e:
                self.stop_all(kill=True)
                if not e.port_in_use or attempt == attempts:
                    raise
        raise AssertionError("unreachable")

    def stop_all(self, *, kill: bool = False) -> None:
        for node in self.nodes.values():
            if node.alive():
                if kill:
                    node.kill()
                else:
                    node.send_term()
        for node in self.nodes.values():
            if node.process is not None and node.process.poll() is None:
                try:
                    node.process.wait(timeout=STOP_SECONDS)
                except subprocess.TimeoutExpired:
                    node.kill()

    def running(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.alive()]

    def leader(self, timeout: float = START_SECONDS, among: Sequence[Node] | None = None) -> Node:
        """Wait until the running nodes agree on one leader, that is one of
        them and says so itself; return it."""
        candidates = list(among) if among is not None else None

        def agreed() -> Node | None:
            nodes = candidates if candidates is not None else self.running()
            statuses = {n.id: n.status() for n in nodes}
            ids = {(s["leader"] or {}).get("id") for s in statuses.values()}
            if len(ids) != 1 or None in ids:
                return None
            (leader_id,) = ids
            if leader_id not in statuses or statuses[leader_id]["role"] != "leader":
                return None
            return self.nodes[leader_id]

        return wait_until(agreed, timeout=timeout, what="the nodes to agree on a leader")

    def wait_ready(
        self, nodes: Sequence[Node] | None = None, timeout: float = START_SECONDS
    ) -> None:
        for node in nodes if nodes is not None else self.running():
            wait_until(
                lambda n=node: n.get("/readyz", timeout=5.0).status == 200,
                timeout=timeout,
                what=f"node {node.id} to be ready",
            )

    def wait_caught_up(
        self, nodes: Sequence[Node], timeout: float = 30.0, among: Sequence[Node] | None = None
    ) -> None:
        """Wait until every node in ``nodes`` has applied the commit index of
        the leader (that the running nodes, or those ``among``, agree on)."""
        leader = self.leader(among=among)
        target = leader.status()["commit_index"]
        for node in nodes:
            wait_until(
                lambda n=node: n.status()["applied_index"] >= target,
                timeout=timeout,
                what=f"node {node.id} to apply up to index {target}",
            )


class Workers:
    """Client threads running target(0..count-1); :meth:`join` re-raises
    the first failure."""

    def __init__(self, count: int, target: Callable[[int], None]) -> None:
        self.errors: list[BaseException] = []
        self.threads = [
            threading.Thread(target=self._run, args=(target, i), daemon=True) for i in range(count)
        ]
        for t in self.threads:
            t.start()

    def _run(self, target: Callable[[int], None], i: int) -> None:
        try:
            target(i)
        except BaseException as e:
            self.errors.append(e)

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        if self.errors:
            raise self.errors[0]
        if any(t.is_alive() for t in self.threads):
            raise AssertionError(f"client threads still running after {timeout:g}s")


def run_threads(count: int, target: Callable[[int], None], timeout: float) -> None:
    """Run target(0..count-1) in threads and wait; re-raise the first failure."""
    Workers(count, target).join(timeout)
