"""The `graft` command: run a node, and talk to a cluster over its HTTP API.

`graft node run` builds NodeSettings with graft.config and runs the service
from graft.server on the global reactor (the one entry point that imports it).
The client commands use a small synchronous HTTP client over http.client that
follows the leader's 307 redirects for every method, re-sending the body.

Every failure prints one line on stderr, ``graft: <what went wrong>``, and
exits with one of the EXIT_* codes below; none prints a traceback.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import IO, Any, NoReturn
from urllib.parse import quote, urljoin, urlsplit

import attrs
import click

from graft.config import ConfigError, NodeFlags, build_settings

#: Success.
EXIT_OK = 0
#: The cluster answered no: key or member not found, a failed condition, a
#: refused request (4xx); for `node run`, the node could not start or failed.
EXIT_REFUSED = 1
#: Bad command line or configuration: nothing was sent.
EXIT_USAGE = 2
#: No answer: the cluster is unreachable, has no leader, or failed (5xx).
EXIT_UNAVAILABLE = 3

EXIT_CODES_HELP = (
    "\b\nExit status:\n"
    "  0  success\n"
    "  1  refused: key or member not found, condition failed, bad request\n"
    "  2  usage: bad arguments or configuration (nothing was sent)\n"
    "  3  unavailable: cannot reach the cluster, no leader, server error"
)
NODE_EXIT_CODES_HELP = (
    "\b\nExit status:\n"
    "  0  stopped by SIGTERM or SIGINT\n"
    "  1  could not start or failed (e.g. port in use)\n"
    "  2  usage: bad flags or configuration"
)

#: Redirects followed per request (a leader change mid-request may add one).
MAX_REDIRECTS = 5
#: Answers of 503 (no leader yet) retried per request, waiting Retry-After.
MAX_UNAVAILABLE_RETRIES = 3
DEFAULT_TIMEOUT_SECONDS = 10.0


class GraftError(click.ClickException):
    """A failure shown as one line, ``graft: <message>``, exiting with exit_code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]


def fail(message: str, exit_code: int) -> NoReturn:
    raise GraftError(message, exit_code)


