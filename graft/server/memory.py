"""The in-memory twin of :class:`graft.storage.GroupCommitLog`: the same
Deferred-acknowledged ``append`` over a :class:`MemoryLogStorage`, for
whole nodes on a ``task.Clock`` in tests.

Appends are durable at once unless the test holds them (``hold()``): then
their Deferreds wait until ``release()``, as if the fsync were slow, so a
test can check that nothing is acknowledged before it is durable.
``fail(reason)`` makes the log fail for good, as GroupCommitLog does when a
write or fsync fails.

May import the standard library, Twisted, graft.raft and graft.storage.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from twisted.internet.defer import Deferred, fail, succeed

from graft.raft.messages import Entry, HardState
from graft.storage.errors import StorageFailed
from graft.storage.group_commit import StorageReadView
from graft.storage.memory import MemoryLogStorage

__all__ = ["MemoryDurableLog"]


class MemoryDurableLog(StorageReadView):
    """A log whose writes are acknowledged by Deferreds, kept in memory.

    Invariant: operations take effect in the order submitted; while held,
    they are written to ``storage`` at once (the reading view sees them, as
    with GroupCommitLog) but acknowledged only on ``release``."""

    def __init__(self, storage: MemoryLogStorage | None = None) -> None:
        self.storage = storage if storage is not None else MemoryLogStorage()
        self.failed_reason: str | None = None
        self.closed = False
        self.appends = 0
        self._held = False
        self._waiting: list[Deferred[None]] = []

    # --- writing ------------------------------------------------------

    def append(
        self, entries: Sequence[Entry], hard_state: HardState | None = None
    ) -> Deferred[None]:
        entries = tuple(entries)

        def write() -> None:
            self.storage.append(entries)
            if hard_state is not None:
                self.storage.save_hard_state(hard_state)
            self.appends += 1

        return self._submit(write)

    def drop_prefix(self, index: int) -> Deferred[None]:
        return self._submit(lambda: self.storage.drop_prefix(index))

    def reset(self, index: int) -> Deferred[None]:
        return self._submit(lambda: self.storage.reset(index))

    def close(self) -> Deferred[None]:
        self.closed = True
        self.release()
        return succeed(None)

    # --- test controls ------------------------------------------------

    def hold(self) -> None:
        """Acknowledge nothing until :meth:`release` (a slow fsync)."""
        self._held = True

    def release(self) -> None:
        """Acknowledge every held write, and stop holding."""
        self._held = False
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            if self.failed_reason is None:
                d.callback(None)

    def fail(self, reason: str) -> None:
        """Fail for good: held and later writes errback with StorageFailed."""
        self.failed_reason = reason
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.errback(StorageFailed(reason))

    def _submit(self, write: Callable[[], None]) -> Deferred[None]:
        if self.closed:
            return fail(StorageFailed("the log is closed"))
        if self.failed_reason is not None:
            return fail(StorageFailed(self.failed_reason))
        try:
            write()
        except ValueError as e:
            return fail(e)
        if self._held:
            d: Deferred[None] = Deferred()
            self._waiting.append(d)
            return d
        return succeed(None)
