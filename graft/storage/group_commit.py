"""Group commit: :class:`GroupCommitLog`, the durable log the node drives.

``append(entries, hard_state)`` writes at once (into the OS, cheap) and
returns a Deferred that fires when an fsync covering the write returned.
While one fsync runs on a worker thread, new appends are written and wait;
the next single fsync covers all of them (DESIGN.md "Durability"), so
throughput grows with load instead of being capped by the disk's fsync
rate. fsync never runs on the reactor thread.

Hard state: a change of term or vote is written atomically in the same
round as the entries, before the Deferred fires (a vote is durable before
the reply is sent, §5.2 and thesis §3.8). A change of commit alone is kept
in memory and written with the next term or vote change, or on ``close``:
commit is volatile in Figure 2 and only speeds up recovery, and writing it
every batch would cost two more fsyncs (file and directory) per batch.

Faults: if a write or fsync fails, the log enters a failed state for good:
every pending and later Deferred errbacks with StorageFailed, and
``failed_reason`` says why (an fsync that failed cannot be retried safely:
the kernel may have dropped the dirty pages). Reopening the directory gives
back at least every acknowledged entry.

This module may import the standard library, attrs, twisted, graft.raft
and graft.storage.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import attrs
from twisted.internet.defer import Deferred, fail
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure

from graft.raft.messages import Entry, HardState
from graft.storage.errors import StorageFailed
from graft.storage.wal import FileLogStorage, SyncJob


@attrs.define
class _Op:
    #: The write to make besides appending ``entries`` (None: none).
    action: Callable[[], None] | None
    hard_state: HardState | None
    done: Deferred[None]
    #: Entries to cut-and-append; contiguous queued appends are merged.
    entries: tuple[Entry, ...] = ()


class StorageReadView:
    """A durable log's reading side: its storage's view, writes not yet
    durable included. Shared by GroupCommitLog and its in-memory twin."""

    storage: Any

    @property
    def first_index(self) -> int:
        return self.storage.first_index  # type: ignore[no-any-return]

    @property
    def last_index(self) -> int:
        return self.storage.last_index  # type: ignore[no-any-return]

    def entries(self, lo: int, hi: int) -> list[Entry]:
        return self.storage.entries(lo, hi)  # type: ignore[no-any-return]

    def term_at(self, index: int) -> int | None:
        return self.storage.term_at(index)  # type: ignore[no-any-return]

    def load_hard_state(self) -> HardState:
        return self.storage.load_hard_state()  # type: ignore[no-any-return]


class GroupCommitLog(StorageReadView):
    """A FileLogStorage whose writes are acknowledged by Deferreds, with one
    fsync covering every write made while the previous fsync ran.

    Call it from the reactor thread only. ``reactor`` must provide
    ``callFromThread`` (and ``getThreadPool`` unless ``threadpool`` is
    given); ``threadpool`` is anything with ``callInThreadWithCallback``.
    """

    log = Logger()

    def __init__(self, reactor: Any, storage: FileLogStorage, threadpool: Any = None) -> None:
        self._reactor = reactor
        self._threadpool = threadpool if threadpool is not None else reactor.getThreadPool()
        self.storage = storage
        #: Operations not yet written: the active segment must be durable
        #: before it rolls, so writes wait here meanwhile.
        self._queue: deque[_Op] = deque()
        #: Written, waiting for the next fsync round.
        self._written: list[Deferred[None]] = []
        #: Waiting for the fsync round now running.
        self._syncing: list[Deferred[None]] | None = None
        self._firing = False
        durable = storage.load_hard_state()
        #: Term and vote as last handed to an fsync round.
        self._term_vote = (durable.term, durable.vote)
        self._hard_state_next_round: HardState | None = None
        self._hard_state_lazy: HardState | None = None
        self._idle: list[Deferred[None]] = []
        self._closed = False
        #: Why the log stopped acknowledging writes, or None while healthy.
        self.failed_reason: str | None = None

    # --- writing ------------------------------------------------------

    def append(
        self, entries: Sequence[Entry], hard_state: HardState | None = None
    ) -> Deferred[None]:
        """Cut the log at ``entries[0].index`` and append ``entries``, and
        replace the hard state if given: one Raft Ready. The Deferred fires
        with None once durable; errbacks with StorageFailed if the log has
        failed, ValueError if the entries do not fit the log."""
        return self._submit(
            _Op(action=None, hard_state=hard_state, done=Deferred(), entries=tuple(entries))
        )

    def drop_prefix(self, index: int) -> Deferred[None]:
        """Forget entries up to ``index`` (they are in a durable snapshot)."""
        return self._submit(
            _Op(action=lambda: self.storage.drop_prefix(index), hard_state=None, done=Deferred())
        )

    def reset(self, index: int) -> Deferred[None]:
        """Forget every entry; the log continues after ``index``."""
        return self._submit(
            _Op(action=lambda: self.storage.reset(index), hard_state=None, done=Deferred())
        )

    def close(self) -> Deferred[None]:
        """Wait for every write to be durable (or failed), write a pending
        commit-only hard state, and close the files."""
        self._closed = True
        d: Deferred[None] = Deferred()
        self._idle.append(d)
        self._maybe_idle()

        def flush(_: object) -> Deferred[None] | None:
            lazy = self._hard_state_lazy
            if lazy is None or self.failed_reason is not None:
                return None
            self._hard_state_lazy = None
            return deferToThreadPool(
                self._reactor, self._threadpool, self.storage.persist_hard_state, lazy
            )

        d.addCallback(flush)
        d.addBoth(self._close_storage)
        return d

    def _close_storage(self, result: object) -> object:
        self.storage.close()
        return result

    def _submit(self, op: _Op) -> Deferred[None]:
        if self._closed:
            return fail(StorageFailed("the log is closed"))
        if self.failed_reason is not None:
            return fail(StorageFailed(self.failed_reason))
        self._queue.append(op)
        if not self._firing:
            # While a round's waiters are being told, their next appends
            # queue up, to be written together once all were told.
            self._pump()
        return op.done

    def _pump(self) -> None:
        """Write queued operations, then start an fsync round if one is due."""
        while self._queue and self.failed_reason is None and not self.storage.roll_blocked:
            ops = self._take_contiguous()
            try:
                if ops[0].action is not None:
                    ops[0].action()
                if ops[0].entries:
                    merged = ops[0].entries
                    if len(ops) > 1:
                        merged = tuple(e for op in ops for e in op.entries)
                    self.storage.append(merged)
            except StorageFailed as e:
                self._fail(str(e), also=[op.done for op in ops])
                return
            except ValueError as e:
                # Only the first append's cut point can be wrong: the rest
                # continue it. Refuse that one; the others go round again.
                self._queue.extendleft(reversed(ops[1:]))
                ops[0].done.errback(e)
                continue
            for op in ops:
                if op.hard_state is not None:
                    self._note_hard_state(op.hard_state)
                self._written.append(op.done)
        self._maybe_start_sync()

    def _take_contiguous(self) -> list[_Op]:
        """The next queued operation and the appends that continue it, so
        one write (one system call) covers them all."""
        queue = self._queue
        ops = [queue.popleft()]
        if not ops[0].entries:
            return ops
        while (
            queue
            and queue[0].action is None
            and queue[0].entries
            and queue[0].entries[0].index == ops[-1].entries[-1].index + 1
        ):
            ops.append(queue.popleft())
        return ops

    def _note_hard_state(self, hard_state: HardState) -> None:
        self.storage.set_hard_state(hard_state)
        if self._hard_state_next_round is not None or (
            (hard_state.term, hard_state.vote) != self._term_vote
        ):
            self._hard_state_next_round = hard_state
            self._hard_state_lazy = None
        else:
            self._hard_state_lazy = hard_state

    def _maybe_start_sync(self) -> None:
        if self._syncing is not None or self._firing or self.failed_reason is not None:
            return
        blocked = bool(self._queue) and self.storage.roll_blocked
        if not self._written and not blocked and self._hard_state_next_round is None:
            self._maybe_idle()
            return
        job = self.storage.begin_sync()
        hard_state = self._hard_state_next_round
        self._hard_state_next_round = None
        if hard_state is not None:
            self._term_vote = (hard_state.term, hard_state.vote)
        self._syncing, self._written = self._written, []
        d = deferToThreadPool(self._reactor, self._threadpool, self._run_sync, job, hard_state)
        d.addCallbacks(self._synced, self._sync_failed, callbackArgs=(job,), errbackArgs=(job,))

    def _run_sync(self, job: SyncJob, hard_state: HardState | None) -> None:
        """One fsync round, on a worker thread: entries, then hard state."""
        self.storage.run_sync(job)
        if hard_state is not None:
            self.storage.persist_hard_state(hard_state)

    def _synced(self, _: object, job: SyncJob) -> None:
        self.storage.end_sync(job)
        waiters, self._syncing = self._syncing or [], None
        if self.failed_reason is not None:
            self._maybe_idle()
            return  # they were errbacked when the log failed
        self._firing = True
        try:
            for d in waiters:
                d.callback(None)
        finally:
            self._firing = False
        self._pump()

    def _sync_failed(self, failure: Failure, job: SyncJob) -> None:
        self.storage.abandon_sync(job)
        waiters, self._syncing = self._syncing or [], None
        if self.failed_reason is None:
            self._fail(f"fsync failed: {failure.getErrorMessage()}", also=waiters)
        self._maybe_idle()

    def _fail(self, reason: str, also: Sequence[Deferred[None]] = ()) -> None:
        """Stop acknowledging writes: errback everything not yet acknowledged."""
        self.failed_reason = reason
        self.log.error(
            "durable log failed, no longer acknowledging writes: {reason}", reason=reason
        )
        pending = [*also, *(self._syncing or []), *self._written, *(op.done for op in self._queue)]
        self._written = []
        self._queue.clear()
        if self._syncing is not None:
            self._syncing = []
        for d in pending:
            d.errback(StorageFailed(reason))
        self._maybe_idle()

    def _maybe_idle(self) -> None:
        busy = self._syncing is not None or (
            self.failed_reason is None and (self._queue or self._written)
        )
        if busy or not self._idle:
            return
        idle, self._idle = self._idle, []
        for d in idle:
            d.callback(None)