class GraftGroup(click.Group):
    """A group that prints its help when called alone, and errors as one line."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args and not ctx.resilient_parsing:
            click.echo(ctx.get_help())
            ctx.exit(0)
        return super().parse_args(ctx, args)

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            result = super().main(args, prog_name, complete_var, False, **extra)
        except click.ClickException as e:
            click.echo(f"graft: {_one_line(e)}", err=True)
            sys.exit(e.exit_code)
        except click.Abort:
            click.echo("graft: aborted", err=True)
            sys.exit(EXIT_REFUSED)
        sys.exit(result if isinstance(result, int) else EXIT_OK)


def _one_line(e: click.ClickException) -> str:
    message = " ".join(e.format_message().split())
    if isinstance(e, click.UsageError) and not isinstance(e, GraftError) and e.ctx is not None:
        option = e.ctx.help_option_names[0] if e.ctx.help_option_names else "--help"
        message = f"{message} (see '{e.ctx.command_path} {option}')"
    return message


@click.group(cls=GraftGroup, epilog=EXIT_CODES_HELP)
@click.version_option(package_name="graft", prog_name="graft")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_TIMEOUT_SECONDS,
    show_default=True,
    envvar="GRAFT_TIMEOUT",
    help="Seconds to wait for each connection and answer.",
)
@click.pass_context
def cli(ctx: click.Context, timeout: float) -> None:
    """graft: a replicated key/value store on Raft.

    Run a node with `graft node run`, or talk to a cluster at URL (any
    member; writes and default reads follow redirects to the leader).
    """
    ctx.obj = Client(timeout=timeout)


def main() -> None:
    """The `graft` console script."""
    cli(prog_name="graft")


# -- node run ----------------------------------------------------------------------


@cli.group(cls=GraftGroup, epilog=NODE_EXIT_CODES_HELP)
def node() -> None:
    """Run a graft node."""


def _node_options(f: Any) -> Any:
    """The flags of `graft node run`, one per YAML key (API.md section 1)."""
    options = [
        click.option("--id", "node_id", type=int, help="This node's id (a positive integer)."),
        click.option("--port", type=int, help="TCP port to serve on (peers and clients)."),
        click.option(
            "--host", help="Interface to bind with --port.  [default: 127.0.0.1]", metavar="HOST"
        ),
        click.option(
            "--peers",
            metavar="JSON",
            help='The other initial members: \'[{"id":2,"address":"http://127.0.0.1:9002"}]\'.',
        ),
        click.option(
            "--data-dir", metavar="DIR", help="Where to keep the log.  [default: ./graft-data/ID]"
        ),
        click.option(
            "--config",
            metavar="FILE",
            help="YAML configuration; command-line flags win over it.",
        ),
        click.option(
            "--advertise",
            metavar="URL",
            help="How peers and clients reach this node.  [default: http://HOST:PORT]",
        ),
        click.option(
            "--join", metavar="URL", help="Start empty and ask the cluster at URL to add this node."
        ),
        click.option(
            "--learner",
            is_flag=True,
            default=None,
            help="With --join: stay a non-voting learner (default: voter once caught up).",
        ),
        click.option(
            "--listen",
            metavar="ENDPOINT",
            help='A Twisted endpoint description, instead of --host/--port ("tcp:9001").',
        ),
        click.option(
            "--snapshot-threshold", type=int, metavar="N", help="Log entries between snapshots."
        ),
        click.option(
            "--max-body-bytes", type=int, metavar="N", help="Larger request bodies get 413."
        ),
        click.option(
            "--snapshot-retain-entries",
            type=int,
            metavar="N",
            help="Log entries kept behind each snapshot.  [default: 1000]",
        ),
        click.option(
            "--log-segment-bytes",
            type=int,
            metavar="N",
            help="Size of a log segment file.  [default: 67108864]",
        ),
        click.option(
            "--log-level",
            metavar="LEVEL",
            help="debug, info, warn, error or fatal (or GRAFT_LOG_LEVEL).  [default: info]",
        ),
        click.option(
            "--transport", metavar="NAME", help="Peer transport: http or amp.  [default: http]"
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def node_flags(**params: Any) -> NodeFlags:
    """NodeFlags from the keyword arguments click gives `node run`."""
    params["id"] = params.pop("node_id")
    return NodeFlags(**params)


@node.command("run", epilog=NODE_EXIT_CODES_HELP)
@_node_options
@click.option(
    "--restore",
    metavar="FILE",
    type=click.Path(dir_okay=False),
    help="Start a new cluster from a backup (graft snapshot save); needs an empty data dir.",
)
@click.option(
    "--force-new-cluster",
    is_flag=True,
    help="Disaster recovery: restart this node's data as a new one-node cluster "
    "(only when a quorum is lost for good; see the README).",
)
def node_run(restore: str | None, force_new_cluster: bool, **params: Any) -> None:
    """Run a node until SIGTERM or SIGINT.

    \b
    graft node run --id 1 --port 9001             # a single-node cluster
    graft node run --id 1 --port 9001 --peers \\
      '[{"id":2,"address":"http://127.0.0.1:9002"},{"id":3,"address":"http://127.0.0.1:9003"}]'
    graft node run --id 4 --port 9004 --join http://127.0.0.1:9001   # join a cluster
    """
    try:
        settings = build_settings(node_flags(**params))
    except ConfigError as e:
        fail(str(e), EXIT_USAGE)
    if restore is not None and force_new_cluster:
        fail("--restore and --force-new-cluster cannot be used together", EXIT_USAGE)
    if restore is not None:
        restore_node(settings, restore)
    if force_new_cluster:
        force_node(settings)
    sys.exit(run_node(settings))


def force_node(settings: Any) -> None:
    """Rewrite the node's data as the only member of a new cluster."""
    from graft.server import cluster_id_for
    from graft.server.bootstrap import ForceRefused, force_new_cluster
    from graft.storage import StorageError

    try:
        summary = force_new_cluster(settings, cluster_id_for=cluster_id_for)
    except (ForceRefused, StorageError) as e:
        fail(f"node {settings.id}: --force-new-cluster: {e}", EXIT_REFUSED)
    except OSError as e:
        fail(f"node {settings.id}: --force-new-cluster: {e}", EXIT_REFUSED)
    click.echo(f"graft: {summary}", err=True)


