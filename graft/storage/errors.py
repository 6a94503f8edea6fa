"""The exceptions graft.storage raises.

This module may import only the standard library.
"""

from __future__ import annotations


class StorageError(Exception):
    """Base class of everything graft.storage raises on purpose."""


class StorageCorruption(StorageError):
    """Stored data failed a check (checksum, framing, order) somewhere it
    cannot be explained by a crash; the message names the file and offset.
    The node must stop: repairing it would mean guessing."""

    def __init__(self, path: str, offset: int, problem: str) -> None:
        super().__init__(f"{path}: corrupt at offset {offset}: {problem}")
        self.path = path
        self.offset = offset
        self.problem = problem


class StorageFailed(StorageError):
    """A write or fsync failed (disk full, I/O error); the durable log has
    stopped acknowledging writes. Reopen it to recover what was durable."""


class IdentityMismatch(StorageError):
    """A data directory belongs to another cluster or another node."""
