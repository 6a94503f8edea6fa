"""The client HTTP API (API.md sections 2 and 3): a Klein app over a
:class:`~graft.server.driver.RaftDriver`.

Every answer is JSON; every error is ``{"error": "..."}`` with a 4xx or
503. Input is validated here, before anything reaches the core or the
store, so bad input can only get a 4xx (API.md: "Bad input never gives a
500"). Writes and linearizable reads on a follower are redirected (307) to
the leader at the same path and query; with no leader known, 503 with
``Retry-After``.

May import the standard library, Twisted, Klein, graft.raft, graft.kv and
graft.server.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote_to_bytes

from klein import Klein
from twisted.internet.defer import CancelledError, Deferred, TimeoutError, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from graft.kv import (
    ApplyResult,
    Delete,
    InvalidKey,
    KVError,
    Outcome,
    Put,
    encode_command,
    key_from_bytes,
)
from graft.raft import NotLeader, Role
from graft.server.driver import RaftDriver
from graft.server.errors import NodeFailed, NodeStopping, Unavailable
from graft.server.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from graft.server.metrics import NodeMetrics, role_name
from graft.server.snapshots import SnapshotInProgress, SnapshotProducer

__all__ = ["ClientAPI"]

_KV_PREFIX = b"/v1/kv/"
#: Revisions are signed 64-bit integers (graft.kv stores them so).
_REVISION_LIMIT = 1 << 63
_JSON = b"application/json"


class _Refused(Exception):
    """Answer the request with ``status`` and ``{"error": message}``."""

    def __init__(
        self, status: int, message: str, headers: dict[bytes, bytes] | None = None, **extra: Any
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.extra = extra


class ClientAPI:
    """The routes under ``/v1``, ``/healthz`` and ``/readyz`` of one node.

    ``app`` is the Klein app; the node mounts the transport's peer routes
    on it too, so both share one port."""

    log = Logger()

    def __init__(
        self,
        driver: RaftDriver,
        *,
        max_body_bytes: int = 1 << 20,
        request_timeout_seconds: float = 10.0,
    ) -> None:
        self.driver = driver
        self.max_body_bytes = max_body_bytes
        self.request_timeout_seconds = request_timeout_seconds
        #: POST /v1/members and the routes of graft.server.membership, once
        #: mounted there (MembershipRoutes.mount).
        self.membership: Any = None
        self.app = Klein()
        self.app.route("/v1/kv", branch=False)(self._kv_list)
        self.app.route("/v1/kv/", branch=True)(self._kv_key)
        self.app.route("/v1/status")(self._status)
        self.app.route("/v1/members")(self._members)
        self.app.route("/v1/snapshot")(self._snapshot)
        self.app.route("/healthz")(self._healthz)
        self.app.route("/readyz")(self._readyz)
        self.app.route("/metrics")(self._metrics)
        self.metrics = NodeMetrics(driver)
        self.app.route("/", branch=True)(self._not_found)

    def resource(self, fast_routes: dict[bytes, Any] | None = None) -> Any:
        """The root resource: the Klein app behind a router that answers
        paths Klein cannot decode with a JSON 400 and sends the hot paths
        (key reads and writes, and any exact paths in ``fast_routes``,
        such as the peer transport's) straight to their handlers."""
        return _Router(self.app.resource(), self._kv_key, fast_routes or {})

    # --- plumbing ---------------------------------------------------------

    async def _answer(self, request: Request, handler: Any) -> bytes:
        try:
            return await handler(request)  # type: ignore[no-any-return]
        except _Refused as e:
            return _refused_answer(request, e)

    def _redirect_or_unavailable(self, request: Request) -> _Refused:
        """The answer for a request only the leader may serve."""
        self._check_removed()
        leader = self.driver.leader()
        if leader is None or not leader.address:
            return _Refused(503, "no leader known; retry shortly", {b"Retry-After": b"1"})
        location = leader.address.rstrip("/").encode("utf-8") + request.uri
        return _Refused(
            307,
            f"node {self.driver.node_id} is not the leader; node {leader.id} is",
            {b"Location": location},
            leader={"id": leader.id, "address": leader.address},
        )

    def _refusal_for(self, request: Request, error: Exception, what: str) -> _Refused:
        if isinstance(error, NotLeader):
            return self._redirect_or_unavailable(request)
        if isinstance(error, Unavailable):
            return _Refused(
                503, error.reason, {b"Retry-After": str(error.retry_after_seconds).encode()}
            )
        if isinstance(error, TimeoutError | CancelledError):
            return _Refused(
                503,
                f"timed out after {self.request_timeout_seconds:g}s waiting for the {what} "
                "to be confirmed by the cluster; its outcome is unknown",
                {b"Retry-After": b"1"},
            )
        raise error

    def _waiting(self, request: Request, d: Deferred[Any], what: str) -> Deferred[Any]:
        """``d``, its refusals by the driver (not the leader, unavailable,
        timed out) turned into _Refused."""

        def refused(failure: Failure) -> None:
            failure.trap(NotLeader, Unavailable, TimeoutError, CancelledError)  # type: ignore[no-untyped-call]
            raise self._refusal_for(request, failure.value, what)  # type: ignore[arg-type]

        return d.addErrback(refused)

    # --- /v1/kv/{key} -----------------------------------------------------
    #
    # The hot path, in callbacks rather than coroutines: a chain of
    # coroutines around a Deferred cost a tenth of a key read on the leader.

    def _kv_key(self, request: Request, **_: object) -> Deferred[bytes]:
        try:
            answer = self._kv_key_answer(request)
        except _Refused as e:
            return succeed(_refused_answer(request, e))
        except Exception:
            # A bug: answered as the failure of a Deferred would be (503,
            # logged), whichever channel serves the request.
            return fail()
        if isinstance(answer, bytes):
            return succeed(answer)
        return answer.addErrback(_refused_failure, request)

    def _kv_key_answer(self, request: Request) -> bytes | Deferred[bytes]:
        method = request.method
        if method not in (b"GET", b"HEAD", b"PUT", b"DELETE"):
            raise _Refused(405, "use GET, PUT or DELETE", {b"Allow": b"GET, HEAD, PUT, DELETE"})
        key = _key_of(request)
        if method in (b"GET", b"HEAD"):
            return self._get(request, key)
        if method == b"PUT":
            return self._put(request, key)
        return self._delete(request, key)

    def _get(self, request: Request, key: str) -> bytes | Deferred[bytes]:
        barrier = self._consistent_read(request)
        if barrier is None:
            return self._value(request, key)
        return barrier.addCallback(lambda _: self._value(request, key))

    def _value(self, request: Request, key: str) -> bytes:
        record = self.driver.kv.get(key)
        if record is None:
            raise _Refused(404, f"key {key!r} not found")
        _set_header(request, b"ETag", _etag(record.revision))
        request.setResponseCode(200)
        _set_header(request, b"Content-Type", _JSON)
        return record.value

    def _put(self, request: Request, key: str) -> Deferred[bytes]:
        if_revision = _if_match(request)
        if_absent = _if_none_match(request)
        if if_revision is not None and if_absent:
            raise _Refused(400, "use If-Match or If-None-Match, not both")
        body = self._body(request)
        try:
            command = Put.of_json(key=key, body=body, if_revision=if_revision, if_absent=if_absent)
        except KVError as e:
            raise _Refused(400, f"bad JSON: {e}") from None
        return self._write(request, encode_command(command)).addCallback(_put_answer, request, key)

    def _delete(self, request: Request, key: str) -> Deferred[bytes]:
        if request.getHeader(b"if-none-match") is not None:
            raise _Refused(400, "If-None-Match is not supported on DELETE")
        command = Delete(key=key, if_revision=_if_match(request))
        return self._write(request, encode_command(command)).addCallback(_deleted, request)

    def _write(self, request: Request, data: bytes) -> Deferred[ApplyResult]:
        """Propose ``data`` on the leader; fires once it is applied, the
        outcomes other than OK failing as refusals."""
        if self.driver.node.role is not Role.LEADER:
            self._check_failed()
            raise self._redirect_or_unavailable(request)
        proposed = self.driver.propose(data, timeout_seconds=self.request_timeout_seconds)
        return self._waiting(request, proposed, "write").addCallback(_write_outcome)

    def _check_failed(self) -> None:
        reason = self.driver.failed_reason
        if reason is not None:
            raise _Refused(503, f"storage failed: {reason}", {b"Retry-After": b"1"})
        self._check_removed()

    def _check_removed(self) -> None:
        removed = self.driver.removed_reason
        if removed is not None:
            raise _Refused(503, removed)

    def _consistent_read(self, request: Request) -> Deferred[None] | None:
        """What ``request`` must wait for before it is served from the
        local store: nothing (None) for ``consistency=stale``, a ReadIndex
        round otherwise."""
        consistency = _query_value(request, b"consistency")
        if consistency == "stale":
            self._check_removed()
            return None
        if consistency not in (None, "linearizable", "default"):
            raise _Refused(400, "consistency must be 'stale' or 'linearizable'")
        if self.driver.node.role is not Role.LEADER:
            self._check_failed()
            raise self._redirect_or_unavailable(request)
        barrier = self.driver.read_barrier(timeout_seconds=self.request_timeout_seconds)
        return self._waiting(request, barrier, "read")

    def _body(self, request: Request) -> bytes:
        """The request body, after the length checks (411, 413, 400)."""
        limit = self.max_body_bytes
        if getattr(request, "body_too_large", False):
            raise _Refused(413, f"body over the limit of {limit} bytes")
        length = request.getHeader(b"content-length")
        if length is None and request.getHeader(b"transfer-encoding") is None:
            raise _Refused(411, "a request body (a JSON document) is required")
        if length is not None:
            if not length.isdigit():
                raise _Refused(400, "bad Content-Length header")
            if int(length) > limit:
                raise _Refused(413, f"body over the limit of {limit} bytes")
        content = request.content
        if content is None:
            raise _Refused(411, "a request body (a JSON document) is required")
        content.seek(0)
        body = content.read(limit + 1)
        if len(body) > limit:
            raise _Refused(413, f"body over the limit of {limit} bytes")
        if not body:
            raise _Refused(411, "a request body (a JSON document) is required")
        return body  # type: ignore[no-any-return]

    # --- /v1/kv?prefix=P&limit=N -------------------------------------------

    def _kv_list(self, request: Request) -> Deferred[bytes]:
        return Deferred.fromCoroutine(self._answer(request, self._kv_list_async))

    async def _kv_list_async(self, request: Request) -> bytes:
        if request.method not in (b"GET", b"HEAD"):
            raise _Refused(405, "use GET", {b"Allow": b"GET, HEAD"})
        prefix = _query_value(request, b"prefix") or ""
        limit_text = _query_value(request, b"limit")
        limit: int | None = None
        if limit_text is not None:
            if not limit_text.isascii() or not limit_text.isdigit():
                raise _Refused(400, f"limit must be a non-negative integer, not {limit_text!r}")
            limit = int(limit_text)
        barrier = self._consistent_read(request)
        if barrier is not None:
            await barrier
        kv = self.driver.kv
        items = [
            b'{"key":%s,"value":%s,"revision":%d}'
            % (json.dumps(r.key, ensure_ascii=False).encode("utf-8"), r.value, r.revision)
            for r in kv.list(prefix, limit)
        ]
        request.setResponseCode(200)
        _set_header(request, b"Content-Type", _JSON)
        return b'{"items":[%s],"revision":%d}' % (b",".join(items), kv.revision)

    # --- status and health ------------------------------------------------

    def _status(self, request: Request) -> Deferred[bytes]:
        return Deferred.fromCoroutine(self._answer(request, self._status_async))

    async def _status_async(self, request: Request) -> bytes:
        _only_get(request)
        driver = self.driver
        node = driver.node
        leader = driver.leader()
        return _json(
            request,
            200,
            {
                "id": driver.node_id,
                "role": role_name(driver),
                "term": node.term,
                "leader": None if leader is None else {"id": leader.id, "address": leader.address},
                "commit_index": node.commit_index,
                "applied_index": driver.kv.applied_index,
                "members": _members(driver),
                "failed": driver.failed_reason,
                "snapshot_index": driver.snapshot_index,
                "log_length": driver.log_length,
            },
        )

    def _members(self, request: Request) -> Deferred[bytes]:
        return Deferred.fromCoroutine(self._answer(request, self._members_async))

    async def _members_async(self, request: Request) -> bytes:
        if request.method == b"POST" and self.membership is not None:
            return await self.membership.add(request)  # type: ignore[no-any-return]
        if request.method not in (b"GET", b"HEAD"):
            allow = b"GET, HEAD, POST" if self.membership is not None else b"GET, HEAD"
            raise _Refused(405, "use GET or POST", {b"Allow": allow})
        return _json(request, 200, {"members": _members(self.driver)})

    # --- /v1/snapshot -----------------------------------------------------

    def _snapshot(self, request: Request) -> Deferred[bytes]:
        return Deferred.fromCoroutine(self._answer(request, self._snapshot_async))

    async def _snapshot_async(self, request: Request) -> bytes:
        """POST: take a snapshot of this node now and compact its log.
        GET: download a consistent snapshot file (a backup), taking a
        fresh one first if entries were applied since the newest."""
        method = request.method
        if method not in (b"GET", b"HEAD", b"POST"):
            raise _Refused(405, "use GET or POST", {b"Allow": b"GET, HEAD, POST"})
        self._check_failed()
        try:
            if method == b"POST":
                stored = await self.driver.take_snapshot()
            else:
                stored = await self.driver.newest_snapshot()
        except SnapshotInProgress as e:
            raise _Refused(409, str(e), {b"Retry-After": b"1"}) from None
        except (Unavailable, NodeStopping, NodeFailed) as e:
            raise _Refused(503, str(e), {b"Retry-After": b"1"}) from None
        meta = stored.meta
        if method == b"POST":
            return _json(
                request, 200, {"index": meta.index, "term": meta.term, "size": stored.file_size}
            )
        request.setResponseCode(200)
        for name, value in (
            (b"Content-Type", b"application/octet-stream"),
            (b"Content-Length", b"%d" % stored.file_size),
            (
                b"Content-Disposition",
                b'attachment; filename="graft-snapshot-%d-%d.snap"' % (meta.index, meta.term),
            ),
            (b"X-Graft-Snapshot-Index", b"%d" % meta.index),
            (b"X-Graft-Snapshot-Term", b"%d" % meta.term),
            (b"X-Graft-Snapshot-CRC32", b"%08x" % stored.file_crc32()),
        ):
            _set_header(request, name, value)
        if method == b"GET":
            await SnapshotProducer(request, stored, self.driver.clock).start()
        return b""

    def _healthz(self, request: Request) -> Deferred[bytes]:
        return Deferred.fromCoroutine(self._answer(request, self._healthz_async))

    async def _healthz_async(self, request: Request) -> bytes:
        _only_get(request)
        self._check_failed()
        return _json(request, 200, {"status": "ok"})

    def _readyz(self, request: Request) -> Deferred[bytes]:
        return Deferred.fromCoroutine(self._answer(request, self._readyz_async))

    async def _readyz_async(self, request: Request) -> bytes:
        _only_get(request)
        self._check_failed()
        driver = self.driver
        if driver.leader() is None:
            raise _Refused(503, "no leader known", {b"Retry-After": b"1"})
        applied, commit = driver.kv.applied_index, driver.node.commit_index
        if applied < commit:
            raise _Refused(
                503, f"catching up: applied {applied} of {commit} committed", {b"Retry-After": b"1"}
            )
        return _json(request, 200, {"status": "ready"})

    def _metrics(self, request: Request) -> bytes:
        if request.method not in (b"GET", b"HEAD"):
            _set_header(request, b"Allow", b"GET, HEAD")
            return _json(request, 405, {"error": "use GET"})
        request.setResponseCode(200)
        _set_header(request, b"Content-Type", METRICS_CONTENT_TYPE)
        return self.metrics.render()

    def _not_found(self, request: Request, **_: object) -> bytes:
        return _json(request, 404, {"error": f"no such route: {request.path.decode('latin-1')}"})


class _Router(Resource):
    """The root of the node's site. Klein's routing (werkzeug) costs more
    than the rest of a key read, so the hot paths skip it; everything else
    goes through the Klein app. Klein answers a path or Host that is not
    UTF-8 with an HTML 400; this answers it with our JSON error instead."""

    isLeaf = True

    def __init__(self, inner: Any, kv_key: Any, fast_routes: dict[bytes, Any]) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._inner = inner
        self._kv_key = kv_key
        self._fast_routes = fast_routes

    def serves_fast(self, path: bytes) -> bool:
        """Whether ``path`` skips Klein (graft.server.lean_http serves
        only these)."""
        return path.startswith(_KV_PREFIX) or path in self._fast_routes

    def render(self, request: Request) -> Any:
        try:
            b"/".join(request.postpath or []).decode("utf-8")
            host: bytes = request.getRequestHostname()  # type: ignore[no-untyped-call]
            host.decode("utf-8")
        except UnicodeDecodeError:
            what = "key" if request.path.startswith(_KV_PREFIX) else "path"
            return _json(request, 400, {"error": f"bad {what}: not valid UTF-8"})
        path = request.path
        if path.startswith(_KV_PREFIX):
            return _render_deferred(request, self._kv_key(request))
        route = self._fast_routes.get(path)
        if route is not None:
            return route(request)
        return self._inner.render(request)


def _render_deferred(request: Request, d: Deferred[bytes]) -> Any:
    """Write what ``d`` fires with and finish, unless the client left."""
    lost: list[bool] = []
    request.notifyFinish().addErrback(lambda _: lost.append(True))

    def write(body: bytes) -> None:
        if lost:
            return
        if body:
            request.write(body)  # type: ignore[no-untyped-call]
        request.finish()  # type: ignore[no-untyped-call]

    def crashed(failure: Any) -> None:
        _log.failure("request to {path} failed", failure, path=request.path)
        if not lost:
            body = _json(request, 503, {"error": "internal error; see the node's log"})
            request.write(body)  # type: ignore[no-untyped-call]
            request.finish()  # type: ignore[no-untyped-call]

    d.addCallback(write).addErrback(crashed)
    return NOT_DONE_YET


_log = Logger()


# --- helpers ---------------------------------------------------------------


def _refused_answer(request: Request, e: _Refused) -> bytes:
    for name, value in e.headers.items():
        _set_header(request, name, value)
    return _json(request, e.status, {"error": e.message, **e.extra})


def _refused_failure(failure: Failure, request: Request) -> bytes:
    failure.trap(_Refused)  # type: ignore[no-untyped-call]
    return _refused_answer(request, failure.value)  # type: ignore[arg-type]


def _write_outcome(result: ApplyResult) -> ApplyResult:
    if result.outcome is Outcome.OK:
        return result
    if result.outcome is Outcome.PRECONDITION_FAILED:
        raise _Refused(412, result.error or "precondition failed", revision=result.revision)
    if result.outcome is Outcome.NOT_FOUND:
        raise _Refused(404, result.error or "not found")
    raise _Refused(400, result.error or "invalid command")


def _put_answer(result: ApplyResult, request: Request, key: str) -> bytes:
    _set_header(request, b"ETag", _etag(result.revision))
    return _json(request, 200, {"key": key, "revision": result.revision})


def _deleted(_: ApplyResult, request: Request) -> bytes:
    request.setResponseCode(204)
    return b""


def _set_header(request: Request, name: bytes, value: bytes) -> None:
    request.setHeader(name, value)  # type: ignore[no-untyped-call]


def _json(request: Request, status: int, body: object) -> bytes:
    request.setResponseCode(status)
    _set_header(request, b"Content-Type", _JSON)
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


def _only_get(request: Request) -> None:
    if request.method not in (b"GET", b"HEAD"):
        raise _Refused(405, "use GET", {b"Allow": b"GET, HEAD"})


def _etag(revision: int | None) -> bytes:
    return b'"%d"' % (revision or 0)


def _key_of(request: Request) -> str:
    raw = request.path[len(_KV_PREFIX) :]
    try:
        return key_from_bytes(unquote_to_bytes(raw))
    except InvalidKey as e:
        raise _Refused(400, f"bad key: {e}") from None


def _query_value(request: Request, name: bytes) -> str | None:
    values = (request.args or {}).get(name)
    if not values:
        return None
    try:
        return values[-1].decode("utf-8")  # type: ignore[no-any-return]
    except UnicodeDecodeError:
        raise _Refused(400, f"query parameter {name.decode()} is not valid UTF-8") from None


def _header_text(request: Request, name: bytes) -> str | None:
    """Header ``name`` as text, whatever its bytes (twisted.web's str
    lookup raises on a value that is not UTF-8)."""
    value: bytes | None = request.getHeader(name)
    return None if value is None else value.decode("latin-1")


def _shown(header: str) -> str:
    """A header as an error message quotes it: cut to 64 characters."""
    return header if len(header) <= 64 else header[:64] + "..."


def _if_match(request: Request) -> int | None:
    """The revision of an ``If-Match: "R"`` header, or None if absent."""
    header = _header_text(request, b"if-match")
    if header is None:
        return None
    text = header.strip()
    if len(text) >= 3 and text[0] == text[-1] == '"' and text[1:-1].isascii():
        inner = text[1:-1]
        # Revisions are 64-bit: a longer number is no revision (and would
        # not fit the log's encoding).
        if inner.isdigit() and len(inner) <= 19 and int(inner) < _REVISION_LIMIT:
            return int(inner)
    raise _Refused(400, f'bad If-Match header {_shown(header)!r}: expected a revision such as "7"')


def _if_none_match(request: Request) -> bool:
    header = _header_text(request, b"if-none-match")
    if header is None:
        return False
    if header.strip() == "*":
        return True
    raise _Refused(400, f"bad If-None-Match header {_shown(header)!r}: only * is supported")


def _members(driver: RaftDriver) -> list[dict[str, object]]:
    return [
        {"id": m.id, "address": m.address, "voter": m.voter} for m in driver.configuration.members
    ]