def restore_node(settings: Any, backup: str) -> None:
    """Seed the node's empty data directory from the backup file ``backup``."""
    from graft.server import cluster_id_for, initial_configuration
    from graft.server.snapshots import RestoreRefused, restore_backup
    from graft.storage import StorageError, open_data_dir

    configuration = initial_configuration(settings)
    cluster_id = cluster_id_for(configuration.members)
    try:
        meta, keys = restore_backup(
            backup,
            settings.data_dir,
            open_data_dir=lambda path: open_data_dir(
                path, cluster_id, settings.id, segment_bytes_max=settings.log_segment_bytes
            ),
            configuration=configuration,
        )
    except (RestoreRefused, StorageError) as e:
        fail(f"node {settings.id}: {e}", EXIT_REFUSED)
    except OSError as e:
        fail(f"node {settings.id}: cannot restore into {settings.data_dir}: {e}", EXIT_REFUSED)
    click.echo(
        f"graft: node {settings.id}: restored {keys} keys at index {meta.index} "
        f"(term {meta.term}) from {backup} into {settings.data_dir}",
        err=True,
    )


def run_node(settings: Any) -> int:
    """Run the node service on the global reactor; return the exit status."""
    try:
        from graft.server import make_node_service
    except ImportError as e:
        fail(f"the node is not available in this installation ({e})", EXIT_REFUSED)

    from twisted.internet import reactor as global_reactor
    from twisted.internet.error import CannotListenError
    from twisted.logger import globalLogBeginner
    from twisted.python.failure import Failure

    reactor: Any = global_reactor
    problems: list[str] = []

    def stop_with(problem: str) -> None:
        if not problems:
            problems.append(problem)
            if reactor.running:
                reactor.stop()

    def watch(event: dict[str, Any]) -> None:
        # However the listener is built, a port in use may surface only as a
        # logged CannotListenError failure; treat it as fatal too.
        failure = event.get("log_failure")
        if isinstance(failure, Failure) and failure.check(CannotListenError):  # type: ignore[no-untyped-call]
            reactor.callLater(0, stop_with, _cannot_listen(failure.value))

    observers: list[Any] = [log_observer(settings.log_level, sys.stderr), watch]
    globalLogBeginner.beginLoggingTo(observers, redirectStandardIO=False)
    try:
        service: Any = make_node_service(settings, reactor, own_process=True)
    except Exception as e:  # a refused data directory, an unsupported setting
        fail(f"node {settings.id}: {e}", EXIT_REFUSED)

    def start() -> None:
        try:
            service.privilegedStartService()
            service.startService()
        except CannotListenError as e:
            stop_with(_cannot_listen(e))
        except Exception as e:
            stop_with(f"node {settings.id} failed to start: {e}")

    def stop() -> Any:
        if service.running:
            return service.stopService()
        return None

    reactor.callWhenRunning(start)
    reactor.addSystemEventTrigger("before", "shutdown", stop)
    reactor.run()  # SIGINT and SIGTERM stop it
    if problems:
        click.echo(f"graft: {problems[0]}", err=True)
        return EXIT_REFUSED
    return EXIT_OK


def _cannot_listen(e: BaseException | None) -> str:
    interface = getattr(e, "interface", "") or "*"
    port = getattr(e, "port", "?")
    reason = getattr(e, "socketError", None)
    if isinstance(reason, OSError) and reason.errno is not None:
        import errno

        if reason.errno == errno.EADDRINUSE:
            return f"cannot listen on {interface}:{port}: port in use"
        return f"cannot listen on {interface}:{port}: {reason.strerror}"
    return f"cannot listen on {interface}:{port}: {reason or e}"


