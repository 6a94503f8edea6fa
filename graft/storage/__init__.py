"""graft.storage: durable state of one node on disk.

- :mod:`.interfaces`: ILogStorage, ISnapshotStore, ISnapshotWriter.
- :mod:`.memory`: their in-memory twins.
- :mod:`.record`, :mod:`.recovery`, :mod:`.wal`: the write-ahead log in
  segment files (framing, crash recovery, FileLogStorage).
- :mod:`.group_commit`: GroupCommitLog, Deferred-acknowledged appends with
  one fsync per batch, off the reactor thread.
- :mod:`.hard_state`, :mod:`.snapshot`, :mod:`.datadir`: atomically
  replaced files, snapshots, and the data directory with its identity.
- :mod:`.fileops`: the seam for injecting disk faults; :mod:`.errors`.

The node opens a directory with ``open_data_dir``, reads the hard state,
newest snapshot and entries back, and wraps ``DataDir.log`` in a
GroupCommitLog to persist each Ready.

graft.storage may import graft.raft, twisted, attrs, msgpack,
zope.interface and the standard library; never graft.server, transport or
kv.
"""

from graft.storage.datadir import DataDir, open_data_dir
from graft.storage.errors import IdentityMismatch, StorageCorruption, StorageError, StorageFailed
from graft.storage.fileops import FileOps
from graft.storage.group_commit import GroupCommitLog
from graft.storage.interfaces import ILogStorage, ISnapshotStore, ISnapshotWriter
from graft.storage.memory import MemoryLogStorage, MemorySnapshotStore, MemorySnapshotWriter
from graft.storage.snapshot import FileSnapshotStore, FileSnapshotWriter, SnapshotFile
from graft.storage.wal import FileLogStorage

__all__ = [
    "DataDir",
    "FileLogStorage",
    "FileOps",
    "FileSnapshotStore",
    "FileSnapshotWriter",
    "GroupCommitLog",
    "ILogStorage",
    "ISnapshotStore",
    "ISnapshotWriter",
    "IdentityMismatch",
    "MemoryLogStorage",
    "MemorySnapshotStore",
    "MemorySnapshotWriter",
    "SnapshotFile",
    "StorageCorruption",
    "StorageError",
    "StorageFailed",
    "open_data_dir",
]
