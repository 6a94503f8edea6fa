"""The hard state file: HardState (term, vote, commit) in a small
checksummed record, replaced atomically (temp file, fsync, rename, fsync
the directory), so after a crash at any instant it holds the old or the new
value and a node never votes twice in one term (§5.2, Figure 2).

This module may import the standard library, graft.raft and graft.storage.
"""

from __future__ import annotations

import struct
import zlib

from graft.raft.messages import HardState
from graft.storage.errors import StorageCorruption
from graft.storage.fileops import FileOps, read_file, write_atomically

_MAGIC = b"GRFTHS01"
_BODY = struct.Struct("<8sQQQ")
_CRC = struct.Struct("<I")


def encode_hard_state(hard_state: HardState) -> bytes:
    body = _BODY.pack(_MAGIC, hard_state.term, hard_state.vote, hard_state.commit)
    return body + _CRC.pack(zlib.crc32(body))


def decode_hard_state(data: bytes, path: str) -> HardState:
    if len(data) != _BODY.size + _CRC.size:
        raise StorageCorruption(path, 0, f"hard state file has {len(data)} bytes")
    body = data[: _BODY.size]
    (crc,) = _CRC.unpack_from(data, _BODY.size)
    if zlib.crc32(body) != crc:
        raise StorageCorruption(path, 0, "hard state checksum mismatch")
    magic, term, vote, commit = _BODY.unpack(body)
    if magic != _MAGIC:
        raise StorageCorruption(path, 0, "not a graft hard state file (bad magic)")
    return HardState(term=term, vote=vote, commit=commit)


def load_hard_state(path: str) -> HardState:
    """The HardState stored at ``path``, or ``HardState()`` if there is none."""
    data = read_file(path)
    return HardState() if data is None else decode_hard_state(data, path)


def save_hard_state(ops: FileOps, path: str, hard_state: HardState) -> None:
    """Replace the hard state at ``path`` atomically and durably. Safe to
    call from a worker thread."""
    write_atomically(ops, path, encode_hard_state(hard_state))