def log_observer(level: str, stream: IO[str]) -> Any:
    """A twisted.logger observer writing events at `level` and above to stream."""
    from twisted.logger import (
        FilteringLogObserver,
        LogLevel,
        LogLevelFilterPredicate,
        textFileLogObserver,
    )

    levels = {
        "debug": LogLevel.debug,
        "info": LogLevel.info,
        "warn": LogLevel.warn,
        "error": LogLevel.error,
        "fatal": LogLevel.critical,
    }
    predicate: Any = LogLevelFilterPredicate(defaultLogLevel=levels[level])
    observer: Any = textFileLogObserver(stream)
    return FilteringLogObserver(observer, [predicate])


# -- the HTTP client -----------------------------------------------------------------


@attrs.frozen
class Reply:
    status: int
    reason: str
    headers: dict[str, str]
    body: bytes
    url: str

    def error_text(self) -> str:
        """The server's {"error": ...} message, or the body, in one line."""
        try:
            document = json.loads(self.body)
        except ValueError:
            document = None
        if isinstance(document, dict) and isinstance(document.get("error"), str):
            text = document["error"]
        else:
            text = self.body.decode("utf-8", "replace")
        return " ".join(text.split())[:500]


@attrs.define
class Client:
    """A synchronous HTTP/JSON client that follows redirects to the leader."""

    timeout: float = DEFAULT_TIMEOUT_SECONDS
    max_redirects: int = MAX_REDIRECTS
    max_unavailable_retries: int = MAX_UNAVAILABLE_RETRIES
    #: Longest wait honoured from a 503's Retry-After.
    max_retry_wait_seconds: float = 1.0

    @contextmanager
    def open(
        self,
        method: str,
        url: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Iterator[tuple[http.client.HTTPResponse, str]]:
        """Send the request, following 307/308 (same method and body) and 503s.

        Yields the final response, unread, and the URL that gave it.
        """
        headers = dict(headers or {})
        if body is not None:
            headers.setdefault("Content-Type", "application/json")
        redirects = retries = 0
        while True:
            connection = self._connect(url)
            try:
                response = self._send(connection, method, url, body, headers)
                location = response.getheader("Location")
                if response.status in (301, 302, 303, 307, 308) and location:
                    response.read()
                    redirects += 1
                    if redirects > self.max_redirects:
                        fail(
                            f"{_origin(url)}: more than {self.max_redirects} redirects"
                            " (no stable leader?)",
                            EXIT_UNAVAILABLE,
                        )
                    if response.status == 303:
                        method, body = "GET", None
                    url = urljoin(url, location)
                    continue
                if response.status == 503 and retries < self.max_unavailable_retries:
                    response.read()
                    retries += 1
                    time.sleep(self._retry_wait(response.getheader("Retry-After")))
                    continue
                yield response, url
                return
            finally:
                connection.close()

    def request(
        self,
        method: str,
        url: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        with self.open(method, url, body, headers) as (response, final_url):
            data = self._read(response, final_url)
            return Reply(
                status=response.status,
                reason=response.reason,
                headers={k.lower(): v for k, v in response.getheaders()},
                body=data,
                url=final_url,
            )

    def _retry_wait(self, retry_after: str | None) -> float:
        try:
            seconds = float(retry_after) if retry_after else 0.5
        except ValueError:
            seconds = 0.5
        return max(0.0, min(seconds, self.max_retry_wait_seconds))

    def _connect(self, url: str) -> http.client.HTTPConnection:
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            fail(f"bad URL {url!r}: bad port", EXIT_USAGE)
        if parts.scheme == "https":
            return http.client.HTTPSConnection(parts.hostname or "", port, timeout=self.timeout)
        if parts.scheme == "http":
            return http.client.HTTPConnection(parts.hostname or "", port, timeout=self.timeout)
        fail(f"bad URL {url!r}: expected http:// or https://", EXIT_USAGE)

    def _send(
        self,
        connection: http.client.HTTPConnection,
        method: str,
        url: str,
        body: bytes | None,
        headers: dict[str, str],
    ) -> http.client.HTTPResponse:
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            connection.request(method, target, body=body, headers=headers)
            return connection.getresponse()
        except TimeoutError:
            fail(
                f"cannot reach {_origin(url)}: timed out after {self.timeout:g}s", EXIT_UNAVAILABLE
            )
        except socket.gaierror as e:
            fail(f"cannot reach {_origin(url)}: unknown host ({e.strerror})", EXIT_UNAVAILABLE)
        except ConnectionRefusedError:
            fail(f"cannot reach {_origin(url)}: connection refused", EXIT_UNAVAILABLE)
        except (OSError, http.client.HTTPException) as e:
            reason = getattr(e, "strerror", None) or str(e) or type(e).__name__
            fail(f"cannot reach {_origin(url)}: {reason.lower()}", EXIT_UNAVAILABLE)

    def _read(self, response: http.client.HTTPResponse, url: str) -> bytes:
        try:
            return response.read()
        except TimeoutError:
            fail(f"{_origin(url)}: timed out reading the answer", EXIT_UNAVAILABLE)
        except (OSError, http.client.HTTPException) as e:
            fail(f"{_origin(url)}: answer cut short ({e or type(e).__name__})", EXIT_UNAVAILABLE)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def base_url(url: str) -> str:
    """The node URL as given (scheme optional, default http), without trailing '/'."""
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        fail(f"bad URL {url!r}: expected http://HOST:PORT", EXIT_USAGE)
    try:
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError:
        fail(f"bad URL {url!r}: bad port", EXIT_USAGE)
    return url.rstrip("/")


def key_url(url: str, key: str) -> str:
    if not key:
        fail("the key must not be empty", EXIT_USAGE)
    return f"{base_url(url)}/v1/kv/{quote(key, safe='/')}"


def _check(reply: Reply, *, what: str) -> Reply:
    """Return a 2xx reply; otherwise fail with one line about `what`."""
    if 200 <= reply.status < 300:
        return reply
    detail = reply.error_text()
    suffix = f": {detail}" if detail else ""
    if reply.status == 404:
        fail(f"{what} not found", EXIT_REFUSED)
    if reply.status == 412:
        fail(f"{what}: condition failed{suffix}", EXIT_REFUSED)
    if reply.status >= 500 or reply.status < 200:
        fail(
            f"{_origin(reply.url)}: {reply.status} {reply.reason}{suffix}",
            EXIT_UNAVAILABLE,
        )
    fail(f"{what}: {reply.status} {reply.reason}{suffix}", EXIT_REFUSED)


def _print_body(reply: Reply) -> None:
    text = reply.body.decode("utf-8", "replace").rstrip("\n")
    if text:
        click.echo(text)


def _client() -> Client:
    ctx = click.get_current_context()
    client = ctx.find_object(Client)
    return client if client is not None else Client()


# -- kv --------------------------------------------------------------------------------


@cli.group(cls=GraftGroup, epilog=EXIT_CODES_HELP)
def kv() -> None:
    """Read and write keys."""


@kv.command("set", epilog=EXIT_CODES_HELP)
@click.argument("url")
@click.argument("key")
@click.argument("value", metavar="JSON")
@click.option("--if-revision", type=click.IntRange(min=0), metavar="R", help="Only if at R.")
@click.option("--if-absent", is_flag=True, help="Only if the key does not exist.")
def kv_set(url: str, key: str, value: str, if_revision: int | None, if_absent: bool) -> None:
    """Set KEY to the JSON document JSON; print {"key","revision"}."""
    if if_revision is not None and if_absent:
        fail("--if-revision and --if-absent cannot be used together", EXIT_USAGE)
    try:
        json.loads(value)
    except ValueError as e:
        fail(f"value for key {json.dumps(key)} is not valid JSON: {e}", EXIT_USAGE)
    headers = {}
    if if_revision is not None:
        headers["If-Match"] = f'"{if_revision}"'
    if if_absent:
        headers["If-None-Match"] = "*"
    target = key_url(url, key)
    reply = _client().request("PUT", target, value.encode("utf-8"), headers)
    if reply.status == 412 and if_absent:
        fail(f"key {json.dumps(key)} already exists", EXIT_REFUSED)
    _print_body(_check(reply, what=f"key {json.dumps(key)}"))


@kv.command("get", epilog=EXIT_CODES_HELP)
@click.argument("url")
@click.argument("key")
@click.option("--stale", is_flag=True, help="Read this node's copy; may be behind the leader.")
def kv_get(url: str, key: str, stale: bool) -> None:
    """Print KEY's JSON value as stored."""
    target = key_url(url, key) + ("?consistency=stale" if stale else "")
    _print_body(_check(_client().request("GET", target), what=f"key {json.dumps(key)}"))


@kv.command("del", epilog=EXIT_CODES_HELP)
@click.argument("url")
@click.argument("key")
@click.option("--if-revision", type=click.IntRange(min=0), metavar="R", help="Only if at R.")
def kv_del(url: str, key: str, if_revision: int | None) -> None:
    """Delete KEY."""
    headers = {"If-Match": f'"{if_revision}"'} if if_revision is not None else {}
    reply = _client().request("DELETE", key_url(url, key), None, headers)
    _check(reply, what=f"key {json.dumps(key)}")


@kv.command("list", epilog=EXIT_CODES_HELP)
@click.argument("url")
@click.option("--prefix", default="", metavar="P", help="Only keys starting with P.")
@click.option("--limit", type=click.IntRange(min=1), metavar="N", help="At most N keys.")
def kv_list(url: str, prefix: str, limit: int | None) -> None:
    """Print {"items":[{"key","value","revision"}],"revision":R} in key order."""
    query = [f"prefix={quote(prefix, safe='')}"] if prefix else []
    if limit is not None:
        query.append(f"limit={limit}")
    target = f"{base_url(url)}/v1/kv" + ("?" + "&".join(query) if query else "")
    _print_body(_check(_client().request("GET", target), what="listing"))


# -- cluster ---------------------------------------------------------------------------


@cli.group(cls=GraftGroup, epilog=EXIT_CODES_HELP)
def cluster() -> None:
    """Inspect and change the cluster's membership."""


@cluster.command("status", epilog=EXIT_CODES_HELP)
@click.argument("url")
def cluster_status(url: str) -> None:
    """Print the node's view: role, term, leader, indexes, members."""
    _print_body(_check(_client().request("GET", f"{base_url(url)}/v1/status"), what="status"))


@cluster.command("members", epilog=EXIT_CODES_HELP)
@click.argument("url")
def cluster_members(url: str) -> None:
    """Print the current configuration."""
    reply = _client().request("GET", f"{base_url(url)}/v1/members")
    _print_body(_check(reply, what="members"))


@cluster.command("add", epilog=EXIT_CODES_HELP)
@click.argument("url")
@click.argument("node_id", metavar="ID", type=click.IntRange(min=1))
@click.argument("address")
@click.option("--learner", is_flag=True, help="Add as a non-voting learner.")
def cluster_add(url: str, node_id: int, address: str, learner: bool) -> None:
    """Add node ID, reachable at ADDRESS, to the cluster."""
    address = base_url(address)
    body = json.dumps({"id": node_id, "address": address, "voter": not learner}).encode()
    reply = _client().request("POST", f"{base_url(url)}/v1/members", body)
    _print_body(_check(reply, what=f"adding member {node_id}"))


@cluster.command("remove", epilog=EXIT_CODES_HELP)
@click.argument("url")
@click.argument("node_id", metavar="ID", type=click.IntRange(min=1))
def cluster_remove(url: str, node_id: int) -> None:
    """Remove node ID from the cluster."""
    reply = _client().request("DELETE", f"{base_url(url)}/v1/members/{node_id}")
    _print_body(_check(reply, what=f"member {node_id}"))


@cluster.command("transfer", epilog=EXIT_CODES_HELP)
@click.argument("url")
@click.argument("node_id", metavar="ID", type=click.IntRange(min=1))
def cluster_transfer(url: str, node_id: int) -> None:
    """Hand leadership to voting member ID."""
    body = json.dumps({"id": node_id}).encode()
    reply = _client().request("POST", f"{base_url(url)}/v1/leader", body)
    _print_body(_check(reply, what=f"transfer to member {node_id}"))


# -- snapshot --------------------------------------------------------------------------


@cli.group(cls=GraftGroup, epilog=EXIT_CODES_HELP)
def snapshot() -> None:
    """Back up the store."""


@snapshot.command("save", epilog=EXIT_CODES_HELP)
@click.argument("url")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
def snapshot_save(url: str, file: str) -> None:
    """Download a consistent snapshot to FILE ('-' for stdout).

    FILE appears only once the whole snapshot has arrived.
    """
    target = f"{base_url(url)}/v1/snapshot"
    with _client().open("GET", target) as (response, final_url):
        if not 200 <= response.status < 300:
            reply = Reply(
                status=response.status,
                reason=response.reason,
                headers={},
                body=response.read(),
                url=final_url,
            )
            _check(reply, what="snapshot")
        length_header = response.getheader("Content-Length")
        length = int(length_header) if length_header and length_header.isdigit() else None
        crc = _crc_header(response.getheader("X-Graft-Snapshot-CRC32"))
        if file == "-":
            written = _copy(response, sys.stdout.buffer, length, final_url, crc)
            sys.stdout.flush()
            return
        directory = os.path.dirname(os.path.abspath(file))
        try:
            fd, partial = tempfile.mkstemp(
                prefix=f".{os.path.basename(file)}.", suffix=".partial", dir=directory
            )
        except OSError as e:
            fail(f"cannot write {file}: {e.strerror}", EXIT_USAGE)
        try:
            with os.fdopen(fd, "wb") as out:
                written = _copy(response, out, length, final_url, crc)
                out.flush()
                os.fsync(out.fileno())
            os.replace(partial, file)
        except OSError as e:
            fail(f"cannot write {file}: {e.strerror}", EXIT_REFUSED)
        finally:
            if os.path.exists(partial):
                os.unlink(partial)
    click.echo(f"saved {written} bytes to {file}")


def _crc_header(value: str | None) -> int | None:
    try:
        return int(value, 16) if value else None
    except ValueError:
        return None


def _copy(
    response: http.client.HTTPResponse,
    out: IO[bytes],
    length: int | None,
    url: str,
    expected_crc32: int | None = None,
) -> int:
    """Copy the body to ``out``; fail if it is cut short or, given the
    server's CRC-32 of it, if it arrived damaged."""
    written = 0
    crc = 0
    show = sys.stderr.isatty()
    with click.progressbar(
        length=length or 0, label="snapshot", file=sys.stderr, hidden=not show or not length
    ) as bar:
        while True:
            try:
                chunk = response.read(64 * 1024)
            except (OSError, http.client.HTTPException) as e:
                fail(f"{_origin(url)}: snapshot cut short ({e})", EXIT_UNAVAILABLE)
            if not chunk:
                break
            out.write(chunk)
            crc = zlib.crc32(chunk, crc)
            written += len(chunk)
            bar.update(len(chunk))
    if length is not None and written != length:
        fail(f"{_origin(url)}: snapshot cut short ({written} of {length} bytes)", EXIT_UNAVAILABLE)
    if expected_crc32 is not None and crc != expected_crc32:
        fail(
            f"{_origin(url)}: snapshot arrived damaged (CRC-32 {crc:08x}, "
            f"server sent {expected_crc32:08x})",
            EXIT_UNAVAILABLE,
        )
    return written


# -- completion ------------------------------------------------------------------------


@cli.command("completion", epilog=EXIT_CODES_HELP)
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script for SHELL.

    \b
    eval "$(graft completion bash)"        # in ~/.bashrc
    eval "$(graft completion zsh)"         # in ~/.zshrc
    graft completion fish | source         # in ~/.config/fish/config.fish
    """
    from click.shell_completion import get_completion_class

    completion_class = get_completion_class(shell)
    assert completion_class is not None
    click.echo(completion_class(cli, {}, "graft", "_GRAFT_COMPLETE").source())


if __name__ == "__main__":
    main()
