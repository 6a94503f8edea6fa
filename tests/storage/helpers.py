"""Test doubles for graft.storage: a FileOps that fails on demand, a
thread pool that runs jobs only when told, and a reactor whose
``callFromThread`` runs at once."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from typing import Any

from graft.raft.messages import Entry, EntryKind
from graft.storage.fileops import FileOps


def make_entries(first: int, count: int, term: int = 1, size: int = 10) -> list[Entry]:
    """``count`` entries from index ``first``, each with distinct data."""
    return [
        Entry(
            index=i,
            term=term,
            kind=EntryKind.COMMAND,
            data=f"{i}:{term}:".encode().ljust(size, b"."),
        )
        for i in range(first, first + count)
    ]


class FaultyFileOps(FileOps):
    """FileOps that raises ``OSError(fail_errno)`` on the chosen call.

    ``fail_write_after_bytes``: writes succeed until that many bytes were
    written in total, then one short write lands the rest up to the limit
    and the next call raises (a disk that filled mid-record).
    ``fail_fsync``: every fsync and fdatasync raises.
    """

    def __init__(self) -> None:
        self.fail_errno = errno.ENOSPC
        self.fail_write_after_bytes: int | None = None
        self.fail_fsync = False
        self.written_bytes = 0
        self.fsync_calls = 0

    def write(self, fd: int, data: bytes | memoryview) -> int:
        limit = self.fail_write_after_bytes
        if limit is not None:
            room = limit - self.written_bytes
            if room <= 0:
                raise OSError(self.fail_errno, os.strerror(self.fail_errno))
            data = data[:room]
        written = super().write(fd, data)
        self.written_bytes += written
        return written

    def fsync(self, fd: int) -> None:
        self.fsync_calls += 1
        if self.fail_fsync:
            raise OSError(self.fail_errno, os.strerror(self.fail_errno))
        super().fsync(fd)

    def fdatasync(self, fd: int) -> None:
        self.fsync_calls += 1
        if self.fail_fsync:
            raise OSError(self.fail_errno, os.strerror(self.fail_errno))
        super().fdatasync(fd)


Job = tuple[Callable[[bool, Any], None], Callable[..., Any], tuple[Any, ...]]


class ManualThreadPool:
    """Runs ``callInThreadWithCallback`` jobs only on ``run_one``/``run_all``,
    in the calling thread, so a test decides when an fsync 'returns'."""

    def __init__(self) -> None:
        self.jobs: list[
            tuple[Callable[[bool, Any], None], Callable[..., Any], tuple[Any, ...]]
        ] = []

    def callInThreadWithCallback(
        self, on_result: Callable[[bool, Any], None], func: Callable[..., Any], *args: Any
    ) -> None:
        self.jobs.append((on_result, func, args))

    def run_one(self) -> None:
        on_result, func, args = self.jobs.pop(0)
        try:
            result = func(*args)
        except BaseException:
            from twisted.python.failure import Failure

            on_result(False, Failure())
        else:
            on_result(True, result)

    def run_all(self, rounds_max: int = 1000) -> None:
        for _ in range(rounds_max):
            if not self.jobs:
                return
            self.run_one()
        raise AssertionError("thread pool jobs keep coming")


class ImmediateReactor:
    """Just enough reactor for deferToThreadPool: callFromThread runs now."""

    def callFromThread(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        f(*args, **kwargs)
