"""The `twist graft` plugin: run a graft node as a Twisted application.

    twist graft --config /etc/graft/1.yaml

Flags mirror `graft node run` and win over the YAML file (API.md section 1).
This module is imported whenever Twisted scans for plugins, so it imports
only Twisted's plugin machinery at the top; graft is imported when the
plugin is used. This directory has no __init__.py (Twisted's plugin howto).
"""

from __future__ import annotations

from typing import Any, cast

from twisted.application.service import IService, ServiceMaker
from twisted.python import usage


class Options(usage.Options):
    """The flags of `twist graft`; postOptions builds `self.settings`."""

    synopsis = "[--config FILE] [--id N --port P --peers JSON ...]"
    longdesc = (
        "Run a graft node. Settings come from --config (YAML), then "
        "GRAFT_LOG_LEVEL, then these flags. Exits non-zero with one line "
        "naming the problem on a bad flag or configuration."
    )

    optParameters = [
        ["config", None, None, "YAML configuration file (flags below win over it)."],
        ["id", None, None, "This node's id (a positive integer)."],
        ["host", None, None, "Interface to bind with --port [default: 127.0.0.1]."],
        ["port", None, None, "TCP port to serve on (peers and clients)."],
        ["listen", None, None, 'A Twisted endpoint description, e.g. "tcp:9001".'],
        ["advertise", None, None, "How peers and clients reach this node."],
        ["data-dir", None, None, "Where to keep the log [default: ./graft-data/ID]."],
        ["peers", None, None, 'Other initial members, JSON: [{"id":2,"address":"http://..."}].'],
        ["join", None, None, "Start empty and ask the cluster at URL to add this node."],
        ["log-level", None, None, "debug, info, warn, error or fatal."],
        ["transport", None, None, "Peer transport: http or amp."],
        ["snapshot-threshold", None, None, "Log entries between snapshots."],
        ["max-body-bytes", None, None, "Larger request bodies get 413."],
        ["snapshot-retain-entries", None, None, "Log entries kept behind each snapshot."],
        ["log-segment-bytes", None, None, "Size of a log segment file."],
    ]

    optFlags = [
        ["learner", None, "With --join: stay a non-voting learner."],
    ]

    settings: Any = None

    def postOptions(self) -> None:
        from graft.config import ConfigError, NodeFlags, build_settings

        def integer(flag: str) -> int | None:
            text = self[flag]
            if text is None:
                return None
            try:
                return int(text)
            except ValueError:
                raise usage.UsageError(f"--{flag}: expected an integer, got {text!r}") from None

        flags = NodeFlags(
            config=self["config"],
            id=integer("id"),
            host=self["host"],
            port=integer("port"),
            listen=self["listen"],
            advertise=self["advertise"],
            data_dir=self["data-dir"],
            peers=self["peers"],
            join=self["join"],
            learner=bool(self["learner"]) or None,
            log_level=self["log-level"],
            transport=self["transport"],
            snapshot_threshold=integer("snapshot-threshold"),
            max_body_bytes=integer("max-body-bytes"),
            snapshot_retain_entries=integer("snapshot-retain-entries"),
            log_segment_bytes=integer("log-segment-bytes"),
        )
        try:
            self.settings = build_settings(flags)
        except ConfigError as e:
            raise usage.UsageError(str(e)) from None


def makeService(options: Options) -> IService:
    """The node service for the settings that `options` built.

    A refused data directory or unsupported setting is one line on stderr
    and exit status 1, not a traceback from twist.
    """
    import sys

    from twisted.internet import reactor

    from graft.server import make_node_service

    try:
        service: Any = make_node_service(options.settings, reactor, own_process=True)
    except Exception as e:
        sys.stderr.write(f"graft: node {options.settings.id}: {e}\n")
        raise SystemExit(1) from None
    return cast(IService, service)


graft = ServiceMaker(  # type: ignore[no-untyped-call]
    "graft",
    "twisted.plugins.graft_plugin",
    "A graft node: a replicated key/value store on Raft.",
    "graft",
)
