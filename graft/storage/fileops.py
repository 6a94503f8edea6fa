"""The seam between graft.storage and the operating system's file calls.

Every write, fsync, rename and unlink the storage layer performs goes
through a :class:`FileOps`, so tests can inject ``ENOSPC`` or ``EIO`` at any
call (subclass it and raise ``OSError``) without filling a real disk.

This module may import only the standard library.
"""

from __future__ import annotations

import os


class FileOps:
    """Thin wrappers over :mod:`os`; one instance is shared by a data dir.

    Methods may be called from the reactor thread and from the fsync
    thread at once; implementations keep no mutable state of their own.
    """

    def open(self, path: str, flags: int, mode: int = 0o644) -> int:
        return os.open(path, flags, mode)

    def close(self, fd: int) -> None:
        os.close(fd)

    def write(self, fd: int, data: bytes | memoryview) -> int:
        """Write some of ``data`` (the OS may write less than asked)."""
        return os.write(fd, data)

    def write_all(self, fd: int, data: bytes) -> None:
        """Write all of ``data``, looping over short writes."""
        view = memoryview(data)
        while view:
            written = self.write(fd, view)
            view = view[written:]

    def pread(self, fd: int, size: int, offset: int) -> bytes:
        return os.pread(fd, size, offset)

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def fdatasync(self, fd: int) -> None:
        """Flush ``fd``'s data and the metadata needed to read it back
        (its size); cheaper than fsync where the OS has it."""
        if hasattr(os, "fdatasync"):
            os.fdatasync(fd)
        else:  # pragma: no cover - macOS
            os.fsync(fd)

    def ftruncate(self, fd: int, size: int) -> None:
        os.ftruncate(fd, size)

    def rename(self, source: str, target: str) -> None:
        os.replace(source, target)

    def unlink(self, path: str) -> None:
        os.unlink(path)

    def fsync_dir(self, path: str) -> None:
        """Make renames, creations and deletions in directory ``path`` durable."""
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            self.fsync(fd)
        finally:
            os.close(fd)

    def makedirs(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)

    def listdir(self, path: str) -> list[str]:
        return os.listdir(path)

    def exists(self, path: str) -> bool:
        return os.path.exists(path)


def write_atomically(ops: FileOps, path: str, data: bytes) -> None:
    """Replace the file at ``path`` with ``data``, all or nothing, durably.

    Write a temporary file beside it, fsync it, rename it over ``path``,
    fsync the directory (a rename alone is not durable; STYLE.md §4). After
    a crash at any instant ``path`` holds either the old or the new content.
    """
    directory = os.path.dirname(path) or "."
    tmp = path + ".tmp"
    fd = ops.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        ops.write_all(fd, data)
        ops.fsync(fd)
    finally:
        ops.close(fd)
    ops.rename(tmp, path)
    ops.fsync_dir(directory)


def read_file(path: str) -> bytes | None:
    """The content of ``path``, or None if it does not exist."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None
