"""Build a node's settings from defaults, a YAML file, the environment and flags.

`graft node run` (graft/cli.py) and `twist graft` (twisted/plugins/graft_plugin.py)
both call `build_settings`. Later sources win: defaults < YAML < environment <
command-line flags (API.md section 1). Every bad input raises `ConfigError`
whose message is one line naming the flag, key or variable and the problem,
e.g. ``config /etc/graft/1.yaml: key "snapshot_threshold": expected an
integer, got "ten"``.

Imports: the standard library, attrs, PyYAML, Twisted's endpoint parser (to
check `listen` without listening) and graft.server.settings.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import attrs

from graft.server.settings import LOG_LEVELS, TRANSPORTS, NodeSettings, PeerSetting

__all__ = [
    "DEFAULT_HOST",
    "LOG_LEVEL_ENVIRONMENT",
    "YAML_KEYS",
    "ConfigError",
    "NodeFlags",
    "build_settings",
    "check_advertise_url",
    "check_listen",
    "load_config_file",
    "parse_log_level",
    "parse_peers_json",
]

DEFAULT_HOST = "127.0.0.1"
#: Smallest log segment accepted: one large entry must fit comfortably.
LOG_SEGMENT_BYTES_MIN = 64 * 1024

#: Environment variables that set the log level, highest precedence first.
#: GOAMT_LOG_LEVEL is what the seed's users already have in their unit files.
LOG_LEVEL_ENVIRONMENT = ("GRAFT_LOG_LEVEL", "GOAMT_LOG_LEVEL")

#: Keys the YAML file may hold. The first nine are API.md's; the rest are
#: the other fields of NodeSettings, for operators and tests that need them.
YAML_KEYS = (
    "id",
    "listen",
    "advertise",
    "data_dir",
    "peers",
    "log_level",
    "transport",
    "snapshot_threshold",
    "max_body_bytes",
    "join",
    "learner",
    "snapshot_retain_entries",
    "log_segment_bytes",
    "cluster_token",
    "tick_seconds",
    "election_timeout_ticks",
    "heartbeat_interval_ticks",
)

_WILDCARD_HOSTS = ("", "0.0.0.0", "::", "[::]")


class ConfigError(Exception):
    """A bad setting; `str()` of it is one line naming the input and the problem."""


@attrs.frozen(kw_only=True)
class NodeFlags:
    """The command-line values for a node; None where the flag was not given.

    `peers` is the raw JSON text of --peers; `config` the path of --config.
    """

    config: str | None = None
    id: int | None = None
    host: str | None = None
    port: int | None = None
    listen: str | None = None
    advertise: str | None = None
    data_dir: str | None = None
    peers: str | None = None
    join: str | None = None
    learner: bool | None = None
    log_level: str | None = None
    transport: str | None = None
    snapshot_threshold: int | None = None
    max_body_bytes: int | None = None
    snapshot_retain_entries: int | None = None
    log_segment_bytes: int | None = None


# -- single values --------------------------------------------------------------


def _show(value: Any) -> str:
    """A value as the user wrote it, for an error message."""
    if isinstance(value, str):
        return json.dumps(value)
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return repr(value)


def _integer(value: Any, where: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}: expected an integer, got {_show(value)}")
    if value < minimum:
        kind = "a positive integer" if minimum == 1 else f"an integer of at least {minimum}"
        raise ConfigError(f"{where}: expected {kind}, got {value}")
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}: expected a number, got {_show(value)}")
    if value <= 0:
        raise ConfigError(f"{where}: expected a positive number, got {value}")
    return float(value)


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string, got {_show(value)}")
    if not value.strip():
        raise ConfigError(f"{where}: must not be empty")
    return value


def parse_log_level(value: Any, where: str) -> str:
    """Return one of LOG_LEVELS (case-insensitive), or raise naming the valid ones."""
    valid = ", ".join(LOG_LEVELS)
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected one of {valid}, got {_show(value)}")
    level = value.strip().lower()
    if level not in LOG_LEVELS:
        raise ConfigError(f"{where}: unknown log level {_show(value)}; valid levels: {valid}")
    return level


def _transport(value: Any, where: str) -> str:
    valid = ", ".join(TRANSPORTS)
    if not isinstance(value, str) or value.strip().lower() not in TRANSPORTS:
        raise ConfigError(f"{where}: unknown transport {_show(value)}; valid transports: {valid}")
    return value.strip().lower()


def check_advertise_url(value: Any, where: str) -> str:
    """Return an http(s) URL with a host (no trailing slash), or raise."""
    url = _string(value, where).strip()
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise ConfigError(f"{where}: bad URL {_show(value)}: {e}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"{where}: bad URL {_show(value)}: expected http://HOST:PORT or https://HOST:PORT"
        )
    if port == 0:
        raise ConfigError(f"{where}: bad URL {_show(value)}: port 0")
    if parts.query or parts.fragment:
        raise ConfigError(f"{where}: bad URL {_show(value)}: no query or fragment allowed")
    return url.rstrip("/")


def check_listen(value: Any, where: str) -> str:
    """Return a Twisted server endpoint description that parses, or raise.

    The description is parsed against a memory reactor, so nothing listens.
    """
    from twisted.internet.endpoints import serverFromString
    from twisted.internet.testing import MemoryReactor

    description = _string(value, where).strip()
    try:
        serverFromString(MemoryReactor(), description)  # type: ignore[no-untyped-call]
    except Exception as e:  # the parsers raise ValueError, KeyError, TypeError, OSError
        detail = str(e) or type(e).__name__
        raise ConfigError(
            f"{where}: bad endpoint description {_show(value)}: {detail}"
            ' (expected e.g. "tcp:9001:interface=127.0.0.1")'
        ) from None
    return description


def _listen_host_port(listen: str) -> tuple[str, int] | None:
    """The interface and port of a tcp/tcp6/ssl description, if it has them."""
    from twisted.internet.endpoints import _parseServer  # the documented grammar's parser

    try:
        kind, args, kwargs = _parseServer(listen, None)  # type: ignore[no-untyped-call]
    except Exception:
        return None
    if str(kind).lower() not in ("tcp", "tcp6", "ssl"):
        return None
    port = kwargs.get("port", args[0] if args else None)
    try:
        number = int(port)
    except (TypeError, ValueError):
        return None
    return str(kwargs.get("interface", "")), number


def _peers(value: Any, where: str) -> tuple[PeerSetting, ...]:
    """Validate a list of {id, address} mappings (ids may include the node's own)."""
    if not isinstance(value, list):
        raise ConfigError(
            f'{where}: expected a list of {{"id": N, "address": URL}}, got {_show(value)}'
        )
    seen: set[int] = set()
    peers = []
    for position, entry in enumerate(value, start=1):
        here = f"{where}: entry {position}"
        if not isinstance(entry, dict):
            raise ConfigError(f'{here}: expected {{"id": N, "address": URL}}, got {_show(entry)}')
        extra = sorted(str(k) for k in entry if k not in ("id", "address"))
        if extra:
            raise ConfigError(f'{here}: unknown key "{extra[0]}" (expected "id" and "address")')
        for needed in ("id", "address"):
            if needed not in entry:
                raise ConfigError(f'{here}: missing "{needed}"')
        peer_id = _integer(entry["id"], f'{here}: "id"', minimum=1)
        if peer_id in seen:
            raise ConfigError(f"{where}: duplicate id {peer_id}")
        seen.add(peer_id)
        address = check_advertise_url(entry["address"], f'{here}: "address"')
        peers.append(PeerSetting(id=peer_id, address=address))
    return tuple(peers)


def parse_peers_json(text: str, where: str = "--peers") -> tuple[PeerSetting, ...]:
    """Parse --peers: a JSON list like [{"id":2,"address":"http://127.0.0.1:9002"}]."""
    try:
        value = json.loads(text)
    except ValueError as e:
        raise ConfigError(f"{where}: not valid JSON: {e}") from None
    return _peers(value, where)


# -- the YAML file ---------------------------------------------------------------


def load_config_file(path: str) -> dict[str, Any]:
    """Read and validate a YAML config file; return its keys with checked values.

    Peers come back as a tuple of PeerSetting. Keys absent from the file are
    absent from the result.
    """
    import yaml

    where = f"config {path}"
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"{where}: cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: not UTF-8 text") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{where}: not valid YAML{at}: {problem}") from None
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ConfigError(f"{where}: expected a mapping of keys to values, got {_show(document)}")
    checked: dict[str, Any] = {}
    for key, value in document.items():
        if key not in YAML_KEYS:
            raise ConfigError(f'{where}: unknown key "{key}" (valid keys: {", ".join(YAML_KEYS)})')
        checked[key] = _check_key(key, value, f'{where}: key "{key}"')
    if "id" not in checked:
        raise ConfigError(f'{where}: missing key "id"')
    return checked


