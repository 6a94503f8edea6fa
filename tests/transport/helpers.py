"""Shared pieces for transport tests."""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.web.resource import Resource

from graft.raft.messages import Message
from graft.transport.http import HTTPTransport

CLUSTER = "cluster-test"
TOKEN = b"s3cret-token"


@attrs.define
class Inbox:
    """A receive callback that records messages and lets a test wait."""

    messages: list[Message] = attrs.field(factory=list)
    _waiters: list[tuple[int, Deferred[list[Message]]]] = attrs.field(factory=list)

    def __call__(self, message: Message) -> None:
        self.messages.append(message)
        ready = [(n, d) for n, d in self._waiters if len(self.messages) >= n]
        self._waiters = [(n, d) for n, d in self._waiters if len(self.messages) < n]
        for _, d in ready:
            d.callback(list(self.messages))

    def wait_for(self, count: int) -> Deferred[list[Message]]:
        """Fires once ``count`` messages have arrived in total."""
        d: Deferred[list[Message]] = Deferred()
        if len(self.messages) >= count:
            d.callback(list(self.messages))
        else:
            self._waiters.append((count, d))
        return d


def site_root(transport: HTTPTransport) -> Resource:
    """A root resource with the peer routes mounted where a node mounts them."""
    root = Resource()
    root.putChild(b"raft", transport.resource())
    return root


def json_of(content: bytes) -> Any:
    import json

    return json.loads(content)
