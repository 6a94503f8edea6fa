"""Why graft.kv refused an input. Every error is a ``ValueError``: each one
means "this input is bad", never "the store is broken".

This module imports nothing outside the standard library.
"""

from __future__ import annotations


class KVError(ValueError):
    """Base of every refusal from graft.kv; the message names the problem."""


class CommandError(KVError):
    """Command bytes or fields that do not form a valid command."""


class InvalidKey(CommandError):
    """A key that is not a UTF-8 string of 1 to 1024 bytes without control
    characters."""


class InvalidValue(CommandError):
    """A value that is not a JSON document (or, inside a command, not in
    canonical compact form)."""


class SnapshotFormatError(KVError):
    """Snapshot bytes that are damaged, truncated or of an unknown format."""