def _check_key(key: str, value: Any, where: str) -> Any:
    if key in ("id", "election_timeout_ticks", "heartbeat_interval_ticks"):
        return _integer(value, where, minimum=1)
    if key in ("snapshot_threshold", "max_body_bytes"):
        return _integer(value, where, minimum=1)
    if key == "snapshot_retain_entries":
        return _integer(value, where, minimum=0)
    if key == "log_segment_bytes":
        return _integer(value, where, minimum=LOG_SEGMENT_BYTES_MIN)
    if key == "tick_seconds":
        return _number(value, where)
    if key == "listen":
        return check_listen(value, where)
    if key in ("advertise", "join"):
        return check_advertise_url(value, where)
    if key == "data_dir":
        return _string(value, where)
    if key == "peers":
        return _peers(value, where)
    if key == "log_level":
        return parse_log_level(value, where)
    if key == "transport":
        return _transport(value, where)
    if key == "learner":
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {_show(value)}")
        return value
    if key == "cluster_token":
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {_show(value)}")
        return value
    raise AssertionError(key)


# -- merging ---------------------------------------------------------------------


def build_settings(flags: NodeFlags, environ: Mapping[str, str] | None = None) -> NodeSettings:
    """Merge defaults < YAML (flags.config) < environment < flags into NodeSettings.

    Starts nothing and listens on nothing, so tests can check what a command
    line means.
    """
    if environ is None:
        environ = os.environ
    values: dict[str, Any] = load_config_file(flags.config) if flags.config else {}

    for name in LOG_LEVEL_ENVIRONMENT:
        if environ.get(name):
            values["log_level"] = parse_log_level(environ[name], name)
            break

    if flags.id is not None:
        values["id"] = _integer(flags.id, "--id", minimum=1)
    if "id" not in values:
        raise ConfigError("missing node id: give --id N (or the id key in --config)")
    node_id = values["id"]

    if flags.port is not None:
        port = _integer(flags.port, "--port", minimum=1)
        if port > 65535:
            raise ConfigError(f"--port: expected a port number from 1 to 65535, got {port}")
    else:
        port = None
    if flags.host is not None:
        _string(flags.host, "--host")
    if flags.listen is not None:
        values["listen"] = check_listen(flags.listen, "--listen")
    elif port is not None:
        host = flags.host if flags.host is not None else DEFAULT_HOST
        values["listen"] = check_listen(f"tcp:{port}:interface={_escape(host)}", "--host/--port")
    if "listen" not in values:
        raise ConfigError(
            "no address to listen on: give --port P (or --listen, or the listen key in --config)"
        )

    if flags.advertise is not None:
        values["advertise"] = check_advertise_url(flags.advertise, "--advertise")
    elif port is not None:
        # API.md: default http://<host>:<port>, from the flags that made `listen`.
        values["advertise"] = _advertise_for(flags.host or DEFAULT_HOST, port)
    elif "advertise" not in values:
        bound = _listen_host_port(values["listen"])
        if bound is None:
            raise ConfigError(
                f"cannot guess how peers reach listen {json.dumps(values['listen'])}: "
                "give --advertise URL (or the advertise key)"
            )
        values["advertise"] = _advertise_for(bound[0] or flags.host or "", bound[1])

    if flags.data_dir is not None:
        values["data_dir"] = _string(flags.data_dir, "--data-dir")
    values.setdefault("data_dir", os.path.join(".", "graft-data", str(node_id)))

    if flags.peers is not None:
        values["peers"] = parse_peers_json(flags.peers, "--peers")
    # A list that names this node itself is tolerated: that entry is dropped.
    values["peers"] = tuple(p for p in values.get("peers", ()) if p.id != node_id)

    if flags.join is not None:
        values["join"] = check_advertise_url(flags.join, "--join")
    if flags.learner:
        values["learner"] = True
    if values.get("learner") and "join" not in values:
        raise ConfigError("--learner: only for a node that joins a running cluster (--join URL)")
    if flags.log_level is not None:
        values["log_level"] = parse_log_level(flags.log_level, "--log-level")
    if flags.transport is not None:
        values["transport"] = _transport(flags.transport, "--transport")
    if flags.snapshot_threshold is not None:
        values["snapshot_threshold"] = _integer(
            flags.snapshot_threshold, "--snapshot-threshold", minimum=1
        )
    if flags.max_body_bytes is not None:
        values["max_body_bytes"] = _integer(flags.max_body_bytes, "--max-body-bytes", minimum=1)
    if flags.snapshot_retain_entries is not None:
        values["snapshot_retain_entries"] = _integer(
            flags.snapshot_retain_entries, "--snapshot-retain-entries", minimum=0
        )
    if flags.log_segment_bytes is not None:
        values["log_segment_bytes"] = _integer(
            flags.log_segment_bytes, "--log-segment-bytes", minimum=LOG_SEGMENT_BYTES_MIN
        )

    return NodeSettings(**values)


def _escape(host: str) -> str:
    """Escape ':' (IPv6 addresses) for an endpoint description."""
    return host.replace("\\", "\\\\").replace(":", "\\:")


def _advertise_for(host: str, port: int) -> str:
    host = host.strip("[]") if host.startswith("[") else host
    if host in _WILDCARD_HOSTS:
        # Bound to every interface: advertise this machine's name; operators
        # with several interfaces set --advertise.
        host = socket.gethostname()
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"
